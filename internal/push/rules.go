package push

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"
)

// defaults is the spec's predefined rule set (client-server API, "Push
// Notifications", "Predefined Rules", v1.17: without the legacy rules that
// looked for mentions in the body), in the spec's order.
// "[the user's Matrix ID]" stands for the user.
//
//go:embed defaults.json
var defaults []byte

const userPlaceholder = "[the user's Matrix ID]"

// Kind is a kind of push rule, in the order they are checked.
type Kind string

// The rule kinds (client-server API, "Push Rules").
const (
	Override  Kind = "override"
	Content   Kind = "content"
	RoomKind  Kind = "room"
	Sender    Kind = "sender"
	Underride Kind = "underride"
)

// Kinds lists the kinds in the order they are checked.
var Kinds = []Kind{Override, Content, RoomKind, Sender, Underride}

// ParseKind returns the kind named s, or false.
func ParseKind(s string) (Kind, bool) {
	k := Kind(s)
	return k, slices.Contains(Kinds, k)
}

// Rule is one push rule. Conditions hold for override and underride rules,
// Pattern for content rules; room and sender rules match their rule ID.
type Rule struct {
	ID         string
	Default    bool
	Enabled    bool
	Conditions []*Condition
	Pattern    *string
	Actions    []json.RawMessage

	kind Kind
	// Compiled from Pattern (content rules).
	glob *glob
	// Compiled from Actions.
	notify, highlight bool
}

// Kind is the rule's kind.
func (r *Rule) Kind() Kind { return r.kind }

type wireRule struct {
	RuleID     string            `json:"rule_id"`
	Default    bool              `json:"default"`
	Enabled    bool              `json:"enabled"`
	Conditions []*Condition      `json:"conditions,omitempty"`
	Pattern    *string           `json:"pattern,omitempty"`
	Actions    []json.RawMessage `json:"actions"`
}

// wire returns the rule as the client-server API shows it, with the
// placeholder of default rules replaced by user.
func (r *Rule) wire(user id.UserID) any {
	actions := r.Actions
	if actions == nil {
		actions = []json.RawMessage{}
	}
	w := wireRule{RuleID: r.ID, Default: r.Default, Enabled: r.Enabled, Pattern: r.Pattern, Actions: actions}
	if r.kind == Override || r.kind == Underride {
		conds := make([]*Condition, len(r.Conditions))
		for i, c := range r.Conditions {
			conds[i] = c.forUser(user)
		}
		// Always present for these kinds, even empty (.m.rule.master).
		return struct {
			wireRule
			Conditions []*Condition `json:"conditions"`
		}{w, conds}
	}
	return w
}

// Ruleset is a user's global push rules, per kind in priority order. A
// Ruleset is immutable once compiled: changes make a new one (Clone).
type Ruleset struct {
	rules map[Kind][]*Rule
	// Custom is true if the user changed anything.
	custom bool
}

// Rules returns the rules of a kind, in priority order. The caller must
// not modify them.
func (rs *Ruleset) Rules(k Kind) []*Rule { return rs.rules[k] }

var defaultRuleset = func() *Ruleset {
	rs, err := parseRuleset(defaults, true)
	if err != nil {
		panic(fmt.Sprintf("push: defaults.json: %v", err))
	}
	return rs
}()

// Defaults returns the server-default rule set; shared, not to be
// modified.
func Defaults() *Ruleset { return defaultRuleset }

// DefaultRules returns the global rule set of a user who changed nothing,
// in the format of GET /pushrules/global/.
func DefaultRules(user id.UserID) json.RawMessage {
	b, _ := defaultRuleset.MarshalFor(user)
	return b
}

// parseRuleset reads a ruleset in the client-server format (the value of
// "global"). With isDefault, every rule is marked default.
func parseRuleset(raw []byte, isDefault bool) (*Ruleset, error) {
	var w map[Kind][]wireRule
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, err
	}
	rs := &Ruleset{rules: map[Kind][]*Rule{}}
	for _, k := range Kinds {
		for _, wr := range w[k] {
			r := &Rule{ID: wr.RuleID, Default: isDefault || wr.Default, Enabled: wr.Enabled, Conditions: wr.Conditions, Pattern: wr.Pattern, Actions: wr.Actions, kind: k}
			if err := r.compile(); err != nil {
				return nil, fmt.Errorf("rule %s %s: %w", k, r.ID, err)
			}
			rs.rules[k] = append(rs.rules[k], r)
		}
	}
	return rs, nil
}

// MarshalFor returns the ruleset in the client-server format (the value of
// "global" in GET /pushrules/), the user's ID in place of the default
// rules' placeholder.
func (rs *Ruleset) MarshalFor(user id.UserID) ([]byte, error) {
	out := make(map[Kind][]any, len(Kinds))
	for _, k := range Kinds {
		list := make([]any, 0, len(rs.rules[k]))
		for _, r := range rs.rules[k] {
			list = append(list, r.wire(user))
		}
		out[k] = list
	}
	return json.Marshal(out)
}

// AccountData returns the content of the user's m.push_rules account data
// event: {"global": ruleset} (client-server API, "Push Rules: Events").
func (rs *Ruleset) AccountData(user id.UserID) ([]byte, error) {
	g, err := rs.MarshalFor(user)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]json.RawMessage{"global": g})
}

// Load rebuilds a user's rules from the content of its m.push_rules
// account data (as AccountData wrote it): the server-default rules as this
// version of the server defines them, with the enabled flags and actions
// the user set on them, and the user's own rules in their order. Invalid
// content gives the defaults and the error.
func Load(content []byte) (*Ruleset, error) {
	if len(content) == 0 {
		return defaultRuleset, nil
	}
	var ad struct {
		Global json.RawMessage `json:"global"`
	}
	if err := json.Unmarshal(content, &ad); err != nil || ad.Global == nil {
		return defaultRuleset, fmt.Errorf("m.push_rules: no global ruleset")
	}
	stored, err := parseRuleset(ad.Global, false)
	if err != nil {
		return defaultRuleset, err
	}
	rs := &Ruleset{rules: map[Kind][]*Rule{}, custom: true}
	for _, k := range Kinds {
		byID := map[string]*Rule{}
		var own []*Rule
		for _, r := range stored.rules[k] {
			if isDefaultID(r.ID) {
				byID[r.ID] = r
			} else {
				r.Default = false
				own = append(own, r)
			}
		}
		var defs []*Rule
		for _, d := range defaultRuleset.rules[k] {
			if s := byID[d.ID]; s != nil && (s.Enabled != d.Enabled || !slices.EqualFunc(s.Actions, d.Actions, rawEqual)) {
				c := *d
				c.Enabled = s.Enabled
				c.Actions = s.Actions
				c.compileActions()
				d = &c
			}
			defs = append(defs, d)
		}
		rs.rules[k] = merge(k, own, defs)
	}
	return rs, nil
}

// merge orders the user's rules and the default rules of a kind: user
// rules first, except that .m.rule.master stays above every other rule
// (client-server API, "Predefined Rules").
func merge(k Kind, own, defs []*Rule) []*Rule {
	out := make([]*Rule, 0, len(own)+len(defs))
	if k == Override && len(defs) > 0 && defs[0].ID == ".m.rule.master" {
		out = append(out, defs[0])
		defs = defs[1:]
	}
	out = append(out, own...)
	return append(out, defs...)
}

func rawEqual(a, b json.RawMessage) bool { return string(a) == string(b) }

func isDefaultID(ruleID string) bool { return strings.HasPrefix(ruleID, ".") }

// clone returns a copy of rs whose rule lists (not rules) may be changed.
func (rs *Ruleset) clone() *Ruleset {
	c := &Ruleset{rules: make(map[Kind][]*Rule, len(Kinds)), custom: true}
	for k, l := range rs.rules {
		c.rules[k] = slices.Clone(l)
	}
	return c
}

func (rs *Ruleset) find(k Kind, ruleID string) (int, *Rule) {
	for i, r := range rs.rules[k] {
		if r.ID == ruleID {
			return i, r
		}
	}
	return -1, nil
}

// Get returns a rule, or ErrNoRule.
func (rs *Ruleset) Get(k Kind, ruleID string) (*Rule, error) {
	if _, r := rs.find(k, ruleID); r != nil {
		return r, nil
	}
	return nil, ErrNoRule
}

// WireRule returns one rule in the client-server format.
func (r *Rule) MarshalFor(user id.UserID) ([]byte, error) { return json.Marshal(r.wire(user)) }

// Errors of the ruleset changes; the API maps them to Matrix errors.
var (
	// ErrNoRule: the rule (or the before/after rule) does not exist.
	ErrNoRule = fmt.Errorf("no such push rule")
	// ErrDefaultRule: server-default rules cannot be added or deleted.
	ErrDefaultRule = fmt.Errorf("cannot change a server-default push rule this way")
)

// InvalidError is a rule the client sent that the server cannot take.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

// NewRule is the body of PUT /pushrules/global/{kind}/{ruleId}.
type NewRule struct {
	Actions    []json.RawMessage `json:"actions"`
	Conditions []*Condition      `json:"conditions"`
	Pattern    *string           `json:"pattern"`
}

// Put adds or replaces a user-defined rule and returns the new ruleset
// (client-server API, PUT /pushrules/{scope}/{kind}/{ruleId}). A new rule
// without before or after becomes the most important user rule of its
// kind; an existing one keeps its place unless before or after is given.
// before and after name user rules of the same kind (ErrNoRule if there
// is none); with both, before wins (the spec: "the next most important
// rule with respect to the rule identified by before"). Errors:
// ErrDefaultRule for an ID starting with ".", *InvalidError for a bad ID,
// pattern, room ID, user ID or actions.
func (rs *Ruleset) Put(k Kind, ruleID string, nr NewRule, before, after string) (*Ruleset, error) {
	if isDefaultID(ruleID) {
		return nil, ErrDefaultRule
	}
	if ruleID == "" || strings.ContainsAny(ruleID, `/\`) {
		return nil, &InvalidError{"rule_id may not be empty or contain / or \\"}
	}
	if nr.Actions == nil {
		return nil, &InvalidError{"actions is required"}
	}
	r := &Rule{ID: ruleID, Enabled: true, Actions: nr.Actions, kind: k}
	switch k {
	case Override, Underride:
		r.Conditions = nr.Conditions
		if r.Conditions == nil {
			r.Conditions = []*Condition{}
		}
	case Content:
		if nr.Pattern == nil {
			return nil, &InvalidError{"content rules need a pattern"}
		}
		r.Pattern = nr.Pattern
	case RoomKind:
		// Room IDs of v12 rooms have no server name.
		if len(ruleID) < 2 || ruleID[0] != '!' {
			return nil, &InvalidError{"the rule_id of a room rule is a room ID"}
		}
	case Sender:
		if _, _, err := id.UserID(ruleID).Parse(); err != nil {
			return nil, &InvalidError{"the rule_id of a sender rule is a user ID"}
		}
	}
	if err := checkActions(r.Actions); err != nil {
		return nil, err
	}
	if err := r.compile(); err != nil {
		return nil, &InvalidError{err.Error()}
	}
	for _, rel := range []string{before, after} {
		if rel == "" {
			continue
		}
		if isDefaultID(rel) {
			return nil, &InvalidError{"before and after cannot name a server-default rule"}
		}
		if _, x := rs.find(k, rel); x == nil {
			return nil, ErrNoRule
		}
	}
	c := rs.clone()
	list := c.rules[k]
	i, old := c.find(k, ruleID)
	if old != nil {
		if before == "" && after == "" {
			list[i] = r
			return c, nil
		}
		list = slices.Delete(list, i, i+1)
	}
	at := -1
	switch {
	case before != "":
		at = slices.IndexFunc(list, func(x *Rule) bool { return x.ID == before })
	case after != "":
		at = slices.IndexFunc(list, func(x *Rule) bool { return x.ID == after }) + 1
	default:
		// The most important user rule: after .m.rule.master only.
		at = 0
		if len(list) > 0 && list[0].ID == ".m.rule.master" {
			at = 1
		}
	}
	c.rules[k] = slices.Insert(list, at, r)
	return c, nil
}

// Delete removes a user rule. Errors: ErrNoRule, ErrDefaultRule.
func (rs *Ruleset) Delete(k Kind, ruleID string) (*Ruleset, error) {
	i, r := rs.find(k, ruleID)
	if r == nil {
		return nil, ErrNoRule
	}
	if r.Default {
		return nil, ErrDefaultRule
	}
	c := rs.clone()
	c.rules[k] = slices.Delete(c.rules[k], i, i+1)
	return c, nil
}

// SetEnabled enables or disables a rule (default rules too). Errors:
// ErrNoRule.
func (rs *Ruleset) SetEnabled(k Kind, ruleID string, enabled bool) (*Ruleset, error) {
	return rs.change(k, ruleID, func(r *Rule) error { r.Enabled = enabled; return nil })
}

// SetActions replaces a rule's actions (default rules too). Errors:
// ErrNoRule, *InvalidError.
func (rs *Ruleset) SetActions(k Kind, ruleID string, actions []json.RawMessage) (*Ruleset, error) {
	if actions == nil {
		return nil, &InvalidError{"actions is required"}
	}
	if err := checkActions(actions); err != nil {
		return nil, err
	}
	return rs.change(k, ruleID, func(r *Rule) error { r.Actions = actions; r.compileActions(); return nil })
}

func (rs *Ruleset) change(k Kind, ruleID string, fn func(*Rule) error) (*Ruleset, error) {
	i, r := rs.find(k, ruleID)
	if r == nil {
		return nil, ErrNoRule
	}
	c := rs.clone()
	nr := *r
	if err := fn(&nr); err != nil {
		return nil, err
	}
	c.rules[k][i] = &nr
	return c, nil
}

// checkActions accepts strings and objects (client-server API,
// "Actions"); unknown actions pass through as tweaks do.
func checkActions(actions []json.RawMessage) error {
	for _, a := range actions {
		var v any
		if err := json.Unmarshal(a, &v); err != nil {
			return &InvalidError{"actions must be JSON"}
		}
		switch v := v.(type) {
		case string:
		case map[string]any:
			if t, ok := v["set_tweak"]; ok {
				if _, ok := t.(string); !ok {
					return &InvalidError{"set_tweak must be a string"}
				}
			}
		default:
			return &InvalidError{"an action is a string or an object"}
		}
	}
	return nil
}

// compile prepares a rule for evaluation.
func (r *Rule) compile() error {
	for _, c := range r.Conditions {
		if c == nil {
			return fmt.Errorf("null condition")
		}
		c.compile()
	}
	if r.Pattern != nil {
		r.glob = compileGlob(*r.Pattern, true)
	}
	r.compileActions()
	return nil
}

// compileActions reads notify and the highlight tweak from the actions.
// The historical dont_notify and coalesce mean nothing (client-server API,
// "Historical Actions").
func (r *Rule) compileActions() {
	r.notify, r.highlight = false, false
	for _, a := range r.Actions {
		if string(a) == `"notify"` {
			r.notify = true
			continue
		}
		var t struct {
			SetTweak string           `json:"set_tweak"`
			Value    *json.RawMessage `json:"value"`
		}
		if json.Unmarshal(a, &t) == nil && t.SetTweak == "highlight" {
			// No value means true; any value but false counts as
			// true only if it is true.
			r.highlight = t.Value == nil || string(*t.Value) == "true"
		}
	}
}

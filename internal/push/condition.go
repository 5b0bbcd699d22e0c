package push

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"
)

// Condition is a condition of an override or underride rule
// (client-server API, "Conditions"). The JSON the client sent is kept as
// it came, unknown kinds and fields included; unknown kinds never match.
type Condition struct {
	Kind    string
	Key     string
	Pattern *string
	Value   json.RawMessage
	Is      string

	raw json.RawMessage
	// Compiled.
	path     []string
	glob     *glob
	value    any  // Value decoded; valid if scalar
	scalar   bool // Value is a string, integer in range, boolean or null
	forUserP bool // Pattern is the default rules' user placeholder
	forUserV bool // Value is the placeholder
	cmp      byte // room_member_count: '=', '<', '>', 'l' (<=), 'g' (>=)
	count    int64
	countOK  bool
}

// UnmarshalJSON keeps the raw form and reads the known fields.
func (c *Condition) UnmarshalJSON(b []byte) error {
	var w struct {
		Kind    string          `json:"kind"`
		Key     string          `json:"key"`
		Pattern *string         `json:"pattern"`
		Value   json.RawMessage `json:"value"`
		Is      any             `json:"is"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = Condition{Kind: w.Kind, Key: w.Key, Pattern: w.Pattern, Value: w.Value, raw: append(json.RawMessage(nil), b...)}
	if s, ok := w.Is.(string); ok {
		c.Is = s
	}
	return nil
}

// MarshalJSON writes the condition as the client sent it.
func (c *Condition) MarshalJSON() ([]byte, error) {
	if c.raw != nil {
		return c.raw, nil
	}
	m := map[string]any{"kind": c.Kind}
	if c.Key != "" {
		m["key"] = c.Key
	}
	if c.Pattern != nil {
		m["pattern"] = *c.Pattern
	}
	if c.Value != nil {
		m["value"] = c.Value
	}
	if c.Is != "" {
		m["is"] = c.Is
	}
	return json.Marshal(m)
}

// forUser returns the condition with the placeholder of the default rules
// replaced by user.
func (c *Condition) forUser(user id.UserID) *Condition {
	if !c.forUserP && !c.forUserV {
		return c
	}
	q, _ := json.Marshal(string(user))
	p, _ := json.Marshal(userPlaceholder)
	out := *c
	out.raw = bytes.ReplaceAll(c.raw, p, q)
	return &out
}

// The condition kinds (client-server API, "Conditions").
const (
	kindEventMatch           = "event_match"
	kindEventPropertyIs      = "event_property_is"
	kindEventPropertyContain = "event_property_contains"
	kindDisplayName          = "contains_display_name"
	kindMemberCount          = "room_member_count"
	kindSenderPermission     = "sender_notification_permission"
)

func (c *Condition) compile() {
	c.path = splitPath(c.Key)
	if c.Pattern != nil {
		c.forUserP = *c.Pattern == userPlaceholder
		c.glob = compileGlob(*c.Pattern, c.Key == "content.body")
	}
	if c.Value != nil {
		c.value, c.scalar = decodeScalar(c.Value)
		if s, ok := c.value.(string); ok && s == userPlaceholder {
			c.forUserV = true
		}
	}
	if c.Kind == kindMemberCount {
		c.cmp, c.count, c.countOK = parseIs(c.Is)
	}
}

// splitPath splits a dot-separated property path (appendices,
// "Dot-separated property paths"): "." separates, "\." is a literal dot,
// "\\" a literal backslash, and any other backslash is itself.
func splitPath(key string) []string {
	if key == "" {
		return nil
	}
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(key); i++ {
		ch := key[i]
		switch {
		case ch == '\\' && i+1 < len(key) && (key[i+1] == '.' || key[i+1] == '\\'):
			cur.WriteByte(key[i+1])
			i++
		case ch == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(ch)
		}
	}
	return append(parts, cur.String())
}

// decodeScalar decodes a value of event_property_is/contains: only
// strings, integers in [-(2**53)+1, (2**53)-1], booleans and null compare
// (client-server API, "event_property_is").
func decodeScalar(raw []byte) (any, bool) {
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	return scalar(v)
}

const maxSafeInt = 1<<53 - 1

// scalar normalises a decoded JSON value (numbers as json.Number) for
// exact comparison: integers become int64; floats and compound values are
// not scalars.
func scalar(v any) (any, bool) {
	switch v := v.(type) {
	case nil, bool, string:
		return v, true
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || n > maxSafeInt || n < -maxSafeInt {
			return nil, false
		}
		return n, true
	}
	return nil, false
}

// parseIs reads room_member_count's "is": a decimal integer optionally
// prefixed by ==, <, >, >= or <= (no prefix is ==).
func parseIs(is string) (byte, int64, bool) {
	op := byte('=')
	switch {
	case strings.HasPrefix(is, "=="):
		is = is[2:]
	case strings.HasPrefix(is, "<="):
		op, is = 'l', is[2:]
	case strings.HasPrefix(is, ">="):
		op, is = 'g', is[2:]
	case strings.HasPrefix(is, "<"):
		op, is = '<', is[1:]
	case strings.HasPrefix(is, ">"):
		op, is = '>', is[1:]
	}
	if is == "" || strings.IndexFunc(is, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, 0, false
	}
	n, err := strconv.ParseInt(is, 10, 64)
	return op, n, err == nil
}

// glob is a compiled glob-style pattern (appendices, "Glob-style
// matching": * matches zero or more characters, ? exactly one), matched
// case-insensitively against the whole value or, for content.body, any
// part of it that starts and ends at word boundaries.
type glob struct {
	literal string // lower-case, when the pattern has no wildcard and is not a body pattern
	re      *regexp.Regexp
}

func compileGlob(pattern string, words bool) *glob {
	if !words && !strings.ContainsAny(pattern, "*?") {
		return &glob{literal: pattern}
	}
	var b strings.Builder
	b.WriteString("(?is)")
	if words {
		b.WriteString(`(?:^|[^A-Za-z0-9_])`)
	} else {
		b.WriteString("^")
	}
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*?")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	if words {
		b.WriteString(`(?:[^A-Za-z0-9_]|$)`)
	} else {
		b.WriteString("$")
	}
	return &glob{re: regexp.MustCompile(b.String())}
}

func (g *glob) match(s string) bool {
	if g.re == nil {
		return strings.EqualFold(g.literal, s)
	}
	return g.re.MatchString(s)
}

package push

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"sync"

	"maunium.net/go/mautrix/id"
)

// Event is an event decoded once for evaluating every member's rules. It
// remembers the outcome of the conditions that do not depend on the member
// (all but the user's own ID and display name), so that members sharing
// rules (the defaults) pay for those once per event: all evaluations of
// an Event must therefore pass the same Room. Not safe for concurrent use.
type Event struct {
	m      map[string]any
	memo   map[*Condition]bool
	sender id.UserID
	room   id.RoomID
}

// ParseEvent decodes an event (client or federation format: the rules
// look at type, sender, room_id, state_key and content, which both have).
func ParseEvent(raw []byte) (*Event, error) {
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	e := &Event{m: m}
	e.sender = id.UserID(str(m["sender"]))
	e.room = id.RoomID(str(m["room_id"]))
	return e, nil
}

func str(v any) string { s, _ := v.(string); return s }

// Sender is the event's sender.
func (e *Event) Sender() id.UserID { return e.sender }

// lookup follows a split property path; it fails if a step is missing or
// not an object.
func (e *Event) lookup(path []string) (any, bool) {
	if len(path) == 0 {
		return nil, false
	}
	var cur any = e.m
	for _, p := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Room is what the rules need to know of the room an event is in, at the
// event: its member count and the power levels that
// sender_notification_permission compares.
type Room struct {
	// MemberCount is the number of joined members.
	MemberCount int
	// SenderPower is the event sender's power level.
	SenderPower int64
	// Notifications are the levels of the power levels event's
	// notifications object; missing keys need 50.
	Notifications map[string]int64
}

// Member is the user whose rules are evaluated: its ID and its display
// name in the room (for the deprecated contains_display_name).
type Member struct {
	UserID      id.UserID
	DisplayName string

	once sync.Once
	name *glob
}

func (m *Member) nameGlob() *glob {
	m.once.Do(func() {
		if m.DisplayName != "" {
			m.name = &glob{re: regexp.MustCompile(`(?is)(?:^|[^A-Za-z0-9_])` + regexp.QuoteMeta(m.DisplayName) + `(?:[^A-Za-z0-9_]|$)`)}
		}
	})
	return m.name
}

// Result is the outcome of a member's rules for an event.
type Result struct {
	// Rule is the rule that matched; nil if none did (no notification).
	Rule *Rule
	// Notify and Highlight are read from the rule's actions.
	Notify, Highlight bool
}

// Actions are the matching rule's actions (nil if none matched).
func (r Result) Actions() []json.RawMessage {
	if r.Rule == nil {
		return nil
	}
	return r.Rule.Actions
}

// Evaluate finds the first enabled rule of rs that matches ev for member m
// in room (client-server API, "Push Rules": override, content, room,
// sender, underride). The caller excludes the member's own events ("MUST
// NOT notify the Push Gateway for events that the user has sent
// themselves"). Pure.
func Evaluate(rs *Ruleset, ev *Event, room *Room, m *Member) Result {
	for _, k := range Kinds {
		for _, r := range rs.rules[k] {
			if r.Enabled && r.matches(ev, room, m) {
				return Result{Rule: r, Notify: r.notify, Highlight: r.highlight}
			}
		}
	}
	return Result{}
}

func (r *Rule) matches(ev *Event, room *Room, m *Member) bool {
	switch r.kind {
	case Content:
		// Content rules match content.body at word boundaries
		// (client-server API, "Push Rules").
		body, ok := ev.lookupBody()
		return ok && r.glob != nil && r.glob.match(body)
	case RoomKind:
		return string(ev.room) == r.ID
	case Sender:
		return string(ev.sender) == r.ID
	}
	for _, c := range r.Conditions {
		if c.perUser() {
			if !c.matches(ev, room, m) {
				return false
			}
			continue
		}
		v, ok := ev.memo[c]
		if !ok {
			v = c.matches(ev, room, m)
			if ev.memo == nil {
				ev.memo = make(map[*Condition]bool, 16)
			}
			ev.memo[c] = v
		}
		if !v {
			return false
		}
	}
	return true
}

// perUser reports whether the condition depends on the member evaluated.
func (c *Condition) perUser() bool {
	return c.forUserP || c.forUserV || c.Kind == kindDisplayName
}

func (e *Event) lookupBody() (string, bool) {
	c, ok := e.m["content"].(map[string]any)
	if !ok {
		return "", false
	}
	s, ok := c["body"].(string)
	return s, ok
}

func (c *Condition) matches(ev *Event, room *Room, m *Member) bool {
	switch c.Kind {
	case kindEventMatch:
		if c.glob == nil {
			return false
		}
		v, ok := ev.lookup(c.path)
		if !ok {
			return false
		}
		s, ok := v.(string)
		if !ok {
			return false
		}
		if c.forUserP {
			return strings.EqualFold(s, string(m.UserID))
		}
		return c.glob.match(s)
	case kindEventPropertyIs:
		if !c.scalar {
			return false
		}
		v, ok := ev.lookup(c.path)
		if !ok {
			return false
		}
		return c.equal(v, m)
	case kindEventPropertyContain:
		if !c.scalar {
			return false
		}
		v, ok := ev.lookup(c.path)
		if !ok {
			return false
		}
		arr, ok := v.([]any)
		if !ok {
			return false
		}
		for _, x := range arr {
			if c.equal(x, m) {
				return true
			}
		}
		return false
	case kindDisplayName:
		body, ok := ev.lookupBody()
		if !ok {
			return false
		}
		g := m.nameGlob()
		return g != nil && g.match(body)
	case kindMemberCount:
		if !c.countOK || room == nil {
			return false
		}
		n := int64(room.MemberCount)
		switch c.cmp {
		case '=':
			return n == c.count
		case '<':
			return n < c.count
		case '>':
			return n > c.count
		case 'l':
			return n <= c.count
		case 'g':
			return n >= c.count
		}
		return false
	case kindSenderPermission:
		if room == nil || c.Key == "" {
			return false
		}
		need, ok := room.Notifications[c.Key]
		if !ok {
			need = 50
		}
		return room.SenderPower >= need
	}
	return false // unrecognised conditions never match
}

// equal compares an event's value with the condition's, exactly: no
// casts, only non-compound canonical JSON values.
func (c *Condition) equal(v any, m *Member) bool {
	x, ok := scalar(v)
	if !ok {
		return false
	}
	want := c.value
	if c.forUserV {
		want = string(m.UserID)
	}
	return x == want
}

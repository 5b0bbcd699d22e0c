package eventauth

import (
	"encoding/json/jsontext"
	"fmt"
	"math"
	"slices"

	"maunium.net/go/mautrix/id"
)

// InfiniteLevel is the power level of a room creator from room version 12
// (MSC4289, v12 "Authorisation rules": "The power level of room creators is
// infinitely high"). It is above every level a power levels event can hold,
// since from v6 levels are canonical JSON integers below 2^53.
const InfiniteLevel int64 = math.MaxInt64

// The top-level levels of m.room.power_levels, in the order the rules list
// them ("users_default, events_default, state_default, ban, redact, kick,
// invite"), and their defaults (m.room.power_levels schema; server-server
// API "Definitions").
const (
	topUsersDefault = iota
	topEventsDefault
	topStateDefault
	topBan
	topRedact
	topKick
	topInvite
	topCount
)

var (
	topNames    = [topCount]string{"users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"}
	topDefaults = [topCount]int64{0, 0, 50, 50, 50, 50, 0}
)

type powerLevelsContent struct {
	UsersDefault  jsontext.Value `json:"users_default"`
	EventsDefault jsontext.Value `json:"events_default"`
	StateDefault  jsontext.Value `json:"state_default"`
	Ban           jsontext.Value `json:"ban"`
	Redact        jsontext.Value `json:"redact"`
	Kick          jsontext.Value `json:"kick"`
	Invite        jsontext.Value `json:"invite"`
	Users         jsontext.Value `json:"users"`
	Events        jsontext.Value `json:"events"`
	Notifications jsontext.Value `json:"notifications"`
}

func (c *powerLevelsContent) top() [topCount]jsontext.Value {
	return [topCount]jsontext.Value{c.UsersDefault, c.EventsDefault, c.StateDefault, c.Ban, c.Redact, c.Kick, c.Invite}
}

type optLevel struct {
	v  int64
	ok bool // the property is present and holds a level
}

// levels is an m.room.power_levels content read leniently: values that are
// not levels in the room version are left out, as if absent.
type levels struct {
	top           [topCount]optLevel
	users         map[string]int64
	events        map[string]int64
	notifications map[string]int64
}

func parseLevels(n int, content []byte) levels {
	c := decode[powerLevelsContent](content)
	var l levels
	for i, raw := range c.top() {
		if v, ok, _ := parseLevel(n, raw); ok {
			l.top[i] = optLevel{v, true}
		}
	}
	l.users = lenientMap(n, c.Users)
	l.events = lenientMap(n, c.Events)
	l.notifications = lenientMap(n, c.Notifications)
	return l
}

func lenientMap(n int, raw jsontext.Value) map[string]int64 {
	m, ok := object(raw)
	if !ok {
		return nil
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		if l, ok, _ := parseLevel(n, v); ok {
			out[k] = l
		}
	}
	return out
}

// PowerLevels is what the rules of one room version read from a room's
// m.room.power_levels and m.room.create events: the level of each user and
// the level each action requires. Build it with NewPowerLevels.
//
// It reads the entries of users, events and notifications only when asked
// for, so that a power levels event listing many users costs one decode
// per Check, not one map entry per user.
type PowerLevels struct {
	n        int
	exists   bool // the room has an m.room.power_levels event
	creators []id.UserID
	top      [topCount]optLevel
	// users, events and notifications are the raw objects (valid JSON, as
	// decode checked), nil when absent or not objects.
	users, events, notifications jsontext.Value
}

// NewPowerLevels reads the power levels of a room of the given version from
// its m.room.create event and its m.room.power_levels event (nil when the
// room has none). Values that are not valid levels in that version are
// ignored, as if absent, so that the defaults apply.
//
// It returns an error wrapping ErrUnknownVersion for an unknown version, and
// an error when create is nil.
func NewPowerLevels(version id.RoomVersion, create, powerLevels Event) (*PowerLevels, error) {
	n := versionNumber(version)
	if n == 0 {
		return nil, fmt.Errorf("%w %q", ErrUnknownVersion, version)
	}
	if create == nil {
		return nil, fmt.Errorf("eventauth: power levels of a room without m.room.create")
	}
	return newPowerLevels(n, creators(n, create, decode[createContent](create.Content())), powerLevels), nil
}

func newPowerLevels(n int, creators []id.UserID, pl Event) *PowerLevels {
	p := &PowerLevels{n: n, creators: creators}
	if pl == nil {
		return p
	}
	p.exists = true
	// The content of a state event was checked when the event was parsed:
	// read it in one pass, without decoding (the users object of a big
	// room is long, and Check reads one or two of its entries).
	members(pl.Content(), func(name, value []byte) {
		for i, top := range topNames {
			if nameIs(name, top) {
				if v, ok, _ := parseLevel(n, value); ok {
					p.top[i] = optLevel{v, true}
				} else {
					p.top[i] = optLevel{}
				}
				return
			}
		}
		var dst *jsontext.Value
		switch {
		case nameIs(name, "users"):
			dst = &p.users
		case nameIs(name, "events"):
			dst = &p.events
		case nameIs(name, "notifications"):
			dst = &p.notifications
		default:
			return
		}
		*dst = nil
		if isObject(value) {
			*dst = value
		}
	})
	return p
}

// Creators returns the room creators:
//   - v1–10: content.creator of the m.room.create event (MSC2175 removed it in
//     v11), if it is a string;
//   - v11: the sender of the m.room.create event;
//   - v12: the sender and the user IDs in content.additional_creators
//     (MSC4289).
//
// In v1–11 the creator matters only while the room has no
// m.room.power_levels event (it then has level 100) and for the first join
// (rule "If the only previous event is an m.room.create and the state_key is
// the creator, allow"). In v12 creators have InfiniteLevel.
func Creators(version id.RoomVersion, create Event) ([]id.UserID, error) {
	n := versionNumber(version)
	if n == 0 {
		return nil, fmt.Errorf("%w %q", ErrUnknownVersion, version)
	}
	return creators(n, create, decode[createContent](create.Content())), nil
}

func creators(n int, create Event, c createContent) []id.UserID {
	switch {
	case n <= 10:
		if s, ok := str(c.Creator); ok {
			return []id.UserID{id.UserID(s)}
		}
		return nil
	case n == 11:
		return []id.UserID{create.Sender()}
	}
	out := []id.UserID{create.Sender()}
	if list, ok := array(c.AdditionalCreators); ok {
		for _, v := range list {
			if s, ok := str(v); ok && !slices.Contains(out, id.UserID(s)) {
				out = append(out, id.UserID(s))
			}
		}
	}
	return out
}

// Exists reports whether the room has an m.room.power_levels event.
func (p *PowerLevels) Exists() bool { return p.exists }

// IsCreator reports whether user is a room creator with InfiniteLevel
// (room versions 12 and later only).
func (p *PowerLevels) IsCreator(user id.UserID) bool {
	return p.n >= 12 && slices.Contains(p.creators, user)
}

// UserLevel is user's power level: InfiniteLevel for a v12 creator; else its
// entry in users, or users_default (0 by default). Up to v11, when the room
// has no m.room.power_levels event the creator has 100 and everyone else 0
// (m.room.power_levels schema, users_default).
func (p *PowerLevels) UserLevel(user id.UserID) int64 {
	if p.IsCreator(user) {
		return InfiniteLevel
	}
	if p.exists {
		if l, ok := p.entry(p.users, string(user)); ok {
			return l
		}
		return p.level(topUsersDefault)
	}
	if p.n <= 11 && slices.Contains(p.creators, user) {
		return 100
	}
	return 0
}

// EventLevel is the level required to send an event of type evType (the
// server-server API's "required power level"): its entry in events, else
// state_default (50 by default) for a state event and events_default (0 by
// default) for any other.
func (p *PowerLevels) EventLevel(evType string, isState bool) int64 {
	if l, ok := p.entry(p.events, evType); ok {
		return l
	}
	if isState {
		return p.level(topStateDefault)
	}
	return p.level(topEventsDefault)
}

// Invite is the invite level (0 by default).
func (p *PowerLevels) Invite() int64 { return p.level(topInvite) }

// Kick is the kick level (50 by default).
func (p *PowerLevels) Kick() int64 { return p.level(topKick) }

// Ban is the ban level (50 by default).
func (p *PowerLevels) Ban() int64 { return p.level(topBan) }

// Redact is the redact level (50 by default): the level needed to redact
// another user's event (v3+ "Handling redactions"; v1–2 rule 11).
func (p *PowerLevels) Redact() int64 { return p.level(topRedact) }

// UsersDefault is users_default (0 by default).
func (p *PowerLevels) UsersDefault() int64 { return p.level(topUsersDefault) }

// NotificationLevel is the level a sender needs for the notification key
// (push rule condition sender_notification_permission): its entry in
// notifications; "room" defaults to 50. ok is false for another key without
// an entry.
func (p *PowerLevels) NotificationLevel(key string) (level int64, ok bool) {
	if l, ok := p.entry(p.notifications, key); ok {
		return l, true
	}
	if key == "room" {
		return 50, true
	}
	return 0, false
}

func (p *PowerLevels) level(i int) int64 {
	if p.top[i].ok {
		return p.top[i].v
	}
	return topDefaults[i]
}

// entry reads the level of key in obj (users, events or notifications); ok
// is false when it is absent or not a level in the room version.
func (p *PowerLevels) entry(obj jsontext.Value, key string) (int64, bool) {
	raw := member(obj, key)
	if raw == nil {
		return 0, false
	}
	l, ok, _ := parseLevel(p.n, raw)
	return l, ok
}

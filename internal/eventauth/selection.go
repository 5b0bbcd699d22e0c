package eventauth

import (
	"fmt"

	"maunium.net/go/mautrix/id"
)

// StateKeyTuple is the (type, state_key) key of a state event.
type StateKeyTuple struct {
	Type     string
	StateKey string
}

// AuthEventSelection returns which state entries are the auth events of ev
// (server-server API, "Auth events selection"), in this order, without
// duplicates:
//
//   - m.room.create, except in room version 12 and later (MSC4291: the room
//     ID names it);
//   - m.room.power_levels;
//   - the sender's m.room.member;
//   - for m.room.member: the target's m.room.member; m.room.join_rules if
//     membership is join, invite or knock; the m.room.third_party_invite
//     whose state_key is content.third_party_invite.signed.token for an
//     invite with one; and from v8 (restricted rooms) the m.room.member of
//     content.join_authorised_via_users_server for a join with one.
//
// The auth events are those of these entries that exist in the state before
// the event. An m.room.create event has none: the result is nil. So is it
// for an unknown room version.
func AuthEventSelection(version id.RoomVersion, ev Event) []StateKeyTuple {
	n := versionNumber(version)
	if n == 0 || ev.Type() == typeCreate {
		return nil
	}
	keys := make([]StateKeyTuple, 0, 6)
	add := func(t, sk string) {
		k := StateKeyTuple{t, sk}
		for _, have := range keys {
			if have == k {
				return
			}
		}
		keys = append(keys, k)
	}
	if n <= 11 {
		add(typeCreate, "")
	}
	add(typePowerLevels, "")
	add(typeMember, string(ev.Sender()))
	sk := ev.StateKey()
	if ev.Type() != typeMember || sk == nil {
		return keys
	}
	add(typeMember, *sk)
	mc := decode[memberContent](ev.Content())
	membership, _ := str(mc.Membership)
	if membership == membershipJoin || membership == membershipInvite || membership == membershipKnock {
		add(typeJoinRules, "")
	}
	if membership == membershipInvite && present(mc.ThirdPartyInvite) {
		if tpi, ok := object(mc.ThirdPartyInvite); ok {
			if signed, ok := object(tpi["signed"]); ok {
				if token, ok := str(signed["token"]); ok {
					add(typeThirdPartyInvite, token)
				}
			}
		}
	}
	if membership == membershipJoin && n >= 8 {
		if via, ok := str(mc.JoinAuthorisedVia); ok {
			add(typeMember, via)
		}
	}
	return keys
}

// CheckAuthEvents applies the rules about ev's auth_events list (rule 2 in
// v1–11, rule 3 in v12) to authEvents, the events its auth_events IDs name,
// in any order:
//
//  1. no two entries have the same type and state_key;
//  2. every entry is a state event whose (type, state_key) AuthEventSelection
//     chooses (so in v12 none is m.room.create);
//  3. no entry was rejected (for events implementing Rejecter);
//  4. (v1–11) one entry is the m.room.create event;
//  5. every entry is in ev's room.
//
// An m.room.create event is not subject to these rules (rule 1 decides it)
// and gets nil.
//
// It returns an *Error naming the rule that fails; an error wrapping
// ErrMissingAuthEvent when authEvents is not exactly the events ev's
// auth_events name (fetch them first); an error wrapping ErrUnknownVersion.
func CheckAuthEvents(version id.RoomVersion, ev Event, authEvents []Event) error {
	n := versionNumber(version)
	if n == 0 {
		return fmt.Errorf("%w %q", ErrUnknownVersion, version)
	}
	if ev.Type() == typeCreate {
		return nil
	}
	ids := ev.AuthEventIDs()
	if len(ids) != len(authEvents) {
		return fmt.Errorf("%w: %s lists %d auth events, %d given", ErrMissingAuthEvent, ev.EventID(), len(ids), len(authEvents))
	}
	want := make(map[id.EventID]int, len(ids))
	for _, eid := range ids {
		want[eid]++
	}
	for _, ae := range authEvents {
		if want[ae.EventID()] == 0 {
			return fmt.Errorf("%w: %s is not in the auth_events of %s", ErrMissingAuthEvent, ae.EventID(), ev.EventID())
		}
		want[ae.EventID()]--
	}

	reject := func(r Rule, format string, args ...any) error {
		return &Error{Version: version, Rule: r, Detail: fmt.Sprintf(format, args...)}
	}
	selected := AuthEventSelection(version, ev)
	seen := make(map[StateKeyTuple]id.EventID, len(authEvents))
	// Rule 2.1 is checked over the whole list before 2.2 so that a list
	// with both faults reports the first rule.
	for _, ae := range authEvents {
		sk := ae.StateKey()
		if sk == nil {
			continue
		}
		k := StateKeyTuple{ae.Type(), *sk}
		if other, dup := seen[k]; dup {
			return reject(RuleAuthEventsDuplicate, "%s and %s are both (%s, %q)", other, ae.EventID(), k.Type, k.StateKey)
		}
		seen[k] = ae.EventID()
	}
	hasCreate := false
	for _, ae := range authEvents {
		sk := ae.StateKey()
		if sk == nil {
			return reject(RuleAuthEventsUnexpected, "%s is not a state event", ae.EventID())
		}
		k := StateKeyTuple{ae.Type(), *sk}
		if !containsKey(selected, k) {
			return reject(RuleAuthEventsUnexpected, "%s is (%s, %q)", ae.EventID(), k.Type, k.StateKey)
		}
		if k.Type == typeCreate {
			hasCreate = true
		}
	}
	for _, ae := range authEvents {
		if isRejected(ae) {
			return reject(RuleAuthEventsRejected, "%s was rejected", ae.EventID())
		}
	}
	if n <= 11 && !hasCreate {
		return reject(RuleAuthEventsNoCreate, "")
	}
	for _, ae := range authEvents {
		if ae.RoomID() != ev.RoomID() {
			return reject(RuleAuthEventsRoomID, "%s is in %s", ae.EventID(), ae.RoomID())
		}
	}
	return nil
}

func containsKey(keys []StateKeyTuple, k StateKeyTuple) bool {
	for _, have := range keys {
		if have == k {
			return true
		}
	}
	return false
}

// LookupEvents returns a Lookup over events, keyed by their (type,
// state_key); events that are not state events are skipped, and of two
// with the same key the last wins. For check 4 of "Checks performed on
// receipt of a PDU", pass the event's auth events (and in v12 the room's
// m.room.create event).
func LookupEvents(events ...Event) Lookup {
	m := make(map[StateKeyTuple]Event, len(events))
	for _, ev := range events {
		if sk := ev.StateKey(); sk != nil {
			m[StateKeyTuple{ev.Type(), *sk}] = ev
		}
	}
	return func(evType, stateKey string) Event {
		return m[StateKeyTuple{evType, stateKey}]
	}
}

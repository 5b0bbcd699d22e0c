package stateres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

// Event types and memberships state resolution reads.
const (
	typeCreate      = "m.room.create"
	typePowerLevels = "m.room.power_levels"
	typeJoinRules   = "m.room.join_rules"
	typeMember      = "m.room.member"
)

var (
	keyCreate      = StateKey{typeCreate, ""}
	keyPowerLevels = StateKey{typePowerLevels, ""}
)

// none is the node of no event.
const none int32 = -1

// run is one resolution: the events it has loaded and what it has derived
// from them.
type run struct {
	ctx     context.Context
	version id.RoomVersion
	auth    AuthFunc
	d       *dag
	// roomCreate is set from room version 12, where the room ID names the
	// m.room.create event, which is never an auth event (MSC4291).
	roomCreate bool
	creates    map[id.RoomID]int32
	levels     map[[2]int32]*eventauth.PowerLevels
	// err is the first error met where it cannot be returned (in a Lookup).
	err error
}

func (r *Resolver) newRun(ctx context.Context, version id.RoomVersion) *run {
	return &run{
		ctx:        ctx,
		version:    version,
		auth:       r.auth,
		d:          newDAG(r.src, true),
		roomCreate: version.RoomIDIsCreateEventID(),
		creates:    make(map[id.RoomID]int32),
		levels:     make(map[[2]int32]*eventauth.PowerLevels),
	}
}

// ev returns the event of a loaded node.
func (ru *run) ev(n int32) eventauth.Event { return ru.d.events[n] }

// evLoad returns the event of n, loading it alone if needed. A failure is
// kept in ru.err and gives nil.
func (ru *run) evLoad(n int32) eventauth.Event {
	if !ru.d.loaded[n] {
		if err := ru.d.load(ru.ctx, []int32{n}); err != nil {
			ru.fail(err)
			return nil
		}
	}
	return ru.d.events[n]
}

func (ru *run) fail(err error) {
	if ru.err == nil {
		ru.err = err
	}
}

// roomCreateEvent returns, from room version 12, the m.room.create event
// that ev's room ID names ("!" + the event ID without "$"); none before.
func (ru *run) roomCreateEvent(ev eventauth.Event) int32 {
	if !ru.roomCreate {
		return none
	}
	room := ev.RoomID()
	if n, ok := ru.creates[room]; ok {
		return n
	}
	n := none
	if len(room) > 1 && room[0] == '!' {
		n = ru.d.intern(id.EventID("$" + room[1:]))
	}
	ru.creates[room] = n
	return n
}

// authEvent returns the node among n's auth events with the given key, or
// none. The auth events must be loaded.
func (ru *run) authEvent(n int32, k StateKey) int32 {
	for _, a := range ru.d.auth[n] {
		if ak, ok := keyOf(ru.d.events[a]); ok && ak == k {
			return a
		}
	}
	return none
}

// isPowerEvent reports whether ev is a power event (rooms/v2.md
// "Definitions"): a state event of type m.room.power_levels or
// m.room.join_rules, or an m.room.member event with membership leave or ban
// whose sender is not its state_key.
//
// The definition does not require an empty state_key, and this follows it;
// Synapse requires one, and also counts m.room.create as a power event,
// which the spec does not. Neither difference changes a resolution of
// valid events in practice: a create event is in every auth chain, so it is
// never in the full conflicted set unless the states disagree on the room.
func isPowerEvent(ev eventauth.Event) bool {
	sk := ev.StateKey()
	if sk == nil {
		return false
	}
	switch ev.Type() {
	case typePowerLevels, typeJoinRules:
		return true
	case typeMember:
		if string(ev.Sender()) == *sk {
			return false
		}
		m := membership(ev.Content())
		return m == "leave" || m == "ban"
	}
	return false
}

// membership reads content.membership; "" if it is not a string.
func membership(content []byte) string {
	var c struct {
		Membership json.RawMessage `json:"membership"`
	}
	if json.Unmarshal(content, &c) != nil {
		return ""
	}
	var m string
	if json.Unmarshal(c.Membership, &m) != nil {
		return ""
	}
	return m
}

// senderLevel is the power level of ev's sender "when looking at [its]
// auth_events" (rooms/v2.md, "Reverse topological power ordering"): what
// the authorization rules would give the sender with only the
// m.room.power_levels and m.room.create events among its auth events (from
// v12, the create event its room ID names, and creators have an infinite
// level). Without a create event the level is 0. The auth events of n must
// be loaded.
func (ru *run) senderLevel(n int32) (int64, error) {
	ev := ru.d.events[n]
	create := ru.roomCreateEvent(ev)
	if create == none {
		create = ru.authEvent(n, keyCreate)
	} else if ru.evLoad(create) == nil {
		return 0, ru.err
	}
	if create == none {
		return 0, nil
	}
	pl := ru.authEvent(n, keyPowerLevels)
	k := [2]int32{create, pl}
	levels, ok := ru.levels[k]
	if !ok {
		var plEv eventauth.Event
		if pl != none {
			plEv = ru.d.events[pl]
		}
		var err error
		levels, err = eventauth.NewPowerLevels(ru.version, ru.d.events[create], plEv)
		if err != nil {
			return 0, err
		}
		ru.levels[k] = levels
	}
	return levels.UserLevel(ev.Sender()), nil
}

// partial is a state during iterative auth checks: an overlay of the
// entries set so far over a base state that is never copied.
type partial struct {
	base    StateMap // may be nil
	overlay map[StateKey]int32
	// fallback makes a lookup of a key missing from the state use the
	// checked event's auth event with that key, if it was not rejected
	// (rooms/v2.md "Iterative auth checks"). Room version 1 has none.
	fallback bool
	// one more entry over all the others, if oneN is not none (room
	// version 1 resolves each key against the state so far plus its own
	// candidate).
	oneKey StateKey
	oneN   int32
}

func newPartial(base StateMap, fallback bool) *partial {
	return &partial{base: base, overlay: make(map[StateKey]int32), fallback: fallback, oneN: none}
}

// get returns the node of the state's entry for k, or none.
func (ru *run) get(p *partial, k StateKey) int32 {
	if p.oneN != none && k == p.oneKey {
		return p.oneN
	}
	if n, ok := p.overlay[k]; ok {
		return n
	}
	if eid, ok := p.base[k]; ok {
		return ru.d.intern(eid)
	}
	return none
}

// lookup is the eventauth.Lookup for checking the event of node n against
// the partial state p.
func (ru *run) lookup(p *partial, n int32) eventauth.Lookup {
	return func(evType, stateKey string) eventauth.Event {
		k := StateKey{evType, stateKey}
		if m := ru.get(p, k); m != none {
			return ru.evLoad(m)
		}
		if p.fallback {
			if a := ru.authEvent(n, k); a != none && !rejected(ru.d.events[a]) {
				return ru.d.events[a]
			}
		}
		if k == keyCreate {
			// From v12 the create event is never an auth event; the rules
			// read the one the room ID names (eventauth.Check).
			if c := ru.roomCreateEvent(ru.d.events[n]); c != none {
				return ru.evLoad(c)
			}
		}
		return nil
	}
}

func rejected(ev eventauth.Event) bool {
	r, ok := ev.(eventauth.Rejecter)
	return ok && r.Rejected()
}

// prefetch loads, in batches, what checking the events of list against p
// will read: their auth events, and the entries of the base state that the
// rules may read for them: those at the keys of their auth events (the keys
// the auth events selection picked when the event was made), the sender's
// and the target's memberships, create, power levels and join rules.
// Anything else is loaded when a Lookup asks for it.
func (ru *run) prefetch(p *partial, list []int32) error {
	if err := ru.d.load(ru.ctx, list); err != nil {
		return err
	}
	if err := ru.d.loadAuth(ru.ctx, list); err != nil {
		return err
	}
	if p.base == nil {
		return nil
	}
	var want []int32
	add := func(k StateKey) {
		if eid, ok := p.base[k]; ok {
			if n := ru.d.intern(eid); !ru.d.loaded[n] {
				want = append(want, n)
			}
		}
	}
	add(keyCreate)
	add(keyPowerLevels)
	add(StateKey{typeJoinRules, ""})
	for _, n := range list {
		ev := ru.d.events[n]
		add(StateKey{typeMember, string(ev.Sender())})
		if k, ok := keyOf(ev); ok && k.Type == typeMember {
			add(k)
		}
		for _, a := range ru.d.auth[n] {
			if k, ok := keyOf(ru.d.events[a]); ok {
				add(k)
			}
		}
	}
	return ru.d.load(ru.ctx, want)
}

// check runs the authorization rules on the event of n against p. It
// returns whether the event is allowed, and an error only when the check
// could not be made.
func (ru *run) check(p *partial, n int32) (bool, error) {
	err := ru.auth(ru.version, ru.d.events[n], ru.lookup(p, n))
	if ru.err != nil {
		return false, ru.err
	}
	if errors.Is(err, eventauth.ErrUnknownVersion) {
		return false, err
	}
	return err == nil, nil
}

// iterativeAuthChecks applies the events of list, in order, to p: each
// state event that the authorization rules allow against p replaces p's
// entry for its key; the others are ignored (rooms/v2.md "Iterative auth
// checks").
//
// Rejected events are checked like the others ("Rejected events": they
// "are handled as usual by the algorithm"). Synapse skips events it had
// rejected, and a rejected entry of the partial state; the spec does not.
func (ru *run) iterativeAuthChecks(p *partial, list []int32) error {
	if err := ru.prefetch(p, list); err != nil {
		return err
	}
	for i, n := range list {
		if i%256 == 0 {
			if err := ru.ctx.Err(); err != nil {
				return err
			}
		}
		k, ok := keyOf(ru.d.events[n])
		if !ok {
			continue
		}
		allowed, err := ru.check(p, n)
		if err != nil {
			return fmt.Errorf("check %s: %w", ru.d.ids[n], err)
		}
		if allowed {
			p.overlay[k] = n
		}
	}
	return nil
}

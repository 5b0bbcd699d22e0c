package stateres

import (
	"context"

	"maunium.net/go/mautrix/id"
)

// Hooks for the black-box tests: the steps of the algorithms, alone.

// Trace is what the steps of a resolution found.
type Trace = trace

// ResolveTrace is Resolve, also returning what each step found.
func ResolveTrace(ctx context.Context, r *Resolver, version id.RoomVersion, states []StateMap) (StateMap, *Trace, error) {
	return r.resolve(ctx, version, states, true)
}

// ReverseTopologicalPowerOrder sorts events by the reverse topological power
// ordering of state resolution v2.
func ReverseTopologicalPowerOrder(ctx context.Context, r *Resolver, version id.RoomVersion, events []id.EventID) ([]id.EventID, error) {
	ru := r.newRun(ctx, version)
	nodes := ru.d.internAll(events)
	if err := ru.d.load(ctx, nodes); err != nil {
		return nil, err
	}
	out, err := ru.reverseTopologicalPowerOrder(nodes)
	return ru.d.idsOf(out), err
}

// MainlineOrder sorts events by the mainline ordering based on the power
// levels event pl ("" for none), and returns the mainline too.
func MainlineOrder(ctx context.Context, r *Resolver, version id.RoomVersion, pl id.EventID, events []id.EventID) (order, mainline []id.EventID, err error) {
	ru := r.newRun(ctx, version)
	p := none
	if pl != "" {
		p = ru.d.intern(pl)
	}
	nodes := ru.d.internAll(events)
	o, line, err := ru.mainlineOrder(p, nodes)
	return ru.d.idsOf(o), ru.d.idsOf(line), err
}

// PowerSet is the set X of step 1 of state resolution v2 for the full
// conflicted set fcs.
func PowerSet(ctx context.Context, r *Resolver, version id.RoomVersion, fcs []id.EventID) ([]id.EventID, error) {
	ru := r.newRun(ctx, version)
	nodes := ru.d.internAll(fcs)
	if err := ru.d.load(ctx, nodes); err != nil {
		return nil, err
	}
	x, err := ru.powerSet(nodes)
	return ru.d.idsOf(x), err
}

// SenderLevel is the power level of ev's sender by its auth events.
func SenderLevel(ctx context.Context, r *Resolver, version id.RoomVersion, ev id.EventID) (int64, error) {
	ru := r.newRun(ctx, version)
	n := ru.d.intern(ev)
	if err := ru.d.load(ctx, []int32{n}); err != nil {
		return 0, err
	}
	if err := ru.d.loadAuth(ctx, []int32{n}); err != nil {
		return 0, err
	}
	return ru.senderLevel(n)
}

// IsPowerEvent reports whether ev is a power event.
var IsPowerEvent = isPowerEvent

// SplitStates divides states into the unconflicted state map and the
// conflicted entries, as state resolution v2 (v2 true) or v1 does.
func SplitStates(states []StateMap, v2 bool) (StateMap, map[StateKey][]id.EventID) {
	s := splitStates(states, v2)
	return s.unconflicted, s.conflicted
}

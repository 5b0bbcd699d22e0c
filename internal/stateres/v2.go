package stateres

import (
	"context"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"
)

// resolveV2 is state resolution v2 (rooms/v2.md, "State resolution",
// "Algorithm"), and with v21 state resolution v2.1 (rooms/v12.md, MSC4297):
//
//  0. Split the states into the unconflicted state map and the conflicted
//     state set; the full conflicted set is the conflicted state set, the
//     auth difference and (v2.1) the conflicted state subgraph.
//  1. X: the power events of the full conflicted set and the events of
//     their auth chains in it, in reverse topological power ordering.
//  2. Iterative auth checks of X, from the unconflicted state map (v2.1:
//     from an empty state map).
//  3. The other events of the full conflicted set in mainline ordering
//     based on the power levels event of the partially resolved state.
//  4. Iterative auth checks of those, from the partially resolved state.
//  5. The unconflicted state map over the result.
func (r *Resolver) resolveV2(ctx context.Context, version id.RoomVersion, states []StateMap, v21 bool, tr *trace) (StateMap, error) {
	s := splitStates(states, true)
	if tr != nil {
		tr.Unconflicted = cloneState(s.unconflicted)
		tr.Conflicted = s.conflictedIDs()
	}
	if len(s.conflicted) == 0 {
		return s.unconflicted, nil
	}

	// Step 0: the full conflicted set.
	chains := r.authChains()
	conflicted := s.conflictedIDs()
	diff, err := chains.AuthDifference(ctx, s.unconflictedIDs(), s.perState)
	if err != nil {
		return nil, fmt.Errorf("auth difference: %w", err)
	}
	var sub []id.EventID
	if v21 {
		if sub, err = chains.ConflictedSubgraph(ctx, conflicted); err != nil {
			return nil, fmt.Errorf("conflicted state subgraph: %w", err)
		}
	}
	ru := r.newRun(ctx, version)
	full := ru.d.internAll(slices.Concat(conflicted, diff, sub))
	if err := ru.d.load(ctx, full); err != nil {
		return nil, fmt.Errorf("full conflicted set: %w", err)
	}
	if tr != nil {
		tr.AuthDifference = sorted(diff)
		tr.Subgraph = sorted(sub)
		tr.FullConflicted = sorted(ru.d.idsOf(full))
	}

	// Step 1.
	x, err := ru.powerSet(full)
	if err != nil {
		return nil, fmt.Errorf("power events: %w", err)
	}
	powerOrder, err := ru.reverseTopologicalPowerOrder(x)
	if err != nil {
		return nil, fmt.Errorf("reverse topological power ordering: %w", err)
	}
	if tr != nil {
		tr.PowerOrder = ru.d.idsOf(powerOrder)
	}

	// Step 2. MSC4297 ("Modification 1"): v2.1 starts from an empty state
	// map, so that events are checked against their own auth events, not
	// an unconflicted state that their auth chains may contradict.
	base := s.unconflicted
	if v21 {
		base = nil
	}
	p := newPartial(base, true)
	if err := ru.iterativeAuthChecks(p, powerOrder); err != nil {
		return nil, fmt.Errorf("iterative auth checks of power events: %w", err)
	}
	if tr != nil {
		tr.Partial = ru.stateOf(p)
	}

	// Step 3. In v2.1 the partially resolved state has a power levels
	// event only if step 2 applied one; without one the mainline is empty
	// and every event has position infinity, as the spec's text and
	// Synapse both do.
	var rest []int32
	{
		var inX marks
		inX.reset()
		for _, n := range x {
			inX.add(n)
		}
		for _, n := range full {
			if !inX.has(n) {
				rest = append(rest, n)
			}
		}
	}
	pl := ru.get(p, keyPowerLevels)
	restOrder, line, err := ru.mainlineOrder(pl, rest)
	if err != nil {
		return nil, fmt.Errorf("mainline ordering: %w", err)
	}
	if tr != nil {
		tr.MainlineOrder = ru.d.idsOf(restOrder)
		tr.Mainline = ru.d.idsOf(line)
	}

	// Step 4.
	if err := ru.iterativeAuthChecks(p, restOrder); err != nil {
		return nil, fmt.Errorf("iterative auth checks of other events: %w", err)
	}

	// Step 5: s.unconflicted is ours; the overlay's keys go under it.
	out := s.unconflicted
	for k, n := range p.overlay {
		if _, ok := out[k]; !ok {
			out[k] = ru.d.ids[n]
		}
	}
	return out, nil
}

// stateOf returns p as a StateMap (for traces).
func (ru *run) stateOf(p *partial) StateMap {
	out := cloneState(p.base)
	for k, n := range p.overlay {
		out[k] = ru.d.ids[n]
	}
	return out
}

func cloneState(m StateMap) StateMap {
	out := make(StateMap, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sorted(ids []id.EventID) []id.EventID {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

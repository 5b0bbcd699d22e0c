package stateres

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha1"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"
)

// resolveV1 is the original state resolution algorithm of room version 1
// (rooms/v1.md, "State resolution"). R starts as the union of the states
// without their conflicting entries; then, in passes, the conflicts of
// m.room.power_levels, m.room.join_rules and m.room.member events are
// resolved by authorizing their events one after the other in order of
// ascending depth and descending sha1(event_id), stopping at the first that
// fails; and each other conflict takes the event of greatest depth and least
// sha1(event_id) that the rules allow in R.
//
// The spec does not say how conflicts of several keys of one pass interact.
// As Synapse does, each key of a pass is resolved against R as it was when
// the pass began, and R takes all their results when the pass ends; so the
// result does not depend on the order of the keys. When no event of an
// "other" conflict is allowed the key is left out of R, as the text says
// ("pick the event … that passes authentication in R"); Synapse keeps the
// event of least depth instead.
//
// The authorization rules are checked against R alone: version 1 has no
// fallback to an event's own auth events.
func (r *Resolver) resolveV1(ctx context.Context, version id.RoomVersion, states []StateMap, tr *trace) (StateMap, error) {
	s := splitStates(states, false)
	if tr != nil {
		tr.Unconflicted = cloneState(s.unconflicted)
		tr.Conflicted = s.conflictedIDs()
	}
	if len(s.conflicted) == 0 {
		return s.unconflicted, nil
	}
	ru := r.newRun(ctx, version)
	all := ru.d.internAll(s.conflictedIDs())
	if err := ru.d.load(ctx, all); err != nil {
		return nil, fmt.Errorf("conflicted events: %w", err)
	}
	if err := ru.prefetch(&partial{base: s.unconflicted}, all); err != nil {
		return nil, fmt.Errorf("auth events of conflicted events: %w", err)
	}
	R := newPartial(s.unconflicted, false)

	keys := sortedKeys(s.conflicted)
	passes := []func(StateKey) bool{
		func(k StateKey) bool { return k.Type == typePowerLevels },
		func(k StateKey) bool { return k.Type == typeJoinRules },
		func(k StateKey) bool { return k.Type == typeMember },
	}
	done := make(map[StateKey]bool)
	for _, inPass := range passes {
		results := make(map[StateKey]int32)
		for _, k := range keys {
			if !inPass(k) {
				continue
			}
			done[k] = true
			n, err := ru.v1Chain(R, k, ru.d.internAll(s.conflicted[k]))
			if err != nil {
				return nil, err
			}
			results[k] = n
		}
		for k, n := range results {
			R.overlay[k] = n
		}
	}
	results := make(map[StateKey]int32)
	for _, k := range keys {
		if done[k] {
			continue
		}
		n, err := ru.v1Pick(R, ru.d.internAll(s.conflicted[k]))
		if err != nil {
			return nil, err
		}
		if n != none {
			results[k] = n
		}
	}
	for k, n := range results {
		R.overlay[k] = n
	}
	if tr != nil {
		tr.Partial = ru.stateOf(R)
	}
	out := s.unconflicted
	for k, n := range R.overlay {
		out[k] = ru.d.ids[n]
	}
	return out, nil
}

// v1Order sorts events by ascending depth, then descending sha1(event_id).
func (ru *run) v1Order(events []int32) []int32 {
	type item struct {
		n     int32
		depth int64
		sum   [sha1.Size]byte
	}
	items := make([]item, len(events))
	for i, n := range events {
		items[i] = item{n, ru.d.events[n].Depth(), sha1.Sum([]byte(ru.d.ids[n]))}
	}
	slices.SortFunc(items, func(a, b item) int {
		if c := cmp.Compare(a.depth, b.depth); c != 0 {
			return c
		}
		return bytes.Compare(b.sum[:], a.sum[:])
	})
	out := make([]int32, len(items))
	for i, it := range items {
		out[i] = it.n
	}
	return out
}

// v1Chain resolves a conflict of the power levels, join rules and member
// passes: the first event (ascending depth, descending sha1) goes into R,
// then each next one replaces it while the rules allow it in R.
func (ru *run) v1Chain(R *partial, k StateKey, events []int32) (int32, error) {
	order := ru.v1Order(events)
	cur := order[0]
	defer func() { R.oneN = none }()
	for _, n := range order[1:] {
		R.oneKey, R.oneN = k, cur
		allowed, err := ru.check(R, n)
		if err != nil {
			return none, fmt.Errorf("check %s: %w", ru.d.ids[n], err)
		}
		if !allowed {
			break
		}
		cur = n
	}
	return cur, nil
}

// v1Pick resolves another conflict: the event of greatest depth and least
// sha1(event_id) that the rules allow in R, or none.
func (ru *run) v1Pick(R *partial, events []int32) (int32, error) {
	order := ru.v1Order(events)
	for i := len(order) - 1; i >= 0; i-- {
		n := order[i]
		allowed, err := ru.check(R, n)
		if err != nil {
			return none, fmt.Errorf("check %s: %w", ru.d.ids[n], err)
		}
		if allowed {
			return n, nil
		}
	}
	return none, nil
}

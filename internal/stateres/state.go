package stateres

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

// ErrNotFound is wrapped by the errors of an EventSource for events it does
// not have, and so by the errors of Resolve when an event of a state or of
// an auth chain is missing. Resolution never treats a missing event as
// absent: a state reset is worse than an error (DESIGN-NOTES, "State
// resets").
var ErrNotFound = errors.New("stateres: event not found")

// StateKey is the key of a state entry: (event_type, state_key).
type StateKey struct {
	Type     string
	StateKey string
}

func (k StateKey) String() string { return k.Type + "|" + k.StateKey }

// StateMap is the state of a room at some point: for each (event_type,
// state_key), the ID of the state event that holds it.
type StateMap map[StateKey]id.EventID

// keyOf is the state key of a state event; ok is false for a message event.
func keyOf(ev eventauth.Event) (StateKey, bool) {
	sk := ev.StateKey()
	if sk == nil {
		return StateKey{}, false
	}
	return StateKey{ev.Type(), *sk}, true
}

// Apply returns the state after ev given the state s before it (rooms/v2.md
// "The room state S′(E) after an event E"): s itself for a message event, a
// copy of s with ev's entry replaced for a state event. s is not modified.
// A rejected event does not change the state: pass the state before it.
func (s StateMap) Apply(ev eventauth.Event) StateMap {
	k, ok := keyOf(ev)
	if !ok {
		return s
	}
	out := make(StateMap, len(s)+1)
	for kk, v := range s {
		out[kk] = v
	}
	out[k] = ev.EventID()
	return out
}

// EventSource gives the events of a room by ID.
type EventSource interface {
	// Events returns the events with the given IDs, in the same order.
	// It returns an error wrapping ErrNotFound if any of them is unknown.
	// Rejected events must be returned too (they take part in state
	// resolution); they may implement eventauth.Rejecter to say so.
	Events(ctx context.Context, ids []id.EventID) ([]eventauth.Event, error)
}

// EventMap is an EventSource over events held in memory. Tests use it, and
// callers may use it for events not yet persisted.
type EventMap map[id.EventID]eventauth.Event

var _ EventSource = EventMap(nil)

// Events implements EventSource.
func (m EventMap) Events(ctx context.Context, ids []id.EventID) ([]eventauth.Event, error) {
	out := make([]eventauth.Event, len(ids))
	for i, eid := range ids {
		ev, ok := m[eid]
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, eid)
		}
		out[i] = ev
	}
	return out, nil
}

// Add adds events to m.
func (m EventMap) Add(events ...eventauth.Event) {
	for _, ev := range events {
		m[ev.EventID()] = ev
	}
}

// split is the states to resolve divided into their unconflicted and
// conflicted parts.
type split struct {
	// unconflicted holds the entries of the unconflicted state map. Its
	// values are in every state.
	unconflicted StateMap
	// conflicted lists, per conflicted key, the distinct event IDs the
	// states hold for it, sorted.
	conflicted map[StateKey][]id.EventID
	// perState lists, per input state, the event IDs it holds for
	// conflicted keys: the part of each state that is not common to all.
	perState [][]id.EventID
}

// conflictedIDs is the conflicted state set, sorted and without duplicates.
func (s *split) conflictedIDs() []id.EventID {
	var out []id.EventID
	for _, ids := range s.conflicted {
		out = append(out, ids...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// unconflictedIDs yields the values of the unconflicted state map.
func (s *split) unconflictedIDs() iter.Seq[id.EventID] { return maps.Values(s.unconflicted) }

// splitStates divides states into the unconflicted state map and the
// conflicted state set.
//
// With absentConflicts (state resolution v2, rooms/v2.md "Unconflicted state
// map and conflicted state set"), a key missing from one state is
// conflicted: an entry is unconflicted only if every state holds it with
// the same event. Without (room version 1, "A conflict occurs between states
// where those states have different event_ids for the same (event_type,
// state_key)"), a key that some states lack is unconflicted if the states
// that hold it agree.
//
// This is the one part of a resolution whose cost grows with the size of
// the state rather than with the conflicts, so it does the least it can:
// the unconflicted map starts as a copy of the first state (a copy of the
// map's tables, much cheaper than inserting its entries one by one), the
// first state is read once with one lookup per other state, and another
// state is read only if it has keys the first lacks.
func splitStates(states []StateMap, absentConflicts bool) *split {
	first := states[0]
	s := &split{
		unconflicted: maps.Clone(first),
		conflicted:   make(map[StateKey][]id.EventID),
		perState:     make([][]id.EventID, len(states)),
	}
	if s.unconflicted == nil {
		s.unconflicted = make(StateMap)
	}
	others := states[1:]
	shared := make([]int, len(others)) // keys of first found in each other state
	for k, v := range first {
		conflict := false
		for j, other := range others {
			w, ok := other[k]
			if ok {
				shared[j]++
			}
			if (ok && w != v) || (!ok && absentConflicts) {
				conflict = true
			}
		}
		if conflict {
			s.addConflict(states, k)
		}
	}
	for j, other := range others {
		if shared[j] == len(other) {
			continue // no key outside first
		}
	keys:
		for k, v := range other {
			if _, ok := first[k]; ok {
				continue
			}
			for _, earlier := range others[:j] {
				if _, ok := earlier[k]; ok {
					continue keys // handled with that state
				}
			}
			conflict := absentConflicts
			for _, later := range others[j+1:] {
				if w, ok := later[k]; ok && w != v {
					conflict = true
				}
			}
			if conflict {
				s.addConflict(states, k)
			} else {
				s.unconflicted[k] = v
			}
		}
	}
	return s
}

// addConflict records k as conflicted.
func (s *split) addConflict(states []StateMap, k StateKey) {
	delete(s.unconflicted, k)
	var ids []id.EventID
	for i, st := range states {
		if v, ok := st[k]; ok {
			ids = append(ids, v)
			s.perState[i] = append(s.perState[i], v)
		}
	}
	slices.Sort(ids)
	s.conflicted[k] = slices.Compact(ids)
}

// sortedKeys returns the keys of m in order, for deterministic iteration.
func sortedKeys[V any](m map[StateKey]V) []StateKey {
	keys := make([]StateKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b StateKey) int {
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return strings.Compare(a.StateKey, b.StateKey)
	})
	return keys
}

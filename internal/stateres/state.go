package stateres

import (
	"context"
	"errors"
	"fmt"
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

// unconflictedIDs is the values of the unconflicted state map.
func (s *split) unconflictedIDs() []id.EventID {
	out := make([]id.EventID, 0, len(s.unconflicted))
	for _, v := range s.unconflicted {
		out = append(out, v)
	}
	return out
}

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
// Each map is read once, plus one lookup per other state for each key.
func splitStates(states []StateMap, absentConflicts bool) *split {
	s := &split{
		unconflicted: make(StateMap, len(states[0])),
		conflicted:   make(map[StateKey][]id.EventID),
		perState:     make([][]id.EventID, len(states)),
	}
	for i, st := range states {
	keys:
		for k, v := range st {
			// Each key is handled at the first state that holds it.
			missing := i > 0
			for j := range i {
				if _, ok := states[j][k]; ok {
					continue keys
				}
			}
			differs := false
			for _, other := range states[i+1:] {
				w, ok := other[k]
				if !ok {
					missing = true
				} else if w != v {
					differs = true
				}
			}
			if !differs && (!missing || !absentConflicts) {
				s.unconflicted[k] = v
				continue
			}
			ids := []id.EventID{v}
			for _, other := range states[i+1:] {
				if w, ok := other[k]; ok {
					ids = append(ids, w)
				}
			}
			slices.Sort(ids)
			s.conflicted[k] = slices.Compact(ids)
		}
	}
	for i, st := range states {
		for k := range s.conflicted {
			if v, ok := st[k]; ok {
				s.perState[i] = append(s.perState[i], v)
			}
		}
	}
	return s
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

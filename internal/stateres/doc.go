// Package stateres owns state resolution: given the states of a room after
// several events (the prev_events of a new event), it computes the one state
// before the new event. It implements every algorithm of the Matrix spec:
//
//   - the original algorithm of room version 1 (rooms/v1.md, "State
//     resolution"), in v1.go;
//   - state resolution v2 of room versions 2–11 (rooms/v2.md and the
//     v2-state-res fragment, first proposed in MSC1442), in v2.go;
//   - state resolution v2.1 of room version 12 (rooms/v12.md, MSC4297): the
//     conflicted state subgraph joins the full conflicted set, and the first
//     iterative auth checks start from an empty state, in v2.go.
//
// The package is pure: no SQL and no network. Events come in through an
// EventSource (fetch by ID, in batches) and auth chains through an
// AuthChains index, which the store may back with a persistent index;
// AuthChainCache is the in-memory one. Authorization is eventauth.Check,
// replaceable through Config.Auth.
//
// Imported by room (state before each event, current state of a room) and
// by the store, which implements its interfaces.
//
// # Scale
//
// The work of a resolution is split so that rooms with 100,000 state events
// stay cheap when few entries are conflicted:
//
//   - Splitting the states into unconflicted and conflicted entries copies
//     the first state's map (a copy of its tables) and reads it once, with
//     one lookup per other state; another state is read only if it has keys
//     the first lacks.
//   - The auth difference first walks the auth chains of each state's
//     conflicted events. Only if they disagree does it need the auth chain
//     of the unconflicted state (which is in every state's chain): then
//     AuthChainCache walks it once with integer IDs and a visit mark per
//     event, and stops when it has found every event in question.
//   - Everything else (orderings, iterative auth checks) touches only the
//     full conflicted set, the auth events of its events, the entries of the
//     unconflicted state those events' auth checks read, and the power levels
//     history. Events are fetched in batches and interned to int32 indexes;
//     the partial state of the iterative auth checks is an overlay over the
//     unconflicted state, never a copy of it.
//
// What remains proportional to the size of the state is map work on
// strings: one lookup per entry to split the states, and, when the auth
// difference needs the unconflicted state's chain, one lookup per entry to
// find its events in the cache. On the 2-core development VM a random lookup
// in a 100,000-entry map costs about 0.5–1 µs (memory latency), so these two
// passes are most of the 100–200 ms that BenchmarkResolve100k measures; the
// conflicts themselves take a few milliseconds. Callers that know the states
// as deltas over a common base, and an AuthChains backed by an index in the
// store, would remove both passes.
//
// # Where this package departs from Synapse
//
// The spec text wins where it and Synapse (the reference implementation)
// differ; each place says so in a comment. In short:
//
//   - v2, step 1 takes the whole auth chain of each power event into account
//     (the events of its auth chain in the full conflicted set, and its order
//     against them through events outside the set); Synapse follows only
//     auth_events edges between events of the full conflicted set.
//   - Iterative auth checks use the partial state's entry for a key even if
//     that event was rejected, and admit previously rejected events that now
//     pass ("Rejected events": they are "handled as usual"); Synapse skips
//     both.
//   - m.room.create is not a power event (the spec's definition); Synapse
//     counts it as one. It matters only if a create event is conflicted.
//   - v1: when no conflicted event of an "other" key passes the auth checks
//     the key is left out; Synapse keeps the event of least depth.
package stateres

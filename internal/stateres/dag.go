package stateres

import (
	"context"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

// dag is the auth DAG of the events seen so far, with event IDs interned to
// int32 indexes ("nodes"). Nodes are created for every ID met (an event's
// auth events included) and loaded, from the EventSource in batches, only
// when their own edges or content are needed.
type dag struct {
	src EventSource
	// keep says whether to keep the events themselves (a resolution needs
	// their content) or only their edges (an auth chain index).
	keep bool

	index  map[id.EventID]int32
	ids    []id.EventID
	loaded []bool
	auth   [][]int32         // the node's auth_events; valid once loaded
	events []eventauth.Event // the node's event if keep; valid once loaded
}

func newDAG(src EventSource, keep bool) *dag {
	return &dag{src: src, keep: keep, index: make(map[id.EventID]int32)}
}

func (d *dag) len() int { return len(d.ids) }

// intern returns the node of an event ID, creating it if needed.
func (d *dag) intern(eid id.EventID) int32 {
	if n, ok := d.index[eid]; ok {
		return n
	}
	n := int32(len(d.ids))
	d.index[eid] = n
	d.ids = append(d.ids, eid)
	d.loaded = append(d.loaded, false)
	d.auth = append(d.auth, nil)
	if d.keep {
		d.events = append(d.events, nil)
	}
	return n
}

// internAll interns ids, dropping duplicates.
func (d *dag) internAll(ids []id.EventID) []int32 {
	out := make([]int32, 0, len(ids))
	for _, eid := range ids {
		out = append(out, d.intern(eid))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// idsOf returns the event IDs of nodes.
func (d *dag) idsOf(nodes []int32) []id.EventID {
	out := make([]id.EventID, len(nodes))
	for i, n := range nodes {
		out[i] = d.ids[n]
	}
	return out
}

// load fetches, in one batch, the events of the nodes not loaded yet.
func (d *dag) load(ctx context.Context, nodes []int32) error {
	var want []id.EventID
	var wantN []int32
	for _, n := range nodes {
		if d.loaded[n] {
			continue
		}
		// Mark it now so that a duplicate in nodes is fetched once; undone
		// below if the fetch fails.
		d.loaded[n] = true
		want = append(want, d.ids[n])
		wantN = append(wantN, n)
	}
	if len(want) == 0 {
		return nil
	}
	evs, err := d.src.Events(ctx, want)
	if err == nil && len(evs) != len(want) {
		err = fmt.Errorf("event source returned %d events for %d IDs", len(evs), len(want))
	}
	if err != nil {
		for _, n := range wantN {
			d.loaded[n] = false
		}
		return fmt.Errorf("fetch %d events: %w", len(want), err)
	}
	for i, ev := range evs {
		n := wantN[i]
		if ev == nil || ev.EventID() != want[i] {
			for _, n := range wantN[i:] {
				d.loaded[n] = false
			}
			return fmt.Errorf("fetch %s: %w", want[i], ErrNotFound)
		}
		ids := ev.AuthEventIDs()
		edges := make([]int32, len(ids))
		for j, a := range ids {
			edges[j] = d.intern(a)
		}
		d.auth[n] = edges
		if d.keep {
			d.events[n] = ev
		}
	}
	return nil
}

// loadAuth loads the auth events of nodes, which must be loaded.
func (d *dag) loadAuth(ctx context.Context, nodes []int32) error {
	var want []int32
	for _, n := range nodes {
		for _, a := range d.auth[n] {
			if !d.loaded[a] {
				want = append(want, a)
			}
		}
	}
	return d.load(ctx, want)
}

// marks is a set of nodes that is emptied in O(1) by bumping a generation.
type marks struct {
	gen uint32
	m   []uint32
}

// reset empties the set.
func (s *marks) reset() {
	s.gen++
	if s.gen == 0 { // wrapped: clear for real
		clear(s.m)
		s.gen = 1
	}
}

func (s *marks) has(n int32) bool { return int(n) < len(s.m) && s.m[n] == s.gen }

// add adds n and reports whether it was absent.
func (s *marks) add(n int32) bool {
	if int(n) >= len(s.m) {
		grown := make([]uint32, max(int(n)+1, 2*len(s.m), 64))
		copy(grown, s.m)
		s.m = grown
	}
	if s.m[n] == s.gen {
		return false
	}
	s.m[n] = s.gen
	return true
}

// walk visits the auth chains of from (rooms/v2.md "Auth chain": the events
// reachable through one or more auth_events edges) breadth first, loading
// each level in one batch. seen must have been reset; the nodes reached are
// added to it. visit is called once for each node reached and returns
// whether to walk on through that node's auth events. The nodes of from are
// not visited unless an edge reaches them.
func (d *dag) walk(ctx context.Context, from []int32, seen *marks, visit func(n int32) bool) error {
	var bufs [2][]int32
	frontier := from
	for i := 0; len(frontier) > 0; i ^= 1 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := d.load(ctx, frontier); err != nil {
			return err
		}
		next := bufs[i][:0]
		for _, n := range frontier {
			for _, a := range d.auth[n] {
				if seen.add(a) && visit(a) {
					next = append(next, a)
				}
			}
		}
		bufs[i] = next
		frontier = next
	}
	return nil
}

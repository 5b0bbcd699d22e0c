package stateres

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// errCycle is returned for auth_events that form a cycle, which valid
// events cannot (room versions 1 and 2 let servers choose event IDs).
var errCycle = errors.New("auth events form a cycle")

// powerSet returns the set X of step 1 of state resolution v2 (rooms/v2.md
// "Algorithm"): the power events of the full conflicted set fcs and, for
// each, "the events in the auth chain of P which also belong to the full
// conflicted set". It walks the auth chains of the power events once.
//
// Synapse follows auth_events edges only while they stay inside the full
// conflicted set, and so leaves out an event of the set that a power event
// reaches only through an event outside it; this follows the spec's
// definition and takes the whole auth chain.
func (ru *run) powerSet(fcs []int32) ([]int32, error) {
	var power []int32
	var in marks
	in.reset()
	for _, n := range fcs {
		in.add(n)
		if isPowerEvent(ru.d.events[n]) {
			power = append(power, n)
		}
	}
	var seen marks
	seen.reset()
	x := slices.Clone(power)
	err := ru.d.walk(ru.ctx, power, &seen, func(n int32) bool {
		if in.has(n) {
			x = append(x, n)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(x)
	return slices.Compact(x), nil
}

// reverseTopologicalPowerOrder sorts events into the reverse topological
// power ordering (rooms/v2.md "Definitions"): the lexicographically
// smallest topological ordering of the auth DAG, earliest first, where x <
// y if x's sender has the greater power level (senderLevel), then the
// smaller origin_server_ts, then the smaller event_id; found with Kahn's
// algorithm, taking at each step the smallest of the events whose auth
// events in the set have all been taken.
//
// The order between two events of the set is that of the auth DAG even
// where the path between them leaves the set: the events of such paths take
// part in Kahn's algorithm as "hidden" vertices that are taken as soon as
// they are free and are not output. Synapse uses only the auth_events edges
// between events of the set.
func (ru *run) reverseTopologicalPowerOrder(events []int32) ([]int32, error) {
	if len(events) == 0 {
		return nil, nil
	}
	var inSet marks
	inSet.reset()
	for _, n := range events {
		inSet.add(n)
	}
	// Everything below the set, and which of it leads back into the set.
	var seen marks
	seen.reset()
	var below []int32
	if err := ru.d.walk(ru.ctx, events, &seen, func(n int32) bool {
		if !inSet.has(n) {
			below = append(below, n)
		}
		return true
	}); err != nil {
		return nil, err
	}
	hidden := ru.leadingTo(below, &inSet)

	// The graph: the set and the hidden vertices, with the auth edges
	// between them. out counts a vertex's edges to vertices not yet taken;
	// up lists the vertices with an edge to it.
	vertices := append(slices.Clone(events), hidden...)
	slot := make(map[int32]int32, len(vertices))
	for i, n := range vertices {
		slot[n] = int32(i)
	}
	out := make([]int32, len(vertices))
	up := make([][]int32, len(vertices))
	for i, n := range vertices {
		for _, a := range ru.d.auth[n] {
			if j, ok := slot[a]; ok {
				out[i]++
				up[j] = append(up[j], int32(i))
			}
		}
	}

	if err := ru.d.loadAuth(ru.ctx, events); err != nil {
		return nil, err
	}
	keys := make([]orderKey, len(events))
	for i, n := range events {
		level, err := ru.senderLevel(n)
		if err != nil {
			return nil, fmt.Errorf("power level of the sender of %s: %w", ru.d.ids[n], err)
		}
		ev := ru.d.events[n]
		keys[i] = orderKey{first: -level, ts: ev.OriginServerTS(), id: string(ru.d.ids[n]), slot: int32(i)}
	}

	ready := &keyHeap{}
	var free []int32 // hidden vertices with no edges left
	release := func(i int32) {
		if int(i) < len(events) {
			heap.Push(ready, keys[i])
		} else {
			free = append(free, i)
		}
	}
	for i := range vertices {
		if out[i] == 0 {
			release(int32(i))
		}
	}
	result := make([]int32, 0, len(events))
	taken := 0
	for {
		var i int32
		switch {
		case len(free) > 0:
			i = free[len(free)-1]
			free = free[:len(free)-1]
		case ready.Len() > 0:
			i = heap.Pop(ready).(orderKey).slot
			result = append(result, vertices[i])
		default:
			if taken != len(vertices) {
				return nil, errCycle
			}
			return result, nil
		}
		taken++
		for _, j := range up[i] {
			if out[j]--; out[j] == 0 {
				release(j)
			}
		}
	}
}

// leadingTo returns the nodes of below from which an event of target is
// reachable through auth_events edges. The edges of below must be loaded.
func (ru *run) leadingTo(below []int32, target *marks) []int32 {
	state := make(map[int32]uint8, len(below))
	type frame struct {
		n     int32
		i     int
		found bool
	}
	var out []int32
	var stack []frame
	for _, start := range below {
		if state[start] != reachUnknown {
			continue
		}
		state[start] = reachOpen
		stack = append(stack[:0], frame{n: start})
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			edges := ru.d.auth[top.n]
			if top.i < len(edges) {
				a := edges[top.i]
				top.i++
				if target.has(a) {
					top.found = true
					continue
				}
				switch state[a] {
				case reachYes:
					top.found = true
				case reachUnknown:
					state[a] = reachOpen
					stack = append(stack, frame{n: a})
				}
				continue
			}
			f := *top
			stack = stack[:len(stack)-1]
			if f.found {
				state[f.n] = reachYes
				out = append(out, f.n)
				if len(stack) > 0 {
					stack[len(stack)-1].found = true
				}
			} else {
				state[f.n] = reachNo
			}
		}
	}
	return out
}

// orderKey is an event's place in an ordering: first (the negated sender
// level, or the negated mainline position), then origin_server_ts, then
// event_id.
type orderKey struct {
	first int64
	ts    int64
	id    string
	slot  int32
}

func (a orderKey) compare(b orderKey) int {
	if c := cmp.Compare(a.first, b.first); c != 0 {
		return c
	}
	if c := cmp.Compare(a.ts, b.ts); c != 0 {
		return c
	}
	return strings.Compare(a.id, b.id)
}

type keyHeap []orderKey

func (h keyHeap) Len() int           { return len(h) }
func (h keyHeap) Less(i, j int) bool { return h[i].compare(h[j]) < 0 }
func (h keyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *keyHeap) Push(x any)        { *h = append(*h, x.(orderKey)) }
func (h *keyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// infinity is the mainline position of an event whose power levels chain
// does not meet the mainline.
const infinity = math.MaxInt64

// mainline returns the mainline of the power levels event p (rooms/v2.md
// "Mainline ordering"): p, the m.room.power_levels event among p's auth
// events, that event's, and so on; empty if p is none.
func (ru *run) mainline(p int32) ([]int32, error) {
	var line []int32
	for p != none {
		if slices.Contains(line, p) {
			return nil, errCycle
		}
		line = append(line, p)
		if err := ru.d.load(ru.ctx, []int32{p}); err != nil {
			return nil, err
		}
		if err := ru.d.loadAuth(ru.ctx, []int32{p}); err != nil {
			return nil, err
		}
		p = ru.authEvent(p, keyPowerLevels)
	}
	return line, nil
}

// mainlineOrder sorts events by the mainline ordering based on the power
// levels event p (rooms/v2.md "Mainline ordering"): x < y if x's mainline
// position is greater, then if its origin_server_ts is smaller, then if its
// event_id is smaller. The mainline position of e is i where P_i is the
// first event of e's power levels chain e1, e2, … (e_j+1 the
// m.room.power_levels event among e_j's auth events; e itself excluded)
// that is in the mainline [P_0 = p, P_1, …], or infinity if none is.
// Positions are memoised per power levels event, since most events share
// their chains.
func (ru *run) mainlineOrder(p int32, events []int32) ([]int32, []int32, error) {
	line, err := ru.mainline(p)
	if err != nil {
		return nil, nil, err
	}
	pos := make(map[int32]int64, len(line))
	for i, n := range line {
		pos[n] = int64(i)
	}
	if err := ru.d.load(ru.ctx, events); err != nil {
		return nil, nil, err
	}
	if err := ru.d.loadAuth(ru.ctx, events); err != nil {
		return nil, nil, err
	}
	// position returns the mainline position of the first of the chain
	// starting at the power levels event e (e included).
	var chain []int32
	position := func(e int32) (int64, error) {
		chain = chain[:0]
		at := int64(infinity)
		for e != none {
			if i, ok := pos[e]; ok {
				at = i
				break
			}
			if slices.Contains(chain, e) {
				return 0, errCycle
			}
			chain = append(chain, e)
			if err := ru.d.loadAuth(ru.ctx, []int32{e}); err != nil {
				return 0, err
			}
			e = ru.authEvent(e, keyPowerLevels)
		}
		for _, c := range chain {
			pos[c] = at // not in the mainline: memoise where it leads
		}
		return at, nil
	}
	keys := make([]orderKey, len(events))
	for i, n := range events {
		at, err := position(ru.authEvent(n, keyPowerLevels))
		if err != nil {
			return nil, nil, fmt.Errorf("mainline position of %s: %w", ru.d.ids[n], err)
		}
		ev := ru.d.events[n]
		keys[i] = orderKey{first: -at, ts: ev.OriginServerTS(), id: string(ru.d.ids[n]), slot: int32(i)}
	}
	slices.SortFunc(keys, orderKey.compare)
	out := make([]int32, len(keys))
	for i, k := range keys {
		out[i] = events[k.slot]
	}
	return out, line, nil
}

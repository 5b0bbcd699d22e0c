package stateres

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"sync"

	"maunium.net/go/mautrix/id"
)

// AuthChains answers the questions about a room's auth DAG that state
// resolution asks. AuthChainCache answers them in memory; the store may
// answer them from a persistent index (DESIGN-NOTES: "Auth chains are the
// hot path of federation"). All results are sets: their order carries no
// meaning. Errors wrap ErrNotFound when an event is missing.
type AuthChains interface {
	// AuthChain returns the union of the auth chains of the events: every
	// event reachable from them through one or more auth_events edges
	// (rooms/v2.md "Auth chain"). An event is not in its own auth chain.
	AuthChain(ctx context.Context, ids []id.EventID) ([]id.EventID, error)

	// AuthDifference returns the auth difference (rooms/v2.md "Auth
	// difference") of the states whose events are common ∪ sets[i]: the
	// events in the full auth chain of some state but not of all. common
	// (in practice the unconflicted state, most of a big room) is separate
	// because its auth chain is in every state's: an implementation needs
	// it only to rule out the events in the chains of some sets but not
	// all, and may not need to read it at all.
	AuthDifference(ctx context.Context, common iter.Seq[id.EventID], sets [][]id.EventID) ([]id.EventID, error)

	// ConflictedSubgraph returns the conflicted state subgraph of the
	// conflicted state set (rooms/v12.md "Conflicted state subgraph",
	// MSC4297): the events on auth_events paths from one conflicted event
	// to another, endpoints included.
	ConflictedSubgraph(ctx context.Context, conflicted []id.EventID) ([]id.EventID, error)
}

// AuthChainCache is an in-memory AuthChains over an EventSource. It keeps
// the auth_events edges of every event it has seen (fetched once, in
// batches; the events themselves are not kept) and memoises the auth chain
// of each event it is asked about alone. Walks over many events use the
// edges with a visit mark per event, so each walk touches each event once.
//
// It is safe for concurrent use; calls are serialised. It only grows: use
// one per room, and drop it with the room from memory.
type AuthChainCache struct {
	mu    sync.Mutex
	d     *dag
	chain map[int32][]int32 // memoised auth chains, sorted
	seen  marks
	inU   marks
	inC   marks
	count []int32
	state []uint8
}

var _ AuthChains = (*AuthChainCache)(nil)

// NewAuthChainCache returns an AuthChainCache that fetches events from src.
func NewAuthChainCache(src EventSource) *AuthChainCache {
	return &AuthChainCache{d: newDAG(src, false), chain: make(map[int32][]int32)}
}

// AuthChain implements AuthChains. The auth chain of a single event is
// memoised; a union of several reuses memoised chains where it meets them.
func (c *AuthChainCache) AuthChain(ctx context.Context, ids []id.EventID) ([]id.EventID, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	from := c.d.internAll(ids)
	if len(from) == 1 {
		ch, err := c.single(ctx, from[0])
		if err != nil {
			return nil, fmt.Errorf("auth chain of %s: %w", ids[0], err)
		}
		return c.d.idsOf(ch), nil
	}
	out, err := c.union(ctx, from)
	if err != nil {
		return nil, fmt.Errorf("auth chain of %d events: %w", len(from), err)
	}
	return c.d.idsOf(out), nil
}

// single returns the memoised auth chain of n, computing it if needed.
func (c *AuthChainCache) single(ctx context.Context, n int32) ([]int32, error) {
	if ch, ok := c.chain[n]; ok {
		return ch, nil
	}
	ch, err := c.union(ctx, []int32{n})
	if err != nil {
		return nil, err
	}
	slices.Sort(ch)
	c.chain[n] = ch
	return ch, nil
}

// union returns the union of the auth chains of from.
func (c *AuthChainCache) union(ctx context.Context, from []int32) ([]int32, error) {
	c.seen.reset()
	var out []int32
	var walkFrom []int32
	for _, n := range from {
		if ch, ok := c.chain[n]; ok {
			for _, x := range ch {
				if c.seen.add(x) {
					out = append(out, x)
				}
			}
		} else {
			walkFrom = append(walkFrom, n)
		}
	}
	err := c.d.walk(ctx, walkFrom, &c.seen, func(n int32) bool {
		out = append(out, n)
		ch, ok := c.chain[n]
		if !ok {
			return true
		}
		// n's whole chain is known: take it instead of walking it.
		for _, x := range ch {
			if c.seen.add(x) {
				out = append(out, x)
			}
		}
		return false
	})
	return out, err
}

// AuthDifference implements AuthChains. An event in the auth chain of
// common is in every state's chain; any other is in state i's chain
// exactly when it is in the chain of sets[i]. So it first walks the chains
// of the sets, which are small when few entries conflict, and finds the
// candidates, the events in some of them but not all. Only if there are
// candidates does it read common and walk its auth chain, stopping as soon
// as it has seen them all.
func (c *AuthChainCache) AuthDifference(ctx context.Context, common iter.Seq[id.EventID], sets [][]id.EventID) ([]id.EventID, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.count) < c.d.len() {
		c.count = make([]int32, c.d.len()+c.d.len()/4)
	}
	var touched []int32
	defer func() {
		for _, n := range touched {
			c.count[n] = 0
		}
	}()
	for i, set := range sets {
		c.seen.reset()
		err := c.d.walk(ctx, c.d.internAll(set), &c.seen, func(n int32) bool {
			if int(n) >= len(c.count) {
				c.count = append(c.count, make([]int32, int(n)+1-len(c.count)+len(c.count)/4)...)
			}
			if c.count[n] == 0 {
				touched = append(touched, n)
			}
			c.count[n]++
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("auth chain of state %d: %w", i, err)
		}
	}
	var candidates []int32
	for _, n := range touched {
		if int(c.count[n]) < len(sets) {
			candidates = append(candidates, n)
		}
	}
	if len(candidates) == 0 {
		return nil, nil
	}
	c.inC.reset()
	for _, n := range candidates {
		c.inC.add(n)
	}
	left := len(candidates)
	var from []int32
	for eid := range common {
		from = append(from, c.d.intern(eid))
	}
	c.inU.reset()
	err := c.d.walk(ctx, from, &c.inU, func(n int32) bool {
		if c.inC.has(n) {
			left--
		}
		return left > 0
	})
	if err != nil {
		return nil, fmt.Errorf("auth chain of the common state: %w", err)
	}
	var out []int32
	for _, n := range candidates {
		if !c.inU.has(n) {
			out = append(out, n)
		}
	}
	return c.d.idsOf(out), nil
}

// Node states of the reachability search in ConflictedSubgraph.
const (
	reachUnknown uint8 = iota
	reachOpen
	reachYes
	reachNo
)

// ConflictedSubgraph implements AuthChains. An event is on a path from one
// conflicted event to another if it is in the auth chain of a conflicted
// event and a conflicted event is in its own auth chain (or it is one); a
// conflicted event is an endpoint if another is in its auth chain. One walk
// finds the events below the conflicted set; one depth-first pass over them
// finds which reach it.
func (c *AuthChainCache) ConflictedSubgraph(ctx context.Context, conflicted []id.EventID) ([]id.EventID, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.d.internAll(conflicted)
	c.inC.reset()
	for _, n := range cs {
		c.inC.add(n)
	}
	c.seen.reset()
	var below []int32
	err := c.d.walk(ctx, cs, &c.seen, func(n int32) bool {
		below = append(below, n)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("auth chains of the conflicted state set: %w", err)
	}
	if len(c.state) < c.d.len() {
		c.state = make([]uint8, c.d.len())
	} else {
		clear(c.state)
	}
	reaches := c.reachesConflicted
	var out []int32
	for _, n := range below {
		if c.inC.has(n) || reaches(n) {
			out = append(out, n)
		}
	}
	for _, n := range cs {
		if !c.seen.has(n) && reaches(n) {
			out = append(out, n)
		}
	}
	return c.d.idsOf(out), nil
}

// reachesConflicted reports whether a conflicted event is in the auth chain
// of n (n's edges and those of its chain must be loaded). It memoises the
// answer in c.state, depth first with an explicit stack: auth chains can be
// thousands of events deep.
func (c *AuthChainCache) reachesConflicted(n int32) bool {
	switch c.state[n] {
	case reachYes:
		return true
	case reachNo:
		return false
	}
	type frame struct {
		n     int32
		i     int
		found bool
	}
	stack := []frame{{n: n}}
	c.state[n] = reachOpen
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		edges := c.d.auth[top.n]
		if top.i < len(edges) {
			a := edges[top.i]
			top.i++
			if c.inC.has(a) {
				top.found = true
				continue
			}
			switch c.state[a] {
			case reachYes:
				top.found = true
			case reachUnknown:
				c.state[a] = reachOpen
				stack = append(stack, frame{n: a})
			}
			continue
		}
		found := top.found
		if found {
			c.state[top.n] = reachYes
		} else {
			c.state[top.n] = reachNo
		}
		stack = stack[:len(stack)-1]
		if found && len(stack) > 0 {
			stack[len(stack)-1].found = true
		}
	}
	return c.state[n] == reachYes
}

package stateres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/stateres"
)

// randomDAG builds n events, each citing up to 3 random earlier events.
func randomDAG(rng *rand.Rand, n int) stateres.EventMap {
	events := make(stateres.EventMap, n)
	for i := range n {
		ev := &fakeEvent{id: id.EventID(fmt.Sprintf("$%03d", i)), typ: "m.room.topic", sk: ptr(""), content: []byte("{}")}
		ev.auth = []id.EventID{}
		if i > 0 {
			for range rng.IntN(4) {
				ev.auth = append(ev.auth, id.EventID(fmt.Sprintf("$%03d", rng.IntN(i))))
			}
		}
		events.Add(ev)
	}
	return events
}

// naiveChain is the auth chain of eid by plain recursion.
func naiveChain(events stateres.EventMap, eid id.EventID, into map[id.EventID]bool) {
	for _, a := range events[eid].AuthEventIDs() {
		if !into[a] {
			into[a] = true
			naiveChain(events, a, into)
		}
	}
}

func chainOf(events stateres.EventMap, ids ...id.EventID) map[id.EventID]bool {
	out := make(map[id.EventID]bool)
	for _, eid := range ids {
		naiveChain(events, eid, out)
	}
	return out
}

func keysSorted(m map[id.EventID]bool) []id.EventID {
	var out []id.EventID
	for k, v := range m {
		if v {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func pick(rng *rand.Rand, n, k int) []id.EventID {
	var out []id.EventID
	for range k {
		out = append(out, id.EventID(fmt.Sprintf("$%03d", rng.IntN(n))))
	}
	return out
}

// TestAuthChainCacheRandom compares AuthChainCache with plain recursive
// definitions on random DAGs: auth chain (rooms/v2.md "Auth chain"), auth
// difference ("Auth difference") and conflicted state subgraph (rooms/v12.md).
// One cache serves every query of a DAG, so memoised chains are exercised.
func TestAuthChainCacheRandom(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		n := 5 + rng.IntN(60)
		events := randomDAG(rng, n)
		cache := stateres.NewAuthChainCache(events)
		for q := range 6 {
			// Auth chain of one event (memoised) and of several.
			ids := pick(rng, n, 1+q%3)
			got, err := cache.AuthChain(ctx, ids)
			if err != nil {
				t.Fatalf("seed %d: AuthChain: %v", seed, err)
			}
			if want := keysSorted(chainOf(events, ids...)); !slices.Equal(sorted(got), want) {
				t.Errorf("seed %d: AuthChain(%v) = %v, want %v", seed, ids, sorted(got), want)
			}

			// Auth difference of states common ∪ sets[i].
			common := pick(rng, n, rng.IntN(4))
			sets := make([][]id.EventID, 2+rng.IntN(2))
			full := make([]map[id.EventID]bool, len(sets))
			for i := range sets {
				sets[i] = pick(rng, n, rng.IntN(4))
				full[i] = chainOf(events, slices.Concat(common, sets[i])...)
			}
			union, inter := map[id.EventID]bool{}, map[id.EventID]bool{}
			for k := range full[0] {
				inter[k] = true
			}
			for _, c := range full {
				for k := range c {
					union[k] = true
				}
				for k := range inter {
					if !c[k] {
						delete(inter, k)
					}
				}
			}
			for k := range inter {
				union[k] = false
			}
			got, err = cache.AuthDifference(ctx, slices.Values(common), sets)
			if err != nil {
				t.Fatalf("seed %d: AuthDifference: %v", seed, err)
			}
			if want := keysSorted(union); !slices.Equal(sorted(got), want) {
				t.Errorf("seed %d: AuthDifference(%v, %v) = %v, want %v", seed, common, sets, sorted(got), want)
			}

			// Conflicted state subgraph: x is on a path c1 ->* x ->* c2
			// between two different conflicted events.
			conflicted := pick(rng, n, 2+rng.IntN(4))
			slices.Sort(conflicted)
			conflicted = slices.Compact(conflicted)
			want := map[id.EventID]bool{}
			for eid := range events {
				below := chainOf(events, eid)
				for _, c1 := range conflicted {
					for _, c2 := range conflicted {
						if c1 != c2 && (eid == c1 || chainOf(events, c1)[eid]) && (eid == c2 || below[c2]) {
							want[eid] = true
						}
					}
				}
			}
			got, err = cache.ConflictedSubgraph(ctx, conflicted)
			if err != nil {
				t.Fatalf("seed %d: ConflictedSubgraph: %v", seed, err)
			}
			if w := keysSorted(want); !slices.Equal(sorted(got), w) {
				t.Errorf("seed %d: ConflictedSubgraph(%v) = %v, want %v", seed, conflicted, sorted(got), w)
			}
		}
	}
}

func sorted(ids []id.EventID) []id.EventID {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// TestAuthChainMissingEvent checks that a missing auth event is an error
// wrapping ErrNotFound, from the cache and from Resolve: never treated as
// absent.
func TestAuthChainMissingEvent(t *testing.T) {
	ctx := context.Background()
	b := levelsRoom(t)
	b.add("A", "m.room.topic", "", alice, `{}`, "CREATE", "PL")
	b.add("B", "m.room.topic", "", bob, `{}`, "CREATE", "PL")
	delete(b.events, eventID("PL"))
	r := b.resolver(allowAll)
	if _, err := r.AuthChain(ctx, eventID("A")); !errors.Is(err, stateres.ErrNotFound) {
		t.Errorf("AuthChain with a missing auth event: error %v, want ErrNotFound", err)
	}
	_, err := r.Resolve(ctx, b.version, []stateres.StateMap{b.state("CREATE", "A"), b.state("CREATE", "B")})
	if !errors.Is(err, stateres.ErrNotFound) {
		t.Errorf("Resolve with a missing auth event: error %v, want ErrNotFound", err)
	}
}

// TestResolverAuthDifference checks Resolver.AuthDifference on StateMaps.
func TestResolverAuthDifference(t *testing.T) {
	b := levelsRoom(t)
	b.add("JA", "m.room.member", string(alice), alice, `{"membership":"join"}`, "CREATE", "PL")
	b.add("JB", "m.room.member", string(bob), bob, `{"membership":"join"}`, "CREATE", "PL")
	b.add("TA", "m.room.topic", "", alice, `{}`, "CREATE", "PL", "JA")
	b.add("TB", "m.room.topic", "", bob, `{}`, "CREATE", "PL", "JB")
	r := b.resolver(allowAll)
	got, err := r.AuthDifference(context.Background(), []stateres.StateMap{
		b.state("CREATE", "PL", "JA", "JB", "TA"),
		b.state("CREATE", "PL", "JA", "JB", "TB"),
	})
	if err != nil {
		t.Fatalf("AuthDifference: %v", err)
	}
	// TA's chain holds JA, TB's JB; PL and CREATE are in both.
	if want := []string{"JA", "JB"}; !slices.Equal(sortedNames(got), want) {
		t.Errorf("AuthDifference = %v, want %v", sortedNames(got), want)
	}
}

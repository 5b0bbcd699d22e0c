package stateres_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
	"polder.dev/polder/internal/stateres"
)

func key(t, sk string) stateres.StateKey { return stateres.StateKey{Type: t, StateKey: sk} }

// TestSplitStates checks the unconflicted state map and the conflicted
// state set: in v2 a key missing from one state is conflicted
// (rooms/v2.md "Unconflicted state map and conflicted state set"); in v1
// only different event IDs conflict (rooms/v1.md).
func TestSplitStates(t *testing.T) {
	s1 := stateres.StateMap{key("a", ""): "$1", key("b", ""): "$2", key("c", ""): "$3"}
	s2 := stateres.StateMap{key("a", ""): "$1", key("b", ""): "$X", key("d", ""): "$4"}
	s3 := stateres.StateMap{key("a", ""): "$1", key("b", ""): "$2", key("d", ""): "$4"}
	tests := []struct {
		name       string
		states     []stateres.StateMap
		v2         bool
		unconf     stateres.StateMap
		conflicted map[stateres.StateKey][]id.EventID
	}{
		{
			name:   "v2: missing keys conflict",
			states: []stateres.StateMap{s1, s2, s3},
			v2:     true,
			unconf: stateres.StateMap{key("a", ""): "$1"},
			conflicted: map[stateres.StateKey][]id.EventID{
				key("b", ""): {"$2", "$X"},
				key("c", ""): {"$3"},
				key("d", ""): {"$4"},
			},
		},
		{
			name:       "v1: only different events conflict",
			states:     []stateres.StateMap{s1, s2, s3},
			v2:         false,
			unconf:     stateres.StateMap{key("a", ""): "$1", key("c", ""): "$3", key("d", ""): "$4"},
			conflicted: map[stateres.StateKey][]id.EventID{key("b", ""): {"$2", "$X"}},
		},
		{
			name:       "identical states",
			states:     []stateres.StateMap{s1, s1},
			v2:         true,
			unconf:     s1,
			conflicted: map[stateres.StateKey][]id.EventID{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unconf, conflicted := stateres.SplitStates(tt.states, tt.v2)
			if describe(unconf) != describe(tt.unconf) {
				t.Errorf("SplitStates unconflicted = %s, want %s", describe(unconf), describe(tt.unconf))
			}
			if len(conflicted) != len(tt.conflicted) {
				t.Errorf("SplitStates conflicted = %v, want %v", conflicted, tt.conflicted)
			}
			for k, want := range tt.conflicted {
				if got := conflicted[k]; !slices.Equal(got, want) {
					t.Errorf("SplitStates conflicted[%v] = %v, want %v", k, got, want)
				}
			}
		})
	}
}

// basicRoom is a v11 room where Alice and Bob set topics on two forks.
func basicRoom(t *testing.T) *builder {
	b := newBuilder(t, "11")
	b.add("CREATE", "m.room.create", "", alice, `{"room_version":"11"}`)
	b.add("JA", "m.room.member", string(alice), alice, `{"membership":"join"}`, "CREATE")
	b.add("PL", "m.room.power_levels", "", alice, `{"users":{"@alice:x":100,"@bob:x":100}}`, "CREATE", "JA")
	b.add("JR", "m.room.join_rules", "", alice, `{"join_rule":"public"}`, "CREATE", "JA", "PL")
	b.add("JB", "m.room.member", string(bob), bob, `{"membership":"join"}`, "CREATE", "PL", "JR")
	b.add("TA", "m.room.topic", "", alice, `{"topic":"a"}`, "CREATE", "PL", "JA")
	b.add("TB", "m.room.topic", "", bob, `{"topic":"b"}`, "CREATE", "PL", "JB")
	return b
}

// TestStateBefore checks the state before an event from the states after
// its prev events: empty for none, that state for one, the resolution for
// several (rooms/v2.md "The room state S(E) before E").
func TestStateBefore(t *testing.T) {
	ctx := context.Background()
	b := basicRoom(t)
	r := b.resolver(nil)
	sa := b.state("CREATE", "JA", "PL", "JR", "JB", "TA")
	sb := b.state("CREATE", "JA", "PL", "JR", "JB", "TB")

	got, err := r.StateBefore(ctx, "11", nil)
	if err != nil || len(got) != 0 {
		t.Errorf("StateBefore(no prev) = %v, %v; want empty", got, err)
	}
	got, err = r.StateBefore(ctx, "11", []stateres.StateMap{sa})
	if err != nil || describe(got) != describe(sa) {
		t.Errorf("StateBefore(one prev) = %s, %v; want %s", describe(got), err, describe(sa))
	}
	got, err = r.StateBefore(ctx, "11", []stateres.StateMap{sa, sb})
	// Same power, TA (ts 6) before TB (ts 7): TB last.
	if want := b.state("CREATE", "JA", "PL", "JR", "JB", "TB"); err != nil || describe(got) != describe(want) {
		t.Errorf("StateBefore(two prevs) = %s, %v; want %s", describe(got), err, describe(want))
	}
	if sa[key("m.room.topic", "")] != eventID("TA") || sb[key("m.room.topic", "")] != eventID("TB") {
		t.Errorf("StateBefore modified its inputs")
	}
}

// TestResolveAuthInjected checks that Config.Auth replaces eventauth.Check
// in the iterative auth checks, and that an event it rejects stays out.
func TestResolveAuthInjected(t *testing.T) {
	ctx := context.Background()
	b := basicRoom(t)
	var checked []string
	rejectBob := func(v id.RoomVersion, ev eventauth.Event, auth eventauth.Lookup) error {
		checked = append(checked, nameOf(ev.EventID()))
		if ev.Sender() == bob {
			return errors.New("no bob")
		}
		return nil
	}
	r := b.resolver(rejectBob)
	got, err := r.Resolve(ctx, "11", []stateres.StateMap{
		b.state("CREATE", "JA", "PL", "JR", "JB", "TA"),
		b.state("CREATE", "JA", "PL", "JR", "JB", "TB"),
	})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if got[key("m.room.topic", "")] != eventID("TA") {
		t.Errorf("Resolve topic = %s, want TA", got[key("m.room.topic", "")])
	}
	// The auth difference holds JB (TB cites it): it is checked too.
	slices.Sort(checked)
	if want := []string{"JB", "TA", "TB"}; !slices.Equal(checked, want) {
		t.Errorf("Auth called for %v, want %v", checked, want)
	}
}

// TestResolveErrors checks the errors of Resolve.
func TestResolveErrors(t *testing.T) {
	b := basicRoom(t)
	states := []stateres.StateMap{
		b.state("CREATE", "JA", "PL", "JR", "JB", "TA"),
		b.state("CREATE", "JA", "PL", "JR", "JB", "TB"),
	}
	t.Run("unknown room version", func(t *testing.T) {
		_, err := b.resolver(allowAll).Resolve(context.Background(), "org.example.v99", states)
		if !errors.Is(err, stateres.ErrUnknownVersion) {
			t.Errorf("Resolve(v99) error = %v, want ErrUnknownVersion", err)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := b.resolver(allowAll).Resolve(ctx, "11", states)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Resolve(cancelled) error = %v, want context.Canceled", err)
		}
	})
	t.Run("missing state event", func(t *testing.T) {
		bad := b.state("CREATE", "JA", "PL", "JR", "JB")
		bad[key("m.room.topic", "")] = "$NOPE"
		_, err := b.resolver(allowAll).Resolve(context.Background(), "11", []stateres.StateMap{states[0], bad})
		if !errors.Is(err, stateres.ErrNotFound) {
			t.Errorf("Resolve(missing event) error = %v, want ErrNotFound", err)
		}
	})
}

// TestResolveAllVersions resolves the same small fork in every room
// version, v1 to v12, with the real authorization rules.
func TestResolveAllVersions(t *testing.T) {
	for _, v := range []id.RoomVersion{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"} {
		t.Run("v"+string(v), func(t *testing.T) {
			b := newBuilder(t, v)
			create := `{"room_version":"` + string(v) + `","creator":"@alice:x"}`
			b.add("CREATE", "m.room.create", "", alice, create)
			c := []string{"CREATE"}
			if v.RoomIDIsCreateEventID() {
				c = nil
			}
			// From v12 the creator has an infinite level and may not be
			// listed in users.
			users, deop := `{"@alice:x":100,"@bob:x":50}`, `{"@alice:x":100}`
			if v.PrivilegedRoomCreators() {
				users, deop = `{"@bob:x":50}`, `{}`
			}
			b.add("JA", "m.room.member", string(alice), alice, `{"membership":"join"}`, c...)
			b.add("PL", "m.room.power_levels", "", alice, `{"users":`+users+`}`, append(c, "JA")...)
			b.add("JR", "m.room.join_rules", "", alice, `{"join_rule":"public"}`, append(c, "JA", "PL")...)
			b.add("JB", "m.room.member", string(bob), bob, `{"membership":"join"}`, append(c, "PL", "JR")...)
			b.add("DEOP", "m.room.power_levels", "", alice, `{"users":`+deop+`}`, append(c, "JA", "PL")...)
			b.add("TB", "m.room.topic", "", bob, `{"topic":"b"}`, append(c, "PL", "JB")...)
			r := b.resolver(nil)
			got, err := r.Resolve(context.Background(), v, []stateres.StateMap{
				b.state("CREATE", "JA", "PL", "JR", "JB", "TB"),
				b.state("CREATE", "JA", "DEOP", "JR", "JB"),
			})
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			// v2+: DEOP goes first (power event) and Bob's topic fails.
			// v1: the topic is on one side only, so unconflicted; the
			// power levels pass takes PL (depth 3) then DEOP (depth 4).
			want := b.state("CREATE", "JA", "DEOP", "JR", "JB")
			if v == "1" {
				want = b.state("CREATE", "JA", "DEOP", "JR", "JB", "TB")
			}
			if describe(got) != describe(want) {
				t.Errorf("Resolve = %s\nwant %s", describe(got), describe(want))
			}
		})
	}
}

// TestIterativeAuthChecksLookup checks what the authorization rules see
// during the iterative auth checks (rooms/v2.md "Iterative auth checks"):
// the partial state's entry for a key; else the event's own auth event for
// it if that was not rejected; from v12 the create event the room ID names.
func TestIterativeAuthChecksLookup(t *testing.T) {
	tests := []struct {
		name       string
		version    id.RoomVersion
		rejectJB   bool
		wantMember string // what Bob's membership lookup gives, "" for nil
		wantPL     string
		wantCreate string
	}{
		{"v2: key in the state", "11", false, "JB", "PL", "CREATE"},
		{"v2: rejected auth event is not used", "11", true, "", "PL", "CREATE"},
		{"v2.1: starts empty, auth events fill in", "12", false, "JB", "PL", "CREATE"},
		{"v2.1: create event from the room ID", "12", true, "", "PL", "CREATE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBuilder(t, tt.version)
			b.add("CREATE", "m.room.create", "", alice, `{"room_version":"`+string(tt.version)+`"}`)
			c := []string{"CREATE"}
			if tt.version.RoomIDIsCreateEventID() {
				c = nil
			}
			b.add("JA", "m.room.member", string(alice), alice, `{"membership":"join"}`, c...)
			b.add("PL", "m.room.power_levels", "", alice, `{}`, append(c, "JA")...)
			b.add("JB", "m.room.member", string(bob), bob, `{"membership":"join"}`, append(c, "PL")...).rejected = tt.rejectJB
			b.add("E", "m.room.topic", "", bob, `{}`, append(c, "PL", "JB")...)
			// N, in both states, cites JB too: JB is in every state's auth
			// chain, so not in the auth difference, and not replayed.
			b.add("N", "m.room.name", "", bob, `{}`, append(c, "PL", "JB")...)
			seen := map[string]string{}
			auth := func(v id.RoomVersion, ev eventauth.Event, lookup eventauth.Lookup) error {
				if ev.EventID() == eventID("E") {
					for name, k := range map[string]stateres.StateKey{"member": key("m.room.member", string(bob)), "pl": key("m.room.power_levels", ""), "create": key("m.room.create", "")} {
						if got := lookup(k.Type, k.StateKey); got != nil {
							seen[name] = nameOf(got.EventID())
						}
					}
				}
				return nil
			}
			// E is conflicted (absent from the second state); JB is in
			// neither state, so the state has no entry for Bob.
			_, err := b.resolver(auth).Resolve(context.Background(), tt.version, []stateres.StateMap{
				b.state("CREATE", "JA", "PL", "N", "E"),
				b.state("CREATE", "JA", "PL", "N"),
			})
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if seen["member"] != tt.wantMember || seen["pl"] != tt.wantPL || seen["create"] != tt.wantCreate {
				t.Errorf("Lookup for E: member %q, power levels %q, create %q; want %q, %q, %q",
					seen["member"], seen["pl"], seen["create"], tt.wantMember, tt.wantPL, tt.wantCreate)
			}
		})
	}
}

// TestResolveConcurrent resolves from several goroutines with one Resolver
// and its shared auth chain cache (run with -race).
func TestResolveConcurrent(t *testing.T) {
	r := newBenchRoom(t, 2000, 50)
	res := stateres.New(stateres.Config{Source: r.events})
	want, err := res.Resolve(context.Background(), r.version, []stateres.StateMap{r.a, r.b})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			got, err := res.Resolve(context.Background(), r.version, []stateres.StateMap{r.b, r.a})
			if err == nil && describe(got) != describe(want) {
				err = errors.New("different result")
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Resolve: %v", err)
		}
	}
}

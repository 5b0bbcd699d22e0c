package stateres_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/stateres"
)

// benchRoom is a synthetic but realistic room: an admin creates a public
// room, members join one after the other (every 1,000th join is followed
// by a power levels change that makes the newcomer a moderator), and then
// the room forks: on side A, `changed` members change their display name
// and ten newcomers join;
// on side B, most of the same members change it differently, the admin
// kicks the last tenth of them and promotes a moderator.
type benchRoom struct {
	version  id.RoomVersion
	events   stateres.EventMap
	a, b     stateres.StateMap
	admin    id.UserID
	members  []id.UserID
	plB      id.EventID // side B's power levels
	changedB map[id.UserID]id.EventID
}

func benchEventID(i int) id.EventID {
	sum := sha256.Sum256([]byte(fmt.Sprint(i)))
	return id.EventID("$" + base64.RawURLEncoding.EncodeToString(sum[:]))
}

// newBenchRoom builds a room of version 11 with about n state events and
// `changed` conflicted member keys.
func newBenchRoom(tb testing.TB, n, changed int) *benchRoom {
	tb.Helper()
	r := &benchRoom{version: "11", events: make(stateres.EventMap, n+2*changed+100), admin: "@admin:example.org", changedB: make(map[id.UserID]id.EventID)}
	const room = id.RoomID("!bench:example.org")
	seq := 0
	state := make(stateres.StateMap, n+10)
	add := func(typ, sk string, sender id.UserID, content string, auth ...id.EventID) *fakeEvent {
		seq++
		ev := &fakeEvent{id: benchEventID(seq), room: room, typ: typ, sk: ptr(sk), sender: sender, content: []byte(content), auth: auth, depth: int64(seq), ts: int64(1_700_000_000_000 + seq)}
		r.events.Add(ev)
		state[stateres.StateKey{Type: typ, StateKey: sk}] = ev.id
		return ev
	}
	create := add("m.room.create", "", r.admin, `{"room_version":"11"}`).id
	adminJoin := add("m.room.member", string(r.admin), r.admin, `{"membership":"join"}`, create).id
	mods := `"@admin:example.org":100`
	pl := add("m.room.power_levels", "", r.admin, `{"users":{`+mods+`}}`, create, adminJoin).id
	jr := add("m.room.join_rules", "", r.admin, `{"join_rule":"public"}`, create, adminJoin, pl).id
	joins := make(map[id.UserID]id.EventID)
	for i := 0; len(state) < n; i++ {
		u := id.UserID(fmt.Sprintf("@user%06d:example.org", i))
		r.members = append(r.members, u)
		joins[u] = add("m.room.member", string(u), u, `{"membership":"join"}`, create, pl, jr).id
		if i%1000 == 999 {
			mods += fmt.Sprintf(`,%q:50`, u)
			pl = add("m.room.power_levels", "", r.admin, `{"users":{`+mods+`}}`, create, adminJoin, pl).id
		}
	}
	base := state
	r.a, r.b = clone(base), clone(base)

	// Side A: display names, and ten newcomers who join and set theirs
	// (their joins are in the auth chain of side A only: the auth
	// difference is not empty).
	state = r.a
	for _, u := range r.members[:changed] {
		add("m.room.member", string(u), u, `{"membership":"join","displayname":"A"}`, create, pl, joins[u], jr)
	}
	for i := range 10 {
		u := id.UserID(fmt.Sprintf("@newcomer%02d:example.org", i))
		j := add("m.room.member", string(u), u, `{"membership":"join"}`, create, pl, jr).id
		add("m.room.member", string(u), u, `{"membership":"join","displayname":"new"}`, create, pl, j, jr)
	}
	// Side B: display names, kicks, a promotion.
	state = r.b
	kickFrom := changed - changed/10
	for _, u := range r.members[:kickFrom] {
		r.changedB[u] = add("m.room.member", string(u), u, `{"membership":"join","displayname":"B"}`, create, pl, joins[u], jr).id
	}
	for _, u := range r.members[kickFrom:changed] {
		r.changedB[u] = add("m.room.member", string(u), r.admin, `{"membership":"leave"}`, create, pl, adminJoin, joins[u]).id
	}
	mods += fmt.Sprintf(`,%q:50`, r.members[len(r.members)-1])
	r.plB = add("m.room.power_levels", "", r.admin, `{"users":{`+mods+`}}`, create, adminJoin, pl).id
	return r
}

func clone(s stateres.StateMap) stateres.StateMap {
	out := make(stateres.StateMap, len(s)+1000)
	for k, v := range s {
		out[k] = v
	}
	return out
}

// TestBenchRoom checks that the benchmark's room resolves as expected with
// the real authorization rules: side B's power levels; side B's display
// names (later timestamps, same mainline position); the kicks, which are
// power events, go first, and then side A's display name changes of the
// kicked members join them again (the room is public).
func TestBenchRoom(t *testing.T) {
	r := newBenchRoom(t, 3000, 100)
	res := stateres.New(stateres.Config{Source: r.events})
	got, err := res.Resolve(context.Background(), r.version, []stateres.StateMap{r.a, r.b})
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if len(got) != len(r.a) {
		t.Errorf("Resolve: %d entries, want %d (side A's keys, newcomers included)", len(got), len(r.a))
	}
	if pl := got[stateres.StateKey{Type: "m.room.power_levels"}]; pl != r.plB {
		t.Errorf("Resolve: power levels %s, want side B's %s", pl, r.plB)
	}
	for i, u := range r.members[:100] {
		ev := r.events[got[stateres.StateKey{Type: "m.room.member", StateKey: string(u)}]]
		want := `{"membership":"join","displayname":"B"}`
		if i >= 90 {
			want = `{"membership":"join","displayname":"A"}`
		}
		if string(ev.Content()) != want {
			t.Errorf("Resolve: %s has %s, want %s", u, ev.Content(), want)
		}
	}
}

func benchmarkResolve(b *testing.B, n int) {
	room := newBenchRoom(b, n, 1000)
	states := []stateres.StateMap{room.a, room.b}
	ctx := context.Background()
	for _, auth := range []struct {
		name string
		fn   stateres.AuthFunc
	}{
		{"auth=fake", allowAll},
		{"auth=eventauth", nil},
	} {
		// warm: one Resolver for the room, whose auth chain cache has seen
		// the room (as a server's would); cold: a new one each time.
		b.Run(auth.name+"/cache=warm", func(b *testing.B) {
			r := stateres.New(stateres.Config{Source: room.events, Auth: auth.fn})
			if _, err := r.Resolve(ctx, room.version, states); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Resolve(ctx, room.version, states); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(auth.name+"/cache=cold", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := stateres.New(stateres.Config{Source: room.events, Auth: auth.fn})
				if _, err := r.Resolve(ctx, room.version, states); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkResolve10k resolves two forks of a room with 10,000 state events
// and 1,000 conflicted member entries.
func BenchmarkResolve10k(b *testing.B) { benchmarkResolve(b, 10_000) }

// BenchmarkResolve100k resolves two forks of a room with 100,000 state
// events and 1,000 conflicted member entries.
func BenchmarkResolve100k(b *testing.B) { benchmarkResolve(b, 100_000) }

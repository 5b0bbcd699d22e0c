package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// The event graph is written through the room service: these tests check
// that the triggers of migration 0004 follow what it persists.

const searchServer = "hs.test"

func newRooms(tb testing.TB, db *store.DB) *room.Service {
	tb.Helper()
	k, err := keys.Generate("")
	if err != nil {
		tb.Fatal(err)
	}
	pos, err := db.StreamPos(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return room.New(room.Config{ServerName: searchServer, Key: k}, db, notify.New(notify.Position{Stream: pos}), slog.New(slog.DiscardHandler))
}

func mustUser(tb testing.TB, db *store.DB, name string) id.UserID {
	tb.Helper()
	if err := db.CreateAccount(context.Background(), store.Account{Localpart: name}, name); err != nil {
		tb.Fatalf("CreateAccount(%s): %v", name, err)
	}
	return id.UserID("@" + name + ":" + searchServer)
}

func mustRoom(tb testing.TB, rs *room.Service, creator id.UserID, req room.CreateRequest) id.RoomID {
	tb.Helper()
	roomID, err := rs.Create(context.Background(), creator, req)
	if err != nil {
		tb.Fatalf("Create: %v", err)
	}
	return roomID
}

func mustSend(tb testing.TB, rs *room.Service, sender id.UserID, roomID id.RoomID, typ, content string) *store.Event {
	tb.Helper()
	ev, err := rs.Send(context.Background(), sender, roomID, room.Draft{Type: typ, Content: []byte(content)})
	if err != nil {
		tb.Fatalf("Send %s %s: %v", typ, content, err)
	}
	return ev
}

func mustState(tb testing.TB, rs *room.Service, sender id.UserID, roomID id.RoomID, typ, content string) *store.Event {
	tb.Helper()
	empty := ""
	ev, err := rs.Send(context.Background(), sender, roomID, room.Draft{Type: typ, StateKey: &empty, Content: []byte(content)})
	if err != nil {
		tb.Fatalf("Send state %s %s: %v", typ, content, err)
	}
	return ev
}

func mustJoin(tb testing.TB, rs *room.Service, u id.UserID, roomID id.RoomID, membership string) {
	tb.Helper()
	if _, err := rs.SetMembership(context.Background(), room.MemberChange{RoomID: roomID, Sender: u, Target: u, Membership: membership}); err != nil {
		tb.Fatalf("%s %s %s: %v", u, membership, roomID, err)
	}
}

func mustRedact(tb testing.TB, rs *room.Service, sender id.UserID, roomID id.RoomID, target id.EventID) {
	tb.Helper()
	c := fmt.Sprintf(`{"redacts":%q}`, target)
	if _, err := rs.Send(context.Background(), sender, roomID, room.Draft{Type: event.TypeRedaction, Redacts: target, Content: []byte(c)}); err != nil {
		tb.Fatalf("redact %s: %v", target, err)
	}
}

// words makes a one-conjunction query of prefix words.
func words(ws ...string) [][]store.SearchTerm {
	var and []store.SearchTerm
	for _, w := range ws {
		and = append(and, store.SearchTerm{Words: []string{w}, Prefix: true})
	}
	return [][]store.SearchTerm{and}
}

var allTypes = []string{"m.room.message", "m.room.name", "m.room.topic"}

func hitIDs(hits []store.SearchHit) []id.EventID {
	var out []id.EventID
	for _, h := range hits {
		out = append(out, h.Event.EventID())
	}
	return out
}

func TestSearchEvents(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rs := newRooms(t, db)
		alice := mustUser(t, db, "alice")
		bob := mustUser(t, db, "bob")
		r1 := mustRoom(t, rs, alice, room.CreateRequest{Preset: room.PresetPublic})
		r2 := mustRoom(t, rs, alice, room.CreateRequest{Preset: room.PresetPublic})
		mustJoin(t, rs, bob, r1, room.Join)

		m1 := mustSend(t, rs, alice, r1, "m.room.message", `{"msgtype":"m.text","body":"The martians are coming"}`)
		m2 := mustSend(t, rs, bob, r1, "m.room.message", `{"msgtype":"m.text","body":"martians martians everywhere, martians!"}`)
		m3 := mustSend(t, rs, alice, r1, "m.room.message", `{"msgtype":"m.text","body":"green men arrive from venus"}`)
		m4 := mustSend(t, rs, alice, r2, "m.room.message", `{"msgtype":"m.text","body":"martians in the kitchen"}`)
		name := mustState(t, rs, alice, r1, "m.room.name", `{"name":"Martian embassy"}`)
		topic := mustState(t, rs, alice, r1, "m.room.topic", `{"m.topic":{"m.text":[{"mimetype":"text/html","body":"<b>jupiter</b>"},{"body":"Jupiter talks"}]}}`)
		mustSend(t, rs, alice, r1, "m.room.message", `{"msgtype":"m.text","body":42}`) // not a string: not indexed
		mustSend(t, rs, alice, r1, "org.example.custom", `{"body":"martians too"}`)    // not a searched type

		both := []store.SearchRoom{{RoomID: r1}, {RoomID: r2}}
		search := func(t *testing.T, q store.SearchQuery) []id.EventID {
			t.Helper()
			if q.Rooms == nil {
				q.Rooms = both
			}
			if q.Types == nil {
				q.Types = allTypes
			}
			if q.Limit == 0 {
				q.Limit = 50
			}
			hits, err := db.SearchEvents(ctx, q)
			if err != nil {
				t.Fatalf("SearchEvents(%+v): %v", q, err)
			}
			return hitIDs(hits)
		}
		sameSet := func(t *testing.T, what string, got []id.EventID, want ...*store.Event) {
			t.Helper()
			var w []id.EventID
			for _, ev := range want {
				w = append(w, ev.EventID())
			}
			g := slices.Clone(got)
			slices.Sort(g)
			slices.Sort(w)
			if !slices.Equal(g, w) {
				t.Errorf("%s: got %v, want %v", what, got, w)
			}
		}

		t.Run("prefix", func(t *testing.T) {
			sameSet(t, "martian", search(t, store.SearchQuery{Match: words("martian")}), m1, m2, m4, name)
			sameSet(t, "mart", search(t, store.SearchQuery{Match: words("mart")}), m1, m2, m4, name)
			sameSet(t, "every (no stemming to defeat the prefix)", search(t, store.SearchQuery{Match: words("every")}), m2)
			sameSet(t, "martians is not a prefix of martian", search(t, store.SearchQuery{Match: words("martians"), Types: []string{"m.room.name"}}))
			sameSet(t, "THE (no stop words, any case)", search(t, store.SearchQuery{Match: words("THE")}), m1, m4)
			sameSet(t, "jupiter (m.topic text/plain)", search(t, store.SearchQuery{Match: words("jupiter")}), topic)
		})
		t.Run("and, phrase, not, or", func(t *testing.T) {
			sameSet(t, "martians coming", search(t, store.SearchQuery{Match: words("martians", "coming")}), m1)
			phrase := [][]store.SearchTerm{{{Words: []string{"green", "men"}}}}
			sameSet(t, `"green men"`, search(t, store.SearchQuery{Match: phrase}), m3)
			wrongOrder := [][]store.SearchTerm{{{Words: []string{"men", "green"}}}}
			sameSet(t, `"men green"`, search(t, store.SearchQuery{Match: wrongOrder}))
			not := [][]store.SearchTerm{{{Words: []string{"martians"}}, {Words: []string{"kitchen"}, Negated: true}}}
			sameSet(t, "martians -kitchen", search(t, store.SearchQuery{Match: not}), m1, m2)
			or := [][]store.SearchTerm{{{Words: []string{"venus"}}}, {{Words: []string{"jupiter"}}}}
			sameSet(t, "venus OR jupiter", search(t, store.SearchQuery{Match: or}), m3, topic)
			onlyNot := [][]store.SearchTerm{{{Words: []string{"martians"}, Negated: true}}}
			sameSet(t, "-martians alone", search(t, store.SearchQuery{Match: onlyNot}))
		})
		t.Run("rank", func(t *testing.T) {
			got := search(t, store.SearchQuery{Match: words("martians"), Types: []string{"m.room.message"}, Rooms: []store.SearchRoom{{RoomID: r1}}})
			if len(got) != 2 || got[0] != m2.EventID() {
				t.Errorf("rank order = %v, want %s (four mentions) first", got, m2.EventID())
			}
		})
		t.Run("recent and pages", func(t *testing.T) {
			all := search(t, store.SearchQuery{Match: words("martians"), Recent: true})
			want := []id.EventID{m4.EventID(), m2.EventID(), m1.EventID()}
			if !slices.Equal(all, want) {
				t.Fatalf("recent = %v, want %v", all, want)
			}
			page := search(t, store.SearchQuery{Match: words("martians"), Recent: true, Before: m4.StreamPos, Limit: 1})
			if !slices.Equal(page, want[1:2]) {
				t.Errorf("recent before %d limit 1 = %v, want %v", m4.StreamPos, page, want[1:2])
			}
			ranked := search(t, store.SearchQuery{Match: words("martians")})
			rest := search(t, store.SearchQuery{Match: words("martians"), Offset: 1})
			if !slices.Equal(rest, ranked[1:]) {
				t.Errorf("rank offset 1 = %v, want %v", rest, ranked[1:])
			}
			n, err := db.CountSearch(ctx, store.SearchQuery{Match: words("martians"), Rooms: both, Types: allTypes, Limit: 1})
			if err != nil || n != 3 {
				t.Errorf("CountSearch = %d, %v; want 3", n, err)
			}
		})
		t.Run("filters", func(t *testing.T) {
			sameSet(t, "senders bob", search(t, store.SearchQuery{Match: words("martians"), Senders: []id.UserID{bob}}), m2)
			sameSet(t, "not senders bob", search(t, store.SearchQuery{Match: words("martians"), NotSenders: []id.UserID{bob}}), m1, m4)
			sameSet(t, "names only", search(t, store.SearchQuery{Match: words("martian"), Types: []string{"m.room.name"}}), name)
			sameSet(t, "room 2", search(t, store.SearchQuery{Match: words("martians"), Rooms: []store.SearchRoom{{RoomID: r2}}}), m4)
			sameSet(t, "room 1 up to m1", search(t, store.SearchQuery{Match: words("martians"), Rooms: []store.SearchRoom{{RoomID: r1, MaxStream: m1.StreamPos}}}), m1)
			sameSet(t, "no rooms", search(t, store.SearchQuery{Match: words("martians"), Rooms: []store.SearchRoom{}}))
		})
		t.Run("redaction removes the text", func(t *testing.T) {
			mustRedact(t, rs, alice, r1, m1.EventID())
			sameSet(t, "coming after redaction", search(t, store.SearchQuery{Match: words("coming")}))
			sameSet(t, "martians after redaction", search(t, store.SearchQuery{Match: words("martians")}), m2, m4)
		})
		t.Run("a NUL escape does not fail the send", func(t *testing.T) {
			// PostgreSQL's jsonb refuses \u0000: the event is stored and
			// left out of the index there; SQLite indexes it.
			ev := mustSend(t, rs, alice, r1, "m.room.message", `{"msgtype":"m.text","body":"zero\u0000byte walrus"}`)
			got := search(t, store.SearchQuery{Match: words("walrus")})
			if db.Dialect() == store.SQLite {
				sameSet(t, "walrus", got, ev)
			} else {
				sameSet(t, "walrus", got)
			}
		})
		t.Run("encrypted rooms are not searched", func(t *testing.T) {
			mustState(t, rs, alice, r2, "m.room.encryption", `{"algorithm":"m.megolm.v1.aes-sha2"}`)
			sameSet(t, "martians in r2 after encryption", search(t, store.SearchQuery{Match: words("martians"), Rooms: []store.SearchRoom{{RoomID: r2}}}))
		})
	})
}

func TestRoomStats(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rs := newRooms(t, db)
		alice := mustUser(t, db, "alice")
		bob := mustUser(t, db, "bob")
		name, topic := "Lounge", "Chat"
		roomID := mustRoom(t, rs, alice, room.CreateRequest{Preset: room.PresetPublic, Visibility: "public", Name: &name, Topic: &topic,
			RoomAliasName: "lounge", CreationContent: []byte(`{"type":"m.space"}`)})
		got, err := db.RoomStats(ctx, roomID)
		if err != nil {
			t.Fatalf("RoomStats: %v", err)
		}
		want := store.RoomStats{RoomID: roomID, Name: "Lounge", Topic: "Chat", CanonicalAlias: "#lounge:" + searchServer,
			JoinRule: "public", HistoryVisibility: "shared", RoomType: "m.space", JoinedMembers: 1, Public: true}
		if got != want {
			t.Fatalf("RoomStats after create = %+v, want %+v", got, want)
		}

		mustJoin(t, rs, bob, roomID, room.Join)
		mustState(t, rs, alice, roomID, "m.room.avatar", `{"url":"mxc://hs.test/abc"}`)
		mustState(t, rs, alice, roomID, "m.room.guest_access", `{"guest_access":"can_join"}`)
		mustState(t, rs, alice, roomID, "m.room.history_visibility", `{"history_visibility":"world_readable"}`)
		nameEv := mustState(t, rs, alice, roomID, "m.room.name", `{"name":5}`) // not a string
		got, _ = db.RoomStats(ctx, roomID)
		if got.JoinedMembers != 2 || got.AvatarURL != "mxc://hs.test/abc" || got.GuestAccess != "can_join" ||
			got.HistoryVisibility != "world_readable" || got.Name != "" {
			t.Errorf("RoomStats after changes = %+v", got)
		}
		mustState(t, rs, alice, roomID, "m.room.name", `{"name":"Again"}`)
		mustJoin(t, rs, bob, roomID, room.Leave)
		got, _ = db.RoomStats(ctx, roomID)
		if got.JoinedMembers != 1 || got.Name != "Again" {
			t.Errorf("RoomStats after bob left = %+v, want 1 member, name Again", got)
		}
		_ = nameEv

		// A redaction of a current state event clears what it said.
		topicEv, err := rs.StateEvent(ctx, roomID, "m.room.topic", "")
		if err != nil {
			t.Fatal(err)
		}
		mustRedact(t, rs, alice, roomID, topicEv.EventID())
		if got, _ = db.RoomStats(ctx, roomID); got.Topic != "" {
			t.Errorf("topic after redaction = %q, want empty", got.Topic)
		}

		pub, err := db.PublishedRooms(ctx)
		if err != nil || len(pub) != 1 || pub[0].RoomID != roomID {
			t.Errorf("PublishedRooms = %+v, %v; want %s", pub, err, roomID)
		}
		if err := db.SetRoomVisibility(ctx, roomID, "private"); err != nil {
			t.Fatal(err)
		}
		if pub, _ = db.PublishedRooms(ctx); len(pub) != 0 {
			t.Errorf("PublishedRooms after private = %+v, want none", pub)
		}
		if _, err := db.RoomStats(ctx, "!nope:hs.test"); err != store.ErrNotFound {
			t.Errorf("RoomStats(unknown) = %v, want ErrNotFound", err)
		}
	})
}

func TestDirectoryUsers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rs := newRooms(t, db)
		alice := mustUser(t, db, "alice")
		bob := mustUser(t, db, "bob")     // shares a private room with alice
		carol := mustUser(t, db, "carol") // in a public room
		dave := mustUser(t, db, "dave")   // in a private room without alice
		erin := mustUser(t, db, "erin")   // shares a room, deactivated
		private := mustRoom(t, rs, alice, room.CreateRequest{Preset: room.PresetPrivate, Invite: []id.UserID{bob, erin}})
		mustJoin(t, rs, bob, private, room.Join)
		mustJoin(t, rs, erin, private, room.Join)
		public := mustRoom(t, rs, carol, room.CreateRequest{Preset: room.PresetPublic})
		mustRoom(t, rs, dave, room.CreateRequest{Preset: room.PresetPrivate})
		if err := db.Deactivate(ctx, "erin"); err != nil {
			t.Fatal(err)
		}
		if err := db.SetProfileField(ctx, "bob", store.ProfileDisplayName, []byte(`"Bobby Tables"`), 1<<16); err != nil {
			t.Fatal(err)
		}
		_ = public

		users, err := db.DirectoryUsers(ctx, alice, searchServer, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := map[id.UserID]store.DirectoryUser{}
		for _, u := range users {
			got[u.UserID] = u
		}
		if len(got) != 3 || !got[alice].Shared || !got[bob].Shared || got[carol].Shared || got[bob].DisplayName != "Bobby Tables" {
			t.Errorf("DirectoryUsers(alice) = %+v; want alice and bob shared (bob named Bobby Tables), carol not shared, no dave or erin", users)
		}
		users, err = db.DirectoryUsers(ctx, alice, searchServer, []string{"tab"})
		if err != nil || len(users) != 1 || users[0].UserID != bob {
			t.Errorf(`DirectoryUsers(alice, "tab") = %+v, %v; want bob`, users, err)
		}
		users, err = db.DirectoryUsers(ctx, alice, searchServer, []string{"%"})
		if err != nil || len(users) != 0 {
			t.Errorf(`DirectoryUsers(alice, "%%") = %+v, %v; want none (LIKE wildcards are escaped)`, users, err)
		}
	})
}

func TestProfileFields(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustUser(t, db, "alice")
		if err := db.SetProfileField(ctx, "alice", "m.tz", []byte(`"Europe/Amsterdam"`), 100); err != nil {
			t.Fatal(err)
		}
		if err := db.SetProfileField(ctx, "alice", "org.example.x", []byte(`{"a":1}`), 100); err != nil {
			t.Fatal(err)
		}
		if err := db.SetProfileField(ctx, "alice", store.ProfileAvatarURL, []byte(`"mxc://a/b"`), 100); err != nil {
			t.Fatal(err)
		}
		f, err := db.ProfileFields(ctx, "alice")
		if err != nil || len(f) != 2 || string(f["m.tz"]) != `"Europe/Amsterdam"` || string(f["org.example.x"]) != `{"a":1}` {
			t.Errorf("ProfileFields = %q, %v", f, err)
		}
		if p, _ := db.Profile(ctx, "alice"); p.AvatarURL != "mxc://a/b" || p.DisplayName != "alice" {
			t.Errorf("Profile = %+v", p)
		}
		// alice (5+11) + mxc (10+9) + m.tz (4+18) + x (13+7) = 77 bytes.
		if err := db.SetProfileField(ctx, "alice", "org.example.y", []byte(`"0123456789abcdef"`), 100); err != store.ErrTooLarge {
			t.Errorf("SetProfileField over the limit = %v, want ErrTooLarge", err)
		}
		if err := db.SetProfileField(ctx, "alice", "org.example.x", []byte(`"short"`), 100); err != nil {
			t.Errorf("replacing a field within the limit: %v", err)
		}
		if err := db.SetProfileField(ctx, "alice", "org.example.x", nil, 100); err != nil {
			t.Fatal(err)
		}
		if err := db.SetProfileField(ctx, "alice", store.ProfileDisplayName, []byte(`""`), 100); err != nil {
			t.Fatal(err)
		}
		f, _ = db.ProfileFields(ctx, "alice")
		if p, _ := db.Profile(ctx, "alice"); p.DisplayName != "" || len(f) != 1 {
			t.Errorf("after removals: profile %+v, fields %q", p, f)
		}
		if err := db.SetProfileField(ctx, "nobody", "m.tz", []byte(`"UTC"`), 100); err != store.ErrNotFound {
			t.Errorf("SetProfileField(unknown user) = %v, want ErrNotFound", err)
		}
		if err := db.Deactivate(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if f, _ = db.ProfileFields(ctx, "alice"); len(f) != 0 {
			t.Errorf("fields after deactivation = %q, want none", f)
		}
	})
}

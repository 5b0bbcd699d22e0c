package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// syncWorld builds rooms through the room service, which writes events,
// snapshots and memberships as the server does.
type syncWorld struct {
	t     *testing.T
	db    *store.DB
	rooms *room.Service
}

func newSyncWorld(t *testing.T, db *store.DB) *syncWorld {
	t.Helper()
	k, err := keys.Generate("")
	if err != nil {
		t.Fatal(err)
	}
	n := notify.New(notify.Position{})
	return &syncWorld{t: t, db: db, rooms: room.New(room.Config{ServerName: "hs.test", Key: k}, db, n, slog.New(slog.DiscardHandler))}
}

func (w *syncWorld) create(creator id.UserID, req room.CreateRequest) id.RoomID {
	w.t.Helper()
	r, err := w.rooms.Create(context.Background(), creator, req)
	if err != nil {
		w.t.Fatalf("create room: %v", err)
	}
	return r
}

func (w *syncWorld) member(r id.RoomID, sender, target id.UserID, membership string) *store.Event {
	w.t.Helper()
	ev, err := w.rooms.SetMembership(context.Background(), room.MemberChange{RoomID: r, Sender: sender, Target: target, Membership: membership})
	if err != nil {
		w.t.Fatalf("%s %s %s: %v", target, membership, r, err)
	}
	return ev
}

func (w *syncWorld) send(r id.RoomID, sender id.UserID, typ, content string) *store.Event {
	w.t.Helper()
	ev, err := w.rooms.Send(context.Background(), sender, r, room.Draft{Type: typ, Content: []byte(content)})
	if err != nil {
		w.t.Fatalf("send %s: %v", typ, err)
	}
	return ev
}

func (w *syncWorld) state(r id.RoomID, sender id.UserID, typ, key, content string) *store.Event {
	w.t.Helper()
	ev, err := w.rooms.Send(context.Background(), sender, r, room.Draft{Type: typ, StateKey: &key, Content: []byte(content)})
	if err != nil {
		w.t.Fatalf("send %s: %v", typ, err)
	}
	return ev
}

func eventIDs(evs []*store.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, string(e.EventID()))
	}
	return strings.Join(s, ",")
}

func TestSyncRecentAndLatestEvents(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newSyncWorld(t, db)
		const alice = id.UserID("@alice:hs.test")
		r1 := w.create(alice, room.CreateRequest{})
		r2 := w.create(alice, room.CreateRequest{})
		var m1, m2 []*store.Event
		for i := range 5 {
			m1 = append(m1, w.send(r1, alice, "m.room.message", fmt.Sprintf(`{"body":"a%d"}`, i)))
			m2 = append(m2, w.send(r2, alice, "m.room.message", fmt.Sprintf(`{"body":"b%d"}`, i)))
		}
		end := m2[4].StreamPos
		got, err := db.RecentEvents(ctx, []store.StreamRange{
			{RoomID: r1, From: m1[0].StreamPos, To: end},
			{RoomID: r2, From: 0, To: m2[2].StreamPos},
			{RoomID: "!unknown:hs.test", From: 0, To: end},
		}, 3)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := eventIDs(got[r1]), eventIDs(m1[2:5]); g != w {
			t.Errorf("RecentEvents r1 = %s, want the newest three in stream order %s", g, w)
		}
		if g, w := eventIDs(got[r2]), eventIDs(m2[0:3]); g != w {
			t.Errorf("RecentEvents r2 up to m2[2] = %s, want %s", g, w)
		}
		if _, ok := got["!unknown:hs.test"]; ok || len(got) != 2 {
			t.Errorf("RecentEvents has %d rooms, want r1 and r2", len(got))
		}
		// Each agrees with the one-room query.
		for _, r := range []id.RoomID{r1, r2} {
			one, err := db.RoomEventsByStream(ctx, r, 0, end, 4)
			if err != nil {
				t.Fatal(err)
			}
			many, err := db.RecentEvents(ctx, []store.StreamRange{{RoomID: r, To: end}}, 4)
			if err != nil {
				t.Fatal(err)
			}
			if eventIDs(one) != eventIDs(many[r]) {
				t.Errorf("RecentEvents(%s) = %s, RoomEventsByStream = %s", r, eventIDs(many[r]), eventIDs(one))
			}
		}

		latest, err := db.LatestEventIDs(ctx, []id.RoomID{r1, r2, "!unknown:hs.test"}, m1[3].StreamPos)
		if err != nil {
			t.Fatal(err)
		}
		if latest[r1] != m1[3].EventID() || latest[r2] != m2[2].EventID() || len(latest) != 2 {
			t.Errorf("LatestEventIDs at m1[3] = %v, want m1[3] and m2[2]", latest)
		}
		if l, _ := db.LatestEventIDs(ctx, []id.RoomID{r2}, 0); len(l) != 0 {
			t.Errorf("LatestEventIDs at 0 = %v, want none", l)
		}
	})
}

// StatesAfter agrees with StateAfter for every event, on a cold cache too,
// across snapshot chains longer than their bound.
func TestSyncStatesAfter(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			o := e.Options(t)
			db := storetest.Open(t, o)
			w := newSyncWorld(t, db)
			const alice = id.UserID("@alice:hs.test")
			var all []id.EventID
			rooms := []id.RoomID{w.create(alice, room.CreateRequest{}), w.create(alice, room.CreateRequest{Name: ptr("two")})}
			for i := range 40 {
				for _, r := range rooms {
					ev := w.state(r, alice, "m.room.topic", "", fmt.Sprintf(`{"topic":"t%d"}`, i))
					all = append(all, ev.EventID())
					if i%3 == 0 {
						all = append(all, w.state(r, alice, "org.example.x", fmt.Sprint(i), `{}`).EventID())
						all = append(all, w.send(r, alice, "m.room.message", `{"body":"x"}`).EventID())
					}
				}
			}
			all = append(all, "$unknown")
			// A second handle on the same database has a cold cache.
			cold := storetest.Open(t, o)
			for _, d := range []*store.DB{cold, db} {
				got, err := d.StatesAfter(ctx, all)
				if err != nil {
					t.Fatalf("StatesAfter: %v", err)
				}
				if _, ok := got["$unknown"]; ok || len(got) != len(all)-1 {
					t.Errorf("StatesAfter returned %d states, want %d", len(got), len(all)-1)
				}
				for _, eid := range all[:len(all)-1] {
					want, err := db.StateAfter(ctx, eid)
					if err != nil {
						t.Fatal(err)
					}
					if !maps.Equal(got[eid], want) {
						t.Fatalf("StatesAfter(%s) = %v, want %v", eid, got[eid], want)
					}
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestSyncRoomQueries(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newSyncWorld(t, db)
		const alice, bob, carol, dan = id.UserID("@alice:hs.test"), id.UserID("@bob:hs.test"), id.UserID("@carol:hs.test"), id.UserID("@dan:hs.test")
		pub := w.create(alice, room.CreateRequest{Preset: room.PresetPublic})
		quiet := w.create(alice, room.CreateRequest{Preset: room.PresetPublic})
		w.member(pub, bob, bob, room.Join)
		w.member(pub, alice, carol, room.Invite)
		w.member(quiet, dan, dan, room.Join)
		w.member(quiet, dan, dan, room.Leave)
		pos, err := db.StreamPos(ctx)
		if err != nil {
			t.Fatal(err)
		}

		counts, err := db.RoomMemberCounts(ctx, []id.RoomID{pub, quiet})
		if err != nil {
			t.Fatal(err)
		}
		if counts[pub] != (store.MemberCounts{Joined: 2, Invited: 1}) || counts[quiet] != (store.MemberCounts{Joined: 1}) {
			t.Errorf("RoomMemberCounts = %+v", counts)
		}
		heroes, err := db.RoomHeroes(ctx, []id.RoomID{pub, quiet}, alice, 5)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(heroes[pub], []id.UserID{bob, carol}) {
			t.Errorf("heroes of pub = %v, want bob, carol (stream order, alice left out)", heroes[pub])
		}
		if !slices.Equal(heroes[quiet], []id.UserID{dan}) {
			t.Errorf("heroes of a room with no other members = %v, want dan, who left", heroes[quiet])
		}

		msg := w.send(pub, bob, "m.room.message", `{"body":"hi"}`)
		for _, tc := range []struct {
			name     string
			from, to int64
			want     []id.RoomID
		}{
			{"range with an event", pos, msg.StreamPos, []id.RoomID{pub}},
			{"empty range", msg.StreamPos, msg.StreamPos + 10, nil},
			{"long range (per-room probe)", 0, msg.StreamPos + 10000, []id.RoomID{pub, quiet}},
		} {
			got, err := db.JoinedRoomsWithEvents(ctx, alice, tc.from, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s: JoinedRoomsWithEvents = %v, want %v", tc.name, got, want)
			}
		}
		if got, _ := db.JoinedRoomsWithEvents(ctx, carol, 0, msg.StreamPos); len(got) != 0 {
			t.Errorf("JoinedRoomsWithEvents of an invited user = %v, want none", got)
		}
	})
}

func TestSyncUnreadCounts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newSyncWorld(t, db)
		const alice, bob = id.UserID("@alice:hs.test"), id.UserID("@bob:hs.test")
		r := w.create(alice, room.CreateRequest{Preset: room.PresetPublic})
		join := w.member(r, bob, bob, room.Join)
		msg := func(body string) *store.Event {
			return w.send(r, bob, "m.room.message", `{"msgtype":"m.text","body":"`+body+`"}`)
		}
		m1 := msg("one")
		msg("Hello ALICE")
		root := w.send(r, alice, "m.room.message", `{"body":"root"}`)
		inThread := func(body string) *store.Event {
			return w.send(r, bob, "m.room.message", `{"body":"`+body+`","m.relates_to":{"rel_type":"m.thread","event_id":"`+string(root.EventID())+`"}}`)
		}
		t1 := inThread("t1")
		inThread("t2 alice")
		two := msg("two")
		w.send(r, bob, "m.room.message", `{"body":"edit","m.relates_to":{"rel_type":"m.replace","event_id":"`+string(m1.EventID())+`"}}`)
		w.send(r, bob, "m.reaction", `{"m.relates_to":{"rel_type":"m.annotation","event_id":"`+string(m1.EventID())+`","key":"x"}}`)
		end, _ := db.StreamPos(ctx)
		types := []string{"m.room.message"}
		rootID := string(root.EventID())

		// Own latest events per thread.
		own, err := db.OwnLatest(ctx, bob, []store.StreamRange{{RoomID: r, From: join.StreamPos, To: end}, {RoomID: "!unknown:hs.test", To: end}})
		if err != nil {
			t.Fatal(err)
		}
		if own[r][""] != end || own[r][rootID] != t1.StreamPos+1 || len(own) != 1 {
			t.Errorf("OwnLatest(bob) = %v, want main at the reaction (%d), thread at t2", own, end)
		}
		if own, _ := db.OwnLatest(ctx, alice, []store.StreamRange{{RoomID: r, From: root.StreamPos, To: end}}); len(own) != 0 {
			t.Errorf("OwnLatest after alice's last event = %v, want none", own)
		}

		// Counting from the start, the main timeline read up to the root.
		q := store.UnreadQuery{RoomID: r, From: join.StreamPos, To: end, Read: map[string]int64{"": root.StreamPos}, Needles: []string{"alice"}}
		got, err := db.UnreadCounts(ctx, alice, []store.UnreadQuery{q}, types)
		if err != nil {
			t.Fatal(err)
		}
		u := got[r]
		// Main: "two" (one and hello are read); thread: t1 and t2. The
		// edit and the reaction do not count.
		if u.Counts[""] != 1 || u.Counts[rootID] != 2 || len(u.Counts) != 2 {
			t.Errorf("counts = %v, want main 1, thread 2", u.Counts)
		}
		if len(u.Candidates) != 1 || u.Candidates[0].Thread != rootID {
			t.Errorf("candidates = %+v, want the thread's t2 (hello ALICE is read)", u.Candidates)
		}
		// A range that starts later, with the thread read up to t1.
		q = store.UnreadQuery{RoomID: r, From: root.StreamPos, To: two.StreamPos, Read: map[string]int64{rootID: t1.StreamPos}}
		got, _ = db.UnreadCounts(ctx, alice, []store.UnreadQuery{q}, types)
		if u := got[r]; u.Counts[""] != 1 || u.Counts[rootID] != 1 || u.Candidates != nil {
			t.Errorf("later range: %+v, want main 1 (two), thread 1 (t2), no candidates without needles", u)
		}
		// Everything read.
		q = store.UnreadQuery{RoomID: r, From: end, To: end}
		if got, _ := db.UnreadCounts(ctx, alice, []store.UnreadQuery{q}, types); len(got[r].Counts) != 0 {
			t.Errorf("empty range counts %v", got[r].Counts)
		}

		// Receipts, per thread.
		if _, err := db.PutReceipt(ctx, store.Receipt{RoomID: r, UserID: alice, Type: "m.read", ThreadID: rootID, EventID: t1.EventID()}, t1.StreamPos); err != nil {
			t.Fatal(err)
		}
		if _, err := db.PutReceipt(ctx, store.Receipt{RoomID: r, UserID: alice, Type: "m.read.private", EventID: m1.EventID()}, m1.StreamPos); err != nil {
			t.Fatal(err)
		}
		if _, err := db.PutReceipt(ctx, store.Receipt{RoomID: r, UserID: alice, Type: "m.read", EventID: root.EventID()}, root.StreamPos); err != nil {
			t.Fatal(err)
		}
		rs, err := db.ReadReceipts(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		if rs[r][""] != root.StreamPos || rs[r][rootID] != t1.StreamPos || len(rs) != 1 {
			t.Errorf("ReadReceipts = %v, want unthreaded at the root (the furthest of m.read and m.read.private), thread at t1", rs)
		}
	})
}

// RecentEventsFor and CachedEventsFor read what RecentEventsWithState and
// CachedEvents read, with transaction IDs only for the viewer's events.
func TestSyncEventsForViewer(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newSyncWorld(t, db)
		const alice, bob = id.UserID("@alice:hs.test"), id.UserID("@bob:hs.test")
		r := w.create(alice, room.CreateRequest{Preset: room.PresetPublic})
		w.member(r, bob, bob, room.Join)
		send := func(u id.UserID, dev id.DeviceID, txn string) *store.Event {
			ev, err := w.rooms.Send(ctx, u, r, room.Draft{Type: "m.room.message", Content: []byte(`{"body":"x"}`),
				Txn: &store.Txn{UserID: u, DeviceID: dev, TxnID: txn}})
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}
		mine, theirs := send(alice, "A", "t1"), send(bob, "B", "t2")
		ranges := []store.StreamRange{{RoomID: r, To: theirs.StreamPos}, {RoomID: "!unknown:hs.test", To: theirs.StreamPos}}
		want, wantRefs, err := db.RecentEventsWithState(ctx, ranges, 10)
		if err != nil {
			t.Fatal(err)
		}
		got, refs, err := db.RecentEventsFor(ctx, alice, ranges, 10)
		if err != nil {
			t.Fatal(err)
		}
		if eventIDs(got[r]) != eventIDs(want[r]) || len(got) != 1 || !maps.Equal(refs, wantRefs) {
			t.Fatalf("RecentEventsFor = %s (%d rooms), want %s", eventIDs(got[r]), len(got), eventIDs(want[r]))
		}
		ids := make([]id.EventID, 0, len(got[r]))
		for _, ev := range got[r] {
			ids = append(ids, ev.EventID())
		}
		byID, err := db.CachedEventsFor(ctx, alice, append(ids, "$unknown"))
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(byID, func(a, b *store.Event) int { return int(a.StreamPos - b.StreamPos) }) // in no order
		if eventIDs(byID) != eventIDs(got[r]) {
			t.Errorf("CachedEventsFor = %s, want %s", eventIDs(byID), eventIDs(got[r]))
		}
		for _, list := range [][]*store.Event{got[r], byID} {
			for i, ev := range list {
				w := want[r][i]
				if !slices.Equal(ev.JSON(), w.JSON()) || string(ev.Added) != string(w.Added) || ev.StreamPos != w.StreamPos || ev.Replaces != w.Replaces {
					t.Errorf("event %s differs from RecentEventsWithState's", ev.EventID())
				}
				txn := ""
				if ev.EventID() == mine.EventID() {
					txn = "A/t1"
				}
				if g := string(ev.TxnDevice) + "/" + ev.TxnID; ev.TxnID != "" && g != txn || ev.TxnID == "" && txn != "" {
					t.Errorf("event %s has transaction %q, want %q (alice's own only)", ev.EventID(), g, txn)
				}
			}
		}
	})
}

// RecentEventsFor's timeline cache, CachedEventsAt's event cache and the
// transaction ID cache: a second read of a room with nothing new is the
// same, per viewer; a new event, or a redaction (which rewrites an event
// in place), shows at once.
func TestSyncTimelineCache(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newSyncWorld(t, db)
		const alice, bob = id.UserID("@alice:hs.test"), id.UserID("@bob:hs.test")
		r := w.create(alice, room.CreateRequest{Preset: room.PresetPublic})
		w.member(r, bob, bob, room.Join)
		send := func(u id.UserID, d room.Draft) *store.Event {
			ev, err := w.rooms.Send(ctx, u, r, d)
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}
		msg := func(u id.UserID, txn string) *store.Event {
			return send(u, room.Draft{Type: "m.room.message", Content: []byte(`{"body":"x"}`),
				Txn: &store.Txn{UserID: u, DeviceID: "D", TxnID: txn}})
		}
		mine := msg(alice, "t1")
		theirs := msg(bob, "t2")
		check := func(step string, viewer id.UserID, to int64) []*store.Event {
			t.Helper()
			ranges := []store.StreamRange{{RoomID: r, To: to}}
			want, _, err := db.RecentEventsWithState(ctx, ranges, 3)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // the first read fills the cache, the second uses it
				got, _, err := db.RecentEventsFor(ctx, viewer, ranges, 3)
				if err != nil {
					t.Fatal(err)
				}
				if eventIDs(got[r]) != eventIDs(want[r]) {
					t.Fatalf("%s: RecentEventsFor(%s) = %s, want %s", step, viewer, eventIDs(got[r]), eventIDs(want[r]))
				}
				for i, ev := range got[r] {
					if !slices.Equal(ev.JSON(), want[r][i].JSON()) {
						t.Errorf("%s: event %s is %s, want %s", step, ev.EventID(), ev.JSON(), want[r][i].JSON())
					}
					own := ev.Sender() == viewer && ev.Type() == "m.room.message"
					if (ev.TxnID != "") != own || own && ev.TxnDevice != "D" {
						t.Errorf("%s: event %s of %s has transaction %q for viewer %s", step, ev.EventID(), ev.Sender(), ev.TxnID, viewer)
					}
				}
				ids := make([]id.EventID, 0, len(got[r]))
				for _, ev := range got[r] {
					ids = append(ids, ev.EventID())
				}
				tops, err := db.RoomTopsOf(ctx, []id.RoomID{r})
				if err != nil {
					t.Fatal(err)
				}
				byID, err := db.CachedEventsAt(ctx, viewer, tops, ids)
				if err != nil {
					t.Fatal(err)
				}
				slices.SortFunc(byID, func(a, b *store.Event) int { return int(a.StreamPos - b.StreamPos) })
				if eventIDs(byID) != eventIDs(want[r]) {
					t.Fatalf("%s: CachedEventsAt = %s, want %s", step, eventIDs(byID), eventIDs(want[r]))
				}
				for i, ev := range byID {
					if !slices.Equal(ev.JSON(), want[r][i].JSON()) || ev.RedactedBy != want[r][i].RedactedBy {
						t.Errorf("%s: CachedEventsAt: event %s is %s, want %s", step, ev.EventID(), ev.JSON(), want[r][i].JSON())
					}
					if g := got[r][i]; ev.TxnID != g.TxnID || ev.TxnDevice != g.TxnDevice {
						t.Errorf("%s: CachedEventsAt: event %s has transaction %q, RecentEventsFor %q (viewer %s)", step, ev.EventID(), ev.TxnID, g.TxnID, viewer)
					}
				}
			}
			return want[r]
		}
		check("first", alice, theirs.StreamPos)
		check("other viewer", bob, theirs.StreamPos)
		third := msg(alice, "t3")
		if got := check("new event", alice, third.StreamPos); got[len(got)-1].EventID() != third.EventID() {
			t.Errorf("newest event %s, want %s", got[len(got)-1].EventID(), third.EventID())
		}
		red := send(alice, room.Draft{Type: "m.room.redaction", Content: []byte(`{}`), Redacts: mine.EventID()})
		got := check("redaction", alice, red.StreamPos)
		for _, ev := range got {
			if ev.EventID() == mine.EventID() && ev.RedactedBy == "" {
				t.Errorf("event %s not redacted after %s", mine.EventID(), red.EventID())
			}
		}
	})
}

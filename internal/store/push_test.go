package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// Notification rows: counts per thread after read positions, the
// newest-first list with read flags from receipts, and actions stored as
// a shape number or, when unusual, as JSON.
func TestPushActions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newSyncWorld(t, db)
		const alice, bob = id.UserID("@alice:hs.test"), id.UserID("@bob:hs.test")
		r1 := w.create(bob, room.CreateRequest{})
		r2 := w.create(bob, room.CreateRequest{})
		var evs []*store.Event // evs[i] is the event of row i+1
		for i := range 5 {
			evs = append(evs, w.send(r1, bob, "m.room.message", fmt.Sprintf(`{"body":"%d"}`, i)))
		}
		evs = append(evs, w.send(r2, bob, "m.room.message", `{"body":"5"}`))
		var rows []store.PushAction
		add := func(n int, thread string, highlight bool, actions string) {
			ev := evs[n-1]
			rows = append(rows, store.PushAction{UserID: alice, RoomID: ev.RoomID(), StreamPos: ev.StreamPos,
				Thread: thread, Notify: true, Highlight: highlight, Actions: []byte(actions), TS: int64(n)})
		}
		const custom = `["notify",{"set_tweak":"sound","value":"bell"}]`
		add(1, "", false, `["notify"]`)
		add(2, "", true, `["notify",{"set_tweak":"highlight"}]`)
		add(3, "$root", false, custom)
		add(4, "$root", true, `["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]`)
		add(5, "", false, `["notify"]`)
		add(6, "", false, `["notify"]`)
		// Another user's row of the same event, in the same statement.
		rows = append(rows, store.PushAction{UserID: bob, RoomID: r1, StreamPos: evs[0].StreamPos, Notify: true, Actions: []byte(`["notify"]`), TS: 1})
		if err := db.AddPushActions(ctx, rows); err != nil {
			t.Fatalf("AddPushActions: %v", err)
		}
		if err := db.AddPushActions(ctx, rows[:1]); err != nil {
			t.Fatalf("AddPushActions again: %v", err)
		}
		pos := func(n int) int64 { return evs[n-1].StreamPos }
		got, err := db.PushCounts(ctx, alice, []store.UnreadQuery{
			{RoomID: r1, From: 0, To: pos(6) + 10, Read: map[string]int64{"$root": pos(3)}},
			{RoomID: r2, From: pos(6), To: pos(6) + 10},
		})
		if err != nil {
			t.Fatalf("PushCounts: %v", err)
		}
		if m, th := got[r1][""], got[r1]["$root"]; m != (store.PushCount{Notifications: 3, Highlights: 1}) || th != (store.PushCount{Notifications: 1, Highlights: 1}) {
			t.Errorf("PushCounts r1 = %+v, want main 3/1 and thread 1/1", got[r1])
		}
		if _, ok := got[r2]; ok {
			t.Errorf("PushCounts r2 = %+v, want none after From", got[r2])
		}
		if _, err := db.PutReceipt(ctx, store.Receipt{RoomID: r1, UserID: alice, Type: "m.read", ThreadID: "main", EventID: evs[1].EventID(), TS: 1}, pos(2)); err != nil {
			t.Fatal(err)
		}
		ns, err := db.Notifications(ctx, alice, 0, 10, false)
		if err != nil {
			t.Fatalf("Notifications: %v", err)
		}
		var b strings.Builder
		for _, n := range ns {
			i := int(n.TS)
			if n.StreamPos != pos(i) || n.EventID != evs[i-1].EventID() || n.RoomID != evs[i-1].RoomID() {
				t.Errorf("Notifications row %d = %+v, want event %s at %d", i, n, evs[i-1].EventID(), pos(i))
			}
			want := rows[i-1]
			if n.Notify != want.Notify || n.Highlight != want.Highlight || string(n.Actions) != string(want.Actions) || n.Thread != want.Thread {
				t.Errorf("Notifications row %d = %+v %s, want %+v %s", i, n, n.Actions, want, want.Actions)
			}
			fmt.Fprintf(&b, "%d:%v ", i, n.Read)
		}
		if s := b.String(); s != "6:false 5:false 4:false 3:false 2:true 1:true " {
			t.Errorf("Notifications = %s", s)
		}
		hs, err := db.Notifications(ctx, alice, pos(4), 10, true)
		if err != nil || len(hs) != 1 || hs[0].StreamPos != pos(2) {
			t.Errorf("Notifications(before 4, highlights) = %+v, %v; want the row at %d", hs, err, pos(2))
		}
		if n, err := db.UnreadNotificationTotal(ctx, alice, pos(6)); err != nil || n != 0 {
			// alice is in neither room: no badge.
			t.Errorf("UnreadNotificationTotal = %d, %v; want 0 (not joined)", n, err)
		}
		w.member(r1, bob, alice, "invite")
		w.member(r1, alice, alice, "join")
		if n, err := db.UnreadNotificationTotal(ctx, alice, pos(6)); err != nil || n != 3 {
			t.Errorf("UnreadNotificationTotal after joining r1 = %d, %v; want 3 (rows 3, 4, 5)", n, err)
		}
	})
}

// Notification rows read the same whether they are staged or moved
// (SQLite's event_push_staging, see Tx.rotatePush), and a full staging
// table moves in the transaction that fills it.
func TestPushStaging(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newSyncWorld(t, db)
		const alice, bob = id.UserID("@alice:hs.test"), id.UserID("@bob:hs.test")
		r := w.create(bob, room.CreateRequest{})
		var evs []*store.Event
		for i := range 6 {
			evs = append(evs, w.send(r, bob, "m.room.message", fmt.Sprintf(`{"body":"%d"}`, i)))
		}
		row := func(ev *store.Event, user id.UserID) store.PushAction {
			return store.PushAction{UserID: user, RoomID: r, StreamPos: ev.StreamPos, Notify: true, Actions: []byte(`["notify"]`), TS: ev.StreamPos}
		}
		for i, ev := range evs {
			if err := db.AddPushActions(ctx, []store.PushAction{row(ev, alice)}); err != nil {
				t.Fatal(err)
			}
			if i == 2 {
				if err := db.RotatePush(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		check := func(when string, total int) {
			t.Helper()
			got, err := db.PushCounts(ctx, alice, []store.UnreadQuery{{RoomID: r, From: evs[0].StreamPos, To: evs[5].StreamPos}})
			if err != nil || got[r][""] != (store.PushCount{Notifications: 5}) {
				t.Errorf("%s: PushCounts = %+v, %v; want 5 (rows 2-6)", when, got, err)
			}
			ns, err := db.Notifications(ctx, alice, evs[5].StreamPos, 4, false)
			if err != nil || len(ns) != 4 {
				t.Fatalf("%s: Notifications = %+v, %v; want 4", when, ns, err)
			}
			for i, n := range ns {
				if want := evs[4-i]; n.StreamPos != want.StreamPos || n.EventID != want.EventID() {
					t.Errorf("%s: Notifications[%d] = %d %s, want %d %s", when, i, n.StreamPos, n.EventID, want.StreamPos, want.EventID())
				}
			}
			all, err := db.Notifications(ctx, alice, 0, 100, false)
			if err != nil || len(all) != total {
				t.Errorf("%s: %d notifications, %v; want %d", when, len(all), err, total)
			}
		}
		check("half moved", 6)

		// One event notifying more users than the staging table holds:
		// its transaction moves them all.
		many := make([]store.PushAction, 17000)
		for i := range many {
			many[i] = row(evs[5], id.UserID(fmt.Sprintf("@u%d:hs.test", i)))
		}
		many[0] = row(evs[5], alice) // already there: ignored
		if err := db.AddPushActions(ctx, many); err != nil {
			t.Fatal(err)
		}
		if db.Dialect() == store.SQLite && db.PushStaged() != 0 {
			t.Errorf("%d rows still counted as staged after a full batch, want 0", db.PushStaged())
		}
		check("all moved", 6)
		if got, err := db.PushCounts(ctx, "@u16999:hs.test", []store.UnreadQuery{{RoomID: r, From: 0, To: evs[5].StreamPos}}); err != nil || got[r][""].Notifications != 1 {
			t.Errorf("PushCounts of a moved user = %+v, %v; want 1", got, err)
		}
	})
}

// Pruning deletes only rows that are old, read and not highlights, and
// walks the table a batch at a time to its end.
func TestPrunePushActions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newSyncWorld(t, db)
		const alice, bob, carol = id.UserID("@alice:hs.test"), id.UserID("@bob:hs.test"), id.UserID("@carol:hs.test")
		r := w.create(bob, room.CreateRequest{})
		var evs []*store.Event
		for i := range 6 {
			evs = append(evs, w.send(r, bob, "m.room.message", fmt.Sprintf(`{"body":"%d"}`, i)))
		}
		const old, recent, cut = 1000, 5000, 2000
		var rows []store.PushAction
		add := func(user id.UserID, n int, ts int64, highlight bool) {
			rows = append(rows, store.PushAction{UserID: user, RoomID: r, StreamPos: evs[n].StreamPos, Notify: true, Highlight: highlight,
				Actions: []byte(`["notify"]`), TS: ts})
		}
		// alice has read up to event 3, carol nothing.
		add(alice, 0, old, false)    // old, read: pruned
		add(alice, 1, old, true)     // old, read, highlight: kept
		add(alice, 2, recent, false) // read, recent: kept
		add(alice, 3, old, false)    // old, read (the receipt's own event): pruned
		add(alice, 4, old, false)    // old, unread: kept
		add(carol, 0, old, false)    // old, unread: kept
		for _, row := range rows {
			if err := db.AddPushActions(ctx, []store.PushAction{row}); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.RotatePush(ctx); err != nil { // only moved rows are pruned
			t.Fatal(err)
		}
		if _, err := db.PutReceipt(ctx, store.Receipt{RoomID: r, UserID: alice, Type: "m.read", EventID: evs[3].EventID(), TS: 1}, evs[3].StreamPos); err != nil {
			t.Fatal(err)
		}
		var key store.PushKey
		var total int64
		for batches := 0; ; batches++ {
			if batches > 10 {
				t.Fatal("the walk does not end")
			}
			next, n, end, err := db.PrunePushActions(ctx, key, cut, 2)
			if err != nil {
				t.Fatal(err)
			}
			total += n
			if end {
				break
			}
			key = next
		}
		if total != 2 {
			t.Errorf("pruned %d rows, want 2", total)
		}
		ns, err := db.Notifications(ctx, alice, 0, 10, false)
		if err != nil {
			t.Fatal(err)
		}
		var left []int64
		for _, n := range ns {
			left = append(left, n.StreamPos)
		}
		want := []int64{evs[4].StreamPos, evs[2].StreamPos, evs[1].StreamPos}
		if fmt.Sprint(left) != fmt.Sprint(want) {
			t.Errorf("alice's rows after pruning at %v, want %v", left, want)
		}
		if ns, err := db.Notifications(ctx, carol, 0, 10, false); err != nil || len(ns) != 1 {
			t.Errorf("carol's unread row: %d, %v; want kept", len(ns), err)
		}
	})
}

// BenchmarkAddPushActions writes the notification rows of one message per
// transaction, as the room service does in each send, in a room of 16
// local members (15 rows) and of 1,000, after 200 messages so that the
// tables are not empty; pages/op is what each message wrote to SQLite's
// WAL:
//
//	go test ./internal/store -run '^$' -bench AddPushActions -benchtime 2000x
func BenchmarkAddPushActions(b *testing.B) {
	for _, e := range storetest.Engines(b) {
		for _, members := range []int{16, 1000} {
			b.Run(fmt.Sprintf("%s/members=%d", e.Name, members), func(b *testing.B) {
				db := storetest.Open(b, e.Options(b))
				ctx := context.Background()
				rows := make([]store.PushAction, members-1)
				for i := range rows {
					rows[i] = store.PushAction{UserID: id.UserID(fmt.Sprintf("@user%d:bench.test", i)), RoomID: "!room:bench.test",
						Notify: true, Actions: []byte(`["notify"]`)}
				}
				pos := int64(0)
				message := func() error {
					pos++
					return db.WithTx(ctx, "bench", func(tx *store.Tx) error {
						for i := range rows {
							rows[i].StreamPos, rows[i].TS = pos, pos
						}
						return tx.AddPushActions(ctx, rows)
					})
				}
				for range 200 {
					if err := message(); err != nil {
						b.Fatal(err)
					}
				}
				if err := db.WALFramesStart(ctx); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for range b.N {
					if err := message(); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if f, err := db.WALFrames(ctx); err == nil && f > 0 {
					b.ReportMetric(float64(f)/float64(b.N), "pages/op")
				}
			})
		}
	}
}

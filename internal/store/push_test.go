package store_test

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// Notification rows: counts per thread after read positions, and the
// newest-first list with read flags from receipts.
func TestPushActions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const alice = id.UserID("@alice:hs")
		const r1, r2 = id.RoomID("!r1:hs"), id.RoomID("!r2:hs")
		var rows []store.PushAction
		add := func(room id.RoomID, pos int64, thread string, highlight bool) {
			rows = append(rows, store.PushAction{UserID: alice, RoomID: room, EventID: id.EventID(fmt.Sprintf("$e%d", pos)), StreamPos: pos,
				Thread: thread, Notify: true, Highlight: highlight, Actions: []byte(`["notify"]`), TS: pos})
		}
		add(r1, 1, "", false)
		add(r1, 2, "", true)
		add(r1, 3, "$root", false)
		add(r1, 4, "$root", true)
		add(r1, 5, "", false)
		add(r2, 6, "", false)
		if err := db.AddPushActions(ctx, rows); err != nil {
			t.Fatalf("AddPushActions: %v", err)
		}
		if err := db.AddPushActions(ctx, rows[:1]); err != nil {
			t.Fatalf("AddPushActions again: %v", err)
		}
		got, err := db.PushCounts(ctx, alice, []store.UnreadQuery{
			{RoomID: r1, From: 0, To: 10, Read: map[string]int64{"$root": 3}},
			{RoomID: r2, From: 6, To: 10},
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
		if _, err := db.PutReceipt(ctx, store.Receipt{RoomID: r1, UserID: alice, Type: "m.read", ThreadID: "main", EventID: "$e2", TS: 1}, 2); err != nil {
			t.Fatal(err)
		}
		ns, err := db.Notifications(ctx, alice, 0, 10, false)
		if err != nil {
			t.Fatalf("Notifications: %v", err)
		}
		var s string
		for _, n := range ns {
			s += fmt.Sprintf("%d:%v ", n.StreamPos, n.Read)
		}
		if s != "6:false 5:false 4:false 3:false 2:true 1:true " {
			t.Errorf("Notifications = %s", s)
		}
		hs, err := db.Notifications(ctx, alice, 4, 10, true)
		if err != nil || len(hs) != 1 || hs[0].StreamPos != 2 {
			t.Errorf("Notifications(before 4, highlights) = %+v, %v; want the row at 2", hs, err)
		}
	})
}

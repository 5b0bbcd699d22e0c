package push_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/push"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// The service's pruner deletes old read rows, staged ones included (they
// move at the end of a pass), and keeps unread ones.
func TestPrune(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		const room = id.RoomID("!r:hs.test")
		old := time.Now().Add(-2 * time.Hour).UnixMilli()
		var rows []store.PushAction
		for pos := int64(1); pos <= 4; pos++ {
			rows = append(rows, store.PushAction{UserID: "@alice:hs.test", RoomID: room, StreamPos: pos, Notify: true, Actions: []byte(`["notify"]`), TS: old})
		}
		if err := db.AddPushActions(ctx, rows); err != nil {
			t.Fatal(err)
		}
		// alice has read up to position 2.
		if _, err := db.PutReceipt(ctx, store.Receipt{RoomID: room, UserID: "@alice:hs.test", Type: "m.read", EventID: "$2", TS: 1}, 2); err != nil {
			t.Fatal(err)
		}
		s := push.New(push.Config{ServerName: "hs.test", Retention: time.Hour, PrunePass: 10 * time.Millisecond}, db, nil, slog.New(slog.DiscardHandler))
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		deadline := time.Now().Add(60 * time.Second)
		for {
			got, err := db.PushCounts(ctx, "@alice:hs.test", []store.UnreadQuery{{RoomID: room, From: 0, To: 10}})
			if err != nil {
				t.Fatal(err)
			}
			if got[room][""].Notifications == 2 {
				break // rows 1 and 2 are gone, 3 and 4 (unread) stay
			}
			if time.Now().After(deadline) {
				t.Fatalf("rows left: %+v, want the 2 unread ones", got)
			}
			time.Sleep(20 * time.Millisecond) // polling, with a deadline
		}
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Fatal(err)
		}
	})
}

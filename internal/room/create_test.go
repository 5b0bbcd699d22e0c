package room_test

import (
	"context"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// TestCreateSameMillisecond creates identical version 12 rooms at once: the
// room ID is the create event's hash, so each needs its own timestamp (found
// by polder-bench, whose users create rooms in parallel).
func TestCreateSameMillisecond(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		alice := mustAccount(t, db, "alice")
		const n = 8
		ids := make([]id.RoomID, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				ids[i], errs[i] = s.Create(ctx, alice, room.CreateRequest{RoomVersion: id.RoomV12})
			})
		}
		wg.Wait()
		seen := map[id.RoomID]bool{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("create %d: %v", i, errs[i])
			}
			if seen[ids[i]] {
				t.Fatalf("room ID %s given twice", ids[i])
			}
			seen[ids[i]] = true
		}
	})
}

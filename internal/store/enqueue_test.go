package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// Enqueue runs queued functions in queue order, each seeing the writes of
// those before it, even when the caller's context is already done, and
// Wait returns each one's own outcome once it is committed.
func TestEnqueue(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		q, ok := db.Enqueue(ctx, "test", func(*store.Tx) error { return nil })
		if !ok {
			if db.Grouped() {
				t.Fatal("Enqueue refused on an engine that groups")
			}
			return // PostgreSQL: not grouped, callers use WithTx
		}
		if err := q.Wait(); err != nil {
			t.Fatal(err)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		room := func(i int) id.RoomID { return id.RoomID(fmt.Sprintf("!q%d:example.org", i)) }
		errBoom := errors.New("boom")
		const n = 20
		qs := make([]*store.Queued, n)
		for i := range n {
			c := ctx
			if i == 5 {
				c = cancelled
			}
			q, _ := db.Enqueue(c, "test", func(tx *store.Tx) error {
				if i > 0 && i != 8 { // 7 failed: 8 finds nothing of it
					if _, err := tx.RoomNID(ctx, room(i-1)); err != nil {
						return fmt.Errorf("room %d not visible to %d: %w", i-1, i, err)
					}
				}
				if err := tx.CreateRoom(ctx, store.Room{RoomID: room(i), Version: "11"}); err != nil {
					return err
				}
				if i == 7 {
					return errBoom
				}
				return nil
			})
			qs[i] = q
		}
		for i, q := range qs {
			err := q.Wait()
			switch {
			case i == 7 && !errors.Is(err, errBoom):
				t.Errorf("call 7: got %v, want its own error", err)
			case i != 7 && err != nil:
				t.Errorf("call %d: %v", i, err)
			}
		}
		for i := range n {
			_, err := db.Room(ctx, room(i))
			if i == 7 && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("room 7 of the failed call: %v, want ErrNotFound", err)
			} else if i != 7 && err != nil {
				t.Errorf("room %d after Wait: %v", i, err)
			}
		}
	})
}

package store_test

import (
	"context"
	"errors"
	"testing"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// TestCreateRoomConflictKeepsTx: creating a room that exists is
// ErrConflict, and the transaction goes on. On PostgreSQL a unique
// violation used to abort the transaction, so a remote join into a room
// that an invite had created failed with a 500.
func TestCreateRoomConflictKeepsTx(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		r := store.Room{RoomID: "!r:example.org", Version: "11"}
		if err := db.WithTx(ctx, "test", func(tx *store.Tx) error { return tx.CreateRoom(ctx, r) }); err != nil {
			t.Fatalf("CreateRoom: %v", err)
		}
		err := db.WithTx(ctx, "test", func(tx *store.Tx) error {
			if err := tx.CreateRoom(ctx, r); !errors.Is(err, store.ErrConflict) {
				t.Errorf("CreateRoom again = %v, want ErrConflict", err)
			}
			_, err := tx.CurrentState(ctx, r.RoomID)
			return err
		})
		if err != nil {
			t.Errorf("a statement after the conflict: %v", err)
		}
	})
}

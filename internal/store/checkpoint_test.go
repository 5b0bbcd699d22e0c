package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
)

// On SQLite the writer never checkpoints (wal_autocheckpoint 0) and the
// background checkpointer copies the WAL into the database file while
// writes come in.
func TestCheckpointer(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, store.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var auto int
	if err := db.WithTx(ctx, "test", func(tx *store.Tx) error {
		return tx.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&auto)
	}); err != nil || auto != 0 {
		t.Fatalf("writer's wal_autocheckpoint = %d, %v; want 0", auto, err)
	}
	size := func() int64 {
		fi, err := os.Stat(filepath.Join(dir, "polder.db"))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	start := size()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; size() <= start; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes after %d writes: no checkpoint ran", start, i)
		}
		// Rooms make new pages; each write is a commit for the
		// checkpointer to notice.
		if err := db.WithTx(ctx, "test", func(tx *store.Tx) error {
			for j := range 50 {
				if err := tx.CreateRoom(ctx, store.Room{RoomID: id.RoomID(fmt.Sprintf("!c%d-%d:example.org", i, j)), Version: "11"}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // pacing the writes; the deadline bounds the wait
	}
}

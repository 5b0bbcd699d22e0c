package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// TestWithTxGrouped: WithTx calls that queue up while another runs share
// one transaction on SQLite (group commit). Each keeps its own outcome: a
// call that fails, panics or whose context is done leaves nothing behind,
// and the others commit. On PostgreSQL the same calls run one transaction
// each, with the same outcomes.
func TestWithTxGrouped(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const n = 24
		errBoom := errors.New("boom")
		room := func(i int) id.RoomID { return id.RoomID(fmt.Sprintf("!r%d:example.org", i)) }
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		release, started := make(chan struct{}), make(chan struct{})
		first := make(chan error, 1)
		go func() {
			// Holds the writer until the others are queued behind it.
			first <- db.WithTx(ctx, "test", func(tx *store.Tx) error {
				close(started)
				<-release
				return tx.CreateRoom(ctx, store.Room{RoomID: room(0), Version: "11"})
			})
		}()
		<-started
		var wg sync.WaitGroup
		errs := make([]error, n)
		panics := make([]any, n)
		for i := 1; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { panics[i] = recover() }()
				c := ctx
				if i == 7 {
					c = cancelled
				}
				errs[i] = db.WithTx(c, "test", func(tx *store.Tx) error {
					if err := tx.CreateRoom(ctx, store.Room{RoomID: room(i), Version: "11"}); err != nil {
						return err
					}
					switch i % 5 {
					case 3:
						return errBoom
					case 4:
						panic("fn panicked")
					}
					return nil
				})
			}()
		}
		if db.QueuedTx() >= 0 {
			deadline := time.Now().Add(60 * time.Second)
			for db.QueuedTx() < n-1 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond) // polling, with a deadline
			}
			if q := db.QueuedTx(); q != n-1 {
				t.Fatalf("queued calls = %d, want %d", q, n-1)
			}
		}
		close(release)
		wg.Wait()
		if err := <-first; err != nil {
			t.Fatalf("first WithTx: %v", err)
		}
		for i := 1; i < n; i++ {
			_, err := db.Room(ctx, room(i))
			switch {
			case i == 7:
				if !errors.Is(errs[i], context.Canceled) || !errors.Is(err, store.ErrNotFound) {
					t.Errorf("cancelled call %d: WithTx = %v, Room = %v; want context.Canceled and ErrNotFound", i, errs[i], err)
				}
			case i%5 == 3:
				if !errors.Is(errs[i], errBoom) || !errors.Is(err, store.ErrNotFound) {
					t.Errorf("failing call %d: WithTx = %v, Room = %v; want errBoom and ErrNotFound", i, errs[i], err)
				}
			case i%5 == 4:
				if panics[i] != "fn panicked" || !errors.Is(err, store.ErrNotFound) {
					t.Errorf("panicking call %d: recovered %v, Room = %v; want the panic and ErrNotFound", i, panics[i], err)
				}
			default:
				if errs[i] != nil || panics[i] != nil || err != nil {
					t.Errorf("call %d: WithTx = %v, panic %v, Room = %v; want it committed", i, errs[i], panics[i], err)
				}
			}
		}
	})
}

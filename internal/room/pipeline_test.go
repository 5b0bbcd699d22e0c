package room_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// Messages sent at once into one room, with state events and retried
// transaction IDs among them, form one chain: each event's predecessor is
// the one before it in the stream, none names a missing event, retries
// give the first event, and events are announced in stream order. On
// SQLite the messages take the pipelined path (sendPipelined), where a
// retried transaction ID fails a queued write and the room recovers.
func TestPipelinedSends(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		var mu sync.Mutex
		var announced []int64
		s.OnEvent = func(ev *store.Event) {
			mu.Lock()
			announced = append(announced, ev.StreamPos)
			mu.Unlock()
		}
		alice := mustAccount(t, db, "alice")
		roomID, err := s.Create(ctx, alice, room.CreateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		// send retries like a client: a send that fails (one queued behind
		// a failed write) is sent again with the same transaction ID.
		send := func(d room.Draft) (*store.Event, error) {
			var err error
			for range 5 {
				var ev *store.Event
				if ev, err = s.Send(ctx, alice, roomID, d); err == nil {
					return ev, nil
				}
			}
			return nil, err
		}
		const workers, each = 8, 25
		var wg sync.WaitGroup
		sent := make([][]string, workers)
		errs := make(chan error, workers*each*2)
		for w := range workers {
			sent[w] = make([]string, each)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					txn := &store.Txn{UserID: alice, DeviceID: "D", TxnID: fmt.Sprintf("%d-%d", w, i)}
					d := room.Draft{Type: "m.room.message", Content: fmt.Appendf(nil, `{"body":"%d-%d"}`, w, i), Txn: txn}
					if w == 0 && i%5 == 4 {
						sk := ""
						d = room.Draft{Type: "m.room.topic", StateKey: &sk, Content: fmt.Appendf(nil, `{"topic":"%d"}`, i)}
					}
					ev, err := send(d)
					if err != nil {
						errs <- fmt.Errorf("send %d-%d: %w", w, i, err)
						continue
					}
					sent[w][i] = string(ev.EventID())
					if w == 1 && d.Txn != nil {
						// The same transaction again: the first event back.
						again, err := send(d)
						if err != nil {
							errs <- fmt.Errorf("retry %d-%d: %w", w, i, err)
						} else if again.EventID() != ev.EventID() {
							errs <- fmt.Errorf("retry %d-%d gave %s, want %s", w, i, again.EventID(), ev.EventID())
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}
		x, err := db.Extremities(ctx, roomID)
		if err != nil || len(x) != 1 {
			t.Fatalf("extremities = %v, %v; want one", x, err)
		}
		evs, err := db.RoomEventsByStream(ctx, roomID, 0, 1<<40, 10000)
		if err != nil {
			t.Fatal(err)
		}
		stored := map[string]bool{}
		for i, ev := range evs {
			stored[string(ev.EventID())] = true
			if i == 0 {
				continue
			}
			prev := ev.PrevEventIDs()
			if len(prev) != 1 || prev[0] != evs[i-1].EventID() {
				t.Fatalf("event %d (%s) has prev_events %v, want the one before it, %s", i, ev.EventID(), prev, evs[i-1].EventID())
			}
		}
		for w := range sent {
			for i, eid := range sent[w] {
				if !stored[eid] {
					t.Errorf("send %d-%d answered %s, which is not in the room", w, i, eid)
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for i := 1; i < len(announced); i++ {
			if announced[i] <= announced[i-1] {
				t.Fatalf("announced out of order: %v", announced)
			}
		}
		if len(announced) != len(evs) {
			t.Errorf("%d events announced, %d stored", len(announced), len(evs))
		}
	})
}

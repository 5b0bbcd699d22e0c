package federation_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// eachEngine runs a benchmark per engine (PostgreSQL when
// POLDER_TEST_POSTGRES is set) and per number of destinations, with a
// fresh database each time.
func eachEngine(b *testing.B, dests []int, fn func(b *testing.B, db *store.DB, dests int)) {
	for _, e := range storetest.Engines(b) {
		for _, n := range dests {
			b.Run(fmt.Sprintf("%s/dests=%d", e.Name, n), func(b *testing.B) {
				fn(b, storetest.Open(b, e.Options(b)), n)
			})
		}
	}
}

// BenchmarkQueue measures SendPDU and delivery to a fake transport that
// answers at once: b.N PDUs of about 1 KiB in one room, each
// for dests destinations, sent while the queue runs; the clock stops when
// every destination acknowledged every PDU. pdus/s counts PDUs queued (not
// PDU × destination).
func BenchmarkQueue(b *testing.B) {
	body := strings.Repeat("x", 900)
	eachEngine(b, []int{1, 10}, func(b *testing.B, db *store.DB, dests int) {
		var delivered atomic.Int64
		done := make(chan struct{}, 1)
		var want int64
		f := newFake(func(ctx context.Context, c call) error {
			if delivered.Add(int64(len(c.txn.PDUs))) == atomic.LoadInt64(&want) {
				done <- struct{}{}
			}
			return nil
		})
		q := newQueue(db, f, federation.QueueConfig{})
		startQueue(b, q)
		var names []string
		for i := range dests {
			names = append(names, fmt.Sprintf("s%d.example", i))
		}
		atomic.StoreInt64(&want, int64(b.N*dests))
		ctx := context.Background()
		b.ResetTimer()
		for i := range b.N {
			pdu := []byte(fmt.Sprintf(`{"n":%d,"content":{"body":%q}}`, i, body))
			if err := q.SendPDU(ctx, pdu, id.EventID(fmt.Sprintf("$%d", i)), "!r", names); err != nil {
				b.Fatal(err)
			}
		}
		<-done
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pdus/s")
	})
}

// BenchmarkSendPDU measures SendPDU alone (what a caller waits for): the
// PDU and its destinations written in one transaction. The queue does not
// run.
func BenchmarkSendPDU(b *testing.B) {
	body := strings.Repeat("x", 900)
	eachEngine(b, []int{1, 10, 100}, func(b *testing.B, db *store.DB, dests int) {
		q := newQueue(db, newFake(nil), federation.QueueConfig{})
		var names []string
		for i := range dests {
			names = append(names, fmt.Sprintf("s%d.example", i))
		}
		ctx := context.Background()
		b.ResetTimer()
		for i := range b.N {
			pdu := []byte(fmt.Sprintf(`{"n":%d,"content":{"body":%q}}`, i, body))
			if err := q.SendPDU(ctx, pdu, id.EventID(fmt.Sprintf("$%d", i)), "!r", names); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkQueueRoomEvent is BenchmarkQueue through the room service's
// hook, as the server uses it: RoomEvent returns at once and the fan-out
// queues the events that piled up in one transaction each. The events
// (about 1 KiB, signed) are made before the clock starts.
func BenchmarkQueueRoomEvent(b *testing.B) {
	key, err := keys.Generate("v1")
	if err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("x", 900)
	ref := id.EventID("$" + strings.Repeat("A", 43))
	eachEngine(b, []int{1, 10}, func(b *testing.B, db *store.DB, dests int) {
		evs := make([]*store.Event, b.N)
		for i := range evs {
			p, err := event.New("10", event.Proto{Type: "m.room.message", Sender: "@a:us.example", RoomID: "!r:us.example",
				Content: []byte(fmt.Sprintf(`{"body":%q,"n":%d}`, body, i)), Depth: int64(i + 1),
				PrevEvents: []id.EventID{ref}, AuthEvents: []id.EventID{ref}}, us, key)
			if err != nil {
				b.Fatal(err)
			}
			evs[i] = &store.Event{PDU: p, StreamPos: int64(i + 1)}
		}
		names := []string{us}
		for i := range dests {
			names = append(names, fmt.Sprintf("s%d.example", i))
		}
		var delivered atomic.Int64
		want := int64(b.N * dests)
		done := make(chan struct{}, 1)
		f := newFake(func(ctx context.Context, c call) error {
			if delivered.Add(int64(len(c.txn.PDUs))) == want {
				done <- struct{}{}
			}
			return nil
		})
		q := newQueue(db, f, federation.QueueConfig{
			RoomServers: func(ctx context.Context, roomID id.RoomID) ([]string, error) { return names, nil },
		})
		startQueue(b, q)
		b.ResetTimer()
		for _, ev := range evs {
			q.RoomEvent(ev)
		}
		<-done
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pdus/s")
	})
}

// BenchmarkRoomEventHook measures what the room service waits for in its
// OnEvent hook: RoomEvent hands the event to the fan-out and returns.
func BenchmarkRoomEventHook(b *testing.B) {
	key, err := keys.Generate("v1")
	if err != nil {
		b.Fatal(err)
	}
	ref := id.EventID("$" + strings.Repeat("A", 43))
	p, err := event.New("10", event.Proto{Type: "m.room.message", Sender: "@a:us.example", RoomID: "!r:us.example",
		Content: []byte(`{"body":"hi"}`), Depth: 1, PrevEvents: []id.EventID{ref}, AuthEvents: []id.EventID{ref}}, us, key)
	if err != nil {
		b.Fatal(err)
	}
	ev := &store.Event{PDU: p, StreamPos: 1}
	q := newQueue(nil, newFake(nil), federation.QueueConfig{}) // not running: the events wait
	b.ReportAllocs()
	for b.Loop() {
		q.RoomEvent(ev)
	}
}

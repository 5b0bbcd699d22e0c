package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// BenchmarkRoomSend measures the persist path of a local message, through
// room.Service.Send without HTTP: build, auth, the write transaction and
// its commit. seq sends one after another into one room; rooms16 has 16
// senders at once, each in their own room (their transactions share
// commits on SQLite). pages/op is the pages written to SQLite's WAL per
// message (automatic checkpoints off): steady, unlike times. cpu-us/op is the process's CPU time (user+system)
// per message, steadier than ns/op on a shared machine.
//
//	go test ./internal/store -run '^$' -bench BenchmarkRoomSend -benchtime 3000x
func BenchmarkRoomSend(b *testing.B) {
	for _, e := range storetest.Engines(b) {
		for _, senders := range []int{1, 16} {
			name := "seq"
			if senders > 1 {
				name = fmt.Sprintf("rooms%d", senders)
			}
			b.Run(e.Name+"/"+name, func(b *testing.B) {
				ctx := context.Background()
				db, err := store.Open(ctx, e.Options(b))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { db.Close() })
				rs := newRooms(b, db)
				users := make([]id.UserID, senders)
				rooms := make([]id.RoomID, senders)
				for i := range users {
					users[i] = mustUser(b, db, fmt.Sprintf("u%d", i))
					rooms[i] = mustRoom(b, rs, users[i], room.CreateRequest{})
				}
				var txn atomic.Int64
				var wg sync.WaitGroup
				if _, err := db.WALFrames(ctx); err != nil {
					b.Fatal(err)
				}
				if err := db.WALFramesStart(ctx); err != nil {
					b.Fatal(err)
				}
				cpu0 := cpuTime()
				b.ResetTimer()
				per := b.N / senders
				for i := range senders {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range per {
							n := txn.Add(1)
							_, err := rs.Send(ctx, users[i], rooms[i], room.Draft{Type: "m.room.message",
								Content: []byte(`{"msgtype":"m.text","body":"benchmark"}`),
								Txn:     &store.Txn{UserID: users[i], DeviceID: "D", TxnID: fmt.Sprintf("t%d", n)}})
							if err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				n := float64(per * senders)
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/n, "cpu-us/op")
				b.ReportMetric(n/b.Elapsed().Seconds(), "msgs/s")
				if frames, err := db.WALFrames(ctx); err != nil {
					b.Fatal(err)
				} else if frames > 0 {
					b.ReportMetric(float64(frames)/n, "pages/op")
				}
				if g := db.GroupedPerCommit(); g > 0 {
					b.ReportMetric(g, "calls/commit")
				}
			})
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

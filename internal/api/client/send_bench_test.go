package client_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

// BenchmarkSend measures PUT /rooms/{roomId}/send over HTTP on a real
// server: one room with every sender in it (sends serialise on the room),
// and one room per sender (they share only the database writer). Run:
//
//	go test ./internal/api/client -run '^$' -bench BenchmarkSend -benchtime 2000x
func BenchmarkSend(b *testing.B) {
	for _, e := range storetest.Engines(b) {
		for _, rooms := range []string{"one_room", "many_rooms"} {
			b.Run(e.Name+"/"+rooms, func(b *testing.B) {
				hs := hstest.Start(b, e, hstest.Options{})
				const senders = 16
				clients := make([]*hstest.Client, senders)
				roomIDs := make([]string, senders)
				for i := range clients {
					clients[i] = hs.Register(b, fmt.Sprintf("u%d", i), "pw")
				}
				shared := createRoom(b, clients[0], map[string]any{"preset": "public_chat"})
				for i, c := range clients {
					if rooms == "one_room" {
						roomIDs[i] = shared
						if i > 0 {
							hstest.MustOK(b, c.Do(b, "POST", roomPath(shared, "/join"), nil))
						}
					} else {
						roomIDs[i] = createRoom(b, c, map[string]any{})
					}
				}
				var next atomic.Int64
				var txn atomic.Int64
				b.SetParallelism(max(1, senders/runtime.GOMAXPROCS(0))) // about one goroutine per sender
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := int(next.Add(1)-1) % senders
					c, r := clients[i], roomIDs[i]
					for pb.Next() {
						n := txn.Add(1)
						resp := c.Do(b, "PUT", roomPath(r, fmt.Sprintf("/send/m.room.message/b%d", n)), map[string]any{"msgtype": "m.text", "body": "benchmark"})
						if resp.Status != 200 {
							b.Errorf("send: %d %s", resp.Status, resp.Body)
							return
						}
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

package client_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store/storetest"
)

// BenchmarkSlidingSyncFirst measures the first response of a new sliding
// sync connection (one list, range [0,19], timeline_limit 10, the create
// event and the user's member event as required state) for a user in
// 100, 1,000 and 2,000 rooms, each with 10 messages. The time and the
// store operations per response must not grow with the rooms: only the
// 20 rooms of the range are read. Run:
//
//	go test ./internal/api/client -run '^$' -bench BenchmarkSlidingSyncFirst -benchtime 50x -timeout 30m
func BenchmarkSlidingSyncFirst(b *testing.B) {
	for _, e := range storetest.Engines(b) {
		for _, n := range []int{100, 1000, 2000} {
			b.Run(fmt.Sprintf("%s/rooms=%d", e.Name, n), func(b *testing.B) {
				hs := hstest.Start(b, e, hstest.Options{})
				ctx := context.Background()
				rs := hs.Process().Rooms
				alice := benchUser(b, hs, "alice")
				a := id.UserID(alice.UserID)
				for i := range n {
					r, err := rs.Create(ctx, a, room.CreateRequest{Preset: room.PresetPrivate, Name: ptrStr(fmt.Sprintf("room %d", i))})
					if err != nil {
						b.Fatal(err)
					}
					for j := range 10 {
						body := fmt.Sprintf(`{"msgtype":"m.text","body":"message %d in room %d"}`, j, i)
						if _, err := rs.Send(ctx, a, r, room.Draft{Type: "m.room.message", Content: []byte(body)}); err != nil {
							b.Fatal(err)
						}
					}
				}
				body := map[string]any{"lists": map[string]any{"all": map[string]any{"range": []int{0, 19}, "timeline_limit": 10,
					"required_state": [][]string{{"m.room.create", ""}, {"m.room.member", "$ME"}}}}}
				first := slide(b, alice, body) // warm caches and statements
				if len(first.Rooms) != 20 || first.Lists["all"].Count != n {
					b.Fatalf("first response: %d rooms, count %d; want 20, %d", len(first.Rooms), first.Lists["all"].Count, n)
				}
				settle(b, hs)
				ops0, byOp0 := dbOps(b, hs), dbOpsByName(b, hs)
				b.ResetTimer()
				for i := range b.N {
					body["conn_id"] = fmt.Sprintf("c%d", i%10) // a new connection each time
					r := alice.Do(b, "POST", ssPath, body)
					if r.Status != 200 {
						b.Fatalf("sliding sync: %d %s", r.Status, r.Body)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(dbOps(b, hs)-ops0)/float64(b.N), "db_ops/op")
				for op, c := range dbOpsByName(b, hs) {
					if d := c[0] - byOp0[op][0]; d > 0 {
						b.Logf("%s: %.1f per response, %.2f ms each", op, d/float64(b.N), (c[1]-byOp0[op][1])/d*1000)
					}
				}
			})
		}
	}
}

// settle waits until the work that the set-up left to background tasks
// (push notification rows, federation fan-out of thousands of events) is
// done, so that the store operations counted are the responses'.
func settle(b *testing.B, hs *hstest.Server) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	last := dbOps(b, hs)
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		n := dbOps(b, hs)
		if n == last {
			return
		}
		last = n
	}
	b.Logf("store operations still going on after 5 minutes: counts include them")
}

// dbOpsByName returns the server's store operations so far by name (the
// op label of polder_db_operation_duration_seconds): how many and their
// total time in seconds, to tell with -v which of them a response does.
func dbOpsByName(tb testing.TB, hs *hstest.Server) map[string][2]float64 {
	tb.Helper()
	r := hs.Anon().Do(tb, "GET", "/metrics", nil)
	if r.Status != 200 {
		tb.Fatalf("metrics: %d", r.Status)
	}
	out := map[string][2]float64{}
	for _, line := range strings.Split(string(r.Body), "\n") {
		for i, prefix := range []string{`polder_db_operation_duration_seconds_count{op="`, `polder_db_operation_duration_seconds_sum{op="`} {
			rest, ok := strings.CutPrefix(line, prefix)
			if !ok {
				continue
			}
			op, val, _ := strings.Cut(rest, `"} `)
			if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
				e := out[op]
				e[i] = v
				out[op] = e
			}
		}
	}
	return out
}

// BenchmarkSlidingSyncWakeup measures how long after a send a
// long-polling sliding sync request of the recipient (in 100 rooms)
// returns with the message, from the start of the send to the response
// read. Run:
//
//	go test ./internal/api/client -run '^$' -bench BenchmarkSlidingSyncWakeup -benchtime 200x -timeout 30m
func BenchmarkSlidingSyncWakeup(b *testing.B) {
	for _, e := range storetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			hs := hstest.Start(b, e, hstest.Options{})
			ctx := context.Background()
			rs := hs.Process().Rooms
			alice := benchUser(b, hs, "alice")
			bob := benchUser(b, hs, "bob")
			a, bb := id.UserID(alice.UserID), id.UserID(bob.UserID)
			var target id.RoomID
			for i := range 100 {
				r, err := rs.Create(ctx, a, room.CreateRequest{Preset: room.PresetPublic})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := rs.SetMembership(ctx, room.MemberChange{RoomID: r, Sender: bb, Target: bb, Membership: room.Join}); err != nil {
					b.Fatal(err)
				}
				if i == 0 {
					target = r
				}
			}
			body := map[string]any{"lists": map[string]any{"all": map[string]any{"range": []int{0, 19}, "timeline_limit": 1, "required_state": [][]string{}}}}
			resp := slide(b, alice, body)
			body["timeout"] = 30_000
			var total time.Duration
			b.ResetTimer()
			for i := range b.N {
				body["pos"] = resp.Pos
				done := make(chan ssResponse, 1)
				go func() { done <- slide(b, alice, body) }()
				// Let the request park before sending (not measured).
				for hs.Process().Notify.Waiting() == 0 {
					time.Sleep(100 * time.Microsecond)
				}
				start := time.Now()
				benchSend(b, bob, string(target), fmt.Sprintf("wake %d", i))
				resp = <-done
				total += time.Since(start)
				if resp.Rooms[string(target)] == nil {
					b.Fatalf("woken response without the room: %v", keys(resp.Rooms))
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/wakeup")
		})
	}
}

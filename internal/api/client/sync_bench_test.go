package client_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store/storetest"
)

// benchUser creates an account through the account service (faster than
// registering over HTTP) and returns its client.
func benchUser(b *testing.B, hs *hstest.Server, name string) *hstest.Client {
	b.Helper()
	sess, err := hs.Users().CreateUser(context.Background(), name, "pw", "", false, "", true)
	if err != nil {
		b.Fatalf("CreateUser(%s): %v", name, err)
	}
	return &hstest.Client{HS: hs, UserID: string(sess.UserID), DeviceID: string(sess.DeviceID), AccessToken: sess.AccessToken}
}

// BenchmarkSyncWakeup measures how long after a send the recipient's
// long-polling /sync returns, with 1,000 clients long-polling at once,
// over real HTTP on a real server:
//
//   - dm: every syncer shares a room with one sender, who sends to a
//     random one of them each iteration (the other 999 stay parked);
//   - one_room: all syncers are in one room, every send wakes all of them,
//     and every syncer's latency counts (fan-out).
//
// Latency runs from the start of the send request to the syncer having
// read its whole response. Run:
//
//	go test ./internal/api/client -run '^$' -bench BenchmarkSyncWakeup -benchtime 200x -timeout 30m
func BenchmarkSyncWakeup(b *testing.B) {
	const syncers = 1000
	for _, e := range storetest.Engines(b) {
		for _, shape := range []string{"dm", "one_room"} {
			b.Run(e.Name+"/"+shape, func(b *testing.B) {
				hs := hstest.Start(b, e, hstest.Options{})
				ctx := context.Background()
				rooms := hs.Process().Rooms
				bot := benchUser(b, hs, "bot")
				clients := make([]*hstest.Client, syncers)
				roomOf := make([]id.RoomID, syncers)
				var shared id.RoomID
				if shape == "one_room" {
					var err error
					if shared, err = rooms.Create(ctx, id.UserID(bot.UserID), room.CreateRequest{Preset: room.PresetPublic, Name: ptrStr("big")}); err != nil {
						b.Fatal(err)
					}
				}
				for i := range clients {
					clients[i] = benchUser(b, hs, fmt.Sprintf("s%d", i))
					u := id.UserID(clients[i].UserID)
					if shape == "dm" {
						r, err := rooms.Create(ctx, id.UserID(bot.UserID), room.CreateRequest{Preset: room.PresetPublic})
						if err != nil {
							b.Fatal(err)
						}
						roomOf[i] = r
					} else {
						roomOf[i] = shared
					}
					if _, err := rooms.SetMembership(ctx, room.MemberChange{RoomID: roomOf[i], Sender: u, Target: u, Membership: room.Join}); err != nil {
						b.Fatal(err)
					}
				}
				// Tokens are positions: one initial sync gives every syncer
				// its starting token.
				filter := syncFilter(map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 10},
					"state": map[string]any{"lazy_load_members": true}}})
				start := doSync(b, clients[0], filter).NextBatch
				// Bring every user online before the long-polls start: each
				// first sync is a presence change that wakes everyone, a
				// storm of 1,000² syncs if they were all parked already.
				for _, c := range clients {
					doSync(b, c, filter+"&"+syncSince(start))
				}
				start = doSync(b, clients[0], filter+"&"+syncSince(start)).NextBatch

				type wake struct {
					i  int
					at time.Time
				}
				woken := make(chan wake, syncers*4)
				stop := make(chan struct{})
				// A client of its own: no overall timeout, a connection per
				// parked request.
				hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: syncers + 10}}
				defer hc.CloseIdleConnections()
				base := hs.URL()
				var wg sync.WaitGroup
				var failures atomic.Int64
				for i, c := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						tok := start
						for {
							select {
							case <-stop:
								return
							default:
							}
							req, _ := http.NewRequest("GET", base+c3+"/sync?"+filter+"&timeout=60000&"+syncSince(tok), nil)
							req.Header.Set("Authorization", "Bearer "+c.AccessToken)
							resp, err := hc.Do(req)
							if err != nil {
								select {
								case <-stop:
								default:
									failures.Add(1)
								}
								return
							}
							body, err := io.ReadAll(resp.Body)
							resp.Body.Close()
							at := time.Now()
							if err != nil || resp.StatusCode != 200 {
								failures.Add(1)
								return
							}
							var s struct {
								NextBatch string `json:"next_batch"`
								Rooms     *struct {
									Join map[string]json.RawMessage `json:"join"`
								} `json:"rooms"`
							}
							if err := json.Unmarshal(body, &s); err != nil {
								failures.Add(1)
								return
							}
							tok = s.NextBatch
							if s.Rooms != nil && s.Rooms.Join[string(roomOf[i])] != nil {
								woken <- wake{i, at}
							}
						}
					}()
				}
				// Wait until every syncer is parked in the notifier and the
				// stream stands still: each syncer's first sync brings its
				// user online, a presence change that wakes everyone.
				n := hs.Process().Notify
				deadline := time.Now().Add(5 * time.Minute)
				for stable := 0; stable < 100; {
					pos := n.Current()
					time.Sleep(10 * time.Millisecond)
					if n.Waiting() == syncers && n.Current() == pos {
						stable++
					} else {
						stable = 0
					}
					if time.Now().After(deadline) {
						b.Fatalf("syncers did not settle: %d of %d parked", n.Waiting(), syncers)
					}
				}
				benchDrain(woken)

				var lat, sendLat []time.Duration
				rng := rand.New(rand.NewPCG(1, 2))
				b.ResetTimer()
				for it := range b.N {
					target := rng.IntN(syncers)
					sent := time.Now()
					benchSend(b, bot, string(roomOf[target]), fmt.Sprintf("w%d", it))
					sendLat = append(sendLat, time.Since(sent))
					want := 1
					if shape == "one_room" {
						want = syncers
					}
					seen := map[int]bool{}
					timeout := time.After(30 * time.Second)
					for len(seen) < want {
						select {
						case w := <-woken:
							if shape == "dm" && w.i != target || seen[w.i] {
								continue
							}
							seen[w.i] = true
							lat = append(lat, w.at.Sub(sent))
						case <-timeout:
							b.Fatalf("iteration %d: %d of %d syncers woke within 30s", it, len(seen), want)
						}
					}
					// Let everyone park again before the next send.
					for n.Waiting() < syncers && time.Since(sent) < 30*time.Second {
						time.Sleep(time.Millisecond)
					}
				}
				b.StopTimer()
				close(stop)
				if failures.Load() > 0 {
					b.Errorf("%d sync requests failed", failures.Load())
				}
				slices.Sort(lat)
				slices.Sort(sendLat)
				b.ReportMetric(benchMS(benchPct(lat, 50)), "p50_ms")
				b.ReportMetric(benchMS(benchPct(lat, 99)), "p99_ms")
				b.ReportMetric(benchMS(benchPct(lat, 100)), "max_ms")
				b.ReportMetric(benchMS(benchPct(sendLat, 50)), "send_p50_ms")
				b.ReportMetric(float64(syncers), "syncers")
				// Wake the parked syncers so that they see stop and return
				// before the server shuts down.
				hs.Stop(b)
				wg.Wait()
			})
		}
	}
}

func ptrStr(s string) *string { return &s }

func benchSend(b *testing.B, c *hstest.Client, roomID, body string) {
	b.Helper()
	syncSend(b, c, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": body})
}

func benchDrain[T any](ch chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// pct is the p-th percentile of sorted durations.
func benchPct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p + 99) / 100
	return d[min(max(i-1, 0), len(d)-1)]
}

func benchMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkSyncInitial measures an initial /sync (default filter: 10
// timeline events per room) of a user in 500 rooms, each with its
// creation, another member and history messages, over real HTTP. It
// reports the time, the memory allocated (client and server, in-process),
// the response size and the number of store operations per sync, read
// from the server's metrics: the last is what must not grow with the rooms'
// history. Run:
//
//	go test ./internal/api/client -run '^$' -bench BenchmarkSyncInitial -benchtime 10x -timeout 30m
func BenchmarkSyncInitial(b *testing.B) {
	const rooms = 500
	for _, e := range storetest.Engines(b) {
		for _, history := range []int{10, 50} {
			b.Run(fmt.Sprintf("%s/rooms=%d/history=%d", e.Name, rooms, history), func(b *testing.B) {
				hs := hstest.Start(b, e, hstest.Options{})
				ctx := context.Background()
				rs := hs.Process().Rooms
				alice := benchUser(b, hs, "alice")
				bob := benchUser(b, hs, "bob")
				a, bb := id.UserID(alice.UserID), id.UserID(bob.UserID)
				for i := range rooms {
					req := room.CreateRequest{Preset: room.PresetPublic}
					if i%2 == 0 {
						req.Name = ptrStr(fmt.Sprintf("room %d", i))
					}
					r, err := rs.Create(ctx, a, req)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := rs.SetMembership(ctx, room.MemberChange{RoomID: r, Sender: bb, Target: bb, Membership: room.Join}); err != nil {
						b.Fatal(err)
					}
					for j := range history {
						sender := bb
						if j%5 == 4 {
							sender = a
						}
						body := fmt.Sprintf(`{"msgtype":"m.text","body":"message %d in room %d"}`, j, i)
						if _, err := rs.Send(ctx, sender, r, room.Draft{Type: "m.room.message", Content: []byte(body)}); err != nil {
							b.Fatal(err)
						}
					}
				}
				// Warm once (caches, prepared statements), then measure.
				first := alice.Do(b, "GET", c3+"/sync", nil)
				hstest.MustOK(b, first)
				var s struct {
					Rooms struct {
						Join map[string]json.RawMessage `json:"join"`
					} `json:"rooms"`
				}
				if err := json.Unmarshal(first.Body, &s); err != nil || len(s.Rooms.Join) != rooms {
					b.Fatalf("initial sync has %d joined rooms, want %d (%v)", len(s.Rooms.Join), rooms, err)
				}
				ops0 := dbOps(b, hs)
				var size int
				b.ReportAllocs()
				cpu0 := benchCPU(b)
				b.ResetTimer()
				for range b.N {
					r := alice.Do(b, "GET", c3+"/sync", nil)
					if r.Status != 200 {
						b.Fatalf("sync: %d %s", r.Status, r.Body)
					}
					size = len(r.Body)
				}
				b.StopTimer()
				b.ReportMetric(float64((benchCPU(b)-cpu0).Microseconds())/1000/float64(b.N), "cpu_ms/op")
				ops := dbOps(b, hs) - ops0
				b.ReportMetric(float64(ops)/float64(b.N), "db_ops/op")
				b.ReportMetric(float64(size)/1024, "resp_KiB")
			})
		}
	}
}

// benchCPU is the CPU time the process (server and clients together) has
// used: a figure that a loaded machine disturbs less than wall time.
func benchCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// dbOps sums the server's store operation counts from /metrics.
func dbOps(tb testing.TB, hs *hstest.Server) int64 {
	tb.Helper()
	r := hs.Anon().Do(tb, "GET", "/metrics", nil)
	if r.Status != 200 {
		tb.Fatalf("metrics: %d", r.Status)
	}
	var total int64
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "polder_db_operation_duration_seconds_count{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			total += int64(v)
		}
	}
	return total
}

// BenchmarkSyncIncremental measures an incremental /sync that finds one
// new message, for a user in 500 rooms (the message in one of them), and
// the store operations it takes. Run:
//
//	go test ./internal/api/client -run '^$' -bench BenchmarkSyncIncremental -benchtime 200x
func BenchmarkSyncIncremental(b *testing.B) {
	const rooms = 500
	for _, e := range storetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			hs := hstest.Start(b, e, hstest.Options{})
			ctx := context.Background()
			rs := hs.Process().Rooms
			alice := benchUser(b, hs, "alice")
			bob := benchUser(b, hs, "bob")
			a, bb := id.UserID(alice.UserID), id.UserID(bob.UserID)
			var ids []id.RoomID
			for i := range rooms {
				r, err := rs.Create(ctx, a, room.CreateRequest{Preset: room.PresetPublic, Name: ptrStr(fmt.Sprint(i))})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := rs.SetMembership(ctx, room.MemberChange{RoomID: r, Sender: bb, Target: bb, Membership: room.Join}); err != nil {
					b.Fatal(err)
				}
				ids = append(ids, r)
			}
			tok := doSync(b, alice, "").NextBatch
			var ops int64
			var cpu time.Duration
			byName0 := dbOpsByName(b, hs)
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				if _, err := rs.Send(ctx, bb, ids[i%rooms], room.Draft{Type: "m.room.message", Content: []byte(`{"msgtype":"m.text","body":"x"}`)}); err != nil {
					b.Fatal(err)
				}
				ops0 := dbOps(b, hs)
				cpu0 := benchCPU(b)
				b.StartTimer()
				r := alice.Do(b, "GET", c3+"/sync?"+syncSince(tok), nil)
				b.StopTimer()
				cpu += benchCPU(b) - cpu0
				ops += dbOps(b, hs) - ops0
				var s syncResponse
				if err := json.Unmarshal(r.Body, &s); err != nil || s.join(string(ids[i%rooms])) == nil {
					b.Fatalf("sync %d lacks the new message: %s", i, r.Body)
				}
				tok = s.NextBatch
				b.StartTimer()
			}
			b.ReportMetric(float64(ops)/float64(b.N), "db_ops/op")
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu_ms/op")
			b.StopTimer()
			var names []string
			for op, v := range dbOpsByName(b, hs) {
				if d := v[0] - byName0[op][0]; d > 0 {
					names = append(names, fmt.Sprintf("%s=%.2f(%.0fus)", op, d/float64(b.N), (v[1]-byName0[op][1])/float64(b.N)*1e6))
				}
			}
			slices.Sort(names)
			b.Logf("store ops per sync (send included): %s", strings.Join(names, " "))
		})
	}
}

package client_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

// BenchmarkToDeviceFanout measures one PUT /sendToDevice to 1,000 local
// devices (1,000 users × 1 device with a message per device, and 10 users
// × 100 devices with "*"), each device long-polling /sync when it is
// sent. An op is the request plus every long-poll returning the message.
// Reported: put_ms (the request), all_read_ms (from the request's start
// until the last device has its message), p50_read_ms. Run:
//
//	go test ./internal/api/client -run '^$' -bench BenchmarkToDeviceFanout -benchtime 5x
func BenchmarkToDeviceFanout(b *testing.B) {
	for _, e := range storetest.Engines(b) {
		for _, shape := range []struct {
			name           string
			users, devices int
		}{{"1000x1", 1000, 1}, {"10x100", 10, 100}} {
			b.Run(e.Name+"/"+shape.name, func(b *testing.B) {
				hs := hstest.Start(b, e, hstest.Options{})
				sender := hs.Register(b, "sender", "pw")
				var devs []*hstest.Client
				for u := range shape.users {
					name := fmt.Sprintf("r%d", u)
					sess, err := hs.Users().CreateUser(b.Context(), name, "pw", "", false, "", true)
					if err != nil {
						b.Fatal(err)
					}
					devs = append(devs, &hstest.Client{HS: hs, UserID: string(sess.UserID), DeviceID: string(sess.DeviceID), AccessToken: sess.AccessToken})
					for range shape.devices - 1 {
						devs = append(devs, hs.Login(b, name, "pw"))
					}
				}
				tokens := make([]string, len(devs))
				for i, c := range devs {
					tokens[i] = doSync(b, c, "timeout=0").NextBatch
				}
				messages := map[string]map[string]any{}
				for _, c := range devs {
					if shape.devices == 1 {
						messages[c.UserID] = map[string]any{c.DeviceID: map[string]any{"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": "x"}}
					} else {
						messages[c.UserID] = map[string]any{"*": map[string]any{"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": "x"}}
					}
				}
				var putTotal, allTotal time.Duration
				var reads []time.Duration
				b.ResetTimer()
				for n := range b.N {
					b.StopTimer()
					// Every device long-polls before the send.
					type result struct {
						i    int
						at   time.Time
						next string
						got  int
					}
					results := make(chan result, len(devs))
					waiting := hs.Process().Notify.Waiting()
					var wg sync.WaitGroup
					for i, c := range devs {
						wg.Add(1)
						go func() {
							defer wg.Done()
							r := c.Do(b, "GET", c3+"/sync?timeout=60000&"+syncSince(tokens[i]), nil)
							at := time.Now()
							var s struct {
								NextBatch string `json:"next_batch"`
								ToDevice  struct {
									Events []json.RawMessage `json:"events"`
								} `json:"to_device"`
							}
							json.Unmarshal(r.Body, &s)
							results <- result{i, at, s.NextBatch, len(s.ToDevice.Events)}
						}()
					}
					for hs.Process().Notify.Waiting() < waiting+len(devs) {
						time.Sleep(5 * time.Millisecond)
					}
					b.StartTimer()
					start := time.Now()
					hstest.MustOK(b, sendToDevice(b, sender, "m.room.encrypted", fmt.Sprintf("fan%d", n), messages))
					put := time.Since(start)
					var last time.Time
					for range devs {
						r := <-results
						if r.got != 1 {
							b.Fatalf("device %d got %d messages, want 1", r.i, r.got)
						}
						tokens[r.i] = r.next
						if r.at.After(last) {
							last = r.at
						}
						reads = append(reads, r.at.Sub(start))
					}
					b.StopTimer()
					wg.Wait()
					putTotal += put
					allTotal += last.Sub(start)
					// The next op's woken long-polls acknowledge (delete)
					// these, inside its timing, as a client's next sync would.
					b.StartTimer()
				}
				b.StopTimer()
				sort.Slice(reads, func(i, j int) bool { return reads[i] < reads[j] })
				b.ReportMetric(float64(putTotal.Microseconds())/1000/float64(b.N), "put_ms")
				b.ReportMetric(float64(allTotal.Microseconds())/1000/float64(b.N), "all_read_ms")
				b.ReportMetric(float64(reads[len(reads)/2].Microseconds())/1000, "p50_read_ms")
			})
		}
	}
}

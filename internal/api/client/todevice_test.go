package client_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/config"
	fed "polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

// sendToDevice sends PUT /sendToDevice/{typ}/{txn} with messages.
func sendToDevice(t testing.TB, c *hstest.Client, typ, txn string, messages map[string]map[string]any) *hstest.Response {
	t.Helper()
	return c.Do(t, "PUT", c3+"/sendToDevice/"+url.PathEscape(typ)+"/"+url.PathEscape(txn), map[string]any{"messages": messages})
}

// toDeviceOf returns the "n" of each to_device event of a sync, and checks
// the events' shape (sender, type, content; nothing else).
func toDeviceOf(t testing.TB, s syncResponse, raw []byte) []string {
	t.Helper()
	var out []string
	if s.ToDevice == nil {
		t.Fatalf("sync has no to_device")
	}
	for _, e := range s.ToDevice.Events {
		n, _ := e.Content["n"].(string)
		out = append(out, n)
	}
	// The events carry exactly sender, type and content.
	var shape struct {
		ToDevice struct {
			Events []map[string]json.RawMessage `json:"events"`
		} `json:"to_device"`
	}
	if err := json.Unmarshal(raw, &shape); err != nil {
		t.Fatalf("decode sync: %v", err)
	}
	for _, e := range shape.ToDevice.Events {
		if len(e) != 3 || e["sender"] == nil || e["type"] == nil || e["content"] == nil {
			t.Errorf("to_device event %v: want exactly sender, type and content", e)
		}
	}
	return out
}

// syncRaw is doSync that also returns the body.
func syncRaw(t testing.TB, c *hstest.Client, query string) (syncResponse, []byte) {
	t.Helper()
	r := c.Do(t, "GET", c3+"/sync?"+query, nil)
	hstest.MustOK(t, r)
	return hstest.Decode[syncResponse](t, r), r.Body
}

// toDeviceSync syncs c from since (a next_batch; "" for an initial sync)
// with timeout ms and returns the messages' "n"s and next_batch.
func toDeviceSync(t testing.TB, c *hstest.Client, since string, timeout int) ([]string, string) {
	t.Helper()
	q := fmt.Sprintf("timeout=%d", timeout)
	if since != "" {
		q += "&" + syncSince(since)
	}
	s, raw := syncRaw(t, c, q)
	return toDeviceOf(t, s, raw), s.NextBatch
}

func nmsg(n string) map[string]any { return map[string]any{"n": n} }

func TestSendToDevice(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob1 := hs.Register(t, "bob", "pw")
		bob2 := hs.Login(t, "bob", "pw")
		_, tok1 := toDeviceSync(t, bob1, "", 0)
		_, tok2 := toDeviceSync(t, bob2, "", 0)

		t.Run("to one device, then to every device", func(t *testing.T) {
			hstest.MustOK(t, sendToDevice(t, alice, "m.test", "one", map[string]map[string]any{bob1.UserID: {bob1.DeviceID: nmsg("one")}}))
			s, raw := syncRaw(t, bob1, syncSince(tok1))
			if got := toDeviceOf(t, s, raw); !slices.Equal(got, []string{"one"}) {
				t.Fatalf("bob1's to_device = %v, want [one]", got)
			}
			if e := s.ToDevice.Events[0]; e.Sender != alice.UserID || e.Type != "m.test" || e.EventID != "" {
				t.Errorf("to_device event = %+v, want sender alice, type m.test, no event_id", e)
			}
			tok1 = s.NextBatch
			if got, next := toDeviceSync(t, bob2, tok2, 0); len(got) != 0 {
				t.Fatalf("bob2's to_device = %v, want none", got)
			} else {
				tok2 = next
			}

			hstest.MustOK(t, sendToDevice(t, alice, "m.test", "all", map[string]map[string]any{bob1.UserID: {"*": nmsg("all")}}))
			for _, c := range []struct {
				c   *hstest.Client
				tok *string
			}{{bob1, &tok1}, {bob2, &tok2}} {
				got, next := toDeviceSync(t, c.c, *c.tok, 0)
				if !slices.Equal(got, []string{"all"}) {
					t.Errorf("%s's to_device after \"*\" = %v, want [all]", c.c.DeviceID, got)
				}
				*c.tok = next
			}
		})

		t.Run("a device's own content beats \"*\"", func(t *testing.T) {
			hstest.MustOK(t, sendToDevice(t, alice, "m.test", "mixed", map[string]map[string]any{
				bob1.UserID: {"*": nmsg("star"), bob2.DeviceID: nmsg("own")},
			}))
			got1, next1 := toDeviceSync(t, bob1, tok1, 0)
			got2, next2 := toDeviceSync(t, bob2, tok2, 0)
			if !slices.Equal(got1, []string{"star"}) || !slices.Equal(got2, []string{"own"}) {
				t.Errorf("to_device = %v and %v, want [star] and [own]", got1, got2)
			}
			tok1, tok2 = next1, next2
		})

		t.Run("a txnId is used once per device", func(t *testing.T) {
			m := map[string]map[string]any{bob1.UserID: {bob1.DeviceID: nmsg("txn")}}
			for range 3 {
				if r := hstest.MustOK(t, sendToDevice(t, alice, "m.test", "same", m)); len(r) != 0 {
					t.Errorf("PUT /sendToDevice = %v, want {}", r)
				}
			}
			// Another device of alice's may use the same txnId.
			alice2 := hs.Login(t, "alice", "pw")
			hstest.MustOK(t, sendToDevice(t, alice2, "m.test", "same", m))
			got, next := toDeviceSync(t, bob1, tok1, 0)
			if !slices.Equal(got, []string{"txn", "txn"}) {
				t.Errorf("to_device after 3 sends of one txnId and one of another device = %v, want [txn txn]", got)
			}
			tok1 = next
		})

		t.Run("messages arrive in order", func(t *testing.T) {
			var want []string
			for i := range 20 {
				n := fmt.Sprint(i)
				want = append(want, n)
				hstest.MustOK(t, sendToDevice(t, alice, "m.test", "order"+n, map[string]map[string]any{bob1.UserID: {bob1.DeviceID: nmsg(n)}}))
			}
			got, next := toDeviceSync(t, bob1, tok1, 0)
			if !slices.Equal(got, want) {
				t.Errorf("to_device = %v, want %v", got, want)
			}
			tok1 = next
		})

		t.Run("deleted only once the next sync acknowledges them", func(t *testing.T) {
			hstest.MustOK(t, sendToDevice(t, alice, "m.test", "ack", map[string]map[string]any{bob1.UserID: {bob1.DeviceID: nmsg("ack")}}))
			got, next := toDeviceSync(t, bob1, tok1, 0)
			if !slices.Equal(got, []string{"ack"}) {
				t.Fatalf("first sync = %v, want [ack]", got)
			}
			// The response was lost: the client syncs from the old token
			// again and gets the message again.
			if got, _ := toDeviceSync(t, bob1, tok1, 0); !slices.Equal(got, []string{"ack"}) {
				t.Fatalf("sync retried from the old token = %v, want [ack] again", got)
			}
			// Acknowledged by syncing from the first response's token.
			if got, _ := toDeviceSync(t, bob1, next, 0); len(got) != 0 {
				t.Fatalf("sync from next_batch = %v, want nothing", got)
			}
			// Gone now, even for the old token.
			if got, n := toDeviceSync(t, bob1, tok1, 0); len(got) != 0 {
				t.Fatalf("sync from the old token after the acknowledgement = %v, want nothing", got)
			} else {
				tok1 = n
			}
		})

		t.Run("150 messages in two syncs without waiting", func(t *testing.T) {
			var want []string
			for i := range 150 {
				n := fmt.Sprint(i)
				want = append(want, n)
				hstest.MustOK(t, sendToDevice(t, alice, "m.test", "many"+n, map[string]map[string]any{bob1.UserID: {bob1.DeviceID: nmsg(n)}}))
			}
			start := time.Now()
			first, next := toDeviceSync(t, bob1, tok1, 10000)
			if !slices.Equal(first, want[:100]) {
				t.Fatalf("first sync: %d messages %v…, want the first 100", len(first), first[:min(3, len(first))])
			}
			second, next := toDeviceSync(t, bob1, next, 10000)
			if !slices.Equal(second, want[100:]) {
				t.Fatalf("second sync: %v, want the last 50", second)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("two long-polls took %v: the second waited for its timeout", d)
			}
			third, next := toDeviceSync(t, bob1, next, 0)
			if len(third) != 0 {
				t.Errorf("third sync: %v, want nothing", third)
			}
			tok1 = next
		})

		t.Run("a message wakes a long-poll", func(t *testing.T) {
			done := make(chan []string, 1)
			since := tok1
			go func() {
				r := bob1.Send(t, hstest.Request{Method: "GET", Path: c3 + "/sync?timeout=20000&" + syncSince(since)})
				var s syncResponse
				json.Unmarshal(r.Body, &s)
				var got []string
				if s.ToDevice != nil {
					for _, e := range s.ToDevice.Events {
						n, _ := e.Content["n"].(string)
						got = append(got, n)
					}
				}
				done <- got
			}()
			time.Sleep(200 * time.Millisecond)
			start := time.Now()
			hstest.MustOK(t, sendToDevice(t, alice, "m.test", "wake", map[string]map[string]any{bob1.UserID: {bob1.DeviceID: nmsg("wake")}}))
			select {
			case got := <-done:
				if !slices.Equal(got, []string{"wake"}) {
					t.Errorf("woken sync = %v, want [wake]", got)
				}
				t.Logf("long-poll woken %v after the send", time.Since(start))
			case <-time.After(10 * time.Second):
				t.Fatalf("the message did not wake the long-poll")
			}
			got, next := toDeviceSync(t, bob1, tok1, 0)
			if !slices.Equal(got, []string{"wake"}) {
				t.Fatalf("sync from the same token again = %v", got)
			}
			_, tok1 = toDeviceSync(t, bob1, next, 0)
		})

		t.Run("unknown users and devices are skipped", func(t *testing.T) {
			hstest.MustOK(t, sendToDevice(t, alice, "m.test", "unknown", map[string]map[string]any{
				hs.UserID("nobody"): {"*": nmsg("x"), "DEV": nmsg("x")},
				bob1.UserID:         {"NOSUCHDEVICE": nmsg("x"), bob1.DeviceID: nmsg("known")},
			}))
			got, next := toDeviceSync(t, bob1, tok1, 0)
			if !slices.Equal(got, []string{"known"}) {
				t.Errorf("to_device = %v, want [known]", got)
			}
			tok1 = next
			if ms, err := hs.DB().ToDeviceAfter(t.Context(), bob1.UserID, "NOSUCHDEVICE", 0, 10); err != nil || len(ms) != 0 {
				t.Errorf("messages stored for an unknown device: %v, %v", ms, err)
			}
		})

		t.Run("malformed requests", func(t *testing.T) {
			path := c3 + "/sendToDevice/m.test/"
			for _, c := range []struct {
				name, body, code string
				status           int
			}{
				{"not JSON", `{`, "M_NOT_JSON", 400},
				{"no messages", `{}`, "M_MISSING_PARAM", 400},
				{"messages null", `{"messages":null}`, "M_MISSING_PARAM", 400},
				{"messages a list", `{"messages":[]}`, "M_BAD_JSON", 400},
				{"a user's messages a string", `{"messages":{"@bob:x":"hi"}}`, "M_BAD_JSON", 400},
				{"content not an object", `{"messages":{"` + bob1.UserID + `":{"` + bob1.DeviceID + `":"hi"}}}`, "M_BAD_JSON", 400},
				{"content null", `{"messages":{"` + bob1.UserID + `":{"` + bob1.DeviceID + `":null}}}`, "M_BAD_JSON", 400},
				{"invalid user ID", `{"messages":{"bob":{"D":{}}}}`, "M_INVALID_PARAM", 400},
				{"user ID without a server", `{"messages":{"@bob":{"D":{}}}}`, "M_INVALID_PARAM", 400},
				{"empty device ID", `{"messages":{"` + bob1.UserID + `":{"":{}}}}`, "M_INVALID_PARAM", 400},
				{"NUL in the device ID", `{"messages":{"` + bob1.UserID + `":{"a\u0000b":{}}}}`, "M_INVALID_PARAM", 400},
			} {
				t.Run(c.name, func(t *testing.T) {
					r := alice.Send(t, hstest.Request{Method: "PUT", Path: path + url.PathEscape(c.name), Body: c.body})
					hstest.MustErr(t, r, c.status, c.code)
				})
			}
			long := strings.Repeat("t", 256)
			hstest.MustErr(t, sendToDevice(t, alice, long, "longtype", map[string]map[string]any{}), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, sendToDevice(t, alice, "m.test", long, map[string]map[string]any{}), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, hs.Anon().Do(t, "PUT", path+"anon", map[string]any{"messages": map[string]any{}}), 401, "M_MISSING_TOKEN")
			// Nothing of these reached bob.
			if got, next := toDeviceSync(t, bob1, tok1, 0); len(got) != 0 {
				t.Errorf("to_device after refused requests = %v", got)
			} else {
				tok1 = next
			}
		})

		t.Run("too large", func(t *testing.T) {
			many := map[string]any{}
			for i := range 10001 {
				many[fmt.Sprintf("D%d", i)] = map[string]any{}
			}
			hstest.MustErr(t, sendToDevice(t, alice, "m.test", "many", map[string]map[string]any{bob1.UserID: many}), 413, "M_TOO_LARGE")
			big := map[string]any{"n": strings.Repeat("x", 57<<10)}
			hstest.MustErr(t, sendToDevice(t, alice, "m.test", "big", map[string]map[string]any{bob1.UserID: {bob1.DeviceID: big}}), 413, "M_TOO_LARGE")
			// The limits: 10,000 entries and 56 KiB pass.
			limit := map[string]any{bob1.DeviceID: nmsg("limit")}
			for i := range 9999 {
				limit[fmt.Sprintf("D%d", i)] = map[string]any{}
			}
			hstest.MustOK(t, sendToDevice(t, alice, "m.test", "limit", map[string]map[string]any{bob1.UserID: limit}))
			fits := map[string]any{"n": "fits", "pad": strings.Repeat("x", 55<<10)}
			hstest.MustOK(t, sendToDevice(t, alice, "m.test", "fits", map[string]map[string]any{bob1.UserID: {bob1.DeviceID: fits}}))
			got, next := toDeviceSync(t, bob1, tok1, 0)
			if !slices.Equal(got, []string{"limit", "fits"}) {
				t.Errorf("to_device = %v, want [limit fits]", got)
			}
			tok1 = next
		})

		t.Run("a deleted device's messages are deleted", func(t *testing.T) {
			bob3 := hs.Login(t, "bob", "pw")
			hstest.MustOK(t, sendToDevice(t, alice, "m.test", "gone", map[string]map[string]any{bob1.UserID: {bob3.DeviceID: nmsg("gone"), bob1.DeviceID: nmsg("stays")}}))
			if ms, _ := hs.DB().ToDeviceAfter(t.Context(), bob1.UserID, bob3.DeviceID, 0, 10); len(ms) != 1 {
				t.Fatalf("bob3 has %d messages before its deletion, want 1", len(ms))
			}
			hstest.MustOK(t, bob1.UIA(t, "DELETE", c3+"/devices/"+bob3.DeviceID, map[string]any{}, bob1.PasswordAuth()))
			if ms, err := hs.DB().ToDeviceAfter(t.Context(), bob1.UserID, bob3.DeviceID, 0, 10); err != nil || len(ms) != 0 {
				t.Errorf("bob3's messages after its deletion: %v, %v", ms, err)
			}
			// A logout deletes them too.
			bob4 := hs.Login(t, "bob", "pw")
			hstest.MustOK(t, sendToDevice(t, alice, "m.test", "logout", map[string]map[string]any{bob1.UserID: {bob4.DeviceID: nmsg("x")}}))
			hstest.MustOK(t, bob4.Do(t, "POST", c3+"/logout", map[string]any{}))
			if ms, _ := hs.DB().ToDeviceAfter(t.Context(), bob1.UserID, bob4.DeviceID, 0, 10); len(ms) != 0 {
				t.Errorf("bob4's messages after its logout: %d", len(ms))
			}
			got, next := toDeviceSync(t, bob1, tok1, 0)
			if !slices.Equal(got, []string{"stays"}) {
				t.Errorf("bob1's to_device = %v, want [stays]", got)
			}
			tok1 = next
		})
	})
}

// A message to a user of another server arrives in its sync, also when
// that server was down when it was sent.
func TestSendToDeviceFederation(t *testing.T) {
	t.Parallel()
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			f := hstest.NewFederation(t, hstest.Options{Engine: &eng}, "hs1.polder.test", "hs2.polder.test")
			hs1, hs2 := f.Server("hs1.polder.test"), f.Server("hs2.polder.test")
			alice := hs1.Register(t, "alice", "pw")
			bob1 := hs2.Register(t, "bob", "pw")
			bob2 := hs2.Login(t, "bob", "pw")
			_, tok1 := toDeviceSync(t, bob1, "", 0)
			_, tok2 := toDeviceSync(t, bob2, "", 0)

			// await syncs c from *tok until it has messages.
			await := func(c *hstest.Client, tok *string, want ...string) {
				t.Helper()
				var got []string
				eventually(t, c.DeviceID+" gets "+strings.Join(want, ","), func() error {
					ms, next := toDeviceSync(t, c, *tok, 5000)
					got = append(got, ms...)
					*tok = next
					if len(got) < len(want) {
						return fmt.Errorf("got %v so far", got)
					}
					return nil
				})
				if !slices.Equal(got, want) {
					t.Fatalf("%s's to_device = %v, want %v", c.DeviceID, got, want)
				}
			}

			hstest.MustOK(t, sendToDevice(t, alice, "m.test", "one", map[string]map[string]any{bob1.UserID: {bob1.DeviceID: nmsg("one")}}))
			await(bob1, &tok1, "one")
			hstest.MustOK(t, sendToDevice(t, alice, "m.test", "all", map[string]map[string]any{bob1.UserID: {"*": nmsg("all")}}))
			await(bob1, &tok1, "all")
			await(bob2, &tok2, "all")

			// Retried by the client: sent once.
			hstest.MustOK(t, sendToDevice(t, alice, "m.test", "all", map[string]map[string]any{bob1.UserID: {"*": nmsg("all")}}))

			// hs2 is down when alice sends; the queue delivers once it is
			// back, in order.
			hs2.Stop(t)
			for _, n := range []string{"down1", "down2", "down3"} {
				hstest.MustOK(t, sendToDevice(t, alice, "m.test", n, map[string]map[string]any{bob1.UserID: {bob1.DeviceID: nmsg(n)}}))
			}
			time.Sleep(3 * time.Second) // a failed attempt or two
			hs2.Restart(t)
			await(bob1, &tok1, "down1", "down2", "down3")
			if got, _ := toDeviceSync(t, bob2, tok2, 0); len(got) != 0 {
				t.Errorf("bob2 got %v, want nothing (the retried txnId was sent once)", got)
			}
		})
	}
}

// With a scripted remote server: outbound EDUs are split under the size
// limit, and inbound EDUs are checked (sender of the origin, local
// recipients, JSON objects) and delivered once per message_id.
func TestToDeviceFederationEDUs(t *testing.T) {
	t.Parallel()
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			const hsName, remoteName = "hs1.polder.test", "remote.polder.test"
			f := hstest.NewFederation(t, hstest.Options{Engine: &eng}, hsName)
			hs := f.Server(hsName)
			remote := f.NewRemote(t, remoteName)
			var mu sync.Mutex
			var edus []fed.EDU
			var txnSizes []int
			remote.Mux.HandleFunc("PUT /_matrix/federation/v1/send/{txnId}", func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				var txn fed.Transaction
				json.Unmarshal(body, &txn)
				mu.Lock()
				edus = append(edus, txn.EDUs...)
				txnSizes = append(txnSizes, len(body))
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(`{"pdus":{}}`))
			})
			alice := hs.Register(t, "alice", "pw")
			bob := hs.Register(t, "bob", "pw")
			_, tok := toDeviceSync(t, bob, "", 0)

			t.Run("outbound: split under 60 KiB", func(t *testing.T) {
				devs := map[string]any{}
				for i := range 300 {
					devs[fmt.Sprintf("DEV%03d", i)] = map[string]any{"n": fmt.Sprint(i), "pad": strings.Repeat("<", 200)}
				}
				x := "@x:" + remoteName
				hstest.MustOK(t, sendToDevice(t, alice, "m.split", "split", map[string]map[string]any{x: devs}))
				eventually(t, "300 messages at the remote", func() error {
					mu.Lock()
					defer mu.Unlock()
					n := 0
					for _, e := range edus {
						var c fed.DirectToDevice
						json.Unmarshal(e.Content, &c)
						n += len(c.Messages[id.UserID(x)])
					}
					if n < 300 {
						return fmt.Errorf("%d so far in %d EDUs", n, len(edus))
					}
					return nil
				})
				mu.Lock()
				defer mu.Unlock()
				ids := map[string]bool{}
				got := map[string]bool{}
				for _, e := range edus {
					b, _ := json.Marshal(e)
					if e.Type != "m.direct_to_device" || len(b) > 60<<10 {
						t.Errorf("EDU %s of %d bytes, want m.direct_to_device under 60 KiB", e.Type, len(b))
					}
					var c fed.DirectToDevice
					json.Unmarshal(e.Content, &c)
					if c.Sender != id.UserID(alice.UserID) || c.Type != "m.split" || c.MessageID == "" || ids[c.MessageID] {
						t.Errorf("EDU sender %s type %s message_id %q (seen: %v)", c.Sender, c.Type, c.MessageID, ids[c.MessageID])
					}
					ids[c.MessageID] = true
					for dev, content := range c.Messages[id.UserID(x)] {
						var m struct{ N, Pad string }
						json.Unmarshal(content, &m)
						if got[string(dev)] || m.Pad != strings.Repeat("<", 200) {
							t.Errorf("message for %s: twice or changed", dev)
						}
						got[string(dev)] = true
					}
				}
				if len(got) != 300 || len(edus) < 5 {
					t.Errorf("%d devices in %d EDUs, want 300 in several (each EDU about 50 KiB at most)", len(got), len(edus))
				}
				t.Logf("300 messages of ~1.3 KiB (escaped) in %d EDUs, transactions of %v bytes", len(edus), txnSizes)
			})

			t.Run("inbound", func(t *testing.T) {
				send := func(edus ...fed.EDU) {
					t.Helper()
					txnID := fmt.Sprintf("t%d", time.Now().UnixNano())
					if _, err := remote.Client().SendTransaction(t.Context(), hsName, txnID, fed.Transaction{
						Origin: remoteName, OriginServerTS: time.Now().UnixMilli(), PDUs: []json.RawMessage{}, EDUs: edus,
					}); err != nil {
						t.Fatalf("send transaction: %v", err)
					}
				}
				edu := func(sender, msgID string, messages map[string]map[string]any) fed.EDU {
					return fed.EDU{Type: "m.direct_to_device", Content: hstest.MustJSON(t, map[string]any{
						"sender": sender, "type": "m.fed", "message_id": msgID, "messages": messages,
					})}
				}
				carol := "@carol:" + remoteName
				send(edu(carol, "m1", map[string]map[string]any{bob.UserID: {"*": nmsg("first")}}))
				// The same message_id again, in another transaction.
				send(edu(carol, "m1", map[string]map[string]any{bob.UserID: {"*": nmsg("first again")}}))
				send(
					// A sender of another server.
					edu("@mallory:"+hsName, "m2", map[string]map[string]any{bob.UserID: {"*": nmsg("spoofed")}}),
					// A recipient of another server, one not an object,
					// one for an unknown device, and one good.
					edu(carol, "m3", map[string]map[string]any{
						"@x:elsewhere.test": {"*": nmsg("elsewhere")},
						bob.UserID:          {bob.DeviceID: nmsg("second"), "NOSUCH": nmsg("unknown")},
					}),
					fed.EDU{Type: "m.direct_to_device", Content: json.RawMessage(`{"sender":"` + carol + `","type":"m.fed","message_id":"m4","messages":{"` + bob.UserID + `":{"*":"not an object"}}}`)},
					fed.EDU{Type: "m.direct_to_device", Content: json.RawMessage(`["malformed"]`)},
				)
				s, raw := syncRaw(t, bob, syncSince(tok)+"&timeout=0")
				got := toDeviceOf(t, s, raw)
				if !slices.Equal(got, []string{"first", "second"}) {
					t.Fatalf("bob's to_device = %v, want [first second]", got)
				}
				if e := s.ToDevice.Events[0]; e.Sender != carol || e.Type != "m.fed" {
					t.Errorf("to_device event = %+v, want sender %s type m.fed", e, carol)
				}
			})
		})
	}
}

// Without federation, messages for users of other servers are dropped
// (the request still succeeds, local recipients get theirs).
func TestSendToDeviceNoFederation(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{Config: func(c *config.Config) { c.FederationEnabled = false }}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		_, tok := toDeviceSync(t, bob, "", 0)
		hstest.MustOK(t, sendToDevice(t, alice, "m.test", "t1", map[string]map[string]any{
			"@x:elsewhere.test": {"*": nmsg("remote")},
			bob.UserID:          {"*": nmsg("local")},
		}))
		if got, _ := toDeviceSync(t, bob, tok, 0); !slices.Equal(got, []string{"local"}) {
			t.Errorf("bob's to_device = %v, want [local]", got)
		}
	})
}

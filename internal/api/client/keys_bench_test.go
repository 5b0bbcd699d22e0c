package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// benchKeyDevices are the devices of the key benchmarks: 100 users of 10
// devices each, 1,000 devices in all.
const benchKeyUsers, benchKeyDevicesPerUser = 100, 10

// seedBenchKeys stores device keys for the benchmark devices through the
// store (the keys are opaque to the server; what is measured is reading
// and handing them out) and returns the devices by user.
func seedBenchKeys(b *testing.B, hs *hstest.Server) map[id.UserID][]id.DeviceID {
	b.Helper()
	ctx := context.Background()
	out := map[id.UserID][]id.DeviceID{}
	err := hs.DB().WithTx(ctx, "bench_seed", func(tx *store.Tx) error {
		for u := range benchKeyUsers {
			user := id.UserID(fmt.Sprintf("@u%03d:%s", u, hs.ServerName()))
			for d := range benchKeyDevicesPerUser {
				dev := id.DeviceID(fmt.Sprintf("DEV%02d", d))
				dk, _ := json.Marshal(map[string]any{
					"user_id": user, "device_id": dev,
					"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
					"keys": map[string]string{
						"curve25519:" + string(dev): "3C5BFWi2Y8MaVvjM8M22DBmh24PmgR0nPvJOIArzgyI",
						"ed25519:" + string(dev):    "lEuiRJBit0IG6nUf5pUzWTUEsRVVe/HJkoKuEww9ULI",
					},
					"signatures": map[string]any{string(user): map[string]string{
						"ed25519:" + string(dev): "dSO80A01XiigH3uBiDVx/EjzaoycHcjq9lfQX0uWsqxl2giMIiSPR8a4d291W1ihKJL/a+myXS367WT6NAIcBA",
					}},
				})
				if err := tx.SetDeviceKeys(ctx, user, dev, dk); err != nil {
					return err
				}
				out[user] = append(out[user], dev)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkKeysQuery measures POST /keys/query of 1,000 devices (100 users
// × 10 devices, all devices of each user asked for) in one request, over
// HTTP. Run:
//
//	go test ./internal/api/client -run '^$' -bench 'BenchmarkKeys' -benchmem
func BenchmarkKeysQuery(b *testing.B) {
	for _, e := range storetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			hs := hstest.Start(b, e, hstest.Options{})
			c := benchUser(b, hs, "asker")
			devs := seedBenchKeys(b, hs)
			want := map[id.UserID][]id.DeviceID{}
			for u := range devs {
				want[u] = []id.DeviceID{}
			}
			body, _ := json.Marshal(map[string]any{"device_keys": want})
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r := c.Do(b, "POST", keysPath+"/query", json.RawMessage(body))
				if r.Status != 200 {
					b.Fatalf("query: %d %s", r.Status, r.Body)
				}
			}
			b.StopTimer()
			q := hstest.Decode[queryResponse](b, c.Do(b, "POST", keysPath+"/query", json.RawMessage(body)))
			n := 0
			for _, d := range q.DeviceKeys {
				n += len(d)
			}
			if n != benchKeyUsers*benchKeyDevicesPerUser {
				b.Fatalf("query answered %d devices, want %d", n, benchKeyUsers*benchKeyDevicesPerUser)
			}
		})
	}
}

// BenchmarkKeysClaim measures POST /keys/claim of one one-time key of each
// of 1,000 devices in one request, over HTTP (the keys are replaced,
// outside the timer, between requests).
func BenchmarkKeysClaim(b *testing.B) {
	for _, e := range storetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			hs := hstest.Start(b, e, hstest.Options{})
			c := benchUser(b, hs, "claimer")
			devs := seedBenchKeys(b, hs)
			want := map[id.UserID]map[id.DeviceID]string{}
			for u, ds := range devs {
				want[u] = map[id.DeviceID]string{}
				for _, d := range ds {
					want[u][d] = "signed_curve25519"
				}
			}
			body, _ := json.Marshal(map[string]any{"one_time_keys": want})
			ctx := context.Background()
			seq := 0
			refill := func() {
				seq++
				err := hs.DB().WithTx(ctx, "bench_refill", func(tx *store.Tx) error {
					for u, ds := range devs {
						for _, d := range ds {
							k := store.OneTimeKey{Algorithm: "signed_curve25519", KeyID: fmt.Sprintf("AAAA%d", seq),
								JSON: []byte(`{"key":"zKbLg+NrIjpnagy+pIY6uPL4ZwEG2v+8F9lmgsnlZzs","signatures":{"` + string(u) + `":{"ed25519:` + string(d) + `":"FLWxXqGbwrb8SM3Y795eB6OA8bwBcoMZFXBqnTn58AYWZSqiD45tlBVcDa2L7RwdKXebW/VzDlnfVJ+9jok1Bw"}}}`)}
							if err := tx.AddOneTimeKeys(ctx, u, d, []store.OneTimeKey{k}); err != nil {
								return err
							}
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				refill()
				b.StartTimer()
				r := c.Do(b, "POST", keysPath+"/claim", json.RawMessage(body))
				if r.Status != 200 {
					b.Fatalf("claim: %d %s", r.Status, r.Body)
				}
			}
			b.StopTimer()
			refill()
			cr := hstest.Decode[struct {
				OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
			}](b, c.Do(b, "POST", keysPath+"/claim", json.RawMessage(body)))
			n := 0
			for _, d := range cr.OneTimeKeys {
				n += len(d)
			}
			if n != benchKeyUsers*benchKeyDevicesPerUser {
				b.Fatalf("claim answered %d keys, want %d", n, benchKeyUsers*benchKeyDevicesPerUser)
			}
		})
	}
}

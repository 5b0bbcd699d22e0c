package client_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

// Keys of users of another server, between two Polders sharing a room:
// bob's devices reach alice's /sync (device_lists.changed) and /keys/query
// through m.device_list_update EDUs and the cache of remote device lists,
// and alice claims bob's one-time keys across servers.
func TestKeysFederationRemoteUsers(t *testing.T) {
	t.Parallel()
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			testKeysFederationRemoteUsers(t, eng)
		})
	}
}

func testKeysFederationRemoteUsers(t *testing.T, eng storetest.Engine) {
	f := hstest.NewFederation(t, hstest.Options{Engine: &eng}, "hs1.polder.test", "hs2.polder.test")
	hs1, hs2 := f.Server("hs1.polder.test"), f.Server("hs2.polder.test")
	t.Cleanup(func() {
		if t.Failed() {
			for _, hs := range f.Servers() {
				for _, l := range strings.Split(hs.Logs(), "\n") {
					if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "device list") {
						t.Logf("%s: %s", hs.ServerName(), l)
					}
				}
			}
		}
	})
	alice := hs1.Register(t, "alice", "pw")
	bob := hs2.Register(t, "bob", "pw")
	carol := hs2.Register(t, "carol", "pw") // shares no room with alice
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	joinVia(t, bob, room, hs1.ServerName())
	eventually(t, "hs1 sees bob joined", func() error {
		r := alice.Do(t, "GET", roomPath(room, "/state/m.room.member/"+bob.UserID), nil)
		if r.Status != 200 || !strings.Contains(string(r.Body), `"join"`) {
			return fmt.Errorf("bob's member state on hs1: %d %s", r.Status, r.Body)
		}
		return nil
	})
	// alice's client asks for bob's keys once it sees him join, as clients
	// do: hs1 holds his list from then on. (A list no client asked for is
	// not reported when it changes: nobody holds keys of it to refresh.)
	queryKeys(t, alice, map[string][]string{bob.UserID: {}})
	eventually(t, "hs1 holds bob's device list", func() error { return tracked(hs1, bob.UserID) })
	_, tok := syncDeviceLists(t, alice, "")

	// bob uploads keys: alice's /sync says bob changed, and /keys/query
	// has his device.
	bobKey := newEdKey(t)
	uploadKeys(t, bob, map[string]any{
		"device_keys":   deviceKeys(t, bob, bobKey),
		"one_time_keys": map[string]any{"signed_curve25519:B1": bobKey.sign(t, otk("B1"), bob.UserID, "ed25519:"+bob.DeviceID)},
	})
	tok = awaitChanged(t, alice, tok, bob.UserID)
	awaitDevices(t, alice, bob.UserID, bob.DeviceID)
	q := queryKeys(t, alice, map[string][]string{bob.UserID: {}})
	if k := q.DeviceKeys[bob.UserID][bob.DeviceID]; k["user_id"] != bob.UserID || sigsOf(k, bob.UserID)["ed25519:"+bob.DeviceID] == nil {
		t.Errorf("bob's device keys on hs1 = %v, want his signed keys", k)
	}
	if len(q.Failures) != 0 {
		t.Errorf("/keys/query failures = %v", q.Failures)
	}
	// hs1 now tracks bob's list: later changes come by EDU.
	eventually(t, "hs1 tracks bob's device list", func() error { return tracked(hs1, bob.UserID) })

	// A one-time key claimed across servers, once.
	claim := func() map[string]any {
		t.Helper()
		r := hstest.MustOK(t, alice.Do(t, "POST", keysPath+"/claim", map[string]any{
			"one_time_keys": map[string]any{bob.UserID: map[string]any{bob.DeviceID: "signed_curve25519"}},
		}))
		if f, _ := r["failures"].(map[string]any); len(f) != 0 {
			t.Errorf("/keys/claim failures = %v", f)
		}
		otks, _ := r["one_time_keys"].(map[string]any)
		devs, _ := otks[bob.UserID].(map[string]any)
		keys, _ := devs[bob.DeviceID].(map[string]any)
		return keys
	}
	if keys := claim(); keys["signed_curve25519:B1"] == nil {
		t.Errorf("first claim of bob's key = %v, want signed_curve25519:B1", keys)
	}
	if keys := claim(); len(keys) != 0 {
		t.Errorf("second claim of bob's key = %v, want none (one-time keys are handed out once)", keys)
	}

	// A second device of bob: an update that hs1 applies to its cache.
	phone := hs2.Login(t, "bob", "pw")
	uploadKeys(t, phone, map[string]any{"device_keys": deviceKeys(t, phone, newEdKey(t))})
	tok = awaitChanged(t, alice, tok, bob.UserID)
	awaitDevices(t, alice, bob.UserID, bob.DeviceID, phone.DeviceID)
	if err := tracked(hs1, bob.UserID); err != nil {
		t.Errorf("after bob's second device: %v", err)
	}

	// Cross-signing keys: an m.signing_key_update.
	cs := newCrossSigning(t, bob.UserID)
	hstest.MustOK(t, bob.Do(t, "POST", keysPath+"/device_signing/upload", cs.body))
	tok = awaitChanged(t, alice, tok, bob.UserID)
	eventually(t, "bob's master key on hs1", func() error {
		q := queryKeys(t, alice, map[string][]string{bob.UserID: {}})
		if k := q.MasterKeys[bob.UserID]; k == nil || !strings.Contains(fmt.Sprint(k["keys"]), cs.master.pub) {
			return fmt.Errorf("master keys %v, self-signing %v", q.MasterKeys, q.SelfSigningKeys)
		}
		if k := q.SelfSigningKeys[bob.UserID]; k == nil || !strings.Contains(fmt.Sprint(k["keys"]), cs.self.pub) {
			return fmt.Errorf("self-signing keys %v", q.SelfSigningKeys)
		}
		if q.UserSigningKeys[bob.UserID] != nil {
			return fmt.Errorf("bob's user-signing key reached alice: %v", q.UserSigningKeys)
		}
		return nil
	})

	// bob deletes his first device: gone from hs1 too.
	hstest.MustOK(t, phone.UIA(t, "DELETE", devicesPath+"/"+bob.DeviceID, map[string]any{}, phone.PasswordAuth()))
	awaitChanged(t, alice, tok, bob.UserID)
	awaitDevices(t, alice, bob.UserID, phone.DeviceID)
	if err := tracked(hs1, bob.UserID); err != nil {
		t.Errorf("after bob deleted a device: %v", err)
	}

	// The changes after the first came as updates that applied, without
	// fetching bob's whole list again.
	if n := strings.Count(hs2.Logs(), "path=/_matrix/federation/v1/user/devices/"); n == 0 || n > 2 {
		t.Errorf("hs2 served GET /user/devices %d times, want once (twice if a query and the first update crossed)", n)
	}

	// carol shares no room: her keys are asked live and not kept.
	uploadKeys(t, carol, map[string]any{"device_keys": deviceKeys(t, carol, newEdKey(t))})
	awaitDevices(t, alice, carol.UserID, carol.DeviceID)
	if _, states, err := hs1.DB().RemoteDeviceLists(context.Background(), []id.UserID{id.UserID(carol.UserID)}); err != nil || len(states) != 0 {
		t.Errorf("carol's device list on hs1: %v, %v; want none kept", states, err)
	}

	// hs2 down: bob's tracked list still answers, carol's server is a
	// failure, within the client's timeout.
	hs2.Stop(t)
	start := time.Now()
	r := alice.Do(t, "POST", keysPath+"/query", map[string]any{"timeout": 3000, "device_keys": map[string]any{bob.UserID: []string{}, carol.UserID: []string{}}})
	hstest.MustOK(t, r)
	q = hstest.Decode[queryResponse](t, r)
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("/keys/query with hs2 down took %v, timeout 3 s", d)
	}
	if _, ok := q.DeviceKeys[bob.UserID][phone.DeviceID]; !ok {
		t.Errorf("/keys/query with hs2 down: bob's devices %v, want his phone from the cache", q.DeviceKeys[bob.UserID])
	}
	if f, _ := q.Failures[hs2.ServerName()].(map[string]any); f["status"] != float64(503) || f["message"] == nil {
		t.Errorf("/keys/query with hs2 down: failures %v, want hs2 with status 503 and a message", q.Failures)
	}
	r = alice.Do(t, "POST", keysPath+"/claim", map[string]any{"timeout": 3000, "one_time_keys": map[string]any{carol.UserID: map[string]any{carol.DeviceID: "signed_curve25519"}}})
	if m := hstest.MustOK(t, r); m["failures"].(map[string]any)[hs2.ServerName()] == nil {
		t.Errorf("/keys/claim with hs2 down = %s, want hs2 in failures", r.Body)
	}
}

// awaitChanged waits until alice's /sync since tok lists user in
// device_lists.changed and returns the next token.
func awaitChanged(t testing.TB, c *hstest.Client, tok, user string) string {
	t.Helper()
	var next string
	eventually(t, fmt.Sprintf("%s sees %s in device_lists.changed", c.UserID, user), func() error {
		dl, n := syncDeviceLists(t, c, tok)
		if !slices.Contains(dl.Changed, user) {
			return fmt.Errorf("device_lists since %s = %+v", tok, dl)
		}
		next = n
		return nil
	})
	return next
}

// awaitDevices waits until /keys/query of c gives exactly devices (with
// keys) for user.
func awaitDevices(t testing.TB, c *hstest.Client, user string, devices ...string) {
	t.Helper()
	slices.Sort(devices)
	eventually(t, fmt.Sprintf("%s sees devices %v of %s", c.UserID, devices, user), func() error {
		q := queryKeys(t, c, map[string][]string{user: {}})
		var got []string
		for d := range q.DeviceKeys[user] {
			got = append(got, d)
		}
		slices.Sort(got)
		if !slices.Equal(got, devices) {
			return fmt.Errorf("devices %v, failures %v", got, q.Failures)
		}
		return nil
	})
}

// tracked reports whether hs holds an up-to-date copy of user's device
// list.
func tracked(hs *hstest.Server, user string) error {
	_, states, err := hs.DB().RemoteDeviceLists(context.Background(), []id.UserID{id.UserID(user)})
	if err != nil {
		return err
	}
	if st, ok := states[id.UserID(user)]; !ok || !st.Tracked() {
		return fmt.Errorf("%s's device list on %s: %+v (found %v), want tracked", user, hs.ServerName(), st, ok)
	}
	return nil
}

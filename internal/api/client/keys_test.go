package client_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	fedclient "polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/hstest"
)

const keysPath = c3 + "/keys"

// edKey is an ed25519 key pair of a test device or cross-signing key.
type edKey struct {
	pub  string // unpadded base64
	priv ed25519.PrivateKey
}

func newEdKey(t testing.TB) edKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return edKey{pub: base64.RawStdEncoding.EncodeToString(pub), priv: priv}
}

// sign adds signer's signature with key keyID ("ed25519:…") to obj
// (spec appendix "Signing JSON").
func (k edKey) sign(t testing.TB, obj map[string]any, signer, keyID string) map[string]any {
	t.Helper()
	bare := map[string]any{}
	for key, v := range obj {
		if key != "signatures" && key != "unsigned" {
			bare[key] = v
		}
	}
	raw, err := json.Marshal(bare)
	if err != nil {
		t.Fatal(err)
	}
	canon, err := cjson.Canonical(raw)
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(k.priv, canon))
	out := map[string]any{}
	for key, v := range obj {
		out[key] = v
	}
	sigs := map[string]any{}
	if old, ok := obj["signatures"].(map[string]any); ok {
		for u, m := range old {
			cp := map[string]any{}
			for k, v := range m.(map[string]any) {
				cp[k] = v
			}
			sigs[u] = cp
		}
	}
	if sigs[signer] == nil {
		sigs[signer] = map[string]any{}
	}
	sigs[signer].(map[string]any)[keyID] = sig
	out["signatures"] = sigs
	return out
}

// deviceKeys is a device_keys object of c's device, self-signed with k.
func deviceKeys(t testing.TB, c *hstest.Client, k edKey) map[string]any {
	t.Helper()
	obj := map[string]any{
		"user_id":    c.UserID,
		"device_id":  c.DeviceID,
		"algorithms": []any{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]any{
			"curve25519:" + c.DeviceID: "curve" + c.DeviceID,
			"ed25519:" + c.DeviceID:    k.pub,
		},
	}
	return k.sign(t, obj, c.UserID, "ed25519:"+c.DeviceID)
}

// crossSigning is a user's set of cross-signing keys.
type crossSigning struct {
	master, self, user edKey
	body               map[string]any // the device_signing/upload body
}

// csKey is a cross-signing key object of user.
func csKey(user, usage string, k edKey) map[string]any {
	return map[string]any{"user_id": user, "usage": []any{usage}, "keys": map[string]any{"ed25519:" + k.pub: k.pub}}
}

func newCrossSigning(t testing.TB, user string) crossSigning {
	t.Helper()
	cs := crossSigning{master: newEdKey(t), self: newEdKey(t), user: newEdKey(t)}
	mk := "ed25519:" + cs.master.pub
	cs.body = map[string]any{
		"master_key":       csKey(user, "master", cs.master),
		"self_signing_key": cs.master.sign(t, csKey(user, "self_signing", cs.self), user, mk),
		"user_signing_key": cs.master.sign(t, csKey(user, "user_signing", cs.user), user, mk),
	}
	return cs
}

type queryResponse struct {
	DeviceKeys      map[string]map[string]map[string]any `json:"device_keys"`
	MasterKeys      map[string]map[string]any            `json:"master_keys"`
	SelfSigningKeys map[string]map[string]any            `json:"self_signing_keys"`
	UserSigningKeys map[string]map[string]any            `json:"user_signing_keys"`
	Failures        map[string]any                       `json:"failures"`
}

func queryKeys(t testing.TB, c *hstest.Client, want map[string][]string) queryResponse {
	t.Helper()
	r := c.Do(t, "POST", keysPath+"/query", map[string]any{"device_keys": want})
	hstest.MustOK(t, r)
	return hstest.Decode[queryResponse](t, r)
}

func uploadKeys(t testing.TB, c *hstest.Client, body map[string]any) map[string]float64 {
	t.Helper()
	m := hstest.MustOK(t, c.Do(t, "POST", keysPath+"/upload", body))
	out := map[string]float64{}
	for k, v := range m["one_time_key_counts"].(map[string]any) {
		out[k] = v.(float64)
	}
	return out
}

// sigsOf returns obj's signatures by user.
func sigsOf(obj map[string]any, user string) map[string]any {
	s, _ := obj["signatures"].(map[string]any)
	m, _ := s[user].(map[string]any)
	return m
}

func otk(id string) map[string]any {
	return map[string]any{"key": "otk" + id}
}

// POST /keys/upload, /keys/claim and the one-time key counts of /sync:
// one-time keys are handed out once each, then the fallback key.
func TestKeysUploadClaim(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		dk := newEdKey(t)

		counts := uploadKeys(t, alice, map[string]any{})
		if counts["signed_curve25519"] != 0 || len(counts) != 1 {
			t.Errorf("empty upload: counts %v, want signed_curve25519: 0", counts)
		}
		s := doSync(t, alice, "timeout=0")
		if s.OTKCount["signed_curve25519"] != 0 || len(s.Fallback) != 0 || s.Fallback == nil {
			t.Errorf("initial sync: counts %v, fallback %v; want signed_curve25519: 0 and []", s.OTKCount, s.Fallback)
		}

		counts = uploadKeys(t, alice, map[string]any{
			"device_keys": deviceKeys(t, alice, dk),
			"one_time_keys": map[string]any{
				"signed_curve25519:A": otk("A"), "signed_curve25519:B": otk("B"), "signed_curve25519:C": otk("C"),
				"curve25519:D": "unsignedD",
			},
			"fallback_keys": map[string]any{"signed_curve25519:F": map[string]any{"key": "fallF", "fallback": true}},
		})
		if counts["signed_curve25519"] != 3 || counts["curve25519"] != 1 {
			t.Errorf("upload: counts %v, want 3 signed_curve25519 and 1 curve25519", counts)
		}
		s = doSync(t, alice, "timeout=0")
		if s.OTKCount["signed_curve25519"] != 3 || !slices.Equal(s.Fallback, []string{"signed_curve25519"}) {
			t.Errorf("sync: counts %v, fallback %v; want 3 and [signed_curve25519]", s.OTKCount, s.Fallback)
		}

		t.Run("re-upload same one-time key is ignored", func(t *testing.T) {
			c := uploadKeys(t, alice, map[string]any{"one_time_keys": map[string]any{"signed_curve25519:A": otk("A")}})
			if c["signed_curve25519"] != 3 {
				t.Errorf("counts %v, want 3", c)
			}
		})
		t.Run("errors", func(t *testing.T) {
			tests := []struct {
				name    string
				body    map[string]any
				errcode string
			}{
				{"conflicting one-time key", map[string]any{"one_time_keys": map[string]any{"signed_curve25519:A": otk("other")}}, "M_INVALID_PARAM"},
				{"device keys of another device", map[string]any{"device_keys": map[string]any{"user_id": alice.UserID, "device_id": "OTHER", "keys": map[string]any{}}}, "M_INVALID_PARAM"},
				{"device keys of another user", map[string]any{"device_keys": map[string]any{"user_id": bob.UserID, "device_id": alice.DeviceID, "keys": map[string]any{}}}, "M_INVALID_PARAM"},
				// Complement TestUploadKey "Rejects invalid device keys".
				{"device keys without algorithms, keys, signatures", map[string]any{"device_keys": map[string]any{"user_id": alice.UserID, "device_id": alice.DeviceID}}, "M_BAD_JSON"},
				{"device keys without signatures", map[string]any{"device_keys": map[string]any{"user_id": alice.UserID, "device_id": alice.DeviceID, "algorithms": []string{}, "keys": map[string]any{}}}, "M_BAD_JSON"},
				{"key ID without algorithm", map[string]any{"one_time_keys": map[string]any{"nocolon": otk("x")}}, "M_INVALID_PARAM"},
				{"key not an object", map[string]any{"one_time_keys": map[string]any{"signed_curve25519:N": 5}}, "M_BAD_JSON"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					hstest.MustErr(t, alice.Do(t, "POST", keysPath+"/upload", tt.body), 400, tt.errcode)
				})
			}
			// Nothing of a refused upload is stored.
			c := uploadKeys(t, alice, map[string]any{})
			if c["signed_curve25519"] != 3 {
				t.Errorf("after refused uploads: counts %v, want 3", c)
			}
		})

		claim := func() map[string]any {
			t.Helper()
			r := bob.Do(t, "POST", keysPath+"/claim", map[string]any{
				"one_time_keys": map[string]any{alice.UserID: map[string]any{alice.DeviceID: "signed_curve25519"}},
			})
			m := hstest.MustOK(t, r)
			otks, _ := m["one_time_keys"].(map[string]any)
			devs, _ := otks[alice.UserID].(map[string]any)
			got, _ := devs[alice.DeviceID].(map[string]any)
			return got
		}
		seen := map[string]bool{}
		for i := range 3 {
			got := claim()
			if len(got) != 1 {
				t.Fatalf("claim %d: got %v, want one key", i, got)
			}
			for k := range got {
				if seen[k] || k == "signed_curve25519:F" {
					t.Errorf("claim %d: got %s again or the fallback key", i, k)
				}
				seen[k] = true
			}
		}
		s = doSync(t, alice, "timeout=0")
		if s.OTKCount["signed_curve25519"] != 0 || !slices.Equal(s.Fallback, []string{"signed_curve25519"}) {
			t.Errorf("after 3 claims: counts %v, fallback %v", s.OTKCount, s.Fallback)
		}
		for i := range 2 {
			got := claim()
			if _, ok := got["signed_curve25519:F"]; !ok || len(got) != 1 {
				t.Errorf("claim %d after the one-time keys: got %v, want the fallback key", i, got)
			}
		}
		s = doSync(t, alice, "timeout=0")
		if len(s.Fallback) != 0 {
			t.Errorf("after the fallback key was claimed: unused fallback %v, want []", s.Fallback)
		}
		// Re-uploading the same fallback key keeps it used; a new one is
		// unused.
		uploadKeys(t, alice, map[string]any{"fallback_keys": map[string]any{"signed_curve25519:F": map[string]any{"key": "fallF", "fallback": true}}})
		if s = doSync(t, alice, "timeout=0"); len(s.Fallback) != 0 {
			t.Errorf("same fallback key again: unused %v, want []", s.Fallback)
		}
		uploadKeys(t, alice, map[string]any{"fallback_keys": map[string]any{"signed_curve25519:G": map[string]any{"key": "fallG", "fallback": true}}})
		if s = doSync(t, alice, "timeout=0"); !slices.Equal(s.Fallback, []string{"signed_curve25519"}) {
			t.Errorf("new fallback key: unused %v, want [signed_curve25519]", s.Fallback)
		}
		// The unsigned curve25519 key, and nothing for unknown devices.
		r := bob.Do(t, "POST", keysPath+"/claim", map[string]any{
			"one_time_keys": map[string]any{alice.UserID: map[string]any{alice.DeviceID: "curve25519", "NOSUCH": "signed_curve25519"}},
		})
		m := hstest.MustOK(t, r)
		devs := m["one_time_keys"].(map[string]any)[alice.UserID].(map[string]any)
		if got := devs[alice.DeviceID].(map[string]any)["curve25519:D"]; got != "unsignedD" {
			t.Errorf("claim curve25519: got %v, want unsignedD", devs)
		}
		if _, ok := devs["NOSUCH"]; ok {
			t.Errorf("claim for an unknown device: got %v", devs["NOSUCH"])
		}
		hstest.MustErr(t, bob.Do(t, "POST", keysPath+"/claim", map[string]any{}), 400, "M_MISSING_PARAM")
	})
}

// POST /keys/query: device keys with display names, cross-signing keys
// and who sees which signatures.
func TestKeysQuery(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		adk, bdk := newEdKey(t), newEdKey(t)
		uploadKeys(t, alice, map[string]any{"device_keys": deviceKeys(t, alice, adk)})
		uploadKeys(t, bob, map[string]any{"device_keys": deviceKeys(t, bob, bdk)})
		hstest.MustOK(t, alice.Do(t, "PUT", devicesPath+"/"+alice.DeviceID, map[string]any{"display_name": "Alice's laptop"}))

		q := queryKeys(t, bob, map[string][]string{alice.UserID: {}, "@nobody:" + hs.ServerName(): {}})
		dev := q.DeviceKeys[alice.UserID][alice.DeviceID]
		if dev == nil {
			t.Fatalf("query: no keys for alice's device: %+v", q.DeviceKeys)
		}
		if u, _ := dev["unsigned"].(map[string]any); u["device_display_name"] != "Alice's laptop" {
			t.Errorf("query: unsigned %v, want device_display_name Alice's laptop", dev["unsigned"])
		}
		if k := dev["keys"].(map[string]any)["ed25519:"+alice.DeviceID]; k != adk.pub {
			t.Errorf("query: ed25519 key %v, want %s", k, adk.pub)
		}
		if sigsOf(dev, alice.UserID)["ed25519:"+alice.DeviceID] == nil {
			t.Errorf("query: the device's own signature is gone: %v", dev["signatures"])
		}
		if d, ok := q.DeviceKeys["@nobody:"+hs.ServerName()]; !ok || len(d) != 0 {
			t.Errorf("query of an unknown user: %v, want an empty map", d)
		}
		if q.Failures == nil || q.MasterKeys == nil {
			t.Errorf("query: failures %v and master_keys %v must be objects", q.Failures, q.MasterKeys)
		}
		q = queryKeys(t, bob, map[string][]string{alice.UserID: {"NOSUCH"}})
		if len(q.DeviceKeys[alice.UserID]) != 0 {
			t.Errorf("query of an unknown device: %v", q.DeviceKeys[alice.UserID])
		}

		// Cross-signing: the first upload needs no UIA.
		acs, bcs := newCrossSigning(t, alice.UserID), newCrossSigning(t, bob.UserID)
		hstest.MustOK(t, alice.Do(t, "POST", keysPath+"/device_signing/upload", acs.body))
		hstest.MustOK(t, bob.Do(t, "POST", keysPath+"/device_signing/upload", bcs.body))
		q = queryKeys(t, bob, map[string][]string{alice.UserID: {}})
		if q.MasterKeys[alice.UserID] == nil || q.SelfSigningKeys[alice.UserID] == nil {
			t.Errorf("bob's query: master %v, self-signing %v; want alice's", q.MasterKeys, q.SelfSigningKeys)
		}
		if q.UserSigningKeys[alice.UserID] != nil {
			t.Errorf("bob's query shows alice's user-signing key")
		}
		q = queryKeys(t, alice, map[string][]string{alice.UserID: {}})
		if q.UserSigningKeys[alice.UserID] == nil {
			t.Errorf("alice's own query: no user-signing key")
		}

		// alice signs her device with her self-signing key: everyone sees it.
		signedDev := acs.self.sign(t, deviceKeys(t, alice, adk), alice.UserID, "ed25519:"+acs.self.pub)
		m := hstest.MustOK(t, alice.Do(t, "POST", keysPath+"/signatures/upload", map[string]any{
			alice.UserID: map[string]any{alice.DeviceID: signedDev},
		}))
		if f, _ := m["failures"].(map[string]any); len(f) != 0 {
			t.Fatalf("signatures upload: failures %v", f)
		}
		q = queryKeys(t, bob, map[string][]string{alice.UserID: {alice.DeviceID}})
		if sigsOf(q.DeviceKeys[alice.UserID][alice.DeviceID], alice.UserID)["ed25519:"+acs.self.pub] == nil {
			t.Errorf("bob's query: no self-signing signature on alice's device: %v", q.DeviceKeys[alice.UserID][alice.DeviceID]["signatures"])
		}

		// bob signs alice's master key: only bob sees it.
		signedMaster := bcs.user.sign(t, csKey(alice.UserID, "master", acs.master), bob.UserID, "ed25519:"+bcs.user.pub)
		m = hstest.MustOK(t, bob.Do(t, "POST", keysPath+"/signatures/upload", map[string]any{
			alice.UserID: map[string]any{acs.master.pub: signedMaster},
		}))
		if f, _ := m["failures"].(map[string]any); len(f) != 0 {
			t.Fatalf("signatures upload of alice's master by bob: failures %v", f)
		}
		q = queryKeys(t, bob, map[string][]string{alice.UserID: {}})
		if sigsOf(q.MasterKeys[alice.UserID], bob.UserID)["ed25519:"+bcs.user.pub] == nil {
			t.Errorf("bob's query: no signature of his on alice's master key: %v", q.MasterKeys[alice.UserID])
		}
		q = queryKeys(t, alice, map[string][]string{alice.UserID: {}})
		if sigsOf(q.MasterKeys[alice.UserID], bob.UserID) != nil {
			t.Errorf("alice's query shows bob's signature on her master key: %v", q.MasterKeys[alice.UserID])
		}

		// alice's device signs her master key: she sees it.
		signedOwn := adk.sign(t, csKey(alice.UserID, "master", acs.master), alice.UserID, "ed25519:"+alice.DeviceID)
		m = hstest.MustOK(t, alice.Do(t, "POST", keysPath+"/signatures/upload", map[string]any{
			alice.UserID: map[string]any{acs.master.pub: signedOwn},
		}))
		if f, _ := m["failures"].(map[string]any); len(f) != 0 {
			t.Fatalf("signatures upload of alice's master by her device: failures %v", f)
		}
		q = queryKeys(t, alice, map[string][]string{alice.UserID: {}})
		if sigsOf(q.MasterKeys[alice.UserID], alice.UserID)["ed25519:"+alice.DeviceID] == nil {
			t.Errorf("alice's query: no signature of her device on her master key: %v", q.MasterKeys[alice.UserID])
		}
		hstest.MustErr(t, bob.Do(t, "POST", keysPath+"/query", map[string]any{}), 400, "M_MISSING_PARAM")
	})
}

// POST /keys/device_signing/upload: UIA only to replace keys (MSC3967),
// and the checks on the keys.
func TestKeysDeviceSigningUpload(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		path := keysPath + "/device_signing/upload"

		t.Run("errors", func(t *testing.T) {
			cs := newCrossSigning(t, bob.UserID)
			other := newEdKey(t)
			tests := []struct {
				name    string
				body    map[string]any
				status  int
				errcode string
			}{
				{"self-signing key without master key", map[string]any{"self_signing_key": cs.body["self_signing_key"]}, 400, "M_MISSING_PARAM"},
				{"master key of another user", map[string]any{"master_key": csKey(alice.UserID, "master", cs.master)}, 400, "M_INVALID_PARAM"},
				{"master key with the wrong usage", map[string]any{"master_key": csKey(bob.UserID, "self_signing", cs.master)}, 400, "M_INVALID_PARAM"},
				{"self-signing key signed by another key", map[string]any{
					"master_key":       cs.body["master_key"],
					"self_signing_key": other.sign(t, csKey(bob.UserID, "self_signing", cs.self), bob.UserID, "ed25519:"+cs.master.pub),
				}, 400, "M_INVALID_SIGNATURE"},
				{"unsigned user-signing key", map[string]any{
					"master_key":       cs.body["master_key"],
					"user_signing_key": csKey(bob.UserID, "user_signing", cs.user),
				}, 400, "M_INVALID_SIGNATURE"},
				{"public key is a device ID", map[string]any{
					"master_key": map[string]any{"user_id": bob.UserID, "usage": []any{"master"}, "keys": map[string]any{"ed25519:" + bob.DeviceID: cs.master.pub}},
				}, 403, "M_FORBIDDEN"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					hstest.MustErr(t, bob.Do(t, "POST", path, tt.body), tt.status, tt.errcode)
				})
			}
		})

		cs := newCrossSigning(t, alice.UserID)
		hstest.MustOK(t, alice.Do(t, "POST", path, cs.body))
		// The same keys again: no UIA (a retry whose answer was lost).
		hstest.MustOK(t, alice.Do(t, "POST", path, cs.body))
		hstest.MustOK(t, alice.Do(t, "POST", path, map[string]any{"master_key": cs.body["master_key"]}))
		// New keys: UIA.
		cs2 := newCrossSigning(t, alice.UserID)
		r := alice.UIA(t, "POST", path, cs2.body, alice.PasswordAuth())
		hstest.MustOK(t, r)
		q := queryKeys(t, alice, map[string][]string{alice.UserID: {}})
		if k := q.MasterKeys[alice.UserID]["keys"].(map[string]any)["ed25519:"+cs2.master.pub]; k != cs2.master.pub {
			t.Errorf("after the UIA upload: master key %v, want the new one", q.MasterKeys[alice.UserID])
		}
		// A new self-signing key alone, signed by the stored master key.
		self := newEdKey(t)
		body := map[string]any{"self_signing_key": cs2.master.sign(t, csKey(alice.UserID, "self_signing", self), alice.UserID, "ed25519:"+cs2.master.pub)}
		hstest.MustUIA(t, alice.Do(t, "POST", path, body), "m.login.password")
		hstest.MustOK(t, alice.UIA(t, "POST", path, body, alice.PasswordAuth()))
		q = queryKeys(t, bob, map[string][]string{alice.UserID: {}})
		if k := q.SelfSigningKeys[alice.UserID]["keys"].(map[string]any)["ed25519:"+self.pub]; k != self.pub {
			t.Errorf("after replacing the self-signing key: %v", q.SelfSigningKeys[alice.UserID])
		}
		// The unstable path.
		hstest.MustOK(t, alice.Do(t, "POST", "/_matrix/client/unstable/keys/device_signing/upload", map[string]any{"master_key": cs2.body["master_key"]}))
	})
}

// POST /keys/signatures/upload: the failures map.
func TestKeysSignaturesUploadFailures(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		adk := newEdKey(t)
		uploadKeys(t, alice, map[string]any{"device_keys": deviceKeys(t, alice, adk)})
		upload := func(c *hstest.Client, body map[string]any) map[string]any {
			t.Helper()
			m := hstest.MustOK(t, c.Do(t, "POST", keysPath+"/signatures/upload", body))
			f, _ := m["failures"].(map[string]any)
			return f
		}
		errcode := func(f map[string]any, user, key string) string {
			m, _ := f[user].(map[string]any)
			e, _ := m[key].(map[string]any)
			s, _ := e["errcode"].(string)
			return s
		}
		// No self-signing key yet.
		acs := newCrossSigning(t, alice.UserID)
		f := upload(alice, map[string]any{alice.UserID: map[string]any{
			alice.DeviceID: acs.self.sign(t, deviceKeys(t, alice, adk), alice.UserID, "ed25519:"+acs.self.pub),
		}})
		if got := errcode(f, alice.UserID, alice.DeviceID); got != "M_NOT_FOUND" {
			t.Errorf("signing without a self-signing key: failure %q, want M_NOT_FOUND (%v)", got, f)
		}
		hstest.MustOK(t, alice.Do(t, "POST", keysPath+"/device_signing/upload", acs.body))
		wrong := newEdKey(t)
		changed := deviceKeys(t, alice, adk)
		changed["algorithms"] = []any{"other"}
		f = upload(alice, map[string]any{alice.UserID: map[string]any{
			"NOSUCH":       acs.self.sign(t, map[string]any{"user_id": alice.UserID, "device_id": "NOSUCH"}, alice.UserID, "ed25519:"+acs.self.pub),
			alice.DeviceID: wrong.sign(t, deviceKeys(t, alice, adk), alice.UserID, "ed25519:"+acs.self.pub),
		}})
		if got := errcode(f, alice.UserID, "NOSUCH"); got != "M_NOT_FOUND" {
			t.Errorf("unknown device: failure %q, want M_NOT_FOUND (%v)", got, f)
		}
		if got := errcode(f, alice.UserID, alice.DeviceID); got != "M_INVALID_SIGNATURE" {
			t.Errorf("bad signature: failure %q, want M_INVALID_SIGNATURE (%v)", got, f)
		}
		f = upload(alice, map[string]any{alice.UserID: map[string]any{
			alice.DeviceID: acs.self.sign(t, changed, alice.UserID, "ed25519:"+acs.self.pub),
		}})
		if got := errcode(f, alice.UserID, alice.DeviceID); got != "M_INVALID_SIGNATURE" {
			t.Errorf("key that is not the stored one: failure %q, want M_INVALID_SIGNATURE (%v)", got, f)
		}
		// bob has no user-signing key.
		f = upload(bob, map[string]any{alice.UserID: map[string]any{
			acs.master.pub: wrong.sign(t, csKey(alice.UserID, "master", acs.master), bob.UserID, "ed25519:"+wrong.pub),
		}})
		if got := errcode(f, alice.UserID, acs.master.pub); got != "M_NOT_FOUND" {
			t.Errorf("no user-signing key: failure %q, want M_NOT_FOUND (%v)", got, f)
		}
		bcs := newCrossSigning(t, bob.UserID)
		hstest.MustOK(t, bob.Do(t, "POST", keysPath+"/device_signing/upload", bcs.body))
		f = upload(bob, map[string]any{alice.UserID: map[string]any{
			alice.DeviceID: bcs.user.sign(t, deviceKeys(t, alice, adk), bob.UserID, "ed25519:"+bcs.user.pub),
			acs.master.pub: wrong.sign(t, csKey(alice.UserID, "master", acs.master), bob.UserID, "ed25519:"+bcs.user.pub),
		}})
		if got := errcode(f, alice.UserID, alice.DeviceID); got != "M_NOT_FOUND" {
			t.Errorf("another user's device: failure %q, want M_NOT_FOUND (%v)", got, f)
		}
		if got := errcode(f, alice.UserID, acs.master.pub); got != "M_INVALID_SIGNATURE" {
			t.Errorf("bad user-signing signature: failure %q, want M_INVALID_SIGNATURE (%v)", got, f)
		}
	})
}

type deviceLists struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

func syncDeviceLists(t testing.TB, c *hstest.Client, since string) (deviceLists, string) {
	t.Helper()
	s := doSync(t, c, "timeout=0&"+syncSince(since))
	var dl deviceLists
	if len(s.DeviceLists) > 0 {
		if err := json.Unmarshal(s.DeviceLists, &dl); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(dl.Changed)
	slices.Sort(dl.Left)
	return dl, s.NextBatch
}

func keysChanges(t testing.TB, c *hstest.Client, from string) deviceLists {
	t.Helper()
	r := c.Do(t, "GET", keysPath+"/changes?from="+url.QueryEscape(from), nil)
	dl := hstest.Decode[deviceLists](t, &hstest.Response{Call: r.Call, Status: r.Status, Body: r.Body})
	hstest.MustOK(t, r)
	slices.Sort(dl.Changed)
	slices.Sort(dl.Left)
	return dl
}

// device_lists of /sync and GET /keys/changes: new devices and keys,
// joins and leaves, deleted devices.
func TestKeysDeviceLists(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		carol := hs.Register(t, "carol", "pw")
		dave := hs.Register(t, "dave", "pw")
		room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		hstest.MustOK(t, bob.Do(t, "POST", c3+"/join/"+url.PathEscape(room), map[string]any{}))
		tok := doSync(t, bob, "timeout=0").NextBatch

		// alice logs in a new device, which uploads keys.
		phone := hs.Login(t, "alice", "pw")
		uploadKeys(t, phone, map[string]any{"device_keys": deviceKeys(t, phone, newEdKey(t))})
		dl, next := syncDeviceLists(t, bob, tok)
		if !slices.Contains(dl.Changed, alice.UserID) {
			t.Errorf("bob's sync after alice's new device: %+v, want alice changed", dl)
		}
		if kc := keysChanges(t, bob, tok); !slices.Contains(kc.Changed, alice.UserID) {
			t.Errorf("GET /keys/changes after alice's new device: %+v", kc)
		}
		// alice's own devices see her change too.
		if dl, _ := syncDeviceLists(t, alice, tok); !slices.Contains(dl.Changed, alice.UserID) {
			t.Errorf("alice's sync after her new device: %+v, want alice changed", dl)
		}
		// carol shares no room: she sees nothing.
		if dl, _ := syncDeviceLists(t, carol, tok); slices.Contains(dl.Changed, alice.UserID) {
			t.Errorf("carol's sync: %+v, want no alice", dl)
		}
		tok = next

		// carol joins: bob sees her; carol sees alice and bob.
		ctok := doSync(t, carol, "timeout=0").NextBatch
		hstest.MustOK(t, carol.Do(t, "POST", c3+"/join/"+url.PathEscape(room), map[string]any{}))
		dl, next = syncDeviceLists(t, bob, tok)
		if !slices.Contains(dl.Changed, carol.UserID) {
			t.Errorf("bob's sync after carol joined: %+v, want carol changed", dl)
		}
		if dl, _ := syncDeviceLists(t, carol, ctok); !slices.Contains(dl.Changed, alice.UserID) || !slices.Contains(dl.Changed, bob.UserID) {
			t.Errorf("carol's sync after she joined: %+v, want alice and bob changed", dl)
		}
		tok = next

		// carol leaves: bob sees her left.
		hstest.MustOK(t, carol.Do(t, "POST", roomPath(room, "/leave"), map[string]any{}))
		dl, next = syncDeviceLists(t, bob, tok)
		if !slices.Contains(dl.Left, carol.UserID) || slices.Contains(dl.Changed, carol.UserID) {
			t.Errorf("bob's sync after carol left: %+v, want carol left", dl)
		}
		if kc := keysChanges(t, bob, tok); !slices.Contains(kc.Left, carol.UserID) {
			t.Errorf("GET /keys/changes after carol left: %+v", kc)
		}
		tok = next

		// bob joins a room of dave's: dave is new to him.
		room2 := createRoom(t, dave, map[string]any{"preset": "public_chat"})
		hstest.MustOK(t, bob.Do(t, "POST", c3+"/join/"+url.PathEscape(room2), map[string]any{}))
		dl, next = syncDeviceLists(t, bob, tok)
		if !slices.Contains(dl.Changed, dave.UserID) {
			t.Errorf("bob's sync after joining dave's room: %+v, want dave changed", dl)
		}
		tok = next
		// bob leaves it: dave is gone.
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(room2, "/leave"), map[string]any{}))
		dl, next = syncDeviceLists(t, bob, tok)
		if !slices.Contains(dl.Left, dave.UserID) {
			t.Errorf("bob's sync after leaving dave's room: %+v, want dave left", dl)
		}
		tok = next

		// alice deletes the phone: its keys are gone and she changed.
		r := alice.UIA(t, "DELETE", devicesPath+"/"+phone.DeviceID, map[string]any{}, alice.PasswordAuth())
		hstest.MustOK(t, r)
		dl, _ = syncDeviceLists(t, bob, tok)
		if !slices.Contains(dl.Changed, alice.UserID) {
			t.Errorf("bob's sync after alice deleted a device: %+v, want alice changed", dl)
		}
		q := queryKeys(t, bob, map[string][]string{alice.UserID: {}})
		if _, ok := q.DeviceKeys[alice.UserID][phone.DeviceID]; ok {
			t.Errorf("query after deletion: the deleted device's keys are still there")
		}

		// alice invites carol back: an invited user gets room keys too. She
		// joins and is kicked: gone again.
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(room, "/invite"), map[string]any{"user_id": carol.UserID}))
		dl, next = syncDeviceLists(t, bob, tok)
		if !slices.Contains(dl.Changed, carol.UserID) {
			t.Errorf("bob's sync after carol was invited: %+v, want carol changed", dl)
		}
		tok = next
		hstest.MustOK(t, carol.Do(t, "POST", c3+"/join/"+url.PathEscape(room), map[string]any{}))
		_, tok = syncDeviceLists(t, bob, tok)
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(room, "/kick"), map[string]any{"user_id": carol.UserID}))
		if dl, _ := syncDeviceLists(t, bob, tok); !slices.Contains(dl.Left, carol.UserID) {
			t.Errorf("bob's sync after carol was kicked: %+v, want carol left", dl)
		}

		// Errors of /keys/changes.
		hstest.MustErr(t, bob.Do(t, "GET", keysPath+"/changes", nil), 400, "M_MISSING_PARAM")
		hstest.MustErr(t, bob.Do(t, "GET", keysPath+"/changes?from=bogus", nil), 400, "M_INVALID_PARAM")
	})
}

// A long-polling /sync wakes when a user sharing a room uploads new device
// keys.
func TestKeysDeviceListWakesSync(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		hstest.MustOK(t, bob.Do(t, "POST", c3+"/join/"+url.PathEscape(room), map[string]any{}))
		tok := doSync(t, bob, "timeout=0").NextBatch
		done := make(chan syncResponse, 1)
		go func() { done <- doSync(t, bob, "timeout=20000&"+syncSince(tok)) }()
		phone := hs.Login(t, "alice", "pw")
		uploadKeys(t, phone, map[string]any{"device_keys": deviceKeys(t, phone, newEdKey(t))})
		s := <-done
		var dl deviceLists
		json.Unmarshal(s.DeviceLists, &dl)
		if !slices.Contains(dl.Changed, alice.UserID) {
			t.Errorf("woken sync: device_lists %s, want alice changed", s.DeviceLists)
		}
	})
}

// eduRecorder records the EDUs a scripted remote server receives.
type eduRecorder struct {
	mu   sync.Mutex
	edus []fedclient.EDU
}

func (e *eduRecorder) serve(w http.ResponseWriter, req *http.Request) {
	var txn fedclient.Transaction
	if err := json.NewDecoder(req.Body).Decode(&txn); err != nil {
		http.Error(w, `{"errcode":"M_NOT_JSON","error":"bad transaction"}`, http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	e.edus = append(e.edus, txn.EDUs...)
	e.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"pdus":{}}`))
}

// await waits for n EDUs of a type and returns them.
func (e *eduRecorder) await(t testing.TB, typ string, n int) []json.RawMessage {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var out []json.RawMessage
		e.mu.Lock()
		for _, edu := range e.edus {
			if edu.Type == typ {
				out = append(out, edu.Content)
			}
		}
		e.mu.Unlock()
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d %s EDUs after 30 s, want %d: %s", len(out), typ, n, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The federation side of local users' keys: m.device_list_update and
// m.signing_key_update EDUs to a server sharing a room, and GET
// /user/devices, POST /user/keys/query and /user/keys/claim.
func TestKeysFederation(t *testing.T) {
	t.Parallel()
	f := hstest.NewFederation(t, hstest.Options{}, "hs1.polder.test")
	hs := f.Server("hs1.polder.test")
	remote := f.NewRemote(t, "remote.polder.test")
	rec := &eduRecorder{}
	remote.Mux.HandleFunc("PUT /_matrix/federation/v1/send/{txnId}", rec.serve)
	alice := hs.Register(t, "alice", "pw")
	room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
	remote.Join(t, hs.ServerName(), id.RoomID(room), remote.UserID("rob"))

	dk := newEdKey(t)
	uploadKeys(t, alice, map[string]any{
		"device_keys":   deviceKeys(t, alice, dk),
		"one_time_keys": map[string]any{"signed_curve25519:A": otk("A")},
	})
	hstest.MustOK(t, alice.Do(t, "PUT", devicesPath+"/"+alice.DeviceID, map[string]any{"display_name": "Laptop"}))
	updates := rec.await(t, "m.device_list_update", 2)
	var u1, u2 fedclient.DeviceListUpdate
	json.Unmarshal(updates[0], &u1)
	json.Unmarshal(updates[1], &u2)
	if u1.UserID != id.UserID(alice.UserID) || u1.DeviceID != id.DeviceID(alice.DeviceID) || u1.StreamID != 1 || len(u1.PrevID) != 0 || len(u1.Keys) == 0 {
		t.Errorf("first device list update %s: want alice's device, stream_id 1, no prev_id, keys", updates[0])
	}
	if u2.StreamID != 2 || !slices.Equal(u2.PrevID, []int64{1}) || u2.DeviceDisplayName != "Laptop" {
		t.Errorf("second device list update %s: want stream_id 2, prev_id [1], device_display_name Laptop", updates[1])
	}

	// A second device, without keys.
	phone := hs.Login(t, "alice", "pw")
	status, body := remote.Do(t, hs.ServerName(), hstest.RawRequest{Method: "GET", Path: "/_matrix/federation/v1/user/devices/" + url.PathEscape(alice.UserID)})
	var devs fedclient.UserDevicesResponse
	if err := json.Unmarshal(body, &devs); status != 200 || err != nil {
		t.Fatalf("GET user/devices: %d %s", status, body)
	}
	names := map[id.DeviceID]fedclient.UserDevice{}
	for _, d := range devs.Devices {
		names[d.DeviceID] = d
	}
	if d := names[id.DeviceID(alice.DeviceID)]; d.DeviceDisplayName != "Laptop" || len(d.Keys) == 0 {
		t.Errorf("GET user/devices: alice's laptop %+v, want its name and keys", d)
	}
	if _, ok := names[id.DeviceID(phone.DeviceID)]; !ok || devs.StreamID != 2 || devs.UserID != id.UserID(alice.UserID) {
		t.Errorf("GET user/devices = %s: want the phone too and stream_id 2", body)
	}

	// Cross-signing keys: an m.signing_key_update, and in the answers.
	cs := newCrossSigning(t, alice.UserID)
	hstest.MustOK(t, alice.Do(t, "POST", keysPath+"/device_signing/upload", cs.body))
	sku := rec.await(t, "m.signing_key_update", 1)
	var s fedclient.SigningKeyUpdate
	json.Unmarshal(sku[0], &s)
	if s.UserID != id.UserID(alice.UserID) || len(s.MasterKey) == 0 || len(s.SelfSigningKey) == 0 {
		t.Errorf("signing key update %s: want alice's master and self-signing keys", sku[0])
	}
	if strings.Contains(string(sku[0]), "user_signing") {
		t.Errorf("signing key update %s carries the user-signing key", sku[0])
	}
	// Signing the laptop with the self-signing key is a device list update.
	signedDev := cs.self.sign(t, deviceKeys(t, alice, dk), alice.UserID, "ed25519:"+cs.self.pub)
	hstest.MustOK(t, alice.Do(t, "POST", keysPath+"/signatures/upload", map[string]any{alice.UserID: map[string]any{alice.DeviceID: signedDev}}))
	updates = rec.await(t, "m.device_list_update", 3)
	if !strings.Contains(string(updates[2]), cs.self.pub) {
		t.Errorf("device list update after the self-signing signature %s: want the signature in its keys", updates[2])
	}

	req, _ := json.Marshal(map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	status, body = remote.Do(t, hs.ServerName(), hstest.RawRequest{Method: "POST", Path: "/_matrix/federation/v1/user/keys/query", Body: req})
	var q fedclient.UserKeysQueryResponse
	if err := json.Unmarshal(body, &q); status != 200 || err != nil {
		t.Fatalf("POST user/keys/query: %d %s", status, body)
	}
	laptop := string(q.DeviceKeys[id.UserID(alice.UserID)][id.DeviceID(alice.DeviceID)])
	if !strings.Contains(laptop, cs.self.pub) || !strings.Contains(laptop, "Laptop") {
		t.Errorf("user/keys/query: laptop %s, want its self-signing signature and name", laptop)
	}
	if len(q.MasterKeys[id.UserID(alice.UserID)]) == 0 || len(q.SelfSigningKeys[id.UserID(alice.UserID)]) == 0 || strings.Contains(string(body), "user_signing") {
		t.Errorf("user/keys/query = %s: want master and self-signing keys, no user-signing key", body)
	}

	req, _ = json.Marshal(map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]any{alice.DeviceID: "signed_curve25519"}}})
	status, body = remote.Do(t, hs.ServerName(), hstest.RawRequest{Method: "POST", Path: "/_matrix/federation/v1/user/keys/claim", Body: req})
	var c fedclient.UserKeysClaimResponse
	if err := json.Unmarshal(body, &c); status != 200 || err != nil {
		t.Fatalf("POST user/keys/claim: %d %s", status, body)
	}
	if _, ok := c.OneTimeKeys[id.UserID(alice.UserID)][id.DeviceID(alice.DeviceID)]["signed_curve25519:A"]; !ok {
		t.Errorf("user/keys/claim = %s: want key A", body)
	}

	// Deleting the laptop: a deleted update.
	hstest.MustOK(t, phone.UIA(t, "DELETE", devicesPath+"/"+alice.DeviceID, map[string]any{}, phone.PasswordAuth()))
	updates = rec.await(t, "m.device_list_update", 4)
	var u4 fedclient.DeviceListUpdate
	json.Unmarshal(updates[3], &u4)
	if !u4.Deleted || u4.DeviceID != id.DeviceID(alice.DeviceID) || u4.StreamID != 4 || !slices.Equal(u4.PrevID, []int64{3}) {
		t.Errorf("device list update after deletion %s: want deleted, stream_id 4, prev_id [3]", updates[3])
	}
}

// Guests may upload, query and claim keys (as Synapse allows): they can
// join encrypted rooms.
func TestKeysGuests(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{Guests: true}, func(t *testing.T, hs *hstest.Server) {
		m := hstest.MustOK(t, hs.Anon().Do(t, "POST", c3+"/register?kind=guest", map[string]any{}))
		guest := &hstest.Client{HS: hs, UserID: hstest.Str(t, m, "user_id"), DeviceID: hstest.Str(t, m, "device_id"), AccessToken: hstest.Str(t, m, "access_token")}
		counts := uploadKeys(t, guest, map[string]any{
			"device_keys":   deviceKeys(t, guest, newEdKey(t)),
			"one_time_keys": map[string]any{"signed_curve25519:A": otk("A")},
		})
		if counts["signed_curve25519"] != 1 {
			t.Errorf("guest upload: counts %v", counts)
		}
		if q := queryKeys(t, guest, map[string][]string{guest.UserID: {}}); q.DeviceKeys[guest.UserID][guest.DeviceID] == nil {
			t.Errorf("guest query of itself: %+v", q.DeviceKeys)
		}
		hstest.MustOK(t, guest.Do(t, "POST", keysPath+"/claim", map[string]any{"one_time_keys": map[string]any{}}))
		hstest.MustOK(t, guest.Do(t, "GET", keysPath+"/changes?from=s0_0", nil))
	})
}

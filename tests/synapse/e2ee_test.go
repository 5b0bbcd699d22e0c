//go:build synapse

package synapse_test

// The end-to-end encryption part of the scenario: device keys, one-time
// keys, to-device messages, device list updates and cross-signing keys,
// each made on one server and seen from the other, so that every check
// went over federation (m.device_list_update, m.signing_key_update and
// m.direct_to_device EDUs; /user/devices, /user/keys/query and
// /user/keys/claim). The keys are real ed25519 and curve25519 keys,
// self-signed over canonical JSON as the spec asks (Appendices, "Signing
// JSON"), though no Olm session is ever made with them.

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"polder.dev/polder/internal/cjson"
)

// b64 is the unpadded base64 of the spec (Appendices, "Unpadded Base64").
func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// signObject signs obj (without its signatures and unsigned) with priv as
// userID's keyID, and adds the signature to obj["signatures"].
func signObject(t *testing.T, obj map[string]any, userID, keyID string, priv ed25519.PrivateKey) {
	t.Helper()
	bare := map[string]any{}
	for k, v := range obj {
		if k != "signatures" && k != "unsigned" {
			bare[k] = v
		}
	}
	canon, err := cjson.Marshal(bare)
	if err != nil {
		t.Fatal(err)
	}
	sigs, _ := obj["signatures"].(map[string]any)
	if sigs == nil {
		sigs = map[string]any{}
		obj["signatures"] = sigs
	}
	mine, _ := sigs[userID].(map[string]any)
	if mine == nil {
		mine = map[string]any{}
		sigs[userID] = mine
	}
	mine[keyID] = b64(ed25519.Sign(priv, canon))
}

// verifyObject checks userID's keyID signature on obj (as JSON decoded into
// a map) with pub.
func verifyObject(obj map[string]any, userID, keyID string, pub ed25519.PublicKey) error {
	sigs, _ := obj["signatures"].(map[string]any)
	mine, _ := sigs[userID].(map[string]any)
	sig, _ := mine[keyID].(string)
	if sig == "" {
		return fmt.Errorf("no signature by %s %s", userID, keyID)
	}
	raw, err := base64.RawStdEncoding.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("signature %q: %v", sig, err)
	}
	bare := map[string]any{}
	for k, v := range obj {
		if k != "signatures" && k != "unsigned" {
			bare[k] = v
		}
	}
	canon, err := cjson.Marshal(bare)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, canon, raw) {
		return fmt.Errorf("bad signature by %s %s over %s", userID, keyID, canon)
	}
	return nil
}

// device is one logged-in device of a user, with its keys.
type device struct {
	u       *user
	token   string
	id      string
	ed      ed25519.PrivateKey
	curve   string         // curve25519 public key, unpadded base64
	keys    map[string]any // the device keys as uploaded (signed)
	otks    map[string]any // "signed_curve25519:<id>" -> signed key object
	since   string         // this test's own /sync position for the device
	toDev   []event        // to-device events its /sync returned
	changed []string       // device_lists.changed its /sync returned
	left    []string       // device_lists.left its /sync returned
	cs      *crossSigning  // the user's cross-signing keys, once uploaded
}

func (d *device) String() string { return d.u.local + "'s device " + d.id + " (" + d.u.srv.label + ")" }

// do calls the client API with d's token.
func (d *device) do(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	status, data := call(t, plainClient, method, d.u.srv.client+path, d.token, body)
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %s %s: %d, body %q is not a JSON object", d, method, path, status, data)
	}
	return status, m
}

func (d *device) mustDo(t *testing.T, what, method, path string, body any) map[string]any {
	t.Helper()
	status, m := d.do(t, method, path, body)
	if status != 200 {
		t.Fatalf("%s: %s: %s %s answered %d %v", d, what, method, path, status, m)
	}
	return m
}

// mainDevice is the device that registering u made.
func mainDevice(t *testing.T, u *user) *device {
	t.Helper()
	d := &device{u: u, token: u.token}
	m := d.mustDo(t, "whoami", "GET", "/_matrix/client/v3/account/whoami", nil)
	d.id, _ = m["device_id"].(string)
	if d.id == "" {
		t.Fatalf("%s: whoami: no device_id in %v", u, m)
	}
	return d
}

// login logs u in with a new device.
func login(t *testing.T, u *user, deviceID string) *device {
	t.Helper()
	d := &device{u: u}
	m := d.mustDo(t, "log in", "POST", "/_matrix/client/v3/login", map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": u.local},
		"password":   "interop-" + u.local, "device_id": deviceID,
		"initial_device_display_name": "interop " + deviceID,
	})
	d.token, _ = m["access_token"].(string)
	d.id, _ = m["device_id"].(string)
	if d.token == "" || d.id != deviceID {
		t.Fatalf("%s: login: %v", u, m)
	}
	return d
}

// uploadKeys makes d's identity keys and n one-time keys, and uploads them
// (POST /keys/upload).
func (d *device) uploadKeys(t *testing.T, n int) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d.ed = priv
	curve := func() string {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return b64(k.PublicKey().Bytes())
	}
	d.curve = curve()
	d.keys = map[string]any{
		"user_id":    d.u.id,
		"device_id":  d.id,
		"algorithms": []any{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]any{
			"ed25519:" + d.id:    b64(pub),
			"curve25519:" + d.id: d.curve,
		},
	}
	signObject(t, d.keys, d.u.id, "ed25519:"+d.id, priv)
	d.otks = map[string]any{}
	for i := range n {
		otk := map[string]any{"key": curve()}
		signObject(t, otk, d.u.id, "ed25519:"+d.id, priv)
		d.otks[fmt.Sprintf("signed_curve25519:%sOTK%d", d.id, i)] = otk
	}
	m := d.mustDo(t, "upload keys", "POST", "/_matrix/client/v3/keys/upload",
		map[string]any{"device_keys": d.keys, "one_time_keys": d.otks})
	counts, _ := m["one_time_key_counts"].(map[string]any)
	if got, _ := counts["signed_curve25519"].(float64); int(got) != n {
		t.Fatalf("%s: /keys/upload: one_time_key_counts %v, want signed_curve25519: %d", d, m, n)
	}
}

// sync runs one /sync of d from d.since, collecting to-device events and
// device_lists.changed.
func (d *device) sync(t *testing.T, timeout time.Duration) {
	t.Helper()
	path := fmt.Sprintf("/_matrix/client/v3/sync?timeout=%d", timeout.Milliseconds())
	if d.since != "" {
		path += "&since=" + url.QueryEscape(d.since)
	}
	status, data := call(t, plainClient, "GET", d.u.srv.client+path, d.token, nil)
	if status != 200 {
		t.Fatalf("%s: GET /sync: %d %s", d, status, data)
	}
	var r struct {
		NextBatch string `json:"next_batch"`
		ToDevice  struct {
			Events []event `json:"events"`
		} `json:"to_device"`
		DeviceLists struct {
			Changed []string `json:"changed"`
			Left    []string `json:"left"`
		} `json:"device_lists"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("%s: /sync: %v", d, err)
	}
	if d.since != "" { // an initial sync's changed lists are not news
		d.changed = append(d.changed, r.DeviceLists.Changed...)
		d.left = append(d.left, r.DeviceLists.Left...)
	}
	d.toDev = append(d.toDev, r.ToDevice.Events...)
	d.since = r.NextBatch
}

// poll calls try every half second until it returns "" or e.wait passes,
// and fails the test with what and try's last answer.
func (e *env) poll(t *testing.T, what string, try func() string) {
	t.Helper()
	deadline := time.Now().Add(e.wait)
	for {
		why := try()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, e.wait, why)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// queryDevice asks (as d) for other's device keys (POST /keys/query) and
// returns them, or why not.
func (d *device) queryDevice(t *testing.T, other *device) (map[string]any, map[string]any, string) {
	t.Helper()
	status, m := d.do(t, "POST", "/_matrix/client/v3/keys/query",
		map[string]any{"device_keys": map[string]any{other.u.id: []any{}}})
	if status != 200 {
		return nil, m, fmt.Sprintf("POST /keys/query: %d %v", status, m)
	}
	devs, _ := m["device_keys"].(map[string]any)
	mine, _ := devs[other.u.id].(map[string]any)
	k, _ := mine[other.id].(map[string]any)
	if k == nil {
		return nil, m, fmt.Sprintf("POST /keys/query: no device %s in %v", other.id, m)
	}
	return k, m, ""
}

// checkDeviceKeys compares the device keys got with those other uploaded:
// every uploaded field the same, and other's signature valid.
func checkDeviceKeys(got map[string]any, other *device) string {
	for _, f := range []string{"user_id", "device_id", "algorithms", "keys"} {
		a, _ := json.Marshal(got[f])
		b, _ := json.Marshal(other.keys[f])
		if !bytes.Equal(a, b) {
			return fmt.Sprintf("%s is %s, uploaded %s", f, a, b)
		}
	}
	keyID := "ed25519:" + other.id
	if err := verifyObject(got, other.u.id, keyID, other.ed.Public().(ed25519.PublicKey)); err != nil {
		return "self-signature: " + err.Error()
	}
	return ""
}

// claim claims one signed_curve25519 key of other as d (POST /keys/claim)
// and returns its key ID, checking it is one that other uploaded,
// unchanged; "" if other has none left.
func (d *device) claim(t *testing.T, other *device) string {
	t.Helper()
	m := d.mustDo(t, "claim a one-time key", "POST", "/_matrix/client/v3/keys/claim", map[string]any{
		"one_time_keys": map[string]any{other.u.id: map[string]any{other.id: "signed_curve25519"}},
	})
	otks, _ := m["one_time_keys"].(map[string]any)
	mine, _ := otks[other.u.id].(map[string]any)
	keys, _ := mine[other.id].(map[string]any)
	if len(keys) == 0 {
		return ""
	}
	if len(keys) != 1 {
		t.Fatalf("%s: /keys/claim of %s: want one key, got %v", d, other, m)
	}
	for keyID, v := range keys {
		want, ok := other.otks[keyID]
		if !ok {
			t.Fatalf("%s: /keys/claim of %s: key ID %s was not uploaded (%v)", d, other, keyID, m)
		}
		got, _ := v.(map[string]any)
		if got["key"] != want.(map[string]any)["key"] {
			t.Fatalf("%s: /keys/claim of %s: %s is %v, uploaded %v", d, other, keyID, got, want)
		}
		if err := verifyObject(got, other.u.id, "ed25519:"+other.id, other.ed.Public().(ed25519.PublicKey)); err != nil {
			t.Fatalf("%s: /keys/claim of %s: %s: %v", d, other, keyID, err)
		}
		return keyID
	}
	return ""
}

// crossSigning is a user's master and self-signing keys.
type crossSigning struct {
	master, selfSigning       ed25519.PrivateKey
	masterKey, selfSigningKey map[string]any
}

func pubB64(k ed25519.PrivateKey) string { return b64(k.Public().(ed25519.PublicKey)) }

// uploadCrossSigning makes and uploads master and self-signing keys for
// d's user (POST /keys/device_signing/upload; the first upload needs no
// user-interactive auth, spec v1.11). The master key is signed by the
// device, the self-signing key by the master key.
func (d *device) uploadCrossSigning(t *testing.T) *crossSigning {
	t.Helper()
	cs := &crossSigning{}
	var err error
	if _, cs.master, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, cs.selfSigning, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	mpub, spub := pubB64(cs.master), pubB64(cs.selfSigning)
	cs.masterKey = map[string]any{
		"user_id": d.u.id, "usage": []any{"master"},
		"keys": map[string]any{"ed25519:" + mpub: mpub},
	}
	signObject(t, cs.masterKey, d.u.id, "ed25519:"+d.id, d.ed)
	cs.selfSigningKey = map[string]any{
		"user_id": d.u.id, "usage": []any{"self_signing"},
		"keys": map[string]any{"ed25519:" + spub: spub},
	}
	signObject(t, cs.selfSigningKey, d.u.id, "ed25519:"+mpub, cs.master)
	d.mustDo(t, "upload cross-signing keys", "POST", "/_matrix/client/v3/keys/device_signing/upload",
		map[string]any{"master_key": cs.masterKey, "self_signing_key": cs.selfSigningKey})
	return cs
}

// lastE2EE is alice's and bob's first devices from e2eeSteps, for
// e2eeLeft.
var lastE2EE []*device

// e2eeSteps is the E2EE scenario, as steps of its own: alice (Polder) and
// bob (Synapse) must share a room, so that device lists flow.
func e2eeSteps(e *env, alice, bob *user) func(t *testing.T) {
	return func(t *testing.T) {
		var a, b, a2, b2 *device
		runSteps(t, []step{
			{"keys", nil, "alice and bob upload device keys and one-time keys", func(t *testing.T) {
				a, b = mainDevice(t, alice), mainDevice(t, bob)
				a.uploadKeys(t, 4)
				b.uploadKeys(t, 4)
				a.sync(t, 0)
				b.sync(t, 0)
				lastE2EE = []*device{a, b}
			}},
			{"queryA", []string{"keys"}, "alice queries bob's device keys (Polder asks Synapse)", func(t *testing.T) {
				e.poll(t, a.String()+" gets "+b.String()+"'s keys", func() string {
					k, _, why := a.queryDevice(t, b)
					if why != "" {
						return why
					}
					return checkDeviceKeys(k, b)
				})
			}},
			{"queryB", []string{"keys"}, "bob queries alice's device keys (Synapse asks Polder)", func(t *testing.T) {
				e.poll(t, b.String()+" gets "+a.String()+"'s keys", func() string {
					k, _, why := b.queryDevice(t, a)
					if why != "" {
						return why
					}
					return checkDeviceKeys(k, a)
				})
			}},
			{"claimA", []string{"keys"}, "alice claims all of bob's one-time keys, each once (Polder asks Synapse)", func(t *testing.T) {
				claimAll(t, a, b)
			}},
			{"claimB", []string{"keys"}, "bob claims all of alice's one-time keys, each once (Synapse asks Polder)", func(t *testing.T) {
				claimAll(t, b, a)
			}},
			{"toDeviceAB", []string{"keys"}, "alice sends bob a to-device message (Polder to Synapse)", func(t *testing.T) {
				toDevice(t, e, a, b)
			}},
			{"toDeviceBA", []string{"keys"}, "bob sends alice a to-device message (Synapse to Polder)", func(t *testing.T) {
				toDevice(t, e, b, a)
			}},
			{"newDeviceB", []string{"keys"}, "bob logs in a new device on Synapse and uploads keys; alice sees it", func(t *testing.T) {
				b2 = newDevice(t, e, a, func() *device {
					d := login(t, bob, "BOBNEW")
					d.uploadKeys(t, 1)
					return d
				})
			}},
			{"newDeviceA", []string{"keys"}, "alice logs in a new device on Polder and uploads keys; bob sees it", func(t *testing.T) {
				a2 = newDevice(t, e, b, func() *device {
					d := login(t, alice, "ALICENEW")
					d.uploadKeys(t, 1)
					return d
				})
			}},
			{"wildcardAB", []string{"newDeviceB"}, "alice sends a to-device message to all of bob's devices (\"*\"); both get it", func(t *testing.T) {
				toDevice(t, e, a, b, b2)
			}},
			{"wildcardBA", []string{"newDeviceA"}, "bob sends a to-device message to all of alice's devices (\"*\"); both get it", func(t *testing.T) {
				toDevice(t, e, b, a, a2)
			}},
			{"crossSigningB", []string{"keys"}, "bob uploads cross-signing keys; alice sees them", func(t *testing.T) {
				crossSigned(t, e, a, b)
			}},
			{"crossSigningA", []string{"keys"}, "alice uploads cross-signing keys; bob sees them", func(t *testing.T) {
				crossSigned(t, e, b, a)
			}},
			{"signDeviceB", []string{"crossSigningB"}, "bob signs his device with his self-signing key; alice sees the signature", func(t *testing.T) {
				signDevice(t, e, a, b)
			}},
			{"signDeviceA", []string{"crossSigningA"}, "alice signs her device with her self-signing key; bob sees the signature", func(t *testing.T) {
				signDevice(t, e, b, a)
			}},
			{"deleteDeviceB", []string{"newDeviceB"}, "bob deletes his new device on Synapse; alice sees it go", func(t *testing.T) {
				deleteDevice(t, e, a, b2)
			}},
			{"deleteDeviceA", []string{"newDeviceA"}, "alice deletes her new device on Polder; bob sees it go", func(t *testing.T) {
				deleteDevice(t, e, b, a2)
			}},
		})
	}
}

// toDevice: from sends to a message (PUT /sendToDevice), which to's /sync
// shows. With more devices (of to's user), it is sent to all of the user's
// devices ("*"), and each of them must get it.
func toDevice(t *testing.T, e *env, from, to *device, more ...*device) {
	t.Helper()
	body := fmt.Sprintf("to-device from %s at %d", from, time.Now().UnixNano())
	target := to.id
	if len(more) > 0 {
		target = "*"
	}
	from.mustDo(t, "send to device", "PUT",
		fmt.Sprintf("/_matrix/client/v3/sendToDevice/m.interop.test/%s%d", from.id, time.Now().UnixNano()),
		map[string]any{"messages": map[string]any{to.u.id: map[string]any{target: map[string]any{"body": body}}}})
	for _, d := range append([]*device{to}, more...) {
		e.poll(t, d.String()+" gets "+from.String()+"'s to-device message for "+target+" in /sync", func() string {
			for _, ev := range d.toDev {
				if ev.Type == "m.interop.test" && ev.Sender == from.u.id && ev.content()["body"] == body {
					return ""
				}
			}
			d.sync(t, 2*time.Second)
			return fmt.Sprintf("to_device events so far: %v", d.toDev)
		})
	}
}

// claimAll claims other's one-time keys as d until none are left: every
// one that other uploaded is handed out, each once.
func claimAll(t *testing.T, d, other *device) {
	t.Helper()
	got := map[string]bool{}
	for range len(other.otks) + 1 {
		k := d.claim(t, other)
		if k == "" {
			break
		}
		if got[k] {
			t.Fatalf("%s claimed %s's one-time key %s twice", d, other, k)
		}
		got[k] = true
	}
	if len(got) != len(other.otks) {
		t.Fatalf("%s claimed %d of %s's %d one-time keys: %v", d, len(got), other, len(other.otks), got)
	}
}

// signDevice: owner signs its device keys with its user's self-signing key
// (POST /keys/signatures/upload); watcher's /keys/query shows the
// signature on the device keys.
func signDevice(t *testing.T, e *env, watcher, owner *device) {
	t.Helper()
	spub := pubB64(owner.cs.selfSigning)
	signed := map[string]any{}
	for k, v := range owner.keys {
		if k != "signatures" {
			signed[k] = v
		}
	}
	signObject(t, signed, owner.u.id, "ed25519:"+spub, owner.cs.selfSigning)
	m := owner.mustDo(t, "upload a signature", "POST", "/_matrix/client/v3/keys/signatures/upload",
		map[string]any{owner.u.id: map[string]any{owner.id: signed}})
	if f, _ := m["failures"].(map[string]any); len(f) > 0 {
		t.Fatalf("%s: /keys/signatures/upload: failures %v", owner, f)
	}
	e.poll(t, watcher.String()+" sees "+owner.String()+"'s self-signing signature", func() string {
		k, _, why := watcher.queryDevice(t, owner)
		if why != "" {
			return why
		}
		if why := checkDeviceKeys(k, owner); why != "" {
			return why
		}
		if err := verifyObject(k, owner.u.id, "ed25519:"+spub, owner.cs.selfSigning.Public().(ed25519.PublicKey)); err != nil {
			return fmt.Sprintf("%v in %v", err, k)
		}
		return ""
	})
}

// deleteDevice: gone's user deletes it (DELETE /devices/{deviceId}, with
// the password through user-interactive auth); watcher's /sync lists the
// user in device_lists.changed and /keys/query no longer lists the device.
func deleteDevice(t *testing.T, e *env, watcher, gone *device) {
	t.Helper()
	watcher.sync(t, 0)
	watcher.changed = nil
	path := "/_matrix/client/v3/devices/" + esc(gone.id)
	status, m := gone.do(t, "DELETE", path, map[string]any{})
	if status == 401 {
		session, _ := m["session"].(string)
		m = gone.mustDo(t, "delete the device", "DELETE", path, map[string]any{"auth": map[string]any{
			"type": "m.login.password", "session": session, "password": "interop-" + gone.u.local,
			"identifier": map[string]any{"type": "m.id.user", "user": gone.u.local},
		}})
	} else if status != 200 {
		t.Fatalf("%s: DELETE %s: %d %v", gone, path, status, m)
	}
	e.poll(t, watcher.String()+"'s /sync lists "+gone.u.id+" in device_lists.changed", func() string {
		if slices.Contains(watcher.changed, gone.u.id) {
			return ""
		}
		watcher.sync(t, 2*time.Second)
		return fmt.Sprintf("changed so far: %v", watcher.changed)
	})
	e.poll(t, watcher.String()+" no longer gets "+gone.String()+"'s keys", func() string {
		_, m, why := watcher.queryDevice(t, gone)
		if why != "" && m != nil && m["device_keys"] != nil {
			return ""
		}
		return fmt.Sprintf("still listed: %v", m)
	})
}

// e2eeLeft checks that once alice and bob share no room, each one's /sync
// lists the other in device_lists.left.
func e2eeLeft(e *env, alice, bob *user) func(t *testing.T) {
	return func(t *testing.T) {
		if lastE2EE == nil {
			t.Skip("needs the E2EE steps' devices")
		}
		a, b := lastE2EE[0], lastE2EE[1]
		for _, p := range [][2]*device{{a, b}, {b, a}} {
			w, other := p[0], p[1]
			e.poll(t, w.String()+"'s /sync lists "+other.u.id+" in device_lists.left", func() string {
				if slices.Contains(w.left, other.u.id) {
					return ""
				}
				w.sync(t, 2*time.Second)
				return fmt.Sprintf("left so far: %v", w.left)
			})
		}
	}
}

// newDevice: mk logs in a new device (of another user than watcher's)
// and uploads its keys; watcher's incremental /sync then lists its user in
// device_lists.changed, and /keys/query lists the device with its keys.
func newDevice(t *testing.T, e *env, watcher *device, mk func() *device) *device {
	t.Helper()
	watcher.sync(t, 0) // what changed before does not count
	watcher.changed = nil
	nd := mk()
	e.poll(t, watcher.String()+"'s /sync lists "+nd.u.id+" in device_lists.changed", func() string {
		if slices.Contains(watcher.changed, nd.u.id) {
			return ""
		}
		watcher.sync(t, 2*time.Second)
		return fmt.Sprintf("changed so far: %v", watcher.changed)
	})
	e.poll(t, watcher.String()+" gets "+nd.String()+"'s keys", func() string {
		k, _, why := watcher.queryDevice(t, nd)
		if why != "" {
			return why
		}
		return checkDeviceKeys(k, nd)
	})
	return nd
}

// crossSigned: owner's user uploads cross-signing keys; watcher's
// /keys/query shows them, with their signatures.
func crossSigned(t *testing.T, e *env, watcher, owner *device) {
	t.Helper()
	cs := owner.uploadCrossSigning(t)
	owner.cs = cs
	mpub := pubB64(cs.master)
	uid := owner.u.id
	same := func(kind string, got any, want map[string]any, signer string, pub ed25519.PublicKey) string {
		g, _ := got.(map[string]any)
		if g == nil {
			return kind + ": missing"
		}
		for _, f := range []string{"user_id", "usage", "keys"} {
			a, _ := json.Marshal(g[f])
			b, _ := json.Marshal(want[f])
			if !bytes.Equal(a, b) {
				return fmt.Sprintf("%s: %s is %s, uploaded %s", kind, f, a, b)
			}
		}
		if err := verifyObject(g, uid, signer, pub); err != nil {
			return kind + ": " + err.Error()
		}
		return ""
	}
	e.poll(t, watcher.String()+" gets "+uid+"'s cross-signing keys", func() string {
		status, m := watcher.do(t, "POST", "/_matrix/client/v3/keys/query",
			map[string]any{"device_keys": map[string]any{uid: []any{}}})
		if status != 200 {
			return fmt.Sprintf("POST /keys/query: %d %v", status, m)
		}
		mk, _ := m["master_keys"].(map[string]any)
		sk, _ := m["self_signing_keys"].(map[string]any)
		if why := same("master key", mk[uid], cs.masterKey, "ed25519:"+owner.id,
			owner.ed.Public().(ed25519.PublicKey)); why != "" {
			return why + fmt.Sprintf(" in %v", m)
		}
		if why := same("self-signing key", sk[uid], cs.selfSigningKey, "ed25519:"+mpub,
			cs.master.Public().(ed25519.PublicKey)); why != "" {
			return why + fmt.Sprintf(" in %v", m)
		}
		return ""
	})
}

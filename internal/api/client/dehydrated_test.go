package client_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"polder.dev/polder/internal/hstest"
)

const dehydratedPath = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"

// dehydrateBody is a PUT /dehydrated_device body for device dev of user.
func dehydrateBody(user, dev, pickle string) map[string]any {
	return map[string]any{
		"device_id":                   dev,
		"device_data":                 map[string]any{"algorithm": "org.matrix.msc3814.v2", "device_pickle": pickle, "nonce": "n"},
		"initial_device_display_name": "Dehydrated device",
		"device_keys": map[string]any{
			"user_id": user, "device_id": dev, "dehydrated": true,
			"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
			"keys":       map[string]string{"curve25519:" + dev: dev, "ed25519:" + dev: "ed-" + pickle},
			"signatures": map[string]any{user: map[string]string{"ed25519:" + dev: "sig"}},
		},
		"one_time_keys": map[string]any{
			"signed_curve25519:AAAAAQ": map[string]any{"key": "otk1", "signatures": map[string]any{user: map[string]string{"ed25519:" + dev: "s"}}},
		},
		"fallback_keys": map[string]any{
			"signed_curve25519:AAAAAg": map[string]any{"key": "fb", "fallback": true, "signatures": map[string]any{user: map[string]string{"ed25519:" + dev: "s"}}},
		},
	}
}

type dehydratedEventsJSON struct {
	Events []struct {
		Sender  string         `json:"sender"`
		Type    string         `json:"type"`
		Content map[string]any `json:"content"`
	} `json:"events"`
	NextBatch *string `json:"next_batch"`
}

// MSC3814: PUT, GET and DELETE /dehydrated_device, its to-device messages
// through /dehydrated_device/{deviceId}/events, its keys in /keys/query and
// /keys/claim, and its place among the user's devices.
func TestDehydratedDevice(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		// A device ID as clients make them: the unpadded base64 of a
		// Curve25519 key, '/' and '+' included.
		const dev1, dev2 = "Zm9v/YmFy+YmF6cXV4", "c2Vjb25k/ZGV2aWNl"
		eventsPath := func(dev string) string { return dehydratedPath + "/" + url.PathEscape(dev) + "/events" }

		r := hs.Anon().Do(t, "GET", "/_matrix/client/versions", nil)
		if f := hstest.Decode[struct {
			Unstable map[string]bool `json:"unstable_features"`
		}](t, r); !f.Unstable["org.matrix.msc3814"] {
			t.Errorf("/versions unstable_features = %s, want org.matrix.msc3814: true", r.Body)
		}

		hstest.MustErr(t, alice.Do(t, "GET", dehydratedPath, nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, alice.Do(t, "DELETE", dehydratedPath, nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, alice.Do(t, "POST", eventsPath(dev1), map[string]any{}), 403, "M_FORBIDDEN")

		without := func(key string) map[string]any {
			b := dehydrateBody(alice.UserID, dev1, "p1")
			delete(b, key)
			return b
		}
		withField := func(key string, v any) map[string]any {
			b := dehydrateBody(alice.UserID, dev1, "p1")
			b[key] = v
			return b
		}
		for _, tt := range []struct {
			name    string
			body    any
			status  int
			errcode string
		}{
			{"no device_id", without("device_id"), 400, "M_MISSING_PARAM"},
			{"no device_keys", without("device_keys"), 400, "M_MISSING_PARAM"},
			{"no device_data", without("device_data"), 400, "M_BAD_JSON"},
			{"device_data without algorithm", withField("device_data", map[string]any{"x": 1}), 400, "M_BAD_JSON"},
			{"device_keys of another device", withField("device_keys", dehydrateBody(alice.UserID, "OTHER", "p")["device_keys"]), 400, "M_INVALID_PARAM"},
			{"the ID of an ordinary device", dehydrateBody(alice.UserID, alice.DeviceID, "p"), 400, "M_INVALID_PARAM"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				hstest.MustErr(t, alice.Do(t, "PUT", dehydratedPath, tt.body), tt.status, tt.errcode)
				hstest.MustErr(t, alice.Do(t, "GET", dehydratedPath, nil), 404, "M_NOT_FOUND")
			})
		}
		if ids := alice.DeviceIDs(t); !slices.Equal(ids, []string{alice.DeviceID}) {
			t.Fatalf("alice's devices after refused PUTs = %v, want only %s", ids, alice.DeviceID)
		}

		// Create.
		r = alice.Do(t, "PUT", dehydratedPath, dehydrateBody(alice.UserID, dev1, "p1"))
		if got := hstest.Str(t, hstest.MustOK(t, r), "device_id"); got != dev1 {
			t.Fatalf("PUT /dehydrated_device device_id = %q, want %q", got, dev1)
		}
		r = alice.Do(t, "GET", dehydratedPath, nil)
		hstest.MustOK(t, r)
		if got := hstest.Decode[struct {
			DeviceID   string         `json:"device_id"`
			DeviceData map[string]any `json:"device_data"`
		}](t, r); got.DeviceID != dev1 || got.DeviceData["device_pickle"] != "p1" || got.DeviceData["algorithm"] != "org.matrix.msc3814.v2" {
			t.Errorf("GET /dehydrated_device = %s, want %s with the device_data given", r.Body, dev1)
		}
		// It is one of alice's devices (as in Synapse), with its name.
		if ids := alice.DeviceIDs(t); !slices.Contains(ids, dev1) || len(ids) != 2 {
			t.Errorf("alice's devices = %v, want hers and %s", ids, dev1)
		}
		m := hstest.MustOK(t, alice.Do(t, "GET", devicesPath+"/"+url.PathEscape(dev1), nil))
		if m["display_name"] != "Dehydrated device" {
			t.Errorf("GET /devices/{dehydrated} = %v, want display_name from initial_device_display_name", m)
		}

		// Others see its keys and can claim its one-time key.
		queryDevices := func() map[string]json.RawMessage {
			t.Helper()
			r := bob.Do(t, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
			hstest.MustOK(t, r)
			return hstest.Decode[struct {
				DeviceKeys map[string]map[string]json.RawMessage `json:"device_keys"`
			}](t, r).DeviceKeys[alice.UserID]
		}
		if keys := queryDevices(); keys[dev1] == nil {
			t.Errorf("/keys/query of alice = %v, want the dehydrated device's keys", keys)
		} else if dk := hstest.Decode[struct {
			Dehydrated bool `json:"dehydrated"`
		}](t, &hstest.Response{Body: keys[dev1]}); !dk.Dehydrated {
			t.Errorf("dehydrated device keys = %s, want them as uploaded (dehydrated: true)", keys[dev1])
		}
		r = bob.Do(t, "POST", "/_matrix/client/v3/keys/claim", map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]string{dev1: "signed_curve25519"}}})
		hstest.MustOK(t, r)
		if claimed := hstest.Decode[struct {
			OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
		}](t, r).OneTimeKeys[alice.UserID][dev1]; claimed["signed_curve25519:AAAAAQ"] == nil {
			t.Errorf("/keys/claim of the dehydrated device = %s, want its one-time key", r.Body)
		}

		// Bob sends it room keys; alice's new login reads them in batches.
		for i, txn := range []string{"t1", "t2", "t3"} {
			hstest.MustOK(t, bob.Do(t, "PUT", "/_matrix/client/v3/sendToDevice/m.room.encrypted/"+txn, map[string]any{
				"messages": map[string]any{alice.UserID: map[string]any{dev1: map[string]any{"n": i}}},
			}))
		}
		hstest.MustOK(t, bob.Do(t, "PUT", "/_matrix/client/v3/sendToDevice/m.other/t4", map[string]any{
			"messages": map[string]any{alice.UserID: map[string]any{"*": map[string]any{"n": 3}}},
		}))
		events := func(r *hstest.Response) dehydratedEventsJSON {
			t.Helper()
			hstest.MustOK(t, r)
			ev := hstest.Decode[dehydratedEventsJSON](t, r)
			if (ev.NextBatch == nil) != (len(ev.Events) == 0) {
				t.Fatalf("%s = %s: want a next_batch exactly when there are events", r.Call, r.Body)
			}
			return ev
		}
		ns := func(ev dehydratedEventsJSON) []float64 {
			var out []float64
			for _, e := range ev.Events {
				out = append(out, e.Content["n"].(float64))
			}
			return out
		}
		phone := hs.Login(t, "alice", "pw")
		b1 := events(phone.Do(t, "POST", eventsPath(dev1)+"?limit=2", map[string]any{}))
		if got := ns(b1); !slices.Equal(got, []float64{0, 1}) || b1.Events[0].Sender != bob.UserID || b1.Events[0].Type != "m.room.encrypted" {
			t.Errorf("first batch = %+v, want bob's messages 0 and 1", b1)
		}
		b2 := events(phone.Do(t, "POST", eventsPath(dev1)+"?limit=2", map[string]any{"next_batch": *b1.NextBatch}))
		if got := ns(b2); !slices.Equal(got, []float64{2, 3}) || b2.Events[1].Type != "m.other" {
			t.Errorf("second batch = %+v, want messages 2 and 3", b2)
		}
		b3 := events(phone.Do(t, "POST", eventsPath(dev1), map[string]any{"next_batch": *b2.NextBatch}))
		if len(b3.Events) != 0 || b3.NextBatch != nil {
			t.Errorf("batch after the last = %+v, want no events and no next_batch (matrix-js-sdk reads batches while there is one)", b3)
		}
		// Nothing was deleted (MSC3814): a rehydration may start over, by
		// POST or by GET.
		if got := ns(events(phone.Do(t, "POST", eventsPath(dev1), nil))); !slices.Equal(got, []float64{0, 1, 2, 3}) {
			t.Errorf("batch from the start again = %v, want all four messages", got)
		}
		if got := ns(events(phone.Do(t, "GET", eventsPath(dev1)+"?next_batch="+url.QueryEscape(*b1.NextBatch), nil))); !slices.Equal(got, []float64{2, 3}) {
			t.Errorf("GET batch after the first = %v, want messages 2 and 3", got)
		}
		hstest.MustErr(t, phone.Do(t, "POST", eventsPath(dev1), map[string]any{"next_batch": "bogus"}), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, phone.Do(t, "POST", eventsPath(phone.DeviceID), map[string]any{}), 403, "M_FORBIDDEN")
		hstest.MustErr(t, bob.Do(t, "POST", eventsPath(dev1), map[string]any{}), 403, "M_FORBIDDEN")

		// A new dehydrated device replaces the old one, its keys and its
		// messages.
		r = alice.Do(t, "PUT", dehydratedPath, dehydrateBody(alice.UserID, dev2, "p2"))
		if got := hstest.Str(t, hstest.MustOK(t, r), "device_id"); got != dev2 {
			t.Fatalf("PUT /dehydrated_device (second) device_id = %q, want %q", got, dev2)
		}
		if got := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "GET", dehydratedPath, nil)), "device_id"); got != dev2 {
			t.Errorf("GET /dehydrated_device after replacing = %q, want %q", got, dev2)
		}
		if ids := alice.DeviceIDs(t); slices.Contains(ids, dev1) || !slices.Contains(ids, dev2) {
			t.Errorf("alice's devices after replacing = %v, want %s gone and %s there", ids, dev1, dev2)
		}
		if keys := queryDevices(); keys[dev1] != nil || keys[dev2] == nil {
			t.Errorf("/keys/query of alice after replacing = %v, want %s's keys and not %s's", keys, dev2, dev1)
		}
		hstest.MustErr(t, phone.Do(t, "POST", eventsPath(dev1), map[string]any{}), 403, "M_FORBIDDEN")
		if ev := events(phone.Do(t, "POST", eventsPath(dev2), map[string]any{})); len(ev.Events) != 0 {
			t.Errorf("messages of the new dehydrated device = %+v, want none", ev)
		}
		// The same device ID again: still one device, with the new data.
		hstest.MustOK(t, alice.Do(t, "PUT", dehydratedPath, dehydrateBody(alice.UserID, dev2, "p3")))
		if d := hstest.MustOK(t, alice.Do(t, "GET", dehydratedPath, nil)); d["device_data"].(map[string]any)["device_pickle"] != "p3" {
			t.Errorf("GET /dehydrated_device after a PUT with the same ID = %v, want the new device_data", d)
		}

		// DELETE.
		if got := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "DELETE", dehydratedPath, nil)), "device_id"); got != dev2 {
			t.Errorf("DELETE /dehydrated_device = %q, want %q", got, dev2)
		}
		hstest.MustErr(t, alice.Do(t, "GET", dehydratedPath, nil), 404, "M_NOT_FOUND")
		if ids := alice.DeviceIDs(t); slices.Contains(ids, dev2) {
			t.Errorf("alice's devices after DELETE = %v, want %s gone", ids, dev2)
		}
		if keys := queryDevices(); keys[dev2] != nil {
			t.Errorf("/keys/query of alice after DELETE = %v, want no %s", keys, dev2)
		}

		// DELETE /devices/{id} deletes it too.
		hstest.MustOK(t, alice.Do(t, "PUT", dehydratedPath, dehydrateBody(alice.UserID, dev1, "p4")))
		r = alice.UIA(t, "DELETE", devicesPath+"/"+url.PathEscape(dev1), map[string]any{}, alice.PasswordAuth())
		hstest.MustOK(t, r)
		hstest.MustErr(t, alice.Do(t, "GET", dehydratedPath, nil), 404, "M_NOT_FOUND")

		// So does /logout/all (as in Synapse; MSC3814 lists it).
		hstest.MustOK(t, alice.Do(t, "PUT", dehydratedPath, dehydrateBody(alice.UserID, dev1, "p5")))
		hstest.MustOK(t, phone.Do(t, "POST", "/_matrix/client/v3/logout/all", map[string]any{}))
		again := hs.Login(t, "alice", "pw")
		hstest.MustErr(t, again.Do(t, "GET", dehydratedPath, nil), 404, "M_NOT_FOUND")
		if ids := again.DeviceIDs(t); slices.Contains(ids, dev1) {
			t.Errorf("alice's devices after /logout/all = %v, want no dehydrated device", ids)
		}
		if keys := queryDevices(); keys[dev1] != nil {
			t.Errorf("/keys/query of alice after /logout/all = %v, want no %s", keys, dev1)
		}
	})
}

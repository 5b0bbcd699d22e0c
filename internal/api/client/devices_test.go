package client_test

import (
	"slices"
	"testing"

	"polder.dev/polder/internal/hstest"
)

const devicesPath = "/_matrix/client/v3/devices"

// GET /devices, GET and PUT /devices/{deviceId} (spec "Device management").
func TestDevicesReadAndRename(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		phone := hs.Anon().Do(t, "POST", loginPath, map[string]any{
			"type": "m.login.password", "user": "alice", "password": "pw", "device_id": "PHONE", "initial_device_display_name": "Phone",
		})
		hstest.MustOK(t, phone)
		bob := hs.Register(t, "bob", "pw")

		t.Run("list", func(t *testing.T) {
			type device struct {
				DeviceID    string  `json:"device_id"`
				DisplayName *string `json:"display_name"`
				LastSeenTS  *int64  `json:"last_seen_ts"`
				LastSeenIP  *string `json:"last_seen_ip"`
			}
			r := alice.Do(t, "GET", devicesPath, nil)
			hstest.MustOK(t, r)
			devs := hstest.Decode[struct{ Devices []device }](t, r).Devices
			var ids []string
			for _, d := range devs {
				ids = append(ids, d.DeviceID)
				if d.DeviceID == "PHONE" {
					if d.DisplayName == nil || *d.DisplayName != "Phone" {
						t.Errorf("PHONE display_name = %v, want Phone", d.DisplayName)
					}
					if d.LastSeenTS == nil || *d.LastSeenTS <= 0 {
						t.Errorf("PHONE last_seen_ts = %v, want the login time", d.LastSeenTS)
					}
					if d.LastSeenIP == nil || *d.LastSeenIP != "127.0.0.1" {
						t.Errorf("PHONE last_seen_ip = %v, want 127.0.0.1", d.LastSeenIP)
					}
				}
			}
			slices.Sort(ids)
			want := []string{alice.DeviceID, "PHONE"}
			slices.Sort(want)
			if !slices.Equal(ids, want) {
				t.Errorf("GET /devices = %v, want %v", ids, want)
			}
			if ids := bob.DeviceIDs(t); !slices.Equal(ids, []string{bob.DeviceID}) {
				t.Errorf("bob's devices = %v, want only his own", ids)
			}
		})
		tests := []struct {
			name    string
			c       *hstest.Client
			method  string
			dev     string
			body    any
			status  int
			errcode string
		}{
			{"get own device", alice, "GET", "PHONE", nil, 200, ""},
			{"get unknown device", alice, "GET", "NOSUCH", nil, 404, "M_NOT_FOUND"},
			{"get another user's device", bob, "GET", "PHONE", nil, 404, "M_NOT_FOUND"},
			{"rename own device", alice, "PUT", "PHONE", map[string]any{"display_name": "Old phone"}, 200, ""},
			{"rename unknown device", alice, "PUT", "NOSUCH", map[string]any{"display_name": "x"}, 404, "M_NOT_FOUND"},
			{"rename another user's device", bob, "PUT", "PHONE", map[string]any{"display_name": "hacked"}, 404, "M_NOT_FOUND"},
			{"put without display_name changes nothing", alice, "PUT", "PHONE", map[string]any{}, 200, ""},
			{"put without display_name on an unknown device", alice, "PUT", "NOSUCH", map[string]any{}, 404, "M_NOT_FOUND"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := tt.c.Do(t, tt.method, devicesPath+"/"+tt.dev, tt.body)
				if tt.status == 200 {
					hstest.MustOK(t, r)
					return
				}
				hstest.MustErr(t, r, tt.status, tt.errcode)
			})
		}
		t.Run("the rename stuck and nothing else changed", func(t *testing.T) {
			d := hstest.MustOK(t, alice.Do(t, "GET", devicesPath+"/PHONE", nil))
			if d["device_id"] != "PHONE" || d["display_name"] != "Old phone" {
				t.Errorf("GET /devices/PHONE = %v, want display_name Old phone", d)
			}
			if ids := alice.DeviceIDs(t); len(ids) != 2 {
				t.Errorf("alice's devices = %v, want 2", ids)
			}
		})
	})
}

// DELETE /devices/{deviceId} and POST /delete_devices, both behind UIA
// (spec "Device management").
func TestDevicesDelete(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		t.Run("DELETE: 401 flow, wrong password keeps the device, right one deletes it", func(t *testing.T) {
			a := hs.Register(t, "alice", "pw")
			other := hs.Login(t, "alice", "pw")
			path := devicesPath + "/" + other.DeviceID
			hstest.MustUIA(t, a.Do(t, "DELETE", path, nil), "m.login.password")
			wrong := a.PasswordAuth()
			wrong["password"] = "nope"
			if f := hstest.MustUIA(t, a.UIA(t, "DELETE", path, map[string]any{}, wrong), "m.login.password"); f.Errcode != "M_FORBIDDEN" {
				t.Errorf("wrong password: errcode %q, want M_FORBIDDEN", f.Errcode)
			}
			other.MustWhoami(t)
			if ids := a.DeviceIDs(t); !slices.Contains(ids, other.DeviceID) {
				t.Fatalf("device %s gone after a failed delete: %v", other.DeviceID, ids)
			}
			hstest.MustOK(t, a.UIA(t, "DELETE", path, map[string]any{}, a.PasswordAuth()))
			hstest.MustErr(t, other.Whoami(t), 401, "M_UNKNOWN_TOKEN")
			if ids := a.DeviceIDs(t); !slices.Equal(ids, []string{a.DeviceID}) {
				t.Errorf("devices after delete = %v, want only %s", ids, a.DeviceID)
			}
			hstest.MustErr(t, a.Do(t, "GET", path, nil), 404, "M_NOT_FOUND")
		})
		t.Run("DELETE of an unknown device is 404 before UIA", func(t *testing.T) {
			a := hs.Register(t, "bob", "pw")
			hstest.MustErr(t, a.Do(t, "DELETE", devicesPath+"/NOSUCH", nil), 404, "M_NOT_FOUND")
		})
		t.Run("DELETE of the current device logs it out", func(t *testing.T) {
			a := hs.Register(t, "carol", "pw")
			hstest.MustOK(t, a.UIA(t, "DELETE", devicesPath+"/"+a.DeviceID, map[string]any{}, a.PasswordAuth()))
			hstest.MustErr(t, a.Whoami(t), 401, "M_UNKNOWN_TOKEN")
		})
		t.Run("delete_devices deletes the listed devices only", func(t *testing.T) {
			d1 := hs.Register(t, "dave", "pw")
			d2 := hs.Login(t, "dave", "pw")
			d3 := hs.Login(t, "dave", "pw")
			erin := hs.Register(t, "erin", "pw")
			body := map[string]any{"devices": []string{d2.DeviceID, d3.DeviceID, erin.DeviceID, "NOSUCH"}}
			hstest.MustUIA(t, d1.Do(t, "POST", "/_matrix/client/v3/delete_devices", body), "m.login.password")
			if ids := d1.DeviceIDs(t); len(ids) != 3 {
				t.Fatalf("devices after the UIA round = %v, want all 3", ids)
			}
			hstest.MustOK(t, d1.UIA(t, "POST", "/_matrix/client/v3/delete_devices", body, d1.PasswordAuth()))
			if ids := d1.DeviceIDs(t); !slices.Equal(ids, []string{d1.DeviceID}) {
				t.Errorf("devices after delete_devices = %v, want only %s", ids, d1.DeviceID)
			}
			for _, c := range []*hstest.Client{d2, d3} {
				hstest.MustErr(t, c.Whoami(t), 401, "M_UNKNOWN_TOKEN")
			}
			// Erin's device ID was in the list, but it is hers.
			erin.MustWhoami(t)
		})
		t.Run("delete_devices with a wrong password keeps every device", func(t *testing.T) {
			f1 := hs.Register(t, "frank", "pw")
			f2 := hs.Login(t, "frank", "pw")
			wrong := f1.PasswordAuth()
			wrong["password"] = "nope"
			r := f1.UIA(t, "POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{f2.DeviceID}}, wrong)
			if f := hstest.MustUIA(t, r, "m.login.password"); f.Errcode != "M_FORBIDDEN" {
				t.Errorf("wrong password: errcode %q, want M_FORBIDDEN", f.Errcode)
			}
			f2.MustWhoami(t)
		})
		t.Run("delete_devices with an empty list", func(t *testing.T) {
			g := hs.Register(t, "grace", "pw")
			hstest.MustOK(t, g.UIA(t, "POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{}}, g.PasswordAuth()))
			g.MustWhoami(t)
		})
	})
}

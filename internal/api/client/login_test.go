package client_test

import (
	"slices"
	"testing"

	"polder.dev/polder/internal/hstest"
)

const (
	loginPath    = "/_matrix/client/v3/login"
	getTokenPath = "/_matrix/client/v1/login/get_token"
	refreshPath  = "/_matrix/client/v3/refresh"
)

// GET /login (spec "Login"): the flows Polder implements.
func TestLoginFlows(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		type flow struct {
			Type          string `json:"type"`
			GetLoginToken bool   `json:"get_login_token"`
		}
		r := hs.Anon().Do(t, "GET", loginPath, nil)
		hstest.MustOK(t, r)
		flows := hstest.Decode[struct{ Flows []flow }](t, r).Flows
		want := []flow{{Type: "m.login.password"}, {Type: "m.login.token", GetLoginToken: true}}
		for _, w := range want {
			if !slices.Contains(flows, w) {
				t.Errorf("GET /login flows = %+v, want %+v among them", flows, w)
			}
		}
	})
}

// POST /login with m.login.password (spec "Password-based" and "Identifier
// types").
func TestLoginPassword(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "secret")
		hs.Register(t, "bob", "bobpw")
		ident := func(user string) map[string]any { return map[string]any{"type": "m.id.user", "user": user} }
		ok := []struct {
			name string
			body map[string]any
		}{
			{"identifier with localpart", map[string]any{"type": "m.login.password", "identifier": ident("alice"), "password": "secret"}},
			{"identifier with full user ID", map[string]any{"type": "m.login.password", "identifier": ident(alice.UserID), "password": "secret"}},
			{"identifier with upper-case localpart", map[string]any{"type": "m.login.password", "identifier": ident("ALICE"), "password": "secret"}},
			{"legacy user field, localpart", map[string]any{"type": "m.login.password", "user": "alice", "password": "secret"}},
			{"legacy user field, user ID", map[string]any{"type": "m.login.password", "user": alice.UserID, "password": "secret"}},
		}
		for _, tt := range ok {
			t.Run(tt.name, func(t *testing.T) {
				m := hstest.MustOK(t, hs.Anon().Do(t, "POST", loginPath, tt.body))
				if m["user_id"] != alice.UserID {
					t.Errorf("user_id = %v, want %s", m["user_id"], alice.UserID)
				}
				if m["home_server"] != hs.ServerName() {
					t.Errorf("home_server = %v, want %s", m["home_server"], hs.ServerName())
				}
				wk, _ := m["well_known"].(map[string]any)
				if hsObj, _ := wk["m.homeserver"].(map[string]any); hsObj["base_url"] != hs.URL() {
					t.Errorf("well_known = %v, want m.homeserver.base_url %s", m["well_known"], hs.URL())
				}
				if _, ok := m["refresh_token"]; ok {
					t.Errorf("refresh_token in %v, though not asked for", m)
				}
				if _, ok := m["expires_in_ms"]; ok {
					t.Errorf("expires_in_ms in %v: a token without a refresh token must not expire", m)
				}
				c := &hstest.Client{HS: hs, UserID: alice.UserID, DeviceID: hstest.Str(t, m, "device_id"), AccessToken: hstest.Str(t, m, "access_token")}
				c.MustWhoami(t)
			})
		}
		before := alice.DeviceIDs(t)

		bad := []struct {
			name    string
			body    map[string]any
			errcode string
		}{
			{"wrong password", map[string]any{"type": "m.login.password", "identifier": ident("alice"), "password": "wrong"}, "M_FORBIDDEN"},
			{"another user's password", map[string]any{"type": "m.login.password", "identifier": ident("alice"), "password": "bobpw"}, "M_FORBIDDEN"},
			{"no password", map[string]any{"type": "m.login.password", "identifier": ident("alice")}, "M_FORBIDDEN"},
			{"unknown user", map[string]any{"type": "m.login.password", "identifier": ident("nobody"), "password": "secret"}, "M_FORBIDDEN"},
			{"user on another server", map[string]any{"type": "m.login.password", "identifier": ident("@alice:elsewhere.example"), "password": "secret"}, "M_FORBIDDEN"},
			{"third-party identifier", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "a@example.org"}, "password": "secret"}, "M_FORBIDDEN"},
		}
		for _, tt := range bad {
			t.Run(tt.name, func(t *testing.T) {
				hstest.MustErr(t, hs.Anon().Do(t, "POST", loginPath, tt.body), 403, tt.errcode)
			})
		}
		t.Run("failed logins created no device", func(t *testing.T) {
			if after := alice.DeviceIDs(t); !slices.Equal(before, after) {
				t.Errorf("devices after failed logins = %v, want %v", after, before)
			}
		})
	})
}

// POST /login with device_id and initial_device_display_name (spec "POST
// /login": an unknown device_id creates that device; the display name is
// ignored for a known device).
func TestLoginDevice(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		login := func(t *testing.T, dev, name string) map[string]any {
			t.Helper()
			return hstest.MustOK(t, hs.Anon().Do(t, "POST", loginPath, map[string]any{
				"type": "m.login.password", "user": "alice", "password": "pw",
				"device_id": dev, "initial_device_display_name": name,
			}))
		}
		first := login(t, "LAPTOP", "Laptop")
		if first["device_id"] != "LAPTOP" {
			t.Fatalf("device_id = %v, want LAPTOP", first["device_id"])
		}
		second := login(t, "LAPTOP", "Renamed?")
		if second["device_id"] != "LAPTOP" {
			t.Fatalf("device_id = %v, want LAPTOP", second["device_id"])
		}
		d := hstest.MustOK(t, alice.Do(t, "GET", "/_matrix/client/v3/devices/LAPTOP", nil))
		if d["display_name"] != "Laptop" {
			t.Errorf("GET /devices/LAPTOP = %v, want display_name Laptop (initial_device_display_name is ignored for a known device)", d)
		}
		if ids := alice.DeviceIDs(t); len(ids) != 2 {
			t.Errorf("devices = %v, want alice's first device and LAPTOP", ids)
		}
		c := &hstest.Client{HS: hs, UserID: alice.UserID, DeviceID: "LAPTOP", AccessToken: hstest.Str(t, second, "access_token")}
		c.MustWhoami(t)
		// Polder revokes the tokens a device had when it logs in again
		// (spec: "The server may invalidate any access token previously
		// associated with that device").
		hstest.MustErr(t, c.WithToken(hstest.Str(t, first, "access_token")).Whoami(t), 401, "M_UNKNOWN_TOKEN")
	})
}

// POST /login/get_token (spec "POST /login/get_token", v1.7) and POST /login
// with m.login.token.
func TestLoginToken(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "bobpw")

		t.Run("UIA with the user's password is required", func(t *testing.T) {
			hstest.MustUIA(t, alice.Do(t, "POST", getTokenPath, nil), "m.login.password")
			hstest.MustUIA(t, alice.Do(t, "POST", getTokenPath, map[string]any{}), "m.login.password")
			wrong := alice.PasswordAuth()
			wrong["password"] = "nope"
			f := hstest.MustUIA(t, alice.UIA(t, "POST", getTokenPath, map[string]any{}, wrong), "m.login.password")
			if f.Errcode != "M_FORBIDDEN" {
				t.Errorf("get_token with a wrong password: errcode %q, want M_FORBIDDEN", f.Errcode)
			}
			// Bob's valid credentials do not authorise alice's request:
			// 403, no stage to retry.
			hstest.MustErr(t, alice.UIA(t, "POST", getTokenPath, map[string]any{}, bob.PasswordAuth()), 403, "M_FORBIDDEN")
		})
		t.Run("a token logs in once", func(t *testing.T) {
			m := hstest.MustOK(t, alice.UIA(t, "POST", getTokenPath, map[string]any{}, alice.PasswordAuth()))
			tok := hstest.Str(t, m, "login_token")
			if ms, _ := m["expires_in_ms"].(float64); ms <= 0 {
				t.Errorf("expires_in_ms = %v, want > 0", m["expires_in_ms"])
			}
			body := map[string]any{"type": "m.login.token", "token": tok}
			l := hstest.MustOK(t, hs.Anon().Do(t, "POST", loginPath, body))
			if l["user_id"] != alice.UserID {
				t.Errorf("m.login.token logged in as %v, want %s", l["user_id"], alice.UserID)
			}
			if l["device_id"] == alice.DeviceID {
				t.Errorf("m.login.token reused the device %v, want a new one", l["device_id"])
			}
			newDev := &hstest.Client{HS: hs, UserID: alice.UserID, DeviceID: hstest.Str(t, l, "device_id"), AccessToken: hstest.Str(t, l, "access_token")}
			newDev.MustWhoami(t)
			// Spec: "The generated token MUST only be valid for a single login".
			hstest.MustErr(t, hs.Anon().Do(t, "POST", loginPath, body), 403, "M_FORBIDDEN")
		})
		t.Run("every call re-prompts", func(t *testing.T) {
			// Spec: "servers MUST always re-prompt the user for verification".
			hstest.MustOK(t, alice.UIA(t, "POST", getTokenPath, map[string]any{}, alice.PasswordAuth()))
			hstest.MustUIA(t, alice.Do(t, "POST", getTokenPath, nil), "m.login.password")
		})
		t.Run("an unknown token", func(t *testing.T) {
			hstest.MustErr(t, hs.Anon().Do(t, "POST", loginPath, map[string]any{"type": "m.login.token", "token": "pdl_nonsense"}), 403, "M_FORBIDDEN")
		})
		t.Run("capability advertised", func(t *testing.T) {
			m := hstest.MustOK(t, alice.Do(t, "GET", "/_matrix/client/v3/capabilities", nil))
			caps, _ := m["capabilities"].(map[string]any)
			if c, _ := caps["m.get_login_token"].(map[string]any); c["enabled"] != true {
				t.Errorf("capabilities = %v, want m.get_login_token.enabled true", m)
			}
		})
	})
}

// POST /refresh (spec "Refreshing access tokens"): new tokens work, the old
// access token is revoked, and the old refresh token stays valid only until
// the new access token or refresh token is used.
func TestRefresh(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		hs.Register(t, "alice", "pw")
		login := func(t *testing.T) *hstest.Client {
			t.Helper()
			c := hs.Anon()
			r := c.Do(t, "POST", loginPath, map[string]any{"type": "m.login.password", "user": "alice", "password": "pw", "refresh_token": true})
			m := hstest.MustOK(t, r)
			if ms, _ := m["expires_in_ms"].(float64); ms <= 0 {
				t.Fatalf("login with refresh_token: expires_in_ms = %v, want > 0", m["expires_in_ms"])
			}
			return &hstest.Client{HS: hs, UserID: hstest.Str(t, m, "user_id"), DeviceID: hstest.Str(t, m, "device_id"),
				AccessToken: hstest.Str(t, m, "access_token"), RefreshToken: hstest.Str(t, m, "refresh_token")}
		}
		refresh := func(t *testing.T, c *hstest.Client, rt string) *hstest.Client {
			t.Helper()
			m := hstest.MustOK(t, hs.Anon().Do(t, "POST", refreshPath, map[string]any{"refresh_token": rt}))
			if ms, _ := m["expires_in_ms"].(float64); ms <= 0 {
				t.Errorf("refresh: expires_in_ms = %v, want > 0", m["expires_in_ms"])
			}
			n := *c
			n.AccessToken, n.RefreshToken = hstest.Str(t, m, "access_token"), hstest.Str(t, m, "refresh_token")
			return &n
		}
		refreshFails := func(t *testing.T, rt string) {
			t.Helper()
			hstest.MustErr(t, hs.Anon().Do(t, "POST", refreshPath, map[string]any{"refresh_token": rt}), 401, "M_UNKNOWN_TOKEN")
		}

		t.Run("new tokens work on the same device; old access token revoked", func(t *testing.T) {
			c1 := login(t)
			c1.MustWhoami(t)
			c2 := refresh(t, c1, c1.RefreshToken)
			if c2.AccessToken == c1.AccessToken || c2.RefreshToken == c1.RefreshToken {
				t.Fatalf("refresh returned the same tokens")
			}
			c2.MustWhoami(t) // same user and device
			hstest.MustErr(t, c1.Whoami(t), 401, "M_UNKNOWN_TOKEN")
		})
		t.Run("old refresh token revoked once the new access token is used", func(t *testing.T) {
			c1 := login(t)
			c2 := refresh(t, c1, c1.RefreshToken)
			c2.MustWhoami(t)
			refreshFails(t, c1.RefreshToken)
			c2.MustWhoami(t)
			c3 := refresh(t, c2, c2.RefreshToken)
			c3.MustWhoami(t)
		})
		t.Run("old refresh token revoked once the new refresh token is used", func(t *testing.T) {
			c1 := login(t)
			c2 := refresh(t, c1, c1.RefreshToken)
			c3 := refresh(t, c2, c2.RefreshToken) // c2's access token never used
			refreshFails(t, c1.RefreshToken)
			c3.MustWhoami(t)
		})
		t.Run("old refresh token still valid before the new tokens are used", func(t *testing.T) {
			// A client that lost the response to its refresh retries it.
			c1 := login(t)
			refresh(t, c1, c1.RefreshToken)
			c2b := refresh(t, c1, c1.RefreshToken)
			c2b.MustWhoami(t)
			refreshFails(t, c1.RefreshToken)
		})
		t.Run("unknown and wrong-kind tokens", func(t *testing.T) {
			c := login(t)
			refreshFails(t, "pdf_nonsense")
			refreshFails(t, c.AccessToken)
			hstest.MustErr(t, c.WithToken(c.RefreshToken).Whoami(t), 401, "M_UNKNOWN_TOKEN")
		})
		t.Run("logout revokes the refresh token", func(t *testing.T) {
			c := login(t)
			hstest.MustOK(t, c.Do(t, "POST", "/_matrix/client/v3/logout", nil))
			refreshFails(t, c.RefreshToken)
		})
		t.Run("deleting the device revokes its refresh token", func(t *testing.T) {
			c, other := login(t), login(t)
			c.Password = "pw"
			hstest.MustOK(t, c.UIA(t, "DELETE", "/_matrix/client/v3/devices/"+other.DeviceID, map[string]any{}, c.PasswordAuth()))
			refreshFails(t, other.RefreshToken)
		})
		t.Run("a password change that logs out other devices revokes their refresh tokens", func(t *testing.T) {
			c, other := login(t), login(t)
			c.Password = "pw"
			hstest.MustOK(t, c.UIA(t, "POST", passwordPath, map[string]any{"new_password": "pw"}, c.PasswordAuth()))
			refreshFails(t, other.RefreshToken)
			refresh(t, c, c.RefreshToken).MustWhoami(t)
		})
		t.Run("deactivation revokes refresh tokens", func(t *testing.T) {
			hs.Register(t, "zed", "pw")
			r := hs.Anon().Do(t, "POST", loginPath, map[string]any{"type": "m.login.password", "user": "zed", "password": "pw", "refresh_token": true})
			m := hstest.MustOK(t, r)
			z := &hstest.Client{HS: hs, UserID: hs.UserID("zed"), AccessToken: hstest.Str(t, m, "access_token"), Password: "pw"}
			hstest.MustOK(t, z.UIA(t, "POST", deactivatePath, map[string]any{}, z.PasswordAuth()))
			refreshFails(t, hstest.Str(t, m, "refresh_token"))
		})
	})
}

// POST /logout and /logout/all (spec "Logout"), GET /account/whoami.
func TestLogout(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		t.Run("logout deletes the device and its token", func(t *testing.T) {
			a1 := hs.Register(t, "alice", "pw")
			a2 := hs.Login(t, "alice", "pw")
			m := hstest.MustOK(t, a2.Do(t, "POST", "/_matrix/client/v3/logout", nil))
			if len(m) != 0 {
				t.Errorf("POST /logout = %v, want {}", m)
			}
			e := hstest.MustErr(t, a2.Whoami(t), 401, "M_UNKNOWN_TOKEN")
			if e["soft_logout"] == true {
				t.Errorf("whoami after logout = %v, want soft_logout false (the session is gone)", e)
			}
			if ids := a1.DeviceIDs(t); !slices.Equal(ids, []string{a1.DeviceID}) {
				t.Errorf("devices after logout = %v, want only %s", ids, a1.DeviceID)
			}
			a1.MustWhoami(t)
			hstest.MustErr(t, a2.Do(t, "POST", "/_matrix/client/v3/logout", nil), 401, "M_UNKNOWN_TOKEN")
		})
		t.Run("logout/all deletes every device", func(t *testing.T) {
			b1 := hs.Register(t, "bob", "pw")
			b2 := hs.Login(t, "bob", "pw")
			b3 := hs.Login(t, "bob", "pw")
			carol := hs.Register(t, "carol", "pw")
			hstest.MustOK(t, b2.Do(t, "POST", "/_matrix/client/v3/logout/all", nil))
			for _, c := range []*hstest.Client{b1, b2, b3} {
				hstest.MustErr(t, c.Whoami(t), 401, "M_UNKNOWN_TOKEN")
			}
			carol.MustWhoami(t) // other users are untouched
			b4 := hs.Login(t, "bob", "pw")
			if ids := b4.DeviceIDs(t); !slices.Equal(ids, []string{b4.DeviceID}) {
				t.Errorf("bob's devices after logout/all and a new login = %v, want only %s", ids, b4.DeviceID)
			}
		})
		t.Run("whoami", func(t *testing.T) {
			d := hs.Register(t, "dave", "pw")
			m := hstest.MustOK(t, d.Whoami(t))
			want := map[string]any{"user_id": d.UserID, "device_id": d.DeviceID, "is_guest": false}
			for k, v := range want {
				if m[k] != v {
					t.Errorf("whoami[%s] = %v, want %v", k, m[k], v)
				}
			}
		})
	})
}

package client_test

import (
	"slices"
	"testing"

	"polder.dev/polder/internal/hstest"
)

const (
	passwordPath   = "/_matrix/client/v3/account/password"
	deactivatePath = "/_matrix/client/v3/account/deactivate"
)

// POST /account/password (spec "Password management").
func TestChangePassword(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		t.Run("UIA first; wrong password refused and nothing changed", func(t *testing.T) {
			a := hs.Register(t, "alice", "old")
			hstest.MustUIA(t, a.Do(t, "POST", passwordPath, map[string]any{"new_password": "new"}), "m.login.password")
			wrong := a.PasswordAuth()
			wrong["password"] = "guess"
			f := hstest.MustUIA(t, a.UIA(t, "POST", passwordPath, map[string]any{"new_password": "new"}, wrong), "m.login.password")
			if f.Errcode != "M_FORBIDDEN" {
				t.Errorf("wrong password: errcode %q, want M_FORBIDDEN", f.Errcode)
			}
			hs.Login(t, "alice", "old")
			a.MustWhoami(t)
		})
		t.Run("another user's password does not authorise the change", func(t *testing.T) {
			b := hs.Register(t, "bob", "bobpw")
			e := hs.Register(t, "eve", "evepw")
			// 403, not a UIA 401 to retry (as Synapse; Complement
			// TestDeviceManagement).
			hstest.MustErr(t, b.UIA(t, "POST", passwordPath, map[string]any{"new_password": "pwned"}, e.PasswordAuth()), 403, "M_FORBIDDEN")
			hs.Login(t, "bob", "bobpw")
		})
		t.Run("logout_devices defaults to true: other devices logged out, this one kept", func(t *testing.T) {
			c1 := hs.Register(t, "carol", "old")
			c2 := hs.Login(t, "carol", "old")
			c3 := hs.Login(t, "carol", "old")
			hstest.MustOK(t, c1.UIA(t, "POST", passwordPath, map[string]any{"new_password": "new"}, c1.PasswordAuth()))
			c1.MustWhoami(t)
			for _, c := range []*hstest.Client{c2, c3} {
				hstest.MustErr(t, c.Whoami(t), 401, "M_UNKNOWN_TOKEN")
			}
			if ids := c1.DeviceIDs(t); !slices.Equal(ids, []string{c1.DeviceID}) {
				t.Errorf("devices after the change = %v, want only %s", ids, c1.DeviceID)
			}
			hstest.MustErr(t, hs.Anon().Do(t, "POST", loginPath, map[string]any{"type": "m.login.password", "user": "carol", "password": "old"}), 403, "M_FORBIDDEN")
			hs.Login(t, "carol", "new")
		})
		t.Run("logout_devices false keeps other devices", func(t *testing.T) {
			d1 := hs.Register(t, "dave", "old")
			d2 := hs.Login(t, "dave", "old")
			hstest.MustOK(t, d1.UIA(t, "POST", passwordPath, map[string]any{"new_password": "new", "logout_devices": false}, d1.PasswordAuth()))
			d1.MustWhoami(t)
			d2.MustWhoami(t)
			hs.Login(t, "dave", "new")
		})
		t.Run("a UIA session of another operation is refused", func(t *testing.T) {
			f1 := hs.Register(t, "frank", "pw")
			f := hstest.MustUIA(t, f1.Do(t, "POST", "/_matrix/client/v3/delete_devices", map[string]any{"devices": []string{}}), "m.login.password")
			auth := f1.PasswordAuth()
			auth["session"] = f.Session
			r := f1.Do(t, "POST", passwordPath, map[string]any{"new_password": "new", "auth": auth})
			if r.Status == 200 {
				t.Fatalf("POST /account/password with a /delete_devices UIA session: got 200, want an error")
			}
			hs.Login(t, "frank", "pw")
		})
		t.Run("another user's UIA session is refused", func(t *testing.T) {
			g := hs.Register(t, "grace", "gpw")
			h := hs.Register(t, "heidi", "hpw")
			f := hstest.MustUIA(t, h.Do(t, "POST", passwordPath, map[string]any{"new_password": "x"}), "m.login.password")
			auth := g.PasswordAuth()
			auth["session"] = f.Session
			r := g.Do(t, "POST", passwordPath, map[string]any{"new_password": "new", "auth": auth})
			if r.Status == 200 {
				t.Fatalf("POST /account/password with another user's UIA session: got 200, want an error")
			}
			hs.Login(t, "grace", "gpw")
		})
	})
}

// POST /account/deactivate (spec "Account deactivation").
func TestDeactivate(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		a1 := hs.Register(t, "alice", "pw")
		a2 := hs.Login(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")

		t.Run("UIA first; a wrong password changes nothing", func(t *testing.T) {
			hstest.MustUIA(t, a1.Do(t, "POST", deactivatePath, nil), "m.login.password")
			hstest.MustUIA(t, a1.Do(t, "POST", deactivatePath, map[string]any{}), "m.login.password")
			wrong := a1.PasswordAuth()
			wrong["password"] = "nope"
			if f := hstest.MustUIA(t, a1.UIA(t, "POST", deactivatePath, map[string]any{}, wrong), "m.login.password"); f.Errcode != "M_FORBIDDEN" {
				t.Errorf("wrong password: errcode %q, want M_FORBIDDEN", f.Errcode)
			}
			a1.MustWhoami(t)
			a2.MustWhoami(t)
		})
		t.Run("deactivation", func(t *testing.T) {
			m := hstest.MustOK(t, a1.UIA(t, "POST", deactivatePath, map[string]any{}, a1.PasswordAuth()))
			// Spec: id_server_unbind_result is required, "no-support" when
			// nothing was unbound.
			if m["id_server_unbind_result"] != "no-support" {
				t.Errorf("POST /account/deactivate = %v, want id_server_unbind_result no-support", m)
			}
		})
		t.Run("every token fails", func(t *testing.T) {
			for _, c := range []*hstest.Client{a1, a2} {
				e := hstest.MustErr(t, c.Whoami(t), 401, "M_UNKNOWN_TOKEN")
				if e["soft_logout"] == true {
					t.Errorf("whoami of a deactivated user = %v, want soft_logout false", e)
				}
			}
		})
		t.Run("login fails", func(t *testing.T) {
			// Spec "POST /login" 403: M_USER_DEACTIVATED, or M_FORBIDDEN when
			// the server can no longer authenticate the user (its password
			// is wiped). Polder wipes the password and answers
			// M_USER_DEACTIVATED whatever password is given.
			for _, pw := range []string{"pw", "anything"} {
				r := hs.Anon().Do(t, "POST", loginPath, map[string]any{"type": "m.login.password", "user": "alice", "password": pw})
				if r.Status != 403 {
					t.Fatalf("login of a deactivated user: status %d %s, want 403", r.Status, r.Body)
				}
				if code := r.JSON(t)["errcode"]; code != "M_USER_DEACTIVATED" && code != "M_FORBIDDEN" {
					t.Errorf("login of a deactivated user: errcode %v, want M_USER_DEACTIVATED or M_FORBIDDEN", code)
				}
			}
		})
		t.Run("the user ID stays taken", func(t *testing.T) {
			hstest.MustErr(t, hs.Anon().Do(t, "GET", availablePath+"alice", nil), 400, "M_USER_IN_USE")
			hstest.MustErr(t, hs.Anon().Do(t, "POST", registerPath, map[string]any{"username": "alice", "password": "pw", "auth": hstest.Dummy}), 400, "M_USER_IN_USE")
		})
		t.Run("other users are untouched", func(t *testing.T) {
			bob.MustWhoami(t)
			hs.Login(t, "bob", "pw")
		})
	})
}

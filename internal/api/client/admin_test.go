package client_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"regexp"
	"testing"
	"time"

	"polder.dev/polder/internal/hstest"
)

const (
	sharedRegPath = "/_synapse/admin/v1/register"
	regTokensPath = "/_synapse/admin/v1/registration_tokens"
)

// synapseMAC is the MAC that Synapse's register_new_matrix_user sends:
// HMAC-SHA1 keyed with the shared secret over nonce, user, password and
// "admin" or "notadmin" (then the user type, if any), NUL-separated, in hex.
func synapseMAC(secret, nonce, user, password string, admin bool, userType string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(nonce))
	m.Write([]byte{0})
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	m.Write([]byte{0})
	if admin {
		m.Write([]byte("admin"))
	} else {
		m.Write([]byte("notadmin"))
	}
	if userType != "" {
		m.Write([]byte{0})
		m.Write([]byte(userType))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// Shared-secret registration, Synapse admin API "Shared-Secret Registration"
// (POST /_synapse/admin/v1/register), which admin tools and Complement use.
func TestSharedSecretRegistration(t *testing.T) {
	t.Parallel()
	const secret = "correct horse battery staple"
	hstest.Each(t, hstest.Options{SharedSecret: secret, Registration: hstest.RegistrationClosed}, func(t *testing.T, hs *hstest.Server) {
		nonce := func(t *testing.T) string {
			t.Helper()
			return hstest.Str(t, hstest.MustOK(t, hs.Anon().Do(t, "GET", sharedRegPath, nil)), "nonce")
		}
		register := func(t *testing.T, body map[string]any) *hstest.Response {
			t.Helper()
			return hs.Anon().Do(t, "POST", sharedRegPath, body)
		}
		body := func(n, user, pw string, admin bool, mac string) map[string]any {
			return map[string]any{"nonce": n, "username": user, "password": pw, "admin": admin, "mac": mac}
		}
		isAdmin := func(t *testing.T, c *hstest.Client) bool {
			t.Helper()
			r := c.Do(t, "GET", regTokensPath, nil)
			if r.Status == 200 {
				return true
			}
			hstest.MustErr(t, r, 403, "M_FORBIDDEN")
			return false
		}

		t.Run("a user, not an admin, even with registration closed", func(t *testing.T) {
			n := nonce(t)
			m := hstest.MustOK(t, register(t, body(n, "alice", "pw", false, synapseMAC(secret, n, "alice", "pw", false, ""))))
			alice := &hstest.Client{HS: hs, UserID: hstest.Str(t, m, "user_id"), DeviceID: hstest.Str(t, m, "device_id"), AccessToken: hstest.Str(t, m, "access_token")}
			if alice.UserID != hs.UserID("alice") {
				t.Errorf("user_id = %s, want %s", alice.UserID, hs.UserID("alice"))
			}
			alice.MustWhoami(t)
			if isAdmin(t, alice) {
				t.Errorf("alice, registered with admin false, is an admin")
			}
			hs.Login(t, "alice", "pw")
		})
		t.Run("admin flag honoured", func(t *testing.T) {
			n := nonce(t)
			m := hstest.MustOK(t, register(t, body(n, "root", "rootpw", true, synapseMAC(secret, n, "root", "rootpw", true, ""))))
			root := &hstest.Client{HS: hs, UserID: hstest.Str(t, m, "user_id"), AccessToken: hstest.Str(t, m, "access_token")}
			if !isAdmin(t, root) {
				t.Errorf("root, registered with admin true, is not an admin")
			}
		})
		t.Run("user_type is part of the MAC", func(t *testing.T) {
			n := nonce(t)
			b := body(n, "botty", "pw", false, synapseMAC(secret, n, "botty", "pw", false, "bot"))
			b["user_type"] = "bot"
			hstest.MustOK(t, register(t, b))
		})
		t.Run("displayname and inhibit_login", func(t *testing.T) {
			n := nonce(t)
			b := body(n, "quiet", "pw", false, synapseMAC(secret, n, "quiet", "pw", false, ""))
			b["displayname"], b["inhibit_login"] = "Quiet One", true
			m := hstest.MustOK(t, register(t, b))
			if _, ok := m["access_token"]; ok {
				t.Errorf("inhibit_login response %v has an access_token", m)
			}
			hs.Login(t, "quiet", "pw")
		})

		bad := []struct {
			name    string
			body    func(n string) map[string]any
			status  int
			errcode string
			user    string // must stay free
		}{
			{"MAC with the wrong secret", func(n string) map[string]any {
				return body(n, "mallory", "pw", false, synapseMAC("wrong", n, "mallory", "pw", false, ""))
			}, 403, "M_FORBIDDEN", "mallory"},
			{"MAC for notadmin but admin asked", func(n string) map[string]any {
				return body(n, "mallory", "pw", true, synapseMAC(secret, n, "mallory", "pw", false, ""))
			}, 403, "M_FORBIDDEN", "mallory"},
			{"MAC over another password", func(n string) map[string]any {
				return body(n, "mallory", "pw2", false, synapseMAC(secret, n, "mallory", "pw", false, ""))
			}, 403, "M_FORBIDDEN", "mallory"},
			{"MAC without the user_type sent", func(n string) map[string]any {
				b := body(n, "mallory", "pw", false, synapseMAC(secret, n, "mallory", "pw", false, ""))
				b["user_type"] = "bot"
				return b
			}, 403, "M_FORBIDDEN", "mallory"},
			{"MAC not hex", func(n string) map[string]any { return body(n, "mallory", "pw", false, "zz") }, 403, "M_FORBIDDEN", "mallory"},
			{"unknown nonce", func(string) map[string]any {
				return body("madeup", "mallory", "pw", false, synapseMAC(secret, "madeup", "mallory", "pw", false, ""))
			}, 400, "M_UNKNOWN", "mallory"},
			{"invalid username", func(n string) map[string]any {
				return body(n, "bad name", "pw", false, synapseMAC(secret, n, "bad name", "pw", false, ""))
			}, 400, "M_INVALID_USERNAME", "mallory"},
			{"taken username", func(n string) map[string]any {
				return body(n, "alice", "other", false, synapseMAC(secret, n, "alice", "other", false, ""))
			}, 400, "M_USER_IN_USE", "mallory"},
		}
		for _, tt := range bad {
			t.Run(tt.name, func(t *testing.T) {
				hstest.MustErr(t, register(t, tt.body(nonce(t))), tt.status, tt.errcode)
				hstest.MustOK(t, hs.Anon().Do(t, "GET", availablePath+tt.user, nil))
			})
		}
		t.Run("alice's password is unchanged by the refused re-registration", func(t *testing.T) {
			hs.Login(t, "alice", "pw")
		})
		t.Run("a nonce is used once", func(t *testing.T) {
			n := nonce(t)
			hstest.MustOK(t, register(t, body(n, "once", "pw", false, synapseMAC(secret, n, "once", "pw", false, ""))))
			hstest.MustErr(t, register(t, body(n, "twice", "pw", false, synapseMAC(secret, n, "twice", "pw", false, ""))), 400, "M_UNKNOWN")
			hstest.MustOK(t, hs.Anon().Do(t, "GET", availablePath+"twice", nil))
		})
		t.Run("nonces are unique", func(t *testing.T) {
			if a, b := nonce(t), nonce(t); a == b {
				t.Errorf("two GETs gave the same nonce %q", a)
			}
		})
	})
}

// Without a shared secret, shared-secret registration is off.
func TestSharedSecretRegistrationOff(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		hstest.MustErr(t, hs.Anon().Do(t, "GET", sharedRegPath, nil), 403, "M_FORBIDDEN")
		r := hs.Anon().Do(t, "POST", sharedRegPath, map[string]any{"nonce": "n", "username": "u", "password": "p", "mac": synapseMAC("", "n", "u", "p", false, "")})
		hstest.MustErr(t, r, 403, "M_FORBIDDEN")
		hstest.MustOK(t, hs.Anon().Do(t, "GET", availablePath+"u", nil))
	})
}

// The Synapse admin API "Registration Tokens": list, create, get, update,
// delete; admins only.
func TestRegistrationTokensAdmin(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{Registration: hstest.RegistrationToken}, func(t *testing.T, hs *hstest.Server) {
		admin := hs.Admin(t, "root")
		type token struct {
			Token       string `json:"token"`
			UsesAllowed *int   `json:"uses_allowed"`
			Pending     int    `json:"pending"`
			Completed   int    `json:"completed"`
			ExpiryTime  *int64 `json:"expiry_time"`
		}
		do := func(t *testing.T, method, path string, body any) token {
			t.Helper()
			r := admin.Do(t, method, path, body)
			hstest.MustOK(t, r)
			return hstest.Decode[token](t, r)
		}
		list := func(t *testing.T, query string) []string {
			t.Helper()
			r := admin.Do(t, "GET", regTokensPath+query, nil)
			hstest.MustOK(t, r)
			var out []string
			for _, tk := range hstest.Decode[struct {
				Tokens []token `json:"registration_tokens"`
			}](t, r).Tokens {
				out = append(out, tk.Token)
			}
			return out
		}

		t.Run("new with defaults", func(t *testing.T) {
			tk := do(t, "POST", regTokensPath+"/new", map[string]any{})
			if !regexp.MustCompile(`^[A-Za-z0-9]{16}$`).MatchString(tk.Token) {
				t.Errorf("generated token %q, want 16 letters and digits", tk.Token)
			}
			if tk.UsesAllowed != nil || tk.ExpiryTime != nil || tk.Pending != 0 || tk.Completed != 0 {
				t.Errorf("new token = %+v, want unlimited, no expiry, unused", tk)
			}
		})
		t.Run("new with an empty body", func(t *testing.T) {
			hstest.MustOK(t, admin.Do(t, "POST", regTokensPath+"/new", nil))
		})
		t.Run("new with length", func(t *testing.T) {
			if tk := do(t, "POST", regTokensPath+"/new", map[string]any{"length": 40}); len(tk.Token) != 40 {
				t.Errorf("token %q has %d characters, want 40", tk.Token, len(tk.Token))
			}
		})
		expiry := time.Now().Add(time.Hour).UnixMilli()
		t.Run("new with every field", func(t *testing.T) {
			tk := do(t, "POST", regTokensPath+"/new", map[string]any{"token": "abc-_.~XYZ", "uses_allowed": 3, "expiry_time": expiry})
			if tk.Token != "abc-_.~XYZ" || tk.UsesAllowed == nil || *tk.UsesAllowed != 3 || tk.ExpiryTime == nil || *tk.ExpiryTime != expiry {
				t.Errorf("new token = %+v", tk)
			}
		})
		t.Run("get", func(t *testing.T) {
			tk := do(t, "GET", regTokensPath+"/abc-_.~XYZ", nil)
			if tk.UsesAllowed == nil || *tk.UsesAllowed != 3 {
				t.Errorf("GET token = %+v", tk)
			}
			hstest.MustErr(t, admin.Do(t, "GET", regTokensPath+"/nosuch", nil), 404, "M_NOT_FOUND")
		})
		t.Run("put changes only the fields given", func(t *testing.T) {
			tk := do(t, "PUT", regTokensPath+"/abc-_.~XYZ", map[string]any{"uses_allowed": 5})
			if tk.UsesAllowed == nil || *tk.UsesAllowed != 5 || tk.ExpiryTime == nil || *tk.ExpiryTime != expiry {
				t.Errorf("after PUT uses_allowed 5: %+v, want uses 5 and the expiry kept", tk)
			}
			tk = do(t, "PUT", regTokensPath+"/abc-_.~XYZ", map[string]any{"expiry_time": nil})
			if tk.ExpiryTime != nil || tk.UsesAllowed == nil || *tk.UsesAllowed != 5 {
				t.Errorf("after PUT expiry_time null: %+v, want no expiry and uses 5", tk)
			}
			tk = do(t, "PUT", regTokensPath+"/abc-_.~XYZ", map[string]any{"uses_allowed": nil})
			if tk.UsesAllowed != nil {
				t.Errorf("after PUT uses_allowed null: %+v, want unlimited", tk)
			}
			if got := do(t, "GET", regTokensPath+"/abc-_.~XYZ", nil); got.UsesAllowed != nil || got.ExpiryTime != nil {
				t.Errorf("GET after the PUTs = %+v", got)
			}
			hstest.MustErr(t, admin.Do(t, "PUT", regTokensPath+"/nosuch", map[string]any{"uses_allowed": 1}), 404, "M_NOT_FOUND")
		})
		t.Run("list and the valid filter", func(t *testing.T) {
			do(t, "POST", regTokensPath+"/new", map[string]any{"token": "usedup", "uses_allowed": 0})
			all := list(t, "")
			if len(all) != 5 {
				t.Errorf("GET registration_tokens = %v, want 5 tokens", all)
			}
			valid, invalid := list(t, "?valid=true"), list(t, "?valid=false")
			if len(valid) != 4 || len(invalid) != 1 || invalid[0] != "usedup" {
				t.Errorf("valid=true %v, valid=false %v; want 4 and [usedup]", valid, invalid)
			}
		})
		t.Run("delete", func(t *testing.T) {
			hstest.MustOK(t, admin.Do(t, "DELETE", regTokensPath+"/usedup", nil))
			hstest.MustErr(t, admin.Do(t, "GET", regTokensPath+"/usedup", nil), 404, "M_NOT_FOUND")
			hstest.MustErr(t, admin.Do(t, "DELETE", regTokensPath+"/usedup", nil), 404, "M_NOT_FOUND")
		})
		t.Run("a created token registers; a deleted one does not", func(t *testing.T) {
			hs.RegisterWithToken(t, "alice", "pw", "abc-_.~XYZ")
			if tk := do(t, "GET", regTokensPath+"/abc-_.~XYZ", nil); tk.Completed != 1 {
				t.Errorf("token after a registration = %+v, want completed 1", tk)
			}
			do(t, "POST", regTokensPath+"/new", map[string]any{"token": "gone"})
			hstest.MustOK(t, admin.Do(t, "DELETE", regTokensPath+"/gone", nil))
			r := hs.Anon().UIA(t, "POST", registerPath, map[string]any{"username": "bob"}, map[string]any{"type": "m.login.registration_token", "token": "gone"})
			if f := hstest.MustUIA(t, r, "m.login.registration_token"); f.Errcode != "M_UNAUTHORIZED" {
				t.Errorf("deleted token: errcode %q, want M_UNAUTHORIZED", f.Errcode)
			}
		})

		alice := hs.Login(t, "alice", "pw")
		for _, ep := range []struct{ method, path string }{
			{"GET", regTokensPath},
			{"POST", regTokensPath + "/new"},
			{"GET", regTokensPath + "/abc-_.~XYZ"},
			{"PUT", regTokensPath + "/abc-_.~XYZ"},
			{"DELETE", regTokensPath + "/abc-_.~XYZ"},
		} {
			t.Run("non-admin "+ep.method+" "+ep.path, func(t *testing.T) {
				hstest.MustErr(t, alice.Do(t, ep.method, ep.path, map[string]any{"uses_allowed": 0}), 403, "M_FORBIDDEN")
				hstest.MustErr(t, hs.Anon().Do(t, ep.method, ep.path, map[string]any{"uses_allowed": 0}), 401, "M_MISSING_TOKEN")
			})
		}
		t.Run("refused requests changed nothing", func(t *testing.T) {
			if tk := do(t, "GET", regTokensPath+"/abc-_.~XYZ", nil); tk.UsesAllowed != nil {
				t.Errorf("token after refused PUTs = %+v, want unlimited", tk)
			}
			if all := list(t, ""); len(all) != 4 {
				t.Errorf("tokens after refused requests = %v, want 4", all)
			}
		})
	})
}

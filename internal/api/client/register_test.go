package client_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store"
)

const (
	registerPath  = "/_matrix/client/v3/register"
	availablePath = "/_matrix/client/v3/register/available?username="
	validityPath  = "/_matrix/client/v1/register/m.login.registration_token/validity?token="
)

// The grammar of new user ID localparts (spec appendix "User Identifiers").
var localpartRE = regexp.MustCompile(`^[a-z0-9._=/+-]+$`)

// POST /register with open registration (spec "Account registration" and
// "User-Interactive Authentication API").
func TestRegisterOpen(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		t.Run("dummy flow: 401 with flows and session, then success", func(t *testing.T) {
			c := hs.Anon()
			f := hstest.MustUIA(t, c.Do(t, "POST", registerPath, map[string]any{"username": "alice", "password": "pw"}), "m.login.dummy")
			if f.Errcode != "" {
				t.Errorf("first UIA round has errcode %q, want none", f.Errcode)
			}
			if len(f.Completed) != 0 {
				t.Errorf("first UIA round completed = %v, want none", f.Completed)
			}
			// The username is still free while UIA is under way.
			hstest.MustOK(t, c.Do(t, "GET", availablePath+"alice", nil))
			m := hstest.MustOK(t, c.Do(t, "POST", registerPath, map[string]any{
				"username": "alice", "password": "pw",
				"auth": map[string]any{"type": "m.login.dummy", "session": f.Session},
			}))
			if m["user_id"] != hs.UserID("alice") {
				t.Errorf("user_id = %v, want %s", m["user_id"], hs.UserID("alice"))
			}
			for _, k := range []string{"access_token", "device_id"} {
				if s, _ := m[k].(string); s == "" {
					t.Errorf("response %v has no %s", m, k)
				}
			}
			if _, ok := m["refresh_token"]; ok {
				t.Errorf("response %v has a refresh_token the client did not ask for", m)
			}
			alice := &hstest.Client{HS: hs, UserID: hs.UserID("alice"), DeviceID: m["device_id"].(string), AccessToken: m["access_token"].(string)}
			alice.MustWhoami(t)
			hs.Login(t, "alice", "pw")
			// The finished session cannot be replayed.
			r := c.Do(t, "POST", registerPath, map[string]any{
				"username": "alice2", "auth": map[string]any{"type": "m.login.dummy", "session": f.Session},
			})
			if r.Status == 200 {
				t.Errorf("POST /register replaying a finished UIA session: got 200 %s, want an error", r.Body)
			}
		})
		t.Run("no auth never succeeds", func(t *testing.T) {
			// Spec: "must still give a 401 response to requests with no auth data".
			hstest.MustUIA(t, hs.Anon().Do(t, "POST", registerPath, map[string]any{"username": "noauth"}), "m.login.dummy")
			hstest.MustOK(t, hs.Anon().Do(t, "GET", availablePath+"noauth", nil))
		})
		t.Run("auth with only a type starts a session and succeeds", func(t *testing.T) {
			m := hstest.MustOK(t, hs.Anon().Do(t, "POST", registerPath, map[string]any{"username": "oneshot", "auth": hstest.Dummy}))
			if m["user_id"] != hs.UserID("oneshot") {
				t.Errorf("user_id = %v", m["user_id"])
			}
		})
		t.Run("a stage not in any flow is refused", func(t *testing.T) {
			c := hs.Anon()
			f := hstest.MustUIA(t, c.Do(t, "POST", registerPath, map[string]any{"username": "wrongstage"}), "m.login.dummy")
			r := c.Do(t, "POST", registerPath, map[string]any{"username": "wrongstage",
				"auth": map[string]any{"type": "m.login.password", "session": f.Session, "password": "x", "user": "wrongstage"}})
			if r.Status != 401 && r.Status != 400 {
				t.Errorf("POST /register with a stage not offered: status %d %s, want 401 or 400", r.Status, r.Body)
			}
			hstest.MustOK(t, c.Do(t, "GET", availablePath+"wrongstage", nil))
		})
		t.Run("unknown session", func(t *testing.T) {
			r := hs.Anon().Do(t, "POST", registerPath, map[string]any{"username": "nosess",
				"auth": map[string]any{"type": "m.login.dummy", "session": "doesnotexist"}})
			if r.Status == 200 {
				t.Fatalf("POST /register with an unknown session: got 200, want an error")
			}
			hstest.MustOK(t, hs.Anon().Do(t, "GET", availablePath+"nosess", nil))
		})
		t.Run("upper-case username maps to lower case", func(t *testing.T) {
			c := hs.Register(t, "BoB", "pw")
			if c.UserID != hs.UserID("bob") {
				t.Errorf("registered BoB as %s, want %s", c.UserID, hs.UserID("bob"))
			}
			hs.Login(t, "bob", "pw")
			hs.Login(t, "BOB", "pw")
			hstest.MustErr(t, hs.Anon().Do(t, "GET", availablePath+"BOB", nil), 400, "M_USER_IN_USE")
		})
		t.Run("no username: the server picks a valid localpart", func(t *testing.T) {
			m := hstest.MustOK(t, hs.Anon().UIA(t, "POST", registerPath, map[string]any{"password": "pw"}, hstest.Dummy))
			uid, _ := m["user_id"].(string)
			lp, server, ok := strings.Cut(strings.TrimPrefix(uid, "@"), ":")
			if !ok || server != hs.ServerName() || !localpartRE.MatchString(lp) || strings.Trim(lp, "0123456789") == "" {
				t.Errorf("generated user_id %q, want @<localpart>:%s in the user ID grammar, not all digits", uid, hs.ServerName())
			}
		})
		t.Run("device_id and initial_device_display_name", func(t *testing.T) {
			m := hstest.MustOK(t, hs.Anon().UIA(t, "POST", registerPath, map[string]any{
				"username": "withdev", "password": "pw", "device_id": "MYDEVICE", "initial_device_display_name": "My phone",
			}, hstest.Dummy))
			if m["device_id"] != "MYDEVICE" {
				t.Errorf("device_id = %v, want MYDEVICE", m["device_id"])
			}
			c := &hstest.Client{HS: hs, AccessToken: m["access_token"].(string)}
			d := hstest.MustOK(t, c.Do(t, "GET", "/_matrix/client/v3/devices/MYDEVICE", nil))
			if d["display_name"] != "My phone" {
				t.Errorf("GET /devices/MYDEVICE = %v, want display_name My phone", d)
			}
		})
		t.Run("inhibit_login: no token and no device", func(t *testing.T) {
			m := hstest.MustOK(t, hs.Anon().UIA(t, "POST", registerPath, map[string]any{
				"username": "inhibited", "password": "pw", "inhibit_login": true,
			}, hstest.Dummy))
			if m["user_id"] != hs.UserID("inhibited") {
				t.Errorf("user_id = %v", m["user_id"])
			}
			for _, k := range []string{"access_token", "device_id", "refresh_token"} {
				if _, ok := m[k]; ok {
					t.Errorf("inhibit_login response %v has %s", m, k)
				}
			}
			c := hs.Login(t, "inhibited", "pw")
			if got := c.DeviceIDs(t); len(got) != 1 || got[0] != c.DeviceID {
				t.Errorf("devices after inhibit_login and one login = %v, want only %s", got, c.DeviceID)
			}
		})
		t.Run("refresh_token true: refresh token and expiry", func(t *testing.T) {
			m := hstest.MustOK(t, hs.Anon().UIA(t, "POST", registerPath, map[string]any{
				"username": "refresher", "password": "pw", "refresh_token": true,
			}, hstest.Dummy))
			if s, _ := m["refresh_token"].(string); s == "" {
				t.Errorf("response %v has no refresh_token", m)
			}
			if ms, _ := m["expires_in_ms"].(float64); ms <= 0 {
				t.Errorf("expires_in_ms = %v, want > 0", m["expires_in_ms"])
			}
		})
		t.Run("taken username: M_USER_IN_USE", func(t *testing.T) {
			hs.Register(t, "taken", "pw")
			hstest.MustErr(t, hs.Anon().Do(t, "POST", registerPath, map[string]any{"username": "taken", "auth": hstest.Dummy}), 400, "M_USER_IN_USE")
			hs.Login(t, "taken", "pw") // the first account is untouched
		})
	})
}

// Spec "POST /register": a username outside the grammar is M_INVALID_USERNAME,
// and the server checks it before user-interactive authentication (no 401).
func TestRegisterInvalidUsername(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		hs.Register(t, "alice", "pw")
		tests := []struct {
			name, username, errcode string
		}{
			{"space", "bad name", "M_INVALID_USERNAME"},
			{"colon", "a:b", "M_INVALID_USERNAME"},
			{"at sign", "@alice", "M_INVALID_USERNAME"},
			{"non-ASCII", "élodie", "M_INVALID_USERNAME"},
			{"leading underscore (reserved)", "_bridge", "M_INVALID_USERNAME"},
			{"all digits (reserved for guests)", "12345", "M_INVALID_USERNAME"},
			{"user ID over 255 bytes", strings.Repeat("a", 250), "M_INVALID_USERNAME"},
			{"taken", "alice", "M_USER_IN_USE"},
			{"taken, other case", "ALICE", "M_USER_IN_USE"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				// No auth: the answer must be the username error, not a 401.
				hstest.MustErr(t, hs.Anon().Do(t, "POST", registerPath, map[string]any{"username": tt.username, "password": "pw"}), 400, tt.errcode)
				// With complete auth, the same.
				hstest.MustErr(t, hs.Anon().Do(t, "POST", registerPath, map[string]any{"username": tt.username, "password": "pw", "auth": hstest.Dummy}), 400, tt.errcode)
				// And /register/available agrees.
				hstest.MustErr(t, hs.Anon().Do(t, "GET", availablePath+hstest.Query(tt.username), nil), 400, tt.errcode)
			})
		}
	})
}

// GET /register/available (spec "Account registration").
func TestRegisterAvailable(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		hs.Register(t, "alice", "pw")
		tests := []struct {
			name, username string
			status         int
			errcode        string
		}{
			{"free", "bob", 200, ""},
			{"free with every allowed symbol", "b.o_b=1-2/3+4", 200, ""},
			{"taken", "alice", 400, "M_USER_IN_USE"},
			{"taken, upper case", "Alice", 400, "M_USER_IN_USE"},
			{"invalid", "no way", 400, "M_INVALID_USERNAME"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := hs.Anon().Do(t, "GET", availablePath+hstest.Query(tt.username), nil)
				if tt.status == 200 {
					if m := hstest.MustOK(t, r); m["available"] != true {
						t.Errorf("GET /register/available?username=%s = %v, want available true", tt.username, m)
					}
					return
				}
				hstest.MustErr(t, r, tt.status, tt.errcode)
			})
		}
	})
}

// Registration closed: POST /register is 403 M_FORBIDDEN without a UIA round
// (spec "POST /register" 403: "The homeserver does not permit registering
// the account").
func TestRegisterClosed(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{Registration: hstest.RegistrationClosed}, func(t *testing.T, hs *hstest.Server) {
		for _, body := range []map[string]any{
			{"username": "alice", "password": "pw"},
			{"username": "alice", "password": "pw", "auth": hstest.Dummy},
			{"username": "alice", "password": "pw", "auth": map[string]any{"type": "m.login.registration_token", "token": "x"}},
		} {
			hstest.MustErr(t, hs.Anon().Do(t, "POST", registerPath, body), 403, "M_FORBIDDEN")
		}
		hstest.MustOK(t, hs.Anon().Do(t, "GET", availablePath+"alice", nil))
		// Spec "GET /register/m.login.registration_token/validity" 403:
		// "The homeserver does not permit registration and thus all tokens
		// are considered invalid."
		t.Run("token validity is 403 when registration is closed", func(t *testing.T) {
			r := hs.Anon().Do(t, "GET", validityPath+"anything", nil)
			if r.Status == 200 {
				t.Fatal("GET /register/m.login.registration_token/validity answers 200 when registration is disabled; " +
					"the spec's 403 M_FORBIDDEN applies (user.Service.RegistrationTokenValid should return mxerr.Forbidden unless EnableRegistration)")
			}
			hstest.MustErr(t, r, 403, "M_FORBIDDEN")
		})
	})
}

// Guest registration (spec "Guest access"): off by default; when on,
// kind=guest needs no UIA, ignores every field but
// initial_device_display_name, and guests may not use most endpoints.
func TestRegisterGuest(t *testing.T) {
	t.Parallel()
	t.Run("off", func(t *testing.T) {
		hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
			hstest.MustErr(t, hs.Anon().Do(t, "POST", registerPath+"?kind=guest", map[string]any{}), 403, "M_FORBIDDEN")
		})
	})
	t.Run("on", func(t *testing.T) {
		hstest.Each(t, hstest.Options{Guests: true}, func(t *testing.T, hs *hstest.Server) {
			m := hstest.MustOK(t, hs.Anon().Do(t, "POST", registerPath+"?kind=guest", map[string]any{
				"username": "sneaky", "password": "pw", "device_id": "CHOSEN", "initial_device_display_name": "Guest phone",
			}))
			guest := &hstest.Client{HS: hs, UserID: hstest.Str(t, m, "user_id"), DeviceID: hstest.Str(t, m, "device_id"), AccessToken: hstest.Str(t, m, "access_token")}
			if guest.UserID == hs.UserID("sneaky") {
				t.Errorf("guest got the username it asked for (%s); spec: every field but initial_device_display_name MUST be ignored", guest.UserID)
			}
			if guest.DeviceID == "CHOSEN" {
				t.Errorf("guest got the device_id it asked for; spec: the server MUST pick a device_id")
			}
			hstest.MustOK(t, hs.Anon().Do(t, "GET", availablePath+"sneaky", nil))
			w := hstest.MustOK(t, guest.Whoami(t))
			if w["is_guest"] != true || w["user_id"] != guest.UserID {
				t.Errorf("guest whoami = %v, want is_guest true", w)
			}
			d := hstest.MustOK(t, guest.Do(t, "GET", "/_matrix/client/v3/devices/"+guest.DeviceID, nil))
			if d["display_name"] != "Guest phone" {
				t.Errorf("guest device = %v, want display_name Guest phone", d)
			}
			for _, ep := range []struct{ method, path string }{
				{"POST", "/_matrix/client/v3/account/password"},
				{"POST", "/_matrix/client/v3/account/deactivate"},
				{"POST", "/_matrix/client/v1/login/get_token"},
				{"POST", "/_matrix/client/v3/delete_devices"},
			} {
				hstest.MustErr(t, guest.Do(t, ep.method, ep.path, map[string]any{"new_password": "x", "devices": []string{}}), 403, "M_GUEST_ACCESS_FORBIDDEN")
			}
			// A normal user is unaffected.
			alice := hs.Register(t, "alice", "pw")
			if w := hstest.MustOK(t, alice.Whoami(t)); w["is_guest"] == true {
				t.Errorf("alice whoami = %v, want is_guest false", w)
			}
		})
	})
}

// Registration with m.login.registration_token (spec "Token-authenticated
// registration"), with tokens managed through the Synapse admin API.
func TestRegisterWithToken(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{Registration: hstest.RegistrationToken}, func(t *testing.T, hs *hstest.Server) {
		admin := hs.Admin(t, "root")
		newToken := func(t *testing.T, body map[string]any) string {
			t.Helper()
			return hstest.Str(t, hstest.MustOK(t, admin.Do(t, "POST", "/_synapse/admin/v1/registration_tokens/new", body)), "token")
		}
		getToken := func(t *testing.T, tok string) map[string]any {
			t.Helper()
			return hstest.MustOK(t, admin.Do(t, "GET", "/_synapse/admin/v1/registration_tokens/"+tok, nil))
		}
		valid := func(t *testing.T, tok string) bool {
			t.Helper()
			return hstest.MustOK(t, hs.Anon().Do(t, "GET", validityPath+hstest.Query(tok), nil))["valid"] == true
		}
		tokenAuth := func(tok string) map[string]any {
			return map[string]any{"type": "m.login.registration_token", "token": tok}
		}

		t.Run("flows offer only the token stage", func(t *testing.T) {
			hstest.MustUIA(t, hs.Anon().Do(t, "POST", registerPath, map[string]any{"username": "x"}), "m.login.registration_token")
			r := hs.Anon().Do(t, "POST", registerPath, map[string]any{"username": "x", "auth": hstest.Dummy})
			if r.Status == 200 {
				t.Fatalf("POST /register with m.login.dummy when a token is required: got 200")
			}
			hstest.MustOK(t, hs.Anon().Do(t, "GET", availablePath+"x", nil))
		})
		t.Run("a valid token registers and counts a completed use", func(t *testing.T) {
			tok := newToken(t, map[string]any{"uses_allowed": 2})
			if !valid(t, tok) {
				t.Fatalf("validity of a fresh token = false")
			}
			c := hs.RegisterWithToken(t, "alice", "pw", tok)
			c.MustWhoami(t)
			got := getToken(t, tok)
			if got["completed"] != 1.0 || got["pending"] != 0.0 {
				t.Errorf("token after one registration = %v, want completed 1 pending 0", got)
			}
		})
		t.Run("wrong token: 401 M_UNAUTHORIZED, nothing created", func(t *testing.T) {
			r := hs.Anon().UIA(t, "POST", registerPath, map[string]any{"username": "mallory", "password": "pw"}, tokenAuth("nope"))
			f := hstest.MustUIA(t, r, "m.login.registration_token")
			if f.Errcode != "M_UNAUTHORIZED" {
				t.Errorf("wrong token: errcode %q, want M_UNAUTHORIZED (body %s)", f.Errcode, r.Body)
			}
			hstest.MustOK(t, hs.Anon().Do(t, "GET", availablePath+"mallory", nil))
			if valid(t, "nope") {
				t.Errorf("validity of an unknown token = true")
			}
		})
		t.Run("a used-up token is refused", func(t *testing.T) {
			tok := newToken(t, map[string]any{"uses_allowed": 1})
			hs.RegisterWithToken(t, "first", "pw", tok)
			if valid(t, tok) {
				t.Errorf("validity of a used-up token = true")
			}
			r := hs.Anon().UIA(t, "POST", registerPath, map[string]any{"username": "second", "password": "pw"}, tokenAuth(tok))
			if f := hstest.MustUIA(t, r, "m.login.registration_token"); f.Errcode != "M_UNAUTHORIZED" {
				t.Errorf("used-up token: errcode %q, want M_UNAUTHORIZED", f.Errcode)
			}
			hstest.MustOK(t, hs.Anon().Do(t, "GET", availablePath+"second", nil))
			if got := getToken(t, tok); got["completed"] != 1.0 || got["pending"] != 0.0 {
				t.Errorf("token after a refused use = %v, want completed 1 pending 0", got)
			}
		})
		t.Run("an expired token is refused", func(t *testing.T) {
			tok := newToken(t, map[string]any{})
			// The admin API refuses an expiry in the past; set it in the
			// store, as time passing would.
			past := time.Now().Add(-time.Second).UnixMilli()
			if err := hs.DB().UpdateRegistrationToken(t.Context(), tok, nil, &past); err != nil {
				t.Fatalf("UpdateRegistrationToken: %v", err)
			}
			if valid(t, tok) {
				t.Errorf("validity of an expired token = true")
			}
			r := hs.Anon().UIA(t, "POST", registerPath, map[string]any{"username": "late", "password": "pw"}, tokenAuth(tok))
			if f := hstest.MustUIA(t, r, "m.login.registration_token"); f.Errcode != "M_UNAUTHORIZED" {
				t.Errorf("expired token: errcode %q, want M_UNAUTHORIZED", f.Errcode)
			}
			hstest.MustOK(t, hs.Anon().Do(t, "GET", availablePath+"late", nil))
		})
		t.Run("a token that will expire is valid", func(t *testing.T) {
			tok := newToken(t, map[string]any{"expiry_time": time.Now().Add(time.Hour).UnixMilli()})
			hs.RegisterWithToken(t, "early", "pw", tok)
		})
		t.Run("pending uses are released when the UIA session expires", func(t *testing.T) {
			tok := newToken(t, map[string]any{"uses_allowed": 1})
			// A client that took the token's only use in a session and
			// walked away (a multi-stage flow it never finished). With a
			// single-stage flow no HTTP request leaves a use pending, so the
			// session is made the way user.AuthenticateUIA makes it.
			abandon(t, hs, "abandoned1", tok)
			if got := getToken(t, tok); got["pending"] != 1.0 {
				t.Fatalf("token with an abandoned session = %v, want pending 1", got)
			}
			if valid(t, tok) {
				t.Errorf("validity of a token whose only use is pending = true")
			}
			r := hs.Anon().UIA(t, "POST", registerPath, map[string]any{"username": "blocked", "password": "pw"}, tokenAuth(tok))
			hstest.MustUIA(t, r, "m.login.registration_token")
			// What user.Service.Run does every 15s for sessions older than 30 min.
			if _, err := hs.DB().ExpireUIASessions(t.Context(), time.Now().Add(time.Hour).UnixMilli()); err != nil {
				t.Fatalf("ExpireUIASessions: %v", err)
			}
			if got := getToken(t, tok); got["pending"] != 0.0 {
				t.Errorf("token after the session expired = %v, want pending 0", got)
			}
			if !valid(t, tok) {
				t.Errorf("validity after the pending use was released = false")
			}
			hs.RegisterWithToken(t, "unblocked", "pw", tok)
		})
		t.Run("two pending uses of one token are both released", func(t *testing.T) {
			tok := newToken(t, map[string]any{"uses_allowed": 2})
			abandon(t, hs, "abandoned2", tok)
			abandon(t, hs, "abandoned3", tok)
			if _, err := hs.DB().ExpireUIASessions(t.Context(), time.Now().Add(time.Hour).UnixMilli()); err != nil {
				t.Fatalf("ExpireUIASessions: %v", err)
			}
			if got := getToken(t, tok); got["pending"] != 0.0 {
				t.Fatalf("store.ExpireUIASessions releases one pending use per token, not one per expired session: "+
					"token %v still has pending uses after both sessions holding it expired. The UPDATE ... SET pending = pending - 1 "+
					"WHERE token IN (SELECT reg_token ...) decrements each token once; it should subtract the number of expired sessions "+
					"holding it (pending = pending - (SELECT COUNT(*) FROM uia_sessions WHERE reg_token = token AND created_ts < $1))", got)
			}
		})
	})
}

// abandon makes a registration UIA session that holds one use of the
// registration token and is never finished.
func abandon(t *testing.T, hs *hstest.Server, id, tok string) {
	t.Helper()
	ctx := t.Context()
	if err := hs.DB().CreateUIASession(ctx, store.UIASession{ID: id, CreatedTS: time.Now().UnixMilli(), Operation: "register"}); err != nil {
		t.Fatalf("CreateUIASession: %v", err)
	}
	if err := hs.DB().ReserveRegistrationToken(ctx, id, tok); err != nil {
		t.Fatalf("ReserveRegistrationToken: %v", err)
	}
}

package client_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/hstest"
)

// Tests of the HTTP edge: discovery, CORS, unknown endpoints, bad input,
// body limits, rate limits and access tokens. Each runs over real HTTP on
// every engine.

// GET /_matrix/client/versions, /.well-known/matrix/*, /capabilities and the
// version endpoints.
func TestDiscovery(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{Config: func(c *config.Config) {
		c.PublicBaseURL = "https://matrix.example.org"
		c.WellKnownServer = "fed.example.org:443"
	}}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		tests := []struct {
			name   string
			client *hstest.Client
			path   string
			check  func(t *testing.T, m map[string]any)
		}{
			{
				// Spec "GET /_matrix/client/versions": versions is required,
				// unstable_features is an object of booleans; no auth.
				name: "versions lists spec versions without auth", client: hs.Anon(), path: "/_matrix/client/versions",
				check: func(t *testing.T, m map[string]any) {
					vs, ok := m["versions"].([]any)
					if !ok || len(vs) == 0 {
						t.Fatalf("versions = %#v, want a non-empty array", m["versions"])
					}
					seen := map[string]bool{}
					for _, v := range vs {
						s, _ := v.(string)
						if !strings.HasPrefix(s, "v1.") && !strings.HasPrefix(s, "r0.") {
							t.Errorf("versions has %q, want spec versions like v1.3", v)
						}
						seen[s] = true
					}
					// Refresh tokens (v1.3) and /login/get_token (v1.7) are
					// implemented, so those versions must be advertised.
					for _, want := range []string{"v1.3", "v1.7"} {
						if !seen[want] {
							t.Errorf("versions %v lacks %s", vs, want)
						}
					}
					if _, ok := m["unstable_features"].(map[string]any); !ok {
						t.Errorf("unstable_features = %#v, want an object", m["unstable_features"])
					}
				},
			},
			{
				// An invalid token must not break an endpoint that needs none.
				name: "versions ignores a bad access token", client: hs.Anon().WithToken("nonsense"), path: "/_matrix/client/versions",
				check: func(t *testing.T, m map[string]any) {},
			},
			{
				// Spec "GET /.well-known/matrix/client": m.homeserver.base_url.
				name: "well-known client gives public_baseurl", client: hs.Anon(), path: "/.well-known/matrix/client",
				check: func(t *testing.T, m map[string]any) {
					hsObj, _ := m["m.homeserver"].(map[string]any)
					if hsObj["base_url"] != "https://matrix.example.org" {
						t.Errorf("m.homeserver = %v, want base_url https://matrix.example.org", m["m.homeserver"])
					}
				},
			},
			{
				// Server-server spec "GET /.well-known/matrix/server": m.server.
				name: "well-known server gives the delegation", client: hs.Anon(), path: "/.well-known/matrix/server",
				check: func(t *testing.T, m map[string]any) {
					if m["m.server"] != "fed.example.org:443" {
						t.Errorf("m.server = %v, want fed.example.org:443", m["m.server"])
					}
				},
			},
			{
				// Spec "GET /capabilities": m.change_password is implemented.
				name: "capabilities with a token", client: alice, path: "/_matrix/client/v3/capabilities",
				check: func(t *testing.T, m map[string]any) {
					caps, _ := m["capabilities"].(map[string]any)
					cp, _ := caps["m.change_password"].(map[string]any)
					if cp["enabled"] != true {
						t.Errorf("capabilities = %v, want m.change_password.enabled true", m)
					}
				},
			},
			{
				name: "federation version", client: hs.Anon(), path: "/_matrix/federation/v1/version",
				check: func(t *testing.T, m map[string]any) {
					srv, _ := m["server"].(map[string]any)
					if srv["name"] != "Polder" {
						t.Errorf("server = %v, want name Polder", m["server"])
					}
				},
			},
			{
				name: "synapse server_version", client: hs.Anon(), path: "/_synapse/admin/v1/server_version",
				check: func(t *testing.T, m map[string]any) {
					if s, _ := m["server_version"].(string); !strings.HasPrefix(s, "Polder") {
						t.Errorf("server_version = %v, want Polder ...", m["server_version"])
					}
				},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := tt.client.Do(t, "GET", tt.path, nil)
				m := hstest.MustOK(t, r)
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("GET %s: Content-Type %q, want application/json", tt.path, ct)
				}
				tt.check(t, m)
			})
		}
		t.Run("capabilities needs a token", func(t *testing.T) {
			hstest.MustErr(t, hs.Anon().Do(t, "GET", "/_matrix/client/v3/capabilities", nil), 401, "M_MISSING_TOKEN")
		})
	})
}

// Without delegation and public_baseurl: /.well-known/matrix/server is 404
// and the client well-known points at the listener.
func TestWellKnownDefaults(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		hstest.MustErr(t, hs.Anon().Do(t, "GET", "/.well-known/matrix/server", nil), 404, "M_NOT_FOUND")
		m := hstest.MustOK(t, hs.Anon().Do(t, "GET", "/.well-known/matrix/client", nil))
		hsObj, _ := m["m.homeserver"].(map[string]any)
		if hsObj["base_url"] != hs.URL() {
			t.Errorf("GET /.well-known/matrix/client = %v, want base_url %s", m, hs.URL())
		}
	})
}

// Spec "Web Browser Clients": OPTIONS is answered on every path without
// running the endpoint, and every response carries the CORS headers.
func TestCORS(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		checkCORS := func(t *testing.T, r *hstest.Response) {
			t.Helper()
			if got := r.Header.Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("%s: Access-Control-Allow-Origin = %q, want *", r.Call, got)
			}
			methods := r.Header.Get("Access-Control-Allow-Methods")
			for _, m := range []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"} {
				if !strings.Contains(methods, m) {
					t.Errorf("%s: Access-Control-Allow-Methods = %q, want %s in it", r.Call, methods, m)
				}
			}
			headers := strings.ToLower(r.Header.Get("Access-Control-Allow-Headers"))
			for _, h := range []string{"x-requested-with", "content-type", "authorization"} {
				if !strings.Contains(headers, h) {
					t.Errorf("%s: Access-Control-Allow-Headers = %q, want %s in it", r.Call, headers, h)
				}
			}
		}
		preflight := http.Header{
			"Origin":                         {"https://app.example.org"},
			"Access-Control-Request-Method":  {"POST"},
			"Access-Control-Request-Headers": {"authorization, content-type"},
		}
		for _, path := range []string{
			"/_matrix/client/versions",
			"/_matrix/client/v3/login",
			"/_matrix/client/v3/register",
			"/_matrix/client/v3/account/whoami",
			"/_matrix/client/v3/devices/SOMEDEVICE",
			"/_matrix/client/v3/no/such/endpoint",
			"/_matrix/key/v2/server",
		} {
			t.Run("OPTIONS "+path, func(t *testing.T) {
				r := hs.Anon().Send(t, hstest.Request{Method: "OPTIONS", Path: path, Header: preflight})
				if r.Status != http.StatusOK && r.Status != http.StatusNoContent {
					t.Errorf("OPTIONS %s: status %d, want 200 or 204", path, r.Status)
				}
				checkCORS(t, r)
			})
		}
		t.Run("OPTIONS /register runs no registration", func(t *testing.T) {
			hs.Anon().Send(t, hstest.Request{Method: "OPTIONS", Path: "/_matrix/client/v3/register",
				Header: preflight, Body: `{"username":"preflight","auth":{"type":"m.login.dummy"}}`})
			hstest.MustOK(t, hs.Anon().Do(t, "GET", "/_matrix/client/v3/register/available?username=preflight", nil))
		})
		for _, tc := range []struct{ name, method, path string }{
			{"on a 200", "GET", "/_matrix/client/versions"},
			{"on a 401", "GET", "/_matrix/client/v3/account/whoami"},
			{"on a 404", "GET", "/_matrix/client/v3/nope"},
			{"on a 405", "DELETE", "/_matrix/client/versions"},
			{"on a 400", "POST", "/_matrix/client/v3/login"},
		} {
			t.Run("headers "+tc.name, func(t *testing.T) {
				checkCORS(t, hs.Anon().Do(t, tc.method, tc.path, nil))
			})
		}
	})
}

// Spec "Common error codes", M_UNRECOGNIZED: 404 for an endpoint that is
// not implemented, 405 for a known endpoint with the wrong method.
func TestUnrecognized(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		tests := []struct {
			name, method, path string
			status             int
			allow              string // a method the Allow header must list, for 405
		}{
			{"unknown client endpoint", "GET", "/_matrix/client/v3/no_such_thing", 404, ""},
			{"unknown client version", "GET", "/_matrix/client/v9/login", 404, ""},
			{"unknown federation endpoint", "GET", "/_matrix/federation/v1/nope", 404, ""},
			{"unknown top-level path", "GET", "/nope", 404, ""},
			{"root", "GET", "/", 404, ""},
			{"POST to versions", "POST", "/_matrix/client/versions", 405, "GET"},
			{"DELETE to login", "DELETE", "/_matrix/client/v3/login", 405, "POST"},
			{"GET to logout", "GET", "/_matrix/client/v3/logout", 405, "POST"},
			{"PUT to register", "PUT", "/_matrix/client/v3/register", 405, "POST"},
			{"POST to a device", "POST", "/_matrix/client/v3/devices/ABC", 405, "PUT"},
			{"PATCH to whoami", "PATCH", "/_matrix/client/v3/account/whoami", 405, "GET"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				// Authenticated, so that the answer does not depend on
				// whether the token is checked before routing.
				r := alice.Do(t, tt.method, tt.path, nil)
				hstest.MustErr(t, r, tt.status, "M_UNRECOGNIZED")
				if tt.allow != "" && !strings.Contains(r.Header.Get("Allow"), tt.allow) {
					t.Errorf("%s %s: Allow = %q, want %s in it", tt.method, tt.path, r.Header.Get("Allow"), tt.allow)
				}
			})
		}
	})
}

// Spec "Standard error response": M_NOT_JSON for a body that is not JSON,
// M_BAD_JSON for JSON of the wrong shape, M_MISSING_PARAM and
// M_INVALID_PARAM for missing and bad fields, on every POST/PUT endpoint;
// and a bad request changes nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{SharedSecret: "s3cret"}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		admin := hs.Admin(t, "root")
		mustOK(t, admin.Do(t, "POST", "/_synapse/admin/v1/registration_tokens/new", map[string]any{"token": "tok1"}))
		dev := alice.DeviceID

		type call struct {
			c            *hstest.Client
			method, path string
		}
		var (
			register    = call{hs.Anon(), "POST", "/_matrix/client/v3/register"}
			login       = call{hs.Anon(), "POST", "/_matrix/client/v3/login"}
			refresh     = call{hs.Anon(), "POST", "/_matrix/client/v3/refresh"}
			getToken    = call{alice, "POST", "/_matrix/client/v1/login/get_token"}
			password    = call{alice, "POST", "/_matrix/client/v3/account/password"}
			deactivate  = call{alice, "POST", "/_matrix/client/v3/account/deactivate"}
			putDevice   = call{alice, "PUT", "/_matrix/client/v3/devices/" + dev}
			delDevice   = call{alice, "DELETE", "/_matrix/client/v3/devices/" + dev}
			delDevices  = call{alice, "POST", "/_matrix/client/v3/delete_devices"}
			sharedReg   = call{hs.Anon(), "POST", "/_synapse/admin/v1/register"}
			newRegToken = call{admin, "POST", "/_synapse/admin/v1/registration_tokens/new"}
			putRegToken = call{admin, "PUT", "/_synapse/admin/v1/registration_tokens/tok1"}
		)
		all := []call{register, login, refresh, getToken, password, deactivate, putDevice, delDevice, delDevices, sharedReg, newRegToken, putRegToken}
		// Endpoints whose body is required (an empty body is not JSON).
		required := []call{register, login, refresh, password, putDevice, delDevices, sharedReg, putRegToken}

		type tc struct {
			name    string
			call    call
			body    any
			status  int
			errcode string
		}
		var tests []tc
		for _, c := range all {
			tests = append(tests,
				tc{"truncated JSON", c, `{"type":`, 400, "M_NOT_JSON"},
				tc{"not JSON at all", c, `hello`, 400, "M_NOT_JSON"},
				tc{"JSON array", c, `[]`, 400, "M_BAD_JSON"},
				tc{"JSON string", c, `"x"`, 400, "M_BAD_JSON"},
			)
		}
		for _, c := range required {
			tests = append(tests, tc{"empty body", c, ``, 400, "M_NOT_JSON"})
		}
		tests = append(tests,
			// Fields of the wrong type.
			tc{"username is a number", register, `{"username":5}`, 400, "M_BAD_JSON"},
			tc{"auth is a string", register, `{"username":"x","auth":"dummy"}`, 400, "M_BAD_JSON"},
			tc{"identifier is a string", login, `{"type":"m.login.password","identifier":"alice","password":"pw"}`, 400, "M_BAD_JSON"},
			tc{"refresh_token is a bool", refresh, `{"refresh_token":true}`, 400, "M_BAD_JSON"},
			tc{"new_password is a number", password, `{"new_password":1}`, 400, "M_BAD_JSON"},
			tc{"display_name is a number", putDevice, `{"display_name":1}`, 400, "M_BAD_JSON"},
			tc{"devices is a string", delDevices, `{"devices":"ABC"}`, 400, "M_BAD_JSON"},
			tc{"admin is a string", sharedReg, `{"admin":"yes"}`, 400, "M_BAD_JSON"},
			tc{"uses_allowed is a string", newRegToken, `{"uses_allowed":"1"}`, 400, "M_BAD_JSON"},
			// Required fields missing (spec: each endpoint's required list).
			tc{"login without type", login, `{"identifier":{"type":"m.id.user","user":"alice"},"password":"pw"}`, 400, "M_MISSING_PARAM"},
			tc{"password login without user", login, `{"type":"m.login.password","password":"pw"}`, 400, "M_MISSING_PARAM"},
			tc{"token login without token", login, `{"type":"m.login.token"}`, 400, "M_MISSING_PARAM"},
			tc{"refresh without refresh_token", refresh, `{}`, 400, "M_MISSING_PARAM"},
			tc{"password change without new_password", password, `{}`, 400, "M_MISSING_PARAM"},
			tc{"delete_devices without devices", delDevices, `{}`, 400, "M_MISSING_PARAM"},
			tc{"shared-secret register without nonce", sharedReg, `{"username":"x","password":"y","mac":"00"}`, 400, "M_MISSING_PARAM"},
			// Values out of range.
			tc{"register kind=admin", call{hs.Anon(), "POST", "/_matrix/client/v3/register?kind=admin"}, `{}`, 400, "M_INVALID_PARAM"},
			tc{"register device_id too long", register, map[string]any{"username": "longdev", "device_id": strings.Repeat("D", 300)}, 400, "M_INVALID_PARAM"},
			tc{"login device_id too long", login, map[string]any{"type": "m.login.password", "user": "alice", "password": "pw", "device_id": strings.Repeat("D", 300)}, 400, "M_INVALID_PARAM"},
			tc{"device display_name too long", putDevice, map[string]any{"display_name": strings.Repeat("n", 1001)}, 400, "M_INVALID_PARAM"},
			tc{"password longer than 512 bytes", register, map[string]any{"username": "longpw", "password": strings.Repeat("p", 513)}, 400, "M_INVALID_PARAM"},
			tc{"registration token with a space", newRegToken, `{"token":"a b"}`, 400, "M_INVALID_PARAM"},
			tc{"registration token length 0", newRegToken, `{"length":0}`, 400, "M_INVALID_PARAM"},
			tc{"registration token length 65", newRegToken, `{"length":65}`, 400, "M_INVALID_PARAM"},
			tc{"registration token negative uses", newRegToken, `{"uses_allowed":-1}`, 400, "M_INVALID_PARAM"},
			tc{"registration token expiry in the past", newRegToken, `{"expiry_time":1000}`, 400, "M_INVALID_PARAM"},
			tc{"registration token already exists", newRegToken, `{"token":"tok1"}`, 400, "M_INVALID_PARAM"},
			tc{"put uses_allowed a string", putRegToken, `{"uses_allowed":"x"}`, 400, "M_INVALID_PARAM"},
			tc{"put expiry_time a string", putRegToken, `{"expiry_time":"x"}`, 400, "M_INVALID_PARAM"},
			tc{"put negative uses_allowed", putRegToken, `{"uses_allowed":-5}`, 400, "M_INVALID_PARAM"},
			// Spec "POST /login" 400: an unknown login type is M_UNKNOWN.
			tc{"unknown login type", login, `{"type":"m.login.magic"}`, 400, "M_UNKNOWN"},
			tc{"unknown identifier type", login, `{"type":"m.login.password","identifier":{"type":"m.id.magic"},"password":"x"}`, 400, "M_UNKNOWN"},
		)
		for _, q := range []struct{ name, path, errcode string }{
			{"available without username", "/_matrix/client/v3/register/available", "M_MISSING_PARAM"},
			{"validity without token", "/_matrix/client/v1/register/m.login.registration_token/validity", "M_MISSING_PARAM"},
		} {
			tests = append(tests, tc{q.name, call{hs.Anon(), "GET", q.path}, nil, 400, q.errcode})
		}
		tests = append(tests, tc{"list registration tokens valid=maybe", call{admin, "GET", "/_synapse/admin/v1/registration_tokens?valid=maybe"}, nil, 400, "M_INVALID_PARAM"})

		for _, tt := range tests {
			name := tt.call.method + " " + strings.SplitN(tt.call.path, "?", 2)[0] + ": " + tt.name
			t.Run(name, func(t *testing.T) {
				hstest.MustErr(t, tt.call.c.Do(t, tt.call.method, tt.call.path, tt.body), tt.status, tt.errcode)
			})
		}

		// Nothing changed: alice still has one device and her password,
		// no account was created, the registration token is untouched.
		t.Run("nothing changed", func(t *testing.T) {
			if got := alice.DeviceIDs(t); len(got) != 1 || got[0] != dev {
				t.Errorf("alice's devices after bad requests = %v, want [%s]", got, dev)
			}
			alice.MustWhoami(t)
			hs.Login(t, "alice", "pw")
			for _, u := range []string{"longdev", "longpw", "x"} {
				hstest.MustOK(t, hs.Anon().Do(t, "GET", "/_matrix/client/v3/register/available?username="+u, nil))
			}
			tok := hstest.MustOK(t, admin.Do(t, "GET", "/_synapse/admin/v1/registration_tokens/tok1", nil))
			if tok["uses_allowed"] != nil || tok["expiry_time"] != nil {
				t.Errorf("registration token after bad PUTs = %v, want uses_allowed and expiry_time null", tok)
			}
			list := hstest.MustOK(t, admin.Do(t, "GET", "/_synapse/admin/v1/registration_tokens", nil))
			if toks, _ := list["registration_tokens"].([]any); len(toks) != 1 {
				t.Errorf("registration tokens after bad creates = %v, want only tok1", list)
			}
		})
	})
}

func mustOK(t *testing.T, r *hstest.Response) map[string]any {
	t.Helper()
	return hstest.MustOK(t, r)
}

// Request size limits: a body over max_request_bytes is M_TOO_LARGE (413),
// whether its length is announced or it arrives chunked.
func TestTooLarge(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{Config: func(c *config.Config) { c.MaxRequestBytes = 1024 }}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		big := `{"type":"m.login.password","user":"alice","password":"pw","initial_device_display_name":"` + strings.Repeat("x", 2000) + `"}`
		tests := []struct {
			name string
			c    *hstest.Client
			path string
			body any
		}{
			{"login with Content-Length", hs.Anon(), "/_matrix/client/v3/login", big},
			{"login chunked", hs.Anon(), "/_matrix/client/v3/login", io.Reader(strings.NewReader(big))},
			{"register with Content-Length", hs.Anon(), "/_matrix/client/v3/register", big},
			{"authenticated endpoint chunked", alice, "/_matrix/client/v3/delete_devices", io.Reader(strings.NewReader(big))},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hstest.MustErr(t, tt.c.Do(t, "POST", tt.path, tt.body), 413, "M_TOO_LARGE")
			})
		}
		t.Run("a body just under the limit is read", func(t *testing.T) {
			body := `{"type":"m.login.password","user":"alice","password":"pw","initial_device_display_name":"` + strings.Repeat("x", 900) + `"}`
			hstest.MustOK(t, hs.Anon().Do(t, "POST", "/_matrix/client/v3/login", body))
		})
		if got := alice.DeviceIDs(t); len(got) != 2 {
			t.Errorf("devices after oversized logins and one good one = %v, want 2", got)
		}
	})
}

// Spec "Rate limiting": M_LIMIT_EXCEEDED (429) with retry_after_ms and a
// Retry-After header, per user for authenticated requests, per IP for the
// others, and separately for login and registration.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	slow := &hstest.RateLimit{PerSecond: 0.01, Burst: 3}
	hstest.Each(t, hstest.Options{RateLimit: slow, LoginRateLimit: slow}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw") // two register requests of three
		bob := hs.Admin(t, "bob")
		carol := &hstest.Client{HS: hs}
		{
			sess, err := hs.Users().CreateUser(t.Context(), "carol", "pw", "", false, "", true)
			if err != nil {
				t.Fatalf("CreateUser(carol): %v", err)
			}
			carol.UserID, carol.AccessToken, carol.DeviceID = string(sess.UserID), sess.AccessToken, string(sess.DeviceID)
		}
		checkLimited := func(t *testing.T, r *hstest.Response) {
			t.Helper()
			m := hstest.MustErr(t, r, 429, "M_LIMIT_EXCEEDED")
			ms, ok := m["retry_after_ms"].(float64)
			if !ok || ms <= 0 {
				t.Errorf("%s: retry_after_ms = %v, want a positive number", r.Call, m["retry_after_ms"])
			}
			secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || secs < 1 || float64(secs)*1000 < ms {
				t.Errorf("%s: Retry-After = %q with retry_after_ms %v, want whole seconds >= it", r.Call, r.Header.Get("Retry-After"), ms)
			}
		}
		t.Run("per user on authenticated endpoints", func(t *testing.T) {
			for i := range 3 {
				if r := alice.Whoami(t); r.Status != 200 {
					t.Fatalf("whoami #%d: status %d, want 200 within the burst", i+1, r.Status)
				}
			}
			checkLimited(t, alice.Whoami(t))
			// Another user from the same IP has a bucket of its own.
			carol.MustWhoami(t)
		})
		t.Run("admins are not limited", func(t *testing.T) {
			for range 5 {
				hstest.MustOK(t, bob.Whoami(t))
			}
		})
		t.Run("per IP on public endpoints", func(t *testing.T) {
			for range 3 {
				hstest.MustOK(t, hs.Anon().Do(t, "GET", "/_matrix/client/v3/login", nil))
			}
			checkLimited(t, hs.Anon().Do(t, "GET", "/_matrix/client/v3/login", nil))
		})
		t.Run("login attempts per IP", func(t *testing.T) {
			// Registration took two of the three; a wrong password takes the last.
			bad := map[string]any{"type": "m.login.password", "user": "alice", "password": "wrong"}
			hstest.MustErr(t, hs.Anon().Do(t, "POST", "/_matrix/client/v3/login", bad), 403, "M_FORBIDDEN")
			good := map[string]any{"type": "m.login.password", "user": "alice", "password": "pw"}
			checkLimited(t, hs.Anon().Do(t, "POST", "/_matrix/client/v3/login", good))
			checkLimited(t, hs.Anon().Do(t, "POST", "/_matrix/client/v3/register", map[string]any{"username": "dave"}))
			// The limited login created no device.
			if got := carol.DeviceIDs(t); len(got) != 1 {
				t.Errorf("carol's devices = %v", got)
			}
		})
		t.Run("versions is never limited", func(t *testing.T) {
			for range 5 {
				hstest.MustOK(t, hs.Anon().Do(t, "GET", "/_matrix/client/versions", nil))
			}
		})
	})
}

// Spec "GET /register/m.login.registration_token/validity": "Servers should
// be sure to rate limit this endpoint to avoid brute force attacks"; GET
// /register/available lists a 429 too.
func TestRateLimitRegistrationChecks(t *testing.T) {
	t.Parallel()
	slow := &hstest.RateLimit{PerSecond: 0.01, Burst: 3}
	hstest.Each(t, hstest.Options{Registration: hstest.RegistrationToken, RateLimit: slow, LoginRateLimit: slow}, func(t *testing.T, hs *hstest.Server) {
		for _, path := range []string{validityPath + "guess", availablePath + "someone"} {
			t.Run("GET "+strings.TrimPrefix(strings.SplitN(path, "?", 2)[0], "/_matrix/client/"), func(t *testing.T) {
				var last *hstest.Response
				for range 10 {
					if last = hs.Anon().Do(t, "GET", path, nil); last.Status == 429 {
						break
					}
				}
				if last.Status != 429 {
					t.Fatalf("%s is never rate limited (10 requests with a burst of 3 all answered %d): api/client login() "+
						"skips the login limiter for GET and applies no other; apply the per-IP limit (a.limit or a.loginLim) to GET too", last.Call, last.Status)
				}
				hstest.MustErr(t, last, 429, "M_LIMIT_EXCEEDED")
			})
		}
	})
}

// Spec "Using access tokens": the Authorization header or the deprecated
// access_token query parameter; M_MISSING_TOKEN and M_UNKNOWN_TOKEN (401).
func TestAccessTokens(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		const whoami = "/_matrix/client/v3/account/whoami"
		tests := []struct {
			name    string
			req     hstest.Request
			status  int
			errcode string
		}{
			{"no token", hstest.Request{Method: "GET", Path: whoami}, 401, "M_MISSING_TOKEN"},
			{"unknown token", hstest.Request{Method: "GET", Path: whoami, Header: http.Header{"Authorization": {"Bearer pdr_nonsense"}}}, 401, "M_UNKNOWN_TOKEN"},
			{"empty bearer", hstest.Request{Method: "GET", Path: whoami, Header: http.Header{"Authorization": {"Bearer "}}}, 401, "M_MISSING_TOKEN"},
			{"not a bearer token", hstest.Request{Method: "GET", Path: whoami, Header: http.Header{"Authorization": {"Basic " + alice.AccessToken}}}, 401, "M_MISSING_TOKEN"},
			{"unknown token in the query", hstest.Request{Method: "GET", Path: whoami + "?access_token=pdr_nonsense"}, 401, "M_UNKNOWN_TOKEN"},
			{"header", hstest.Request{Method: "GET", Path: whoami, Header: http.Header{"Authorization": {"Bearer " + alice.AccessToken}}}, 200, ""},
			{"query parameter (deprecated)", hstest.Request{Method: "GET", Path: whoami + "?access_token=" + hstest.Query(alice.AccessToken)}, 200, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := hs.Anon().Send(t, tt.req)
				if tt.status == 200 {
					m := hstest.MustOK(t, r)
					if m["user_id"] != alice.UserID {
						t.Errorf("whoami = %v, want %s", m, alice.UserID)
					}
					return
				}
				m := hstest.MustErr(t, r, tt.status, tt.errcode)
				if m["soft_logout"] == true {
					t.Errorf("%s: soft_logout true for a token that never existed", r.Call)
				}
			})
		}
	})
}

// Spec "Soft logout": an expired access token that came with a refresh
// token is M_UNKNOWN_TOKEN with soft_logout true; refreshing works.
//
// The server has no clock hook, so the test moves the token's expiry into
// the past in the database.
func TestSoftLogout(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		hs.Register(t, "alice", "pw")
		r := hs.Anon().Do(t, "POST", "/_matrix/client/v3/login", map[string]any{
			"type": "m.login.password", "user": "alice", "password": "pw", "refresh_token": true,
		})
		m := hstest.MustOK(t, r)
		tok, refresh := hstest.Str(t, m, "access_token"), hstest.Str(t, m, "refresh_token")
		// The token has not been used yet, so no process has cached it.
		execSQL(t, hs, `UPDATE access_tokens SET expires_ts = 1 WHERE expires_ts IS NOT NULL`)
		e := hstest.MustErr(t, hs.Anon().WithToken(tok).Whoami(t), 401, "M_UNKNOWN_TOKEN")
		if e["soft_logout"] != true {
			t.Errorf("GET /whoami with an expired token = %v, want soft_logout true", e)
		}
		m = hstest.MustOK(t, hs.Anon().Do(t, "POST", "/_matrix/client/v3/refresh", map[string]any{"refresh_token": refresh}))
		hstest.MustOK(t, hs.Anon().WithToken(hstest.Str(t, m, "access_token")).Whoami(t))
	})
}

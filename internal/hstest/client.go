package hstest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Client makes requests to a test server, as one user (or anonymously when
// AccessToken is empty). Its fields are public so that tests can forge or
// reuse tokens.
type Client struct {
	HS           *Server
	UserID       string
	DeviceID     string
	AccessToken  string
	RefreshToken string
	Password     string // the password it registered or logged in with, for UIA
}

// Anon returns a client without an access token.
func (s *Server) Anon() *Client { return &Client{HS: s} }

// WithToken returns a copy of c that sends tok as its access token.
func (c *Client) WithToken(tok string) *Client {
	cp := *c
	cp.AccessToken = tok
	return &cp
}

// Response is a response read in full.
type Response struct {
	Call   string // "METHOD /path", for failure messages
	Status int
	Header http.Header
	Body   []byte
}

// Request is a request a test builds by hand: any method, path, raw body and
// headers.
type Request struct {
	Method string
	Path   string // with query; relative to the server's URL
	// Body is sent as is when it is a string, []byte or json.RawMessage,
	// chunked when it is an io.Reader, and as JSON otherwise; nil sends no
	// body.
	Body   any
	Header http.Header
	// NoAuth skips the client's access token.
	NoAuth bool
}

// Do sends method path with body (see Request.Body) and the client's access
// token, and fails the test if the request cannot be made.
func (c *Client) Do(tb testing.TB, method, path string, body any) *Response {
	tb.Helper()
	return c.Send(tb, Request{Method: method, Path: path, Body: body})
}

// Send sends a hand-built request.
func (c *Client) Send(tb testing.TB, r Request) *Response {
	tb.Helper()
	base, err := c.HS.baseURL()
	if err != nil {
		tb.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	var body io.Reader
	switch b := r.Body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	case json.RawMessage:
		body = bytes.NewReader(b)
	case io.Reader: // sent chunked, without a Content-Length
		body = struct{ io.Reader }{b}
	default:
		data, err := json.Marshal(b)
		if err != nil {
			tb.Fatalf("%s %s: marshal body: %v", r.Method, r.Path, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(r.Method, base+r.Path, body)
	if err != nil {
		tb.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	if c.AccessToken != "" && !r.NoAuth && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+c.AccessToken)
	}
	resp, err := c.HS.http.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", r.Method, r.Path, err)
	}
	call := r.Method + " " + r.Path
	if i := strings.IndexByte(call, '?'); i >= 0 {
		call = call[:i]
	}
	return &Response{Call: call, Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// JSON decodes the body as a JSON object; it fails the test if it is not one.
func (r *Response) JSON(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil || m == nil {
		tb.Fatalf("%s: status %d, body %q is not a JSON object: %v", r.Call, r.Status, r.Body, err)
	}
	return m
}

// Decode decodes the body of r into a T.
func Decode[T any](tb testing.TB, r *Response) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(r.Body, &v); err != nil {
		tb.Fatalf("%s: decode %T from %q: %v", r.Call, v, r.Body, err)
	}
	return v
}

// MustOK checks that r is a 200 with a JSON object body, and returns it.
func MustOK(tb testing.TB, r *Response) map[string]any {
	tb.Helper()
	if r.Status != http.StatusOK {
		tb.Fatalf("%s: got status %d, body %s; want 200", r.Call, r.Status, r.Body)
	}
	return r.JSON(tb)
}

// MustErr checks that r is a Matrix error with the status and errcode, and
// returns its body. The body must have a string "error" as well (spec:
// "Standard error response").
func MustErr(tb testing.TB, r *Response, status int, errcode string) map[string]any {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("%s: got status %d, body %s; want %d %s", r.Call, r.Status, r.Body, status, errcode)
	}
	m := r.JSON(tb)
	if got, _ := m["errcode"].(string); got != errcode {
		tb.Fatalf("%s: got errcode %q, body %s; want %s", r.Call, got, r.Body, errcode)
	}
	if _, ok := m["error"].(string); !ok {
		tb.Errorf("%s: error response %s has no string \"error\" field", r.Call, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		tb.Errorf("%s: error response has Content-Type %q, want application/json", r.Call, ct)
	}
	return m
}

// Str returns m[key] as a string, failing the test if it is not one.
func Str(tb testing.TB, m map[string]any, key string) string {
	tb.Helper()
	s, ok := m[key].(string)
	if !ok {
		tb.Fatalf("field %q = %#v, want a string (in %v)", key, m[key], m)
	}
	return s
}

// Query escapes a query parameter value.
func Query(v string) string { return url.QueryEscape(v) }

// Flows is the 401 body of a user-interactive authentication round.
type Flows struct {
	Errcode   string         `json:"errcode"`
	Flows     []Flow         `json:"flows"`
	Params    map[string]any `json:"params"`
	Session   string         `json:"session"`
	Completed []string       `json:"completed"`
}

// Flow is one UIA flow.
type Flow struct {
	Stages []string `json:"stages"`
}

// MustUIA checks that r is a UIA 401 that offers a flow with exactly the
// stages, and returns it.
func MustUIA(tb testing.TB, r *Response, stages ...string) Flows {
	tb.Helper()
	if r.Status != http.StatusUnauthorized {
		tb.Fatalf("%s: got status %d, body %s; want a 401 with UIA flows", r.Call, r.Status, r.Body)
	}
	f := Decode[Flows](tb, r)
	if f.Session == "" {
		tb.Fatalf("%s: UIA 401 %s has no session", r.Call, r.Body)
	}
	if f.Params == nil {
		tb.Errorf("%s: UIA 401 %s has no params object (spec: params is required)", r.Call, r.Body)
	}
	for _, fl := range f.Flows {
		if strings.Join(fl.Stages, ",") == strings.Join(stages, ",") {
			return f
		}
	}
	tb.Fatalf("%s: UIA flows %s; want one with stages %v", r.Call, r.Body, stages)
	return f
}

// UIA sends method path with body twice: first without "auth", expecting a
// UIA 401 whose flows include stages; then with auth plus the session it
// gave. It returns the second response. body must be a map (it is copied).
func (c *Client) UIA(tb testing.TB, method, path string, body map[string]any, auth map[string]any) *Response {
	tb.Helper()
	first := map[string]any{}
	for k, v := range body {
		if k != "auth" {
			first[k] = v
		}
	}
	typ, _ := auth["type"].(string)
	f := MustUIA(tb, c.Do(tb, method, path, first), typ)
	second := map[string]any{}
	for k, v := range first {
		second[k] = v
	}
	a := map[string]any{"session": f.Session}
	for k, v := range auth {
		a[k] = v
	}
	second["auth"] = a
	return c.Do(tb, method, path, second)
}

// PasswordAuth is the m.login.password auth dict for c.
func (c *Client) PasswordAuth() map[string]any {
	return map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": c.UserID},
		"password":   c.Password,
	}
}

// Dummy is the m.login.dummy auth dict.
var Dummy = map[string]any{"type": "m.login.dummy"}

// session fills c from a login or registration response.
func (c *Client) session(tb testing.TB, r *Response, password string) *Client {
	tb.Helper()
	m := MustOK(tb, r)
	return &Client{
		HS:           c.HS,
		UserID:       Str(tb, m, "user_id"),
		DeviceID:     Str(tb, m, "device_id"),
		AccessToken:  Str(tb, m, "access_token"),
		RefreshToken: stringOr(m["refresh_token"]),
		Password:     password,
	}
}

func stringOr(v any) string {
	s, _ := v.(string)
	return s
}

// Register registers username with password through the m.login.dummy flow
// of open registration, and returns the logged-in client.
func (s *Server) Register(tb testing.TB, username, password string) *Client {
	tb.Helper()
	c := s.Anon()
	r := c.UIA(tb, "POST", "/_matrix/client/v3/register",
		map[string]any{"username": username, "password": password}, Dummy)
	return c.session(tb, r, password)
}

// RegisterWithToken registers through m.login.registration_token.
func (s *Server) RegisterWithToken(tb testing.TB, username, password, token string) *Client {
	tb.Helper()
	c := s.Anon()
	r := c.UIA(tb, "POST", "/_matrix/client/v3/register",
		map[string]any{"username": username, "password": password},
		map[string]any{"type": "m.login.registration_token", "token": token})
	return c.session(tb, r, password)
}

// Login logs user (a localpart or user ID) in with a password and returns
// the new device's client.
func (s *Server) Login(tb testing.TB, user, password string) *Client {
	tb.Helper()
	c := s.Anon()
	r := c.Do(tb, "POST", "/_matrix/client/v3/login", map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": user},
		"password":   password,
	})
	return c.session(tb, r, password)
}

// Admin creates a server admin through the account service (as `polder
// user create --admin` does) and returns it logged in.
func (s *Server) Admin(tb testing.TB, username string) *Client {
	tb.Helper()
	const pw = "admin password"
	sess, err := s.Users().CreateUser(tb.Context(), username, pw, "", true, "", true)
	if err != nil {
		tb.Fatalf("CreateUser(%s, admin): %v", username, err)
	}
	return &Client{HS: s, UserID: string(sess.UserID), DeviceID: string(sess.DeviceID), AccessToken: sess.AccessToken, Password: pw}
}

// Whoami calls GET /account/whoami and returns the response.
func (c *Client) Whoami(tb testing.TB) *Response {
	tb.Helper()
	return c.Do(tb, "GET", "/_matrix/client/v3/account/whoami", nil)
}

// MustWhoami checks that c's token works and names c's user and device.
func (c *Client) MustWhoami(tb testing.TB) {
	tb.Helper()
	m := MustOK(tb, c.Whoami(tb))
	if m["user_id"] != c.UserID || m["device_id"] != c.DeviceID {
		tb.Fatalf("GET /account/whoami = %v, want user_id %s device_id %s", m, c.UserID, c.DeviceID)
	}
}

// DeviceIDs lists c's devices' IDs.
func (c *Client) DeviceIDs(tb testing.TB) []string {
	tb.Helper()
	type dev struct {
		DeviceID string `json:"device_id"`
	}
	r := c.Do(tb, "GET", "/_matrix/client/v3/devices", nil)
	MustOK(tb, r)
	var out []string
	for _, d := range Decode[struct{ Devices []dev }](tb, r).Devices {
		out = append(out, d.DeviceID)
	}
	return out
}

//go:build synapse

package synapse_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// env holds the servers that run.sh started.
type env struct {
	synapse, polder server
	ca              *x509.CertPool
	wait            time.Duration // how long to wait for each thing to arrive
}

// server is one homeserver as the test sees it.
type server struct {
	label  string // "Synapse" or "Polder", for messages
	name   string // server name, "localhost:<federation port>"
	client string // client API base URL (plain HTTP)
	secret string // registration shared secret
}

// federationURL is where the server serves federation: its name has an
// explicit port, so it is reached at that host and port directly.
func (s server) federationURL() string { return "https://" + s.name }

// mustEnv reads the servers from the environment that run.sh sets, and
// skips the test when it is not set (a plain go test -tags synapse).
func mustEnv(t *testing.T) *env {
	t.Helper()
	get := func(k string) string { return os.Getenv(k) }
	if get("INTEROP_SYNAPSE_URL") == "" {
		t.Skip("INTEROP_* not set: run tests/synapse/run.sh")
	}
	e := &env{
		synapse: server{"Synapse", get("INTEROP_SYNAPSE_NAME"), get("INTEROP_SYNAPSE_URL"), get("INTEROP_SECRET")},
		polder:  server{"Polder", get("INTEROP_POLDER_NAME"), get("INTEROP_POLDER_URL"), get("INTEROP_SECRET")},
		wait:    30 * time.Second,
	}
	if l := get("INTEROP_POLDER_LABEL"); l != "" { // INTEROP_SELFTEST: another Synapse
		e.polder.label = l
	}
	if w := get("INTEROP_WAIT"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil {
			t.Fatalf("INTEROP_WAIT=%q: %v", w, err)
		}
		e.wait = d
	}
	pem, err := os.ReadFile(get("INTEROP_CA"))
	if err != nil {
		t.Fatalf("INTEROP_CA: %v", err)
	}
	e.ca = x509.NewCertPool()
	if !e.ca.AppendCertsFromPEM(pem) {
		t.Fatalf("INTEROP_CA %s: no certificate", get("INTEROP_CA"))
	}
	return e
}

// tlsClient trusts only the test CA, as the servers do for each other.
func (e *env) tlsClient() *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.ca}},
	}
}

var plainClient = &http.Client{Timeout: 90 * time.Second}

// call sends method url with body (JSON-encoded unless nil) and token, and
// returns the status and the raw body. It fails the test only when no
// answer came.
func call(t *testing.T, hc *http.Client, method, u, token string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp.StatusCode, data
}

// user is a registered user of one server, with its sync position and
// everything its /sync has shown so far.
type user struct {
	local  string // "alice"
	id     string // "@alice:localhost:1234"
	srv    server
	token  string
	since  string
	seen   []seen
	txn    int
	synced bool
}

// seen is one event a user's /sync returned, and where in the response.
type seen struct {
	section string // join, invite or leave
	part    string // timeline, state, ephemeral, invite_state
	room    string
	ev      event
}

type event struct {
	Type     string          `json:"type"`
	Sender   string          `json:"sender"`
	EventID  string          `json:"event_id"`
	StateKey *string         `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

func (ev event) content() map[string]any {
	var m map[string]any
	json.Unmarshal(ev.Content, &m)
	return m
}

func (s seen) String() string {
	sk := ""
	if s.ev.StateKey != nil {
		sk = " state_key=" + *s.ev.StateKey
	}
	c := string(s.ev.Content)
	if len(c) > 200 {
		c = c[:200] + "…"
	}
	return fmt.Sprintf("%s/%s %s sender=%s%s %s %s", s.section, s.part, s.ev.Type, s.ev.Sender, sk, s.ev.EventID, c)
}

// register makes a user on srv with the shared-secret admin API that both
// Synapse and Polder serve (Synapse's register_new_matrix_user uses it).
func register(t *testing.T, srv server, local string) *user {
	t.Helper()
	base := srv.client + "/_synapse/admin/v1/register"
	status, body := call(t, plainClient, "GET", base, "", nil)
	if status != 200 {
		t.Fatalf("%s: GET /_synapse/admin/v1/register: %d %s", srv.label, status, body)
	}
	var n struct{ Nonce string }
	if err := json.Unmarshal(body, &n); err != nil || n.Nonce == "" {
		t.Fatalf("%s: nonce from %s: %v", srv.label, body, err)
	}
	password := "interop-" + local
	mac := hmac.New(sha1.New, []byte(srv.secret))
	mac.Write([]byte(n.Nonce + "\x00" + local + "\x00" + password + "\x00notadmin"))
	status, body = call(t, plainClient, "POST", base, "", map[string]any{
		"nonce": n.Nonce, "username": local, "password": password, "admin": false,
		"mac": hex.EncodeToString(mac.Sum(nil)),
	})
	if status != 200 {
		t.Fatalf("%s: register %s: %d %s", srv.label, local, status, body)
	}
	var r struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.AccessToken == "" {
		t.Fatalf("%s: register %s: body %s: %v", srv.label, local, body, err)
	}
	if want := "@" + local + ":" + srv.name; r.UserID != want {
		t.Fatalf("%s: registered %s, want %s", srv.label, r.UserID, want)
	}
	return &user{local: local, id: r.UserID, srv: srv, token: r.AccessToken}
}

func (u *user) String() string { return u.local + " (" + u.srv.label + ")" }

// do calls the client API as u and returns the status and the JSON body.
func (u *user) do(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	status, data := call(t, plainClient, method, u.srv.client+path, u.token, body)
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %s %s: %d, body %q is not a JSON object", u, method, path, status, data)
	}
	return status, m
}

// mustDo is do that requires a 200.
func (u *user) mustDo(t *testing.T, what, method, path string, body any) map[string]any {
	t.Helper()
	status, m := u.do(t, method, path, body)
	if status != 200 {
		t.Fatalf("%s: %s: %s %s answered %d %v", u, what, method, path, status, m)
	}
	return m
}

func esc(s string) string { return url.PathEscape(s) }

// send sends an m.text message to room and returns its event ID.
func (u *user) send(t *testing.T, room, text string) string {
	t.Helper()
	u.txn++
	path := fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/interop%d", esc(room), u.txn)
	m := u.mustDo(t, "send a message", "PUT", path, map[string]any{"msgtype": "m.text", "body": text})
	id, _ := m["event_id"].(string)
	if id == "" {
		t.Fatalf("%s: send: no event_id in %v", u, m)
	}
	return id
}

// syncResponse is the part of a /sync response the test reads.
type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline  struct{ Events []event } `json:"timeline"`
			State     struct{ Events []event } `json:"state"`
			Ephemeral struct{ Events []event } `json:"ephemeral"`
		} `json:"join"`
		Invite map[string]struct {
			InviteState struct{ Events []event } `json:"invite_state"`
		} `json:"invite"`
		Leave map[string]struct {
			Timeline struct{ Events []event } `json:"timeline"`
			State    struct{ Events []event } `json:"state"`
		} `json:"leave"`
	} `json:"rooms"`
}

// sync runs one /sync from u's position, waiting up to timeout, and adds
// what it returned to u.seen.
func (u *user) sync(t *testing.T, timeout time.Duration) {
	t.Helper()
	path := fmt.Sprintf("/_matrix/client/v3/sync?timeout=%d", timeout.Milliseconds())
	if u.since != "" {
		path += "&since=" + url.QueryEscape(u.since)
	}
	status, data := call(t, plainClient, "GET", u.srv.client+path, u.token, nil)
	if status != 200 {
		t.Fatalf("%s: GET /sync: %d %s", u, status, data)
	}
	var r syncResponse
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("%s: /sync response: %v", u, err)
	}
	add := func(section, part, room string, evs []event) {
		for _, ev := range evs {
			u.seen = append(u.seen, seen{section, part, room, ev})
		}
	}
	for room, j := range r.Rooms.Join {
		add("join", "state", room, j.State.Events)
		add("join", "timeline", room, j.Timeline.Events)
		add("join", "ephemeral", room, j.Ephemeral.Events)
	}
	for room, i := range r.Rooms.Invite {
		add("invite", "invite_state", room, i.InviteState.Events)
	}
	for room, l := range r.Rooms.Leave {
		add("leave", "state", room, l.State.Events)
		add("leave", "timeline", room, l.Timeline.Events)
	}
	u.since = r.NextBatch
	u.synced = true
}

// waitFor syncs as u until some event its /sync has shown (now or before)
// satisfies ok, and fails the test with what, the server and the events of
// room seen so far if none does within e.wait.
func (e *env) waitFor(t *testing.T, u *user, room, what string, ok func(seen) bool) seen {
	t.Helper()
	if !u.synced {
		u.sync(t, 0)
	}
	deadline := time.Now().Add(e.wait)
	checked := 0
	for {
		for ; checked < len(u.seen); checked++ {
			if s := u.seen[checked]; (room == "" || s.room == room) && ok(s) {
				return s
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		u.sync(t, min(left, 5*time.Second))
	}
	var b strings.Builder
	n := 0
	for _, s := range u.seen {
		if room == "" || s.room == room {
			n++
			fmt.Fprintf(&b, "\n\t%s", s)
		}
	}
	where := "anywhere"
	if room != "" {
		where = "in " + room
	}
	t.Fatalf("%s: %s's /sync on %s did not show it within %s; the %d events it showed %s:%s",
		what, u, u.srv.label, e.wait, n, where, b.String())
	return seen{}
}

// isMember matches the m.room.member event of userID with membership (and
// displayname, if not empty), in the state or timeline of a joined room.
func isMember(userID, membership, displayname string) func(seen) bool {
	return func(s seen) bool {
		if s.section != "join" || s.ev.Type != "m.room.member" || s.ev.StateKey == nil || *s.ev.StateKey != userID {
			return false
		}
		c := s.ev.content()
		if c["membership"] != membership {
			return false
		}
		return displayname == "" || c["displayname"] == displayname
	}
}

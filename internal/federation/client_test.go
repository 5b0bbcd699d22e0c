package federation_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/mxerr"
)

const (
	ourName    = "us.example"
	remoteName = "remote.example.com" // the httptest certificate is for *.example.com
)

// received is a request the remote test server got.
type received struct {
	Method, URI, Host, SNI string
	Body                   string
	Signed                 bool
}

// remoteServer is a remote homeserver over real TLS that checks the
// X-Matrix signature of every federation request.
type remoteServer struct {
	srv *httptest.Server

	mu    sync.Mutex
	got   []received
	reply func(w http.ResponseWriter, r *http.Request)
}

func newRemoteServer(t *testing.T, ourKey *keys.SigningKey) *remoteServer {
	t.Helper()
	rs := &remoteServer{}
	rs.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := received{Method: r.Method, URI: r.RequestURI, Host: r.Host, SNI: r.TLS.ServerName, Body: string(body)}
		if strings.HasPrefix(r.URL.Path, "/_matrix/key/") {
			if h := r.Header.Get("Authorization"); h != "" {
				t.Errorf("%s %s: Authorization %q on a key endpoint, want none", r.Method, r.URL.Path, h)
			}
		} else {
			origin, err := federation.VerifyRequest(r.Context(), r, body, remoteName, keyOf(ourName, ourKey))
			if err != nil || origin != ourName {
				t.Errorf("%s %s: VerifyRequest = %q, %v; want %s", r.Method, r.RequestURI, origin, err, ourName)
				mxWrite(w, http.StatusUnauthorized, `{"errcode":"M_UNAUTHORIZED","error":"bad signature"}`)
				return
			}
			rec.Signed = true
		}
		rs.mu.Lock()
		rs.got = append(rs.got, rec)
		reply := rs.reply
		rs.mu.Unlock()
		if reply != nil {
			reply(w, r)
			return
		}
		mxWrite(w, http.StatusOK, `{}`)
	}))
	t.Cleanup(rs.srv.Close)
	return rs
}

func (rs *remoteServer) setReply(f func(w http.ResponseWriter, r *http.Request)) {
	rs.mu.Lock()
	rs.reply = f
	rs.got = nil
	rs.mu.Unlock()
}

func (rs *remoteServer) last(t *testing.T) received {
	t.Helper()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.got) == 0 {
		t.Fatalf("the remote server got no request")
	}
	return rs.got[len(rs.got)-1]
}

func (rs *remoteServer) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(rs.srv.Certificate())
	return p
}

// target is where the remote test server is, for the name remoteName.
func (rs *remoteServer) target() federation.Target {
	return federation.Target{Addr: rs.srv.Listener.Addr().String(), Host: remoteName, ServerName: remoteName}
}

func mxWrite(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func fixedResolver(t federation.Target) federation.Resolver {
	return federation.ResolverFunc(func(context.Context, string) (federation.Target, error) { return t, nil })
}

func newTestClient(t *testing.T, cfg federation.Config) *federation.Client {
	t.Helper()
	if cfg.ServerName == "" {
		cfg.ServerName = ourName
	}
	c := federation.NewClient(cfg, nil)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestClientTypedCalls(t *testing.T) {
	k := mustKey(t, "k1")
	rs := newRemoteServer(t, k)
	c := newTestClient(t, federation.Config{Key: k, RootCAs: rs.roots(), Resolver: fixedResolver(rs.target())})
	ctx := context.Background()
	const (
		room  = id.RoomID("!room:remote.example.com")
		alice = id.UserID("@alice:us.example")
		ev    = id.EventID("$ev:remote.example.com")
		pdu   = `{"type":"m.room.member"}`
	)
	tests := []struct {
		name     string
		reply    string
		call     func() (any, error)
		method   string
		uri      string
		body     string // JSON; "" for none
		want     string // the result, as JSON
		unsigned bool
	}{
		{"MakeJoin", `{"room_version":"10","event":{"type":"m.room.member"}}`,
			func() (any, error) { return c.MakeJoin(ctx, remoteName, room, alice, []id.RoomVersion{"10", "11"}) },
			"GET", "/_matrix/federation/v1/make_join/%21room:remote.example.com/@alice:us.example?ver=10&ver=11", "",
			`{"room_version":"10","event":{"type":"m.room.member"}}`, false},
		{"SendJoin", `{"origin":"remote.example.com","state":[{"s":1}],"auth_chain":[],"members_omitted":false}`,
			func() (any, error) { return c.SendJoin(ctx, remoteName, room, ev, json.RawMessage(pdu)) },
			"PUT", "/_matrix/federation/v2/send_join/%21room:remote.example.com/$ev:remote.example.com", pdu,
			`{"origin":"remote.example.com","state":[{"s":1}],"auth_chain":[]}`, false},
		{"MakeLeave", `{"room_version":"10","event":{}}`,
			func() (any, error) { return c.MakeLeave(ctx, remoteName, room, alice) },
			"GET", "/_matrix/federation/v1/make_leave/%21room:remote.example.com/@alice:us.example", "",
			`{"room_version":"10","event":{}}`, false},
		{"SendLeave", `{}`,
			func() (any, error) { return nil, c.SendLeave(ctx, remoteName, room, ev, json.RawMessage(pdu)) },
			"PUT", "/_matrix/federation/v2/send_leave/%21room:remote.example.com/$ev:remote.example.com", pdu, `null`, false},
		{"MakeKnock", `{"room_version":"7","event":{}}`,
			func() (any, error) { return c.MakeKnock(ctx, remoteName, room, alice, []id.RoomVersion{"7"}) },
			"GET", "/_matrix/federation/v1/make_knock/%21room:remote.example.com/@alice:us.example?ver=7", "",
			`{"room_version":"7","event":{}}`, false},
		{"SendKnock", `{"knock_room_state":[{"k":1}]}`,
			func() (any, error) { return c.SendKnock(ctx, remoteName, room, ev, json.RawMessage(pdu)) },
			"PUT", "/_matrix/federation/v1/send_knock/%21room:remote.example.com/$ev:remote.example.com", pdu,
			`{"knock_room_state":[{"k":1}]}`, false},
		{"Invite", `{"event":{"signed":true}}`,
			func() (any, error) {
				return c.Invite(ctx, remoteName, room, ev, federation.InviteRequest{Event: json.RawMessage(pdu), RoomVersion: "10"})
			},
			"PUT", "/_matrix/federation/v2/invite/%21room:remote.example.com/$ev:remote.example.com",
			`{"event":{"type":"m.room.member"},"room_version":"10"}`, `{"signed":true}`, false},
		{"SendTransaction", `{"pdus":{"$ev:remote.example.com":{}}}`,
			func() (any, error) {
				return c.SendTransaction(ctx, remoteName, "txn/1", federation.Transaction{Origin: ourName, OriginServerTS: 5})
			},
			"PUT", "/_matrix/federation/v1/send/txn%2F1", `{"origin":"us.example","origin_server_ts":5,"pdus":[]}`,
			`{"pdus":{"$ev:remote.example.com":{}}}`, false},
		{"Event", `{"origin":"remote.example.com","origin_server_ts":1,"pdus":[{"a":1}]}`,
			func() (any, error) { return c.Event(ctx, remoteName, ev) },
			"GET", "/_matrix/federation/v1/event/$ev:remote.example.com", "", `{"a":1}`, false},
		{"State", `{"auth_chain":[{"a":1}],"pdus":[{"p":1}]}`,
			func() (any, error) { return c.State(ctx, remoteName, room, ev) },
			"GET", "/_matrix/federation/v1/state/%21room:remote.example.com?event_id=%24ev%3Aremote.example.com", "",
			`{"auth_chain":[{"a":1}],"pdus":[{"p":1}]}`, false},
		{"StateIDs", `{"auth_chain_ids":["$a"],"pdu_ids":["$p"]}`,
			func() (any, error) { return c.StateIDs(ctx, remoteName, room, ev) },
			"GET", "/_matrix/federation/v1/state_ids/%21room:remote.example.com?event_id=%24ev%3Aremote.example.com", "",
			`{"auth_chain_ids":["$a"],"pdu_ids":["$p"]}`, false},
		{"EventAuth", `{"auth_chain":[{"a":1}]}`,
			func() (any, error) { return c.EventAuth(ctx, remoteName, room, ev) },
			"GET", "/_matrix/federation/v1/event_auth/%21room:remote.example.com/$ev:remote.example.com", "",
			`{"auth_chain":[{"a":1}]}`, false},
		{"Backfill", `{"origin":"remote.example.com","origin_server_ts":2,"pdus":[{"b":1}]}`,
			func() (any, error) { return c.Backfill(ctx, remoteName, room, []id.EventID{"$a", "$b"}, 10) },
			"GET", "/_matrix/federation/v1/backfill/%21room:remote.example.com?limit=10&v=%24a&v=%24b", "",
			`{"origin":"remote.example.com","origin_server_ts":2,"pdus":[{"b":1}]}`, false},
		{"GetMissingEvents", `{"events":[{"m":1}]}`,
			func() (any, error) {
				return c.GetMissingEvents(ctx, remoteName, room, federation.MissingEventsRequest{LatestEvents: []id.EventID{"$l"}, Limit: 10})
			},
			"POST", "/_matrix/federation/v1/get_missing_events/%21room:remote.example.com",
			`{"earliest_events":[],"latest_events":["$l"],"limit":10}`, `{"events":[{"m":1}]}`, false},
		{"QueryProfile", `{"displayname":"Alice"}`,
			func() (any, error) {
				return c.QueryProfile(ctx, remoteName, "@alice:remote.example.com", "displayname")
			},
			"GET", "/_matrix/federation/v1/query/profile?field=displayname&user_id=%40alice%3Aremote.example.com", "",
			`{"displayname":"Alice"}`, false},
		{"QueryDirectory", `{"room_id":"!room:remote.example.com","servers":["remote.example.com"]}`,
			func() (any, error) { return c.QueryDirectory(ctx, remoteName, "#room:remote.example.com") },
			"GET", "/_matrix/federation/v1/query/directory?room_alias=%23room%3Aremote.example.com", "",
			`{"room_id":"!room:remote.example.com","servers":["remote.example.com"]}`, false},
		{"PublicRooms", `{"chunk":[],"total_room_count_estimate":0}`,
			func() (any, error) { return c.PublicRooms(ctx, remoteName, federation.PublicRoomsRequest{Limit: 5}) },
			"POST", "/_matrix/federation/v1/publicRooms", `{"limit":5}`, `{"chunk":[],"total_room_count_estimate":0}`, false},
		{"UserDevices", `{"user_id":"@alice:remote.example.com","stream_id":3,"devices":[{"device_id":"D"}]}`,
			func() (any, error) { return c.UserDevices(ctx, remoteName, "@alice:remote.example.com") },
			"GET", "/_matrix/federation/v1/user/devices/@alice:remote.example.com", "",
			`{"user_id":"@alice:remote.example.com","stream_id":3,"devices":[{"device_id":"D"}]}`, false},
		{"ServerKeys", `{"server_name":"remote.example.com"}`,
			func() (any, error) {
				b, err := c.ServerKeys(ctx, remoteName)
				return json.RawMessage(b), err
			},
			"GET", "/_matrix/key/v2/server", "", `{"server_name":"remote.example.com"}`, true},
		{"NotaryQuery", `{"server_keys":[{"server_name":"x.example"},{"server_name":"y.example"}]}`,
			func() (any, error) {
				return c.NotaryQuery(ctx, remoteName, map[string][]id.KeyID{"x.example": {"ed25519:a"}, "y.example": nil})
			},
			"POST", "/_matrix/key/v2/query", `{"server_keys":{"x.example":{"ed25519:a":{}},"y.example":{}}}`,
			`["eyJzZXJ2ZXJfbmFtZSI6InguZXhhbXBsZSJ9","eyJzZXJ2ZXJfbmFtZSI6InkuZXhhbXBsZSJ9"]`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs.setReply(func(w http.ResponseWriter, r *http.Request) { mxWrite(w, http.StatusOK, tt.reply) })
			res, err := tt.call()
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			got := rs.last(t)
			if got.Method != tt.method || got.URI != tt.uri {
				t.Errorf("%s sent %s %s, want %s %s", tt.name, got.Method, got.URI, tt.method, tt.uri)
			}
			if got.Host != remoteName || got.SNI != remoteName {
				t.Errorf("%s: Host %q and SNI %q, want %s", tt.name, got.Host, got.SNI, remoteName)
			}
			if got.Signed == tt.unsigned {
				t.Errorf("%s: signed = %v, want %v", tt.name, got.Signed, !tt.unsigned)
			}
			if tt.body == "" && got.Body != "" {
				t.Errorf("%s sent body %s, want none", tt.name, got.Body)
			}
			if tt.body != "" && !jsonEqual(got.Body, tt.body) {
				t.Errorf("%s sent body %s, want %s", tt.name, got.Body, tt.body)
			}
			out, _ := json.Marshal(res)
			if !jsonEqual(string(out), tt.want) {
				t.Errorf("%s = %s, want %s", tt.name, out, tt.want)
			}
		})
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

func TestClientErrors(t *testing.T) {
	k := mustKey(t, "k1")
	rs := newRemoteServer(t, k)
	c := newTestClient(t, federation.Config{Key: k, RootCAs: rs.roots(), Resolver: fixedResolver(rs.target())})
	ctx := context.Background()

	tests := []struct {
		name       string
		status     int
		body       string
		wantCode   string // of the RemoteError
		relayCode  string
		relayState int
	}{
		{"forbidden relayed", 403, `{"errcode":"M_FORBIDDEN","error":"You are not invited\u0007 to this room"}`, "M_FORBIDDEN", "M_FORBIDDEN", 403},
		{"not found relayed", 404, `{"errcode":"M_NOT_FOUND","error":"Unknown room"}`, "M_NOT_FOUND", "M_NOT_FOUND", 404},
		{"incompatible room version relayed", 400, `{"errcode":"M_INCOMPATIBLE_ROOM_VERSION","error":"no","room_version":"12"}`,
			"M_INCOMPATIBLE_ROOM_VERSION", "M_INCOMPATIBLE_ROOM_VERSION", 400},
		{"server error hidden", 500, `{"errcode":"M_UNKNOWN","error":"database exploded"}`, "M_UNKNOWN", "M_UNKNOWN", 502},
		{"unauthorized hidden", 401, `{"errcode":"M_UNAUTHORIZED","error":"bad sig"}`, "M_UNAUTHORIZED", "M_UNKNOWN", 502},
		{"rate limit hidden", 429, `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down"}`, "M_LIMIT_EXCEEDED", "M_UNKNOWN", 502},
		{"proxy page", 502, `<html>Bad Gateway</html>`, "", "M_UNKNOWN", 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs.setReply(func(w http.ResponseWriter, r *http.Request) { mxWrite(w, tt.status, tt.body) })
			_, err := c.MakeJoin(ctx, remoteName, "!r:remote.example.com", "@a:us.example", []id.RoomVersion{"10"})
			var re *federation.RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("MakeJoin = %v, want a *RemoteError", err)
			}
			if re.Server != remoteName || re.Status != tt.status || re.ErrCode != tt.wantCode {
				t.Errorf("RemoteError = %+v, want server %s, status %d, errcode %q", re, remoteName, tt.status, tt.wantCode)
			}
			if errors.Is(err, federation.ErrUnreachable) {
				t.Errorf("an answer is ErrUnreachable")
			}
			mx, ok := mxerr.As(federation.Relayable(err))
			if !ok || mx.Code != tt.relayCode || mx.HTTPStatus() != tt.relayState {
				t.Fatalf("Relayable(%v) = %v, want %s %d", err, federation.Relayable(err), tt.relayCode, tt.relayState)
			}
			if !strings.Contains(mx.Msg, remoteName) {
				t.Errorf("Relayable message %q does not name the server", mx.Msg)
			}
			if strings.ContainsRune(mx.Msg, '\a') || strings.Contains(mx.Msg, "database") {
				t.Errorf("Relayable message %q shows what it should not", mx.Msg)
			}
			if tt.relayCode == "M_INCOMPATIBLE_ROOM_VERSION" && mx.Fields["room_version"] != "12" {
				t.Errorf("Relayable fields = %v, want room_version 12", mx.Fields)
			}
		})
	}

	t.Run("answer too large", func(t *testing.T) {
		small := newTestClient(t, federation.Config{Key: k, RootCAs: rs.roots(), Resolver: fixedResolver(rs.target()), MaxResponseBytes: 100})
		rs.setReply(func(w http.ResponseWriter, r *http.Request) {
			mxWrite(w, 200, `{"events":[`+strings.Repeat(`{},`, 100)+`{}]}`)
		})
		if _, err := small.GetMissingEvents(ctx, remoteName, "!r:remote.example.com", federation.MissingEventsRequest{}); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("GetMissingEvents with a large answer = %v, want a size error", err)
		}
	})
	t.Run("answer not JSON", func(t *testing.T) {
		rs.setReply(func(w http.ResponseWriter, r *http.Request) { mxWrite(w, 200, `nope`) })
		if _, err := c.QueryProfile(ctx, remoteName, "@a:remote.example.com", ""); err == nil {
			t.Errorf("QueryProfile with a non-JSON answer = nil error")
		}
	})
	t.Run("caller cancels", func(t *testing.T) {
		started := make(chan struct{})
		rs.setReply(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-r.Context().Done()
		})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-started; cancel() }()
		_, err := c.MakeLeave(ctx, remoteName, "!r:remote.example.com", "@a:us.example")
		if !errors.Is(err, context.Canceled) || errors.Is(err, federation.ErrUnreachable) {
			t.Errorf("MakeLeave cancelled = %v, want context.Canceled, not ErrUnreachable", err)
		}
		if federation.Relayable(err) != err {
			t.Errorf("Relayable(%v) changed a local cancellation", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		quick := newTestClient(t, federation.Config{Key: k, RootCAs: rs.roots(), Resolver: fixedResolver(rs.target()), Timeout: 50 * time.Millisecond})
		rs.setReply(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		_, err := quick.MakeLeave(ctx, remoteName, "!r:remote.example.com", "@a:us.example")
		if !errors.Is(err, federation.ErrUnreachable) {
			t.Errorf("MakeLeave past the timeout = %v, want ErrUnreachable", err)
		}
	})
}

func TestClientUnreachable(t *testing.T) {
	k := mustKey(t, "k1")
	rs := newRemoteServer(t, k)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	ctx := context.Background()

	tests := []struct {
		name string
		cfg  federation.Config
	}{
		{"connection refused", federation.Config{Key: k, RootCAs: rs.roots(),
			Resolver: fixedResolver(federation.Target{Addr: closed, Host: remoteName, ServerName: remoteName})}},
		{"certificate not trusted", federation.Config{Key: k, Resolver: fixedResolver(rs.target())}},
		{"certificate for another name", federation.Config{Key: k, RootCAs: rs.roots(),
			Resolver: fixedResolver(federation.Target{Addr: rs.target().Addr, Host: remoteName, ServerName: "remote.example.org"})}},
		{"resolver fails", federation.Config{Key: k, Resolver: federation.ResolverFunc(func(context.Context, string) (federation.Target, error) {
			return federation.Target{}, errors.New("no such host")
		})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestClient(t, tt.cfg)
			_, err := c.QueryDirectory(ctx, remoteName, "#a:remote.example.com")
			if !errors.Is(err, federation.ErrUnreachable) {
				t.Fatalf("QueryDirectory = %v, want ErrUnreachable", err)
			}
			mx, ok := mxerr.As(federation.Relayable(err))
			if !ok || mx.HTTPStatus() != http.StatusBadGateway || !strings.Contains(mx.Msg, remoteName) {
				t.Errorf("Relayable(%v) = %v, want 502 naming %s", err, federation.Relayable(err), remoteName)
			}
		})
	}
	t.Run("invalid server name", func(t *testing.T) {
		c := newTestClient(t, federation.Config{Key: k}) // the default resolver
		_, err := c.QueryDirectory(ctx, "bad name", "#a:bad name")
		if !errors.Is(err, federation.ErrInvalidServerName) || errors.Is(err, federation.ErrUnreachable) {
			t.Fatalf("QueryDirectory(bad name) = %v, want ErrInvalidServerName", err)
		}
		if mx, ok := mxerr.As(federation.Relayable(err)); !ok || mx.Code != "M_INVALID_PARAM" {
			t.Errorf("Relayable(%v) = %v, want M_INVALID_PARAM", err, federation.Relayable(err))
		}
	})
	if got := federation.Relayable(nil); got != nil {
		t.Errorf("Relayable(nil) = %v", got)
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestClientTransport(t *testing.T) {
	k := mustKey(t, "k1")
	var gotURL, gotHost string
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		gotURL, gotHost = r.URL.String(), r.Host
		if _, err := federation.VerifyRequest(r.Context(), r, nil, "remote.example.com:8448", keyOf(ourName, k)); err != nil {
			t.Errorf("VerifyRequest of the request the transport got: %v", err)
		}
		rec := httptest.NewRecorder()
		mxWrite(rec, 200, `{"displayname":"Bob"}`)
		return rec.Result(), nil
	})
	c := newTestClient(t, federation.Config{Key: k, Transport: tr})
	p, err := c.QueryProfile(context.Background(), "remote.example.com:8448", "@bob:remote.example.com:8448", "")
	if err != nil || p.DisplayName == nil || *p.DisplayName != "Bob" {
		t.Fatalf("QueryProfile = %+v, %v", p, err)
	}
	if want := "https://remote.example.com:8448/_matrix/federation/v1/query/profile?user_id=%40bob%3Aremote.example.com%3A8448"; gotURL != want || gotHost != "remote.example.com:8448" {
		t.Errorf("transport got %s (Host %s), want %s (Host remote.example.com:8448)", gotURL, gotHost, want)
	}
}

package federation_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/api/federation"
	"polder.dev/polder/internal/directory"
	"polder.dev/polder/internal/event"
	fed "polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/presence"
	"polder.dev/polder/internal/store"
)

const (
	ourName    = "local.test"
	remoteName = "remote.test"
	bannedRoom = id.RoomID("!banned:local.test")
	openRoom   = id.RoomID("!open:local.test")
	otherRoom  = id.RoomID("!other:local.test") // remote.test has nobody in it
)

// fakeRooms is the room service as the handlers see it. Unset funcs
// answer as a room that allows everyone and has remote.test in it.
type fakeRooms struct {
	receive      func(origin string, pdus []json.RawMessage) map[id.EventID]error
	receiveCalls atomic.Int32
	make         func(origin string, roomID id.RoomID, userID id.UserID, membership string, versions []id.RoomVersion) (*fed.MakeResponse, error)
}

func (f *fakeRooms) ReceivePDUs(ctx context.Context, origin string, pdus []json.RawMessage) map[id.EventID]error {
	f.receiveCalls.Add(1)
	if f.receive != nil {
		return f.receive(origin, pdus)
	}
	return nil
}

func (f *fakeRooms) MakeMembership(ctx context.Context, origin string, roomID id.RoomID, userID id.UserID, membership string, versions []id.RoomVersion) (*fed.MakeResponse, error) {
	if f.make != nil {
		return f.make(origin, roomID, userID, membership, versions)
	}
	return &fed.MakeResponse{RoomVersion: "10", Event: json.RawMessage(`{}`)}, nil
}

func (f *fakeRooms) SendJoin(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage, omitMembers bool) (*fed.SendJoinResponse, error) {
	return &fed.SendJoinResponse{Origin: ourName, State: []json.RawMessage{}, AuthChain: []json.RawMessage{}, MembersOmitted: omitMembers}, nil
}

func (f *fakeRooms) SendLeave(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage) error {
	return nil
}

func (f *fakeRooms) SendKnock(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage) (*fed.SendKnockResponse, error) {
	return &fed.SendKnockResponse{KnockRoomState: []json.RawMessage{}}, nil
}

func (f *fakeRooms) ReceiveInvite(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, req fed.InviteRequest) (json.RawMessage, error) {
	return req.Event, nil
}

func (f *fakeRooms) FederationEvent(ctx context.Context, origin string, eventID id.EventID) (json.RawMessage, error) {
	return json.RawMessage(`{"event_id":"` + string(eventID) + `"}`), nil
}

func (f *fakeRooms) FederationState(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (*fed.StateResponse, error) {
	return &fed.StateResponse{AuthChain: []json.RawMessage{}, PDUs: []json.RawMessage{}}, nil
}

func (f *fakeRooms) FederationStateIDs(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (*fed.StateIDsResponse, error) {
	return &fed.StateIDsResponse{AuthChainIDs: []id.EventID{}, PDUIDs: []id.EventID{eventID}}, nil
}

func (f *fakeRooms) FederationEventAuth(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (*fed.EventAuthResponse, error) {
	return &fed.EventAuthResponse{AuthChain: []json.RawMessage{}}, nil
}

func (f *fakeRooms) FederationBackfill(ctx context.Context, origin string, roomID id.RoomID, from []id.EventID, limit int) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, limit)
	for i := range out {
		out[i] = json.RawMessage(`{}`)
	}
	return out, nil
}

func (f *fakeRooms) FederationMissingEvents(ctx context.Context, origin string, roomID id.RoomID, req fed.MissingEventsRequest) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, req.Limit)
	for i := range out {
		out[i] = json.RawMessage(`{}`)
	}
	return out, nil
}

func (f *fakeRooms) ServerAllowed(ctx context.Context, roomID id.RoomID, server string) (bool, error) {
	return !(roomID == bannedRoom && server == remoteName), nil
}

func (f *fakeRooms) ServerInRoom(ctx context.Context, roomID id.RoomID, server string) (bool, error) {
	return roomID != otherRoom, nil
}

func (f *fakeRooms) JoinedServers(ctx context.Context, roomID id.RoomID) ([]string, error) {
	return []string{ourName, remoteName}, nil
}

func (f *fakeRooms) Version(ctx context.Context, roomID id.RoomID) (id.RoomVersion, error) {
	return "10", nil
}

// recorder records calls.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf(format, a...))
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// fakeTyping records the m.typing EDUs applied.
type fakeTyping struct{ recorder }

func (f *fakeTyping) SetRemote(ctx context.Context, user id.UserID, roomID id.RoomID, typing bool) error {
	f.add("%s %s %v", user, roomID, typing)
	return nil
}

// fakeReceipts records the m.receipt EDUs applied.
type fakeReceipts struct{ recorder }

func (f *fakeReceipts) PutRemote(ctx context.Context, user id.UserID, roomID id.RoomID, eventID id.EventID, threadID string, ts int64) error {
	f.add("%s %s %s", user, roomID, eventID)
	return nil
}

// fakePresence records the m.presence EDUs applied.
type fakePresence struct{ recorder }

func (f *fakePresence) SetRemote(ctx context.Context, p presence.Remote) error {
	f.add("%s %s", p.UserID, p.State)
	return nil
}

// fakeUsers has one local user, @bob:local.test, with a display name and
// two devices.
type fakeUsers struct{}

func (fakeUsers) Profile(ctx context.Context, u id.UserID) (map[string]json.RawMessage, error) {
	if u != "@bob:local.test" {
		return nil, mxerr.NotFound("User %s does not exist", u)
	}
	return map[string]json.RawMessage{"displayname": json.RawMessage(`"Bob"`), "m.tz": json.RawMessage(`"Europe/Amsterdam"`)}, nil
}

func (f fakeUsers) ProfileField(ctx context.Context, u id.UserID, field string) (json.RawMessage, error) {
	p, err := f.Profile(ctx, u)
	if err != nil {
		return nil, err
	}
	if v, ok := p[field]; ok {
		return v, nil
	}
	return nil, mxerr.NotFound("no field %s", field)
}

func (fakeUsers) Devices(ctx context.Context, localpart string) ([]store.Device, error) {
	if localpart != "bob" {
		return nil, nil
	}
	return []store.Device{{Localpart: "bob", DeviceID: "D1", DisplayName: "phone"}, {Localpart: "bob", DeviceID: "D2"}}, nil
}

// OpenIDUserInfo knows one OpenID token, "bobtoken", of @bob:local.test.
func (fakeUsers) OpenIDUserInfo(ctx context.Context, token string) (id.UserID, error) {
	if token != "bobtoken" {
		return "", mxerr.UnknownToken(false, "Access token unknown or expired")
	}
	return "@bob:local.test", nil
}

// fakeDirectory has one alias, #room:local.test, and one public room.
type fakeDirectory struct{}

func (fakeDirectory) ResolveAlias(ctx context.Context, raw string) (id.RoomID, []string, error) {
	if raw != "#room:local.test" {
		return "", nil, mxerr.NotFound("Room alias %s not found", raw)
	}
	return openRoom, []string{ourName}, nil
}

func (fakeDirectory) PublicRooms(ctx context.Context, req directory.PublicRoomsRequest) (*directory.PublicRoomsResponse, error) {
	if req.Server != "" {
		return nil, errors.New("asked for another server's directory")
	}
	limit := -1
	if req.Limit != nil {
		limit = *req.Limit
	}
	return &directory.PublicRoomsResponse{Chunk: []directory.PublicRoom{{RoomID: openRoom, NumJoinedMembers: limit}}}, nil
}

// memTxns keeps transaction answers in memory.
type memTxns struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (m *memTxns) InboundTxn(ctx context.Context, origin, txnID string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.m[origin+"|"+txnID]; ok {
		return r, nil
	}
	return nil, store.ErrNotFound
}

func (m *memTxns) PutInboundTxn(ctx context.Context, origin, txnID string, response []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string][]byte{}
	}
	m.m[origin+"|"+txnID] = response
	return nil
}

func (m *memTxns) PruneInboundTxns(ctx context.Context, before time.Time) (int64, error) {
	return 0, nil
}

// harness is the federation API of local.test over real HTTP, with a
// remote server remote.test whose key it knows.
type harness struct {
	t        *testing.T
	url      string
	remote   *keys.SigningKey
	rooms    *fakeRooms
	typing   *fakeTyping
	receipts *fakeReceipts
	presence *fakePresence
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	remote, err := keys.Generate("r1")
	if err != nil {
		t.Fatalf("keys.Generate: %v", err)
	}
	ours, err := keys.Generate("l1")
	if err != nil {
		t.Fatalf("keys.Generate: %v", err)
	}
	h := &harness{t: t, remote: remote, rooms: &fakeRooms{}, typing: &fakeTyping{}, receipts: &fakeReceipts{}, presence: &fakePresence{}}
	verifyKey := func(ctx context.Context, server string, keyID id.KeyID) (ed25519.PublicKey, time.Time, error) {
		if server == remoteName && keyID == remote.KeyID() {
			return remote.Public(), time.Now().Add(time.Hour), nil
		}
		return nil, time.Time{}, errors.New("unknown key")
	}
	a := federation.New(federation.Config{
		ServerName: ourName,
		Version:    "test",
		VerifyKey:  verifyKey,
		Services: federation.Services{
			Rooms: h.rooms, Users: fakeUsers{}, Directory: fakeDirectory{}, Typing: h.typing, Receipts: h.receipts, Presence: h.presence, Txns: &memTxns{},
		},
	}, ours, slog.New(slog.DiscardHandler))
	rt := api.NewRouter()
	a.Routes(rt)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

// xMatrix is the Authorization header of a request of origin to
// destination signed with key (server-server API, "Request
// Authentication").
func xMatrix(t *testing.T, key *keys.SigningKey, origin, destination, method, uri string, body []byte) string {
	t.Helper()
	obj := map[string]any{"method": method, "uri": uri, "origin": origin, "destination": destination}
	if body != nil {
		obj["content"] = json.RawMessage(body)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := keys.SignJSON(raw, origin, key)
	if err != nil {
		t.Fatalf("SignJSON: %v", err)
	}
	sig, _ := keys.Signature(signed, origin, key.KeyID())
	return fmt.Sprintf(`X-Matrix origin="%s",destination="%s",key="%s",sig="%s"`, origin, destination, key.KeyID(), sig)
}

type response struct {
	Status int
	Body   []byte
}

func (r response) errcode() string {
	var e struct {
		ErrCode string `json:"errcode"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.ErrCode
}

// do sends a request; auth is the Authorization header ("" for none).
func (h *harness) do(method, uri string, body []byte, auth string) response {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+uri, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, uri, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{resp.StatusCode, data}
}

// signed sends a request signed by remote.test.
func (h *harness) signed(method, uri string, body any) response {
	h.t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			h.t.Fatal(err)
		}
	}
	return h.do(method, uri, raw, xMatrix(h.t, h.remote, remoteName, ourName, method, uri, raw))
}

func wantStatus(t *testing.T, what string, r response, status int, errcode string) {
	t.Helper()
	if r.Status != status || r.errcode() != errcode {
		t.Errorf("%s = %d %s, want %d %q", what, r.Status, r.Body, status, errcode)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const uri = "/_matrix/federation/v1/state_ids/" + string(openRoom) + "?event_id=%24e"
	other, err := keys.Generate("r1") // same key ID, another key
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		auth    string
		status  int
		errcode string
	}{
		{"no Authorization", "", 401, "M_UNAUTHORIZED"},
		{"not X-Matrix", "Bearer abc", 401, "M_UNAUTHORIZED"},
		{"signed by another key", xMatrix(t, other, remoteName, ourName, "GET", uri, nil), 401, "M_UNAUTHORIZED"},
		{"signed for another destination", xMatrix(t, h.remote, remoteName, "elsewhere.test", "GET", uri, nil), 401, "M_UNAUTHORIZED"},
		{"signed for another path", xMatrix(t, h.remote, remoteName, ourName, "GET", "/_matrix/federation/v1/version", nil), 401, "M_UNAUTHORIZED"},
		{"unknown origin", xMatrix(t, h.remote, "stranger.test", ourName, "GET", uri, nil), 401, "M_UNAUTHORIZED"},
		{"valid", xMatrix(t, h.remote, remoteName, ourName, "GET", uri, nil), 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantStatus(t, "GET state_ids", h.do("GET", uri, nil, c.auth), c.status, c.errcode)
		})
	}
	t.Run("a changed body", func(t *testing.T) {
		const uri = "/_matrix/federation/v1/send/t-body"
		body := []byte(`{"origin":"remote.test","origin_server_ts":1,"pdus":[]}`)
		auth := xMatrix(t, h.remote, remoteName, ourName, "PUT", uri, body)
		tampered := []byte(`{"origin":"remote.test","origin_server_ts":2,"pdus":[]}`)
		wantStatus(t, "PUT send with a changed body", h.do("PUT", uri, tampered, auth), 401, "M_UNAUTHORIZED")
	})
	t.Run("version needs no signature", func(t *testing.T) {
		wantStatus(t, "GET version", h.do("GET", "/_matrix/federation/v1/version", nil, ""), 200, "")
	})
}

// txn is a transaction of remote.test.
func txn(pdus []json.RawMessage, edus ...fed.EDU) fed.Transaction {
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	return fed.Transaction{Origin: remoteName, OriginServerTS: 1, PDUs: pdus, EDUs: edus}
}

func TestSendIdempotent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	release := make(chan struct{})
	h.rooms.receive = func(origin string, pdus []json.RawMessage) map[id.EventID]error {
		<-release
		return map[id.EventID]error{"$ok": nil, "$bad": errors.New("not allowed")}
	}
	body := txn([]json.RawMessage{json.RawMessage(`{"room_id":"!open:local.test"}`)})
	const uri = "/_matrix/federation/v1/send/txn1"
	// Two concurrent sends and one after: one processing, one answer.
	var wg sync.WaitGroup
	got := make([]response, 3)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = h.signed("PUT", uri, body)
		}()
	}
	close(release)
	wg.Wait()
	got[2] = h.signed("PUT", uri, body)
	want := `{"pdus":{"$bad":{"error":"not allowed"},"$ok":{}}}`
	for i, r := range got {
		if r.Status != 200 || string(r.Body) != want {
			t.Errorf("PUT send/txn1 #%d = %d %s, want 200 %s", i+1, r.Status, r.Body, want)
		}
	}
	if n := h.rooms.receiveCalls.Load(); n != 1 {
		t.Errorf("ReceivePDUs called %d times for one transaction sent three times, want 1", n)
	}
	// Another txnId is processed.
	if r := h.signed("PUT", "/_matrix/federation/v1/send/txn2", body); r.Status != 200 {
		t.Errorf("PUT send/txn2 = %d %s", r.Status, r.Body)
	}
	if n := h.rooms.receiveCalls.Load(); n != 2 {
		t.Errorf("ReceivePDUs called %d times after a second transaction, want 2", n)
	}
}

func TestSendLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	pdus := func(n int) []json.RawMessage {
		out := make([]json.RawMessage, n)
		for i := range out {
			out[i] = json.RawMessage(`{}`)
		}
		return out
	}
	edus := func(n int) []fed.EDU {
		out := make([]fed.EDU, n)
		for i := range out {
			out[i] = fed.EDU{Type: "m.unknown", Content: json.RawMessage(`{}`)}
		}
		return out
	}
	wrongOrigin := txn(nil)
	wrongOrigin.Origin = "other.test"
	for _, c := range []struct {
		name    string
		body    fed.Transaction
		status  int
		errcode string
	}{
		{"50 PDUs", txn(pdus(50)), 200, ""},
		{"51 PDUs", txn(pdus(51)), 400, "M_BAD_JSON"},
		{"100 EDUs", txn(nil, edus(100)...), 200, ""},
		{"101 EDUs", txn(nil, edus(101)...), 400, "M_BAD_JSON"},
		{"origin is not the signer", wrongOrigin, 403, "M_FORBIDDEN"},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantStatus(t, "PUT send", h.signed("PUT", "/_matrix/federation/v1/send/"+strings.ReplaceAll(c.name, " ", "_"), c.body), c.status, c.errcode)
		})
	}
}

func edu(t *testing.T, typ string, content any) fed.EDU {
	t.Helper()
	raw, err := json.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	return fed.EDU{Type: typ, Content: raw}
}

func TestSendEDUs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	typing := func(room id.RoomID, user string) fed.EDU {
		return edu(t, fed.EDUTyping, map[string]any{"room_id": room, "user_id": user, "typing": true})
	}
	receipt := func(room id.RoomID, user string) map[string]any {
		return map[string]any{string(room): map[string]any{"m.read": map[string]any{
			user: map[string]any{"event_ids": []string{"$e"}, "data": map[string]any{"ts": 1}},
		}}}
	}
	body := txn(nil,
		typing(openRoom, "@alice:remote.test"),
		typing(openRoom, "@mallory:evil.test"),   // not a user of remote.test
		typing(bannedRoom, "@alice:remote.test"), // the ACL bans remote.test
		typing(otherRoom, "@alice:remote.test"),  // remote.test is not in the room
		edu(t, fed.EDUReceipt, receipt(openRoom, "@alice:remote.test")),
		edu(t, fed.EDUReceipt, receipt(openRoom, "@mallory:evil.test")),
		edu(t, fed.EDUReceipt, receipt(bannedRoom, "@alice:remote.test")),
		edu(t, fed.EDUPresence, map[string]any{"push": []map[string]any{
			{"user_id": "@alice:remote.test", "presence": "online", "last_active_ago": 5},
			{"user_id": "@mallory:evil.test", "presence": "online"},
		}}),
		edu(t, fed.EDUDeviceListUpdate, map[string]any{"user_id": "@alice:remote.test"}),
		edu(t, fed.EDUTyping, "not an object"),
	)
	if r := h.signed("PUT", "/_matrix/federation/v1/send/edus", body); r.Status != 200 || string(r.Body) != `{"pdus":{}}` {
		t.Fatalf("PUT send = %d %s, want 200 {\"pdus\":{}}", r.Status, r.Body)
	}
	check := func(what string, got []string, want string) {
		t.Helper()
		if strings.Join(got, "; ") != want {
			t.Errorf("%s applied: %q, want %q", what, got, want)
		}
	}
	check("typing", h.typing.got(), "@alice:remote.test !open:local.test true")
	check("receipts", h.receipts.got(), "@alice:remote.test !open:local.test $e")
	check("presence", h.presence.got(), "@alice:remote.test online")
}

// A PDU of a room whose ACL bans the origin gets an error result and does
// not reach the room service.
func TestSendACL(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mk := func(room id.RoomID) *event.PDU {
		pdu, err := event.New("10", event.Proto{
			Type: "m.room.message", Sender: "@alice:remote.test", RoomID: room, Content: []byte(`{"body":"hi"}`),
			PrevEvents: []id.EventID{id.EventID("$" + strings.Repeat("Q", 43))},
			AuthEvents: []id.EventID{id.EventID("$" + strings.Repeat("A", 43))}, Depth: 3,
		}, remoteName, h.remote)
		if err != nil {
			t.Fatalf("event.New: %v", err)
		}
		return pdu
	}
	banned, open := mk(bannedRoom), mk(openRoom)
	var passed []json.RawMessage
	h.rooms.receive = func(origin string, pdus []json.RawMessage) map[id.EventID]error {
		passed = pdus
		return map[id.EventID]error{open.EventID(): nil}
	}
	r := h.signed("PUT", "/_matrix/federation/v1/send/acl", txn([]json.RawMessage{banned.JSON(), open.JSON()}))
	if r.Status != 200 {
		t.Fatalf("PUT send = %d %s", r.Status, r.Body)
	}
	var resp fed.TransactionResponse
	if err := json.Unmarshal(r.Body, &resp); err != nil {
		t.Fatal(err)
	}
	if res, ok := resp.PDUs[banned.EventID()]; !ok || res.Error == "" {
		t.Errorf("result of the banned room's PDU = %+v (present %v), want an error", res, ok)
	}
	if res, ok := resp.PDUs[open.EventID()]; !ok || res.Error != "" {
		t.Errorf("result of the open room's PDU = %+v (present %v), want success", res, ok)
	}
	if len(passed) != 1 || !bytes.Equal(passed[0], open.JSON()) {
		t.Errorf("ReceivePDUs got %d PDUs, want only the open room's", len(passed))
	}
}

func TestRoomEndpoints(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const f = "/_matrix/federation"
	join := map[string]any{"type": "m.room.member"}
	for _, c := range []struct {
		name, method, uri string
		body              any
		status            int
		errcode           string
	}{
		{"make_join", "GET", f + "/v1/make_join/!open:local.test/@alice:remote.test?ver=10&ver=11", nil, 200, ""},
		{"make_join of another server's user", "GET", f + "/v1/make_join/!open:local.test/@bob:local.test?ver=10", nil, 403, "M_FORBIDDEN"},
		{"make_join banned by ACL", "GET", f + "/v1/make_join/!banned:local.test/@alice:remote.test?ver=10", nil, 403, "M_FORBIDDEN"},
		{"make_join bad room ID", "GET", f + "/v1/make_join/nope/@alice:remote.test", nil, 400, "M_INVALID_PARAM"},
		{"make_leave of another server's user", "GET", f + "/v1/make_leave/!open:local.test/@bob:local.test", nil, 403, "M_FORBIDDEN"},
		{"make_knock without ver", "GET", f + "/v1/make_knock/!open:local.test/@alice:remote.test", nil, 400, "M_MISSING_PARAM"},
		{"send_join v2", "PUT", f + "/v2/send_join/!open:local.test/$j", join, 200, ""},
		{"send_join v2 banned by ACL", "PUT", f + "/v2/send_join/!banned:local.test/$j", join, 403, "M_FORBIDDEN"},
		{"send_join v2 not an object", "PUT", f + "/v2/send_join/!open:local.test/$j", []int{1}, 400, "M_BAD_JSON"},
		{"send_join v1", "PUT", f + "/v1/send_join/!open:local.test/$j", join, 200, ""},
		{"send_leave v2", "PUT", f + "/v2/send_leave/!open:local.test/$l", join, 200, ""},
		{"send_leave v1", "PUT", f + "/v1/send_leave/!open:local.test/$l", join, 200, ""},
		{"send_knock", "PUT", f + "/v1/send_knock/!open:local.test/$k", join, 200, ""},
		{"invite", "PUT", f + "/v2/invite/!open:local.test/$i", map[string]any{"event": join, "room_version": "10"}, 200, ""},
		{"invite banned by ACL", "PUT", f + "/v2/invite/!banned:local.test/$i", map[string]any{"event": join, "room_version": "10"}, 403, "M_FORBIDDEN"},
		{"event", "GET", f + "/v1/event/$e", nil, 200, ""},
		{"state", "GET", f + "/v1/state/!open:local.test?event_id=$e", nil, 200, ""},
		{"state without event_id", "GET", f + "/v1/state/!open:local.test", nil, 400, "M_MISSING_PARAM"},
		{"state_ids without event_id", "GET", f + "/v1/state_ids/!open:local.test", nil, 400, "M_MISSING_PARAM"},
		{"state_ids banned by ACL", "GET", f + "/v1/state_ids/!banned:local.test?event_id=$e", nil, 403, "M_FORBIDDEN"},
		{"event_auth", "GET", f + "/v1/event_auth/!open:local.test/$e", nil, 200, ""},
		{"event_auth banned by ACL", "GET", f + "/v1/event_auth/!banned:local.test/$e", nil, 403, "M_FORBIDDEN"},
		{"backfill", "GET", f + "/v1/backfill/!open:local.test?v=$e&limit=5", nil, 200, ""},
		{"backfill without v", "GET", f + "/v1/backfill/!open:local.test?limit=5", nil, 400, "M_MISSING_PARAM"},
		{"backfill banned by ACL", "GET", f + "/v1/backfill/!banned:local.test?v=$e&limit=5", nil, 403, "M_FORBIDDEN"},
		{"get_missing_events banned by ACL", "POST", f + "/v1/get_missing_events/!banned:local.test", map[string]any{"earliest_events": []string{}, "latest_events": []string{"$e"}}, 403, "M_FORBIDDEN"},
		{"timestamp_to_event banned by ACL", "GET", f + "/v1/timestamp_to_event/!banned:local.test?ts=1&dir=f", nil, 403, "M_FORBIDDEN"},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantStatus(t, c.method+" "+c.uri, h.signed(c.method, c.uri, c.body), c.status, c.errcode)
		})
	}

	t.Run("send_join v1 answers [200, body]", func(t *testing.T) {
		r := h.signed("PUT", f+"/v1/send_join/!open:local.test/$j?omit_members=true", join)
		var got []json.RawMessage
		if err := json.Unmarshal(r.Body, &got); err != nil || len(got) != 2 || string(got[0]) != "200" {
			t.Fatalf("PUT v1/send_join = %s, want [200, {...}]", r.Body)
		}
		if bytes.Contains(got[1], []byte("members_omitted")) {
			t.Errorf("v1 send_join answered partial state: %s", got[1])
		}
	})
	t.Run("backfill limit is capped at 100", func(t *testing.T) {
		var resp fed.EventsResponse
		r := h.signed("GET", f+"/v1/backfill/!open:local.test?v=$e&limit=1000", nil)
		if err := json.Unmarshal(r.Body, &resp); err != nil || len(resp.PDUs) != 100 || resp.Origin != ourName {
			t.Errorf("GET backfill limit=1000: %d PDUs from %q (%v), want 100 from %s", len(resp.PDUs), resp.Origin, err, ourName)
		}
	})
	t.Run("get_missing_events limit defaults to 10 and is capped at 20", func(t *testing.T) {
		for _, c := range []struct{ limit, want int }{{0, 10}, {5, 5}, {50, 20}} {
			var resp fed.MissingEventsResponse
			r := h.signed("POST", f+"/v1/get_missing_events/!open:local.test", map[string]any{
				"earliest_events": []string{}, "latest_events": []string{"$e"}, "limit": c.limit,
			})
			if err := json.Unmarshal(r.Body, &resp); err != nil || len(resp.Events) != c.want {
				t.Errorf("get_missing_events limit %d: %d events (%v), want %d", c.limit, len(resp.Events), err, c.want)
			}
		}
	})
	t.Run("make_join passes the versions", func(t *testing.T) {
		var got []id.RoomVersion
		h.rooms.make = func(origin string, roomID id.RoomID, userID id.UserID, membership string, versions []id.RoomVersion) (*fed.MakeResponse, error) {
			got = versions
			return &fed.MakeResponse{RoomVersion: "10", Event: json.RawMessage(`{}`)}, nil
		}
		defer func() { h.rooms.make = nil }()
		h.signed("GET", f+"/v1/make_join/!open:local.test/@alice:remote.test", nil)
		if len(got) != 1 || got[0] != "1" {
			t.Errorf("make_join without ver passed versions %v, want [1] (spec default)", got)
		}
	})
}

func TestOpenIDUserInfo(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// Not signed: third parties call it.
	const uri = "/_matrix/federation/v1/openid/userinfo"
	wantStatus(t, "GET openid/userinfo", h.do("GET", uri+"?access_token=abc", nil, ""), 401, "M_UNKNOWN_TOKEN")
	wantStatus(t, "GET openid/userinfo without a token", h.do("GET", uri, nil, ""), 401, "M_MISSING_TOKEN")
	r := h.do("GET", uri+"?access_token=bobtoken", nil, "")
	if r.Status != 200 || string(bytes.TrimSpace(r.Body)) != `{"sub":"@bob:local.test"}` {
		t.Errorf("GET openid/userinfo with bob's token = %d %s, want 200 {\"sub\":\"@bob:local.test\"}", r.Status, r.Body)
	}
}

func TestQueries(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const f = "/_matrix/federation/v1"
	for _, c := range []struct {
		name, method, uri string
		body              any
		status            int
		errcode           string
		want              string
	}{
		{"profile", "GET", f + "/query/profile?user_id=@bob:local.test", nil, 200, "", `{"displayname":"Bob","m.tz":"Europe/Amsterdam"}`},
		{"profile field", "GET", f + "/query/profile?user_id=@bob:local.test&field=displayname", nil, 200, "", `{"displayname":"Bob"}`},
		{"profile unset field", "GET", f + "/query/profile?user_id=@bob:local.test&field=avatar_url", nil, 404, "M_NOT_FOUND", ""},
		{"profile of another server's user", "GET", f + "/query/profile?user_id=@alice:remote.test", nil, 404, "M_NOT_FOUND", ""},
		{"profile of an unknown user", "GET", f + "/query/profile?user_id=@nobody:local.test", nil, 404, "M_NOT_FOUND", ""},
		{"profile without user_id", "GET", f + "/query/profile", nil, 400, "M_MISSING_PARAM", ""},
		{"profile with a non-numeric port", "GET", f + "/query/profile?user_id=@bob:local.test:http&field=displayname", nil, 400, "M_INVALID_PARAM", ""},
		{"directory", "GET", f + "/query/directory?room_alias=%23room:local.test", nil, 200, "", `{"room_id":"!open:local.test","servers":["local.test","remote.test"]}`},
		{"directory of another server's alias", "GET", f + "/query/directory?room_alias=%23room:remote.test", nil, 404, "M_NOT_FOUND", ""},
		{"directory unknown alias", "GET", f + "/query/directory?room_alias=%23nope:local.test", nil, 404, "M_NOT_FOUND", ""},
		{"publicRooms GET", "GET", f + "/publicRooms?limit=7", nil, 200, "", `{"chunk":[{"room_id":"!open:local.test","num_joined_members":7,"world_readable":false,"guest_can_join":false}],"total_room_count_estimate":0}`},
		{"publicRooms POST", "POST", f + "/publicRooms", map[string]any{"limit": 3}, 200, "", `{"chunk":[{"room_id":"!open:local.test","num_joined_members":3,"world_readable":false,"guest_can_join":false}],"total_room_count_estimate":0}`},
		// Without an E2EE service (this harness has none) a user has no
		// devices to tell; internal/api/client/keys_test.go
		// (TestKeysFederation) checks the answer of a real server.
		{"user devices", "GET", f + "/user/devices/@bob:local.test", nil, 200, "", `{"user_id":"@bob:local.test","stream_id":0,"devices":[]}`},
		{"user devices of another server's user", "GET", f + "/user/devices/@alice:remote.test", nil, 400, "M_INVALID_PARAM", ""},
		{"keys query", "POST", f + "/user/keys/query", map[string]any{"device_keys": map[string]any{"@bob:local.test": []string{}}}, 200, "", `{"device_keys":{}}`},
		{"keys claim", "POST", f + "/user/keys/claim", map[string]any{"one_time_keys": map[string]any{}}, 200, "", `{"one_time_keys":{}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.signed(c.method, c.uri, c.body)
			wantStatus(t, c.method+" "+c.uri, r, c.status, c.errcode)
			if c.want != "" && string(r.Body) != c.want {
				t.Errorf("%s %s = %s, want %s", c.method, c.uri, r.Body, c.want)
			}
		})
	}
}

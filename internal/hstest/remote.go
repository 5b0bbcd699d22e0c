package hstest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/keys"
)

// Remote is a scripted remote homeserver (after Complement's federation
// server): a test plays another server with it, one that may send what a
// real server never would. It has its own server name and signing key,
// serves HTTPS with a certificate of the Federation's CA, and its name
// resolves through the Federation, so Polder fetches its keys and sends
// it transactions as it would to any server.
//
// It serves GET /_matrix/key/v2/server, PUT /send (the PDUs are recorded,
// see Received and Await, and applied to the rooms it tracks) and GET
// /event of the events it knows. Handlers the test registers on Mux come
// first.
//
// Rooms: Join joins a user of the Remote to a Polder room over
// make_join/send_join and tracks it as a RemoteRoom, from which the test
// builds events (Build) with the room's latest event as prev event and
// auth events picked from the state the Remote knows.
type Remote struct {
	// Name is the server name; Key its signing key, published at
	// /_matrix/key/v2/server.
	Name string
	Key  *keys.SigningKey
	// Mux holds the test's handlers; a request it has no pattern for goes
	// to the Remote's own (keys, send, event).
	Mux *http.ServeMux

	fed    *Federation
	addr   string
	srv    *httptest.Server
	base   *http.ServeMux
	client *federation.Client
	txnSeq atomic.Int64

	mu       sync.Mutex
	rooms    map[id.RoomID]*RemoteRoom
	received []json.RawMessage
	arrived  chan struct{} // closed and replaced whenever a PDU arrives
}

// NewRemote starts a scripted remote server named name (a name of no
// server of f) and adds it to the federation's resolver. It stops when the
// test ends.
func (f *Federation) NewRemote(tb testing.TB, name string) *Remote {
	tb.Helper()
	if f.lookup(name) != nil || f.remote(name) != nil {
		tb.Fatalf("NewRemote: server name %s is taken", name)
	}
	key, err := keys.Generate("")
	if err != nil {
		tb.Fatal(err)
	}
	r := &Remote{
		Name:    name,
		Key:     key,
		Mux:     http.NewServeMux(),
		fed:     f,
		base:    http.NewServeMux(),
		rooms:   map[id.RoomID]*RemoteRoom{},
		arrived: make(chan struct{}),
	}
	r.base.HandleFunc("GET /_matrix/key/v2/server", r.serveKeys)
	r.base.HandleFunc("PUT /_matrix/federation/v1/send/{txnId}", r.serveSend)
	r.base.HandleFunc("GET /_matrix/federation/v1/event/{eventId}", r.serveEvent)

	cert := f.mintCert(tb, name)
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serveHTTP))
	r.srv.EnableHTTP2 = true
	r.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	r.srv.StartTLS()
	r.addr = r.srv.Listener.Addr().String()
	r.client = federation.NewClient(federation.Config{
		ServerName: name, Key: key, RootCAs: f.RootCAs(), Resolver: f, Timeout: 30 * time.Second,
	}, nil)
	tb.Cleanup(func() {
		r.client.CloseIdleConnections()
		r.srv.CloseClientConnections()
		r.srv.Close()
	})

	f.mu.Lock()
	if f.remotes == nil {
		f.remotes = map[string]*Remote{}
	}
	f.remotes[name] = r
	f.mu.Unlock()
	return r
}

func (f *Federation) remote(name string) *Remote {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.remotes[name]
}

// mintCert makes a certificate for the host of serverName, signed by the
// federation's CA (as Polder mints its own from tls_ca_cert).
func (f *Federation) mintCert(tb testing.TB, serverName string) tls.Certificate {
	tb.Helper()
	caPEM, err := os.ReadFile(f.CACert)
	if err != nil {
		tb.Fatal(err)
	}
	keyPEM, err := os.ReadFile(f.CAKey)
	if err != nil {
		tb.Fatal(err)
	}
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		tb.Fatalf("mint certificate: CA files %s, %s are not PEM", f.CACert, f.CAKey)
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	caKey, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	host := hostOnly(serverName)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     ca.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey.(crypto.Signer))
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}
}

func (r *Remote) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if _, pattern := r.Mux.Handler(req); pattern != "" {
		r.Mux.ServeHTTP(w, req)
		return
	}
	r.base.ServeHTTP(w, req)
}

func (r *Remote) serveKeys(w http.ResponseWriter, _ *http.Request) {
	body, err := keys.ServerKeysResponse(r.Name, r.Key, nil, time.Now().Add(24*time.Hour))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// serveSend records the PDUs of a transaction and applies those of the
// rooms the Remote tracks; it answers that each was accepted. Signatures
// are not checked: the Remote trusts what Polder sends it.
func (r *Remote) serveSend(w http.ResponseWriter, req *http.Request) {
	var txn federation.Transaction
	if err := json.NewDecoder(req.Body).Decode(&txn); err != nil {
		http.Error(w, `{"errcode":"M_NOT_JSON","error":"bad transaction"}`, http.StatusBadRequest)
		return
	}
	results := map[id.EventID]federation.PDUResult{}
	for _, raw := range txn.PDUs {
		var head struct {
			RoomID id.RoomID `json:"room_id"`
		}
		_ = json.Unmarshal(raw, &head)
		r.mu.Lock()
		room := r.rooms[head.RoomID]
		r.mu.Unlock()
		if room != nil {
			if p, err := event.Parse(room.Version, raw); err == nil {
				room.Add(p)
				results[p.EventID()] = federation.PDUResult{}
			}
		}
		r.mu.Lock()
		r.received = append(r.received, raw)
		close(r.arrived)
		r.arrived = make(chan struct{})
		r.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(federation.TransactionResponse{PDUs: results})
}

func (r *Remote) serveEvent(w http.ResponseWriter, req *http.Request) {
	eid := id.EventID(req.PathValue("eventId"))
	r.mu.Lock()
	var p *event.PDU
	for _, room := range r.rooms {
		if p = room.Event(eid); p != nil {
			break
		}
	}
	r.mu.Unlock()
	if p == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"errcode":"M_NOT_FOUND","error":"unknown event"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(federation.EventsResponse{
		Origin: r.Name, OriginServerTS: time.Now().UnixMilli(), PDUs: []json.RawMessage{p.JSON()},
	})
}

// Received returns the PDUs Polder has sent the Remote so far, as they
// came.
func (r *Remote) Received() []json.RawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]json.RawMessage(nil), r.received...)
}

// Await waits until a PDU with the event ID has arrived in a transaction
// of a room the Remote tracks, and returns it; it fails the test after 30
// seconds.
func (r *Remote) Await(tb testing.TB, eventID id.EventID) *event.PDU {
	tb.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		for _, raw := range r.received {
			var head struct {
				RoomID id.RoomID `json:"room_id"`
			}
			_ = json.Unmarshal(raw, &head)
			if room := r.rooms[head.RoomID]; room != nil {
				if p, err := event.Parse(room.Version, raw); err == nil && p.EventID() == eventID {
					r.mu.Unlock()
					return p
				}
			}
		}
		wait := r.arrived
		r.mu.Unlock()
		select {
		case <-wait:
		case <-deadline:
			tb.Fatalf("%s: event %s did not arrive within 30s", r.Name, eventID)
		}
	}
}

// Client is a federation client that signs its requests as the Remote.
func (r *Remote) Client() *federation.Client { return r.client }

// UserID is the user ID of a localpart on the Remote.
func (r *Remote) UserID(localpart string) id.UserID {
	return id.UserID("@" + localpart + ":" + r.Name)
}

// Send sends PDUs to destination in one transaction (a new txnId each
// time) and returns the answer; it fails the test on an error answer.
func (r *Remote) Send(tb testing.TB, destination string, pdus ...json.RawMessage) *federation.TransactionResponse {
	tb.Helper()
	txnID := r.Name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatInt(r.txnSeq.Add(1), 10)
	resp, err := r.client.SendTransaction(tb.Context(), destination, txnID, federation.Transaction{
		Origin: r.Name, OriginServerTS: time.Now().UnixMilli(), PDUs: pdus,
	})
	if err != nil {
		tb.Fatalf("%s: PUT /send to %s: %v", r.Name, destination, err)
	}
	return resp
}

// RawRequest is a request the Remote makes by hand, for answers Client's
// typed calls would hide or requests they would not make.
type RawRequest struct {
	Method string
	Path   string // from /_matrix on, escaped, with its query
	Body   []byte // nil: none
	// Origin and Key sign the X-Matrix header; the Remote's name and key
	// when empty. Unsigned sends no Authorization header.
	Origin   string
	Key      *keys.SigningKey
	Unsigned bool
	// SignedBody, if not nil, is the body the signature covers instead of
	// Body (a body changed after signing).
	SignedBody []byte
	// Chunked sends the body without a Content-Length.
	Chunked bool
}

// Do sends a hand-made request to destination and returns the status and
// body of the answer. It fails the test if no answer comes.
func (r *Remote) Do(tb testing.TB, destination string, rr RawRequest) (int, []byte) {
	tb.Helper()
	var body io.Reader
	if rr.Body != nil {
		body = bytes.NewReader(rr.Body)
		if rr.Chunked {
			body = struct{ io.Reader }{body}
		}
	}
	req, err := http.NewRequestWithContext(tb.Context(), rr.Method, "https://"+destination+rr.Path, body)
	if err != nil {
		tb.Fatalf("%s %s: %v", rr.Method, rr.Path, err)
	}
	req.Host = destination
	if rr.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if !rr.Unsigned {
		origin, key := rr.Origin, rr.Key
		if origin == "" {
			origin = r.Name
		}
		if key == nil {
			key = r.Key
		}
		signed := rr.Body
		if rr.SignedBody != nil {
			signed = rr.SignedBody
		}
		if err := federation.SignRequest(req, signed, origin, destination, key); err != nil {
			tb.Fatalf("%s %s: %v", rr.Method, rr.Path, err)
		}
	}
	resp, err := r.fed.HTTPClient().Do(req)
	if err != nil {
		tb.Fatalf("%s %s to %s: %v", rr.Method, rr.Path, destination, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s to %s: read answer: %v", rr.Method, rr.Path, destination, err)
	}
	return resp.StatusCode, data
}

// Room returns the room the Remote tracks, nil if none.
func (r *Remote) Room(roomID id.RoomID) *RemoteRoom {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rooms[roomID]
}

// Join joins userID (a user of the Remote) to a room through the server
// via, as a real server would: make_join, the template filled in, hashed
// and signed, send_join v2. The Remote then tracks the room with the state
// send_join answered, the auth chain and the join itself; a second join
// of the same room adds to what it tracks.
func (r *Remote) Join(tb testing.TB, via string, roomID id.RoomID, userID id.UserID) *RemoteRoom {
	tb.Helper()
	ctx := tb.Context()
	mk, err := r.client.MakeJoin(ctx, via, roomID, userID, event.SupportedVersions())
	if err != nil {
		tb.Fatalf("%s: make_join %s for %s at %s: %v", r.Name, roomID, userID, via, err)
	}
	signed, err := event.HashAndSign(mk.RoomVersion, mk.Event, r.Name, r.Key)
	if err != nil {
		tb.Fatalf("%s: sign the join template %s: %v", r.Name, mk.Event, err)
	}
	join, err := event.Parse(mk.RoomVersion, signed)
	if err != nil {
		tb.Fatalf("%s: the signed join %s does not parse: %v", r.Name, signed, err)
	}
	resp, err := r.client.SendJoin(ctx, via, roomID, join.EventID(), signed)
	if err != nil {
		tb.Fatalf("%s: send_join %s for %s at %s: %v", r.Name, roomID, userID, via, err)
	}
	if len(resp.Event) > 0 {
		if join, err = event.Parse(mk.RoomVersion, resp.Event); err != nil {
			tb.Fatalf("%s: send_join answered an event that does not parse: %v", r.Name, err)
		}
	}
	r.mu.Lock()
	room := r.rooms[roomID]
	if room == nil {
		room = &RemoteRoom{ID: roomID, Version: mk.RoomVersion, remote: r, events: map[id.EventID]*event.PDU{}, state: map[stateKey]id.EventID{}}
		r.rooms[roomID] = room
	}
	r.mu.Unlock()
	room.mu.Lock()
	for _, raws := range [][]json.RawMessage{resp.AuthChain, resp.State} {
		for _, raw := range raws {
			p, err := event.Parse(room.Version, raw)
			if err != nil {
				room.mu.Unlock()
				tb.Fatalf("%s: send_join answered an event that does not parse: %v", r.Name, err)
			}
			room.events[p.EventID()] = p
		}
	}
	for _, raw := range resp.State {
		p, _ := event.Parse(room.Version, raw)
		if sk := p.StateKey(); sk != nil {
			room.state[stateKey{p.Type(), *sk}] = p.EventID()
		}
	}
	room.mu.Unlock()
	room.Add(join)
	return room
}

type stateKey struct{ typ, stateKey string }

// RemoteRoom is a room as the Remote sees it: the events it knows, the
// state after its latest event and that event, the prev event of what it
// builds next.
type RemoteRoom struct {
	ID      id.RoomID
	Version id.RoomVersion

	remote *Remote
	mu     sync.Mutex
	events map[id.EventID]*event.PDU
	state  map[stateKey]id.EventID
	latest id.EventID
	depth  int64
}

// Add makes p known and, as the Remote's latest event of the room, the
// prev event of the next one; a state event becomes part of the state.
// Join adds the join and serveSend what Polder sends; the test adds the
// events it built once Polder has accepted them.
func (rr *RemoteRoom) Add(p *event.PDU) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.events[p.EventID()] = p
	if sk := p.StateKey(); sk != nil {
		rr.state[stateKey{p.Type(), *sk}] = p.EventID()
	}
	rr.latest = p.EventID()
	rr.depth = max(rr.depth, p.Depth())
}

// Remember makes p known (served at /event) without making it the
// latest event or part of the state: an event the Remote keeps to itself
// until Polder asks for it.
func (rr *RemoteRoom) Remember(p *event.PDU) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.events[p.EventID()] = p
}

// Event returns a known event, nil if unknown.
func (rr *RemoteRoom) Event(eventID id.EventID) *event.PDU {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.events[eventID]
}

// Latest is the Remote's latest event of the room.
func (rr *RemoteRoom) Latest() id.EventID {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.latest
}

// StateEvent returns the event of the state the Remote knows for a type
// and state key, nil if none.
func (rr *RemoteRoom) StateEvent(typ, key string) *event.PDU {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.events[rr.state[stateKey{typ, key}]]
}

// Build makes an event of the room signed by the Remote, without adding
// it (see Add). Empty fields of proto are filled in: RoomID; PrevEvents
// with the latest event; AuthEvents as the server-server API's "Auth
// events selection" picks them from the state the Remote knows (the
// create event only in room versions that list it); Depth one more than
// the deepest prev event.
func (rr *RemoteRoom) Build(tb testing.TB, proto event.Proto) *event.PDU {
	tb.Helper()
	return rr.BuildAs(tb, proto, rr.remote.Name, rr.remote.Key)
}

// BuildAs is Build with the event signed as serverName with key: a key
// the Remote does not publish, or a server that does not exist.
func (rr *RemoteRoom) BuildAs(tb testing.TB, proto event.Proto, serverName string, key *keys.SigningKey) *event.PDU {
	tb.Helper()
	rr.mu.Lock()
	if proto.RoomID == "" {
		proto.RoomID = rr.ID
	}
	if proto.PrevEvents == nil {
		proto.PrevEvents = []id.EventID{rr.latest}
	}
	if proto.AuthEvents == nil {
		proto.AuthEvents = rr.authEvents(proto)
	}
	if proto.Depth == 0 {
		for _, prev := range proto.PrevEvents {
			d := rr.depth
			if p := rr.events[prev]; p != nil {
				d = p.Depth()
			}
			proto.Depth = max(proto.Depth, d+1)
		}
	}
	rr.mu.Unlock()
	p, err := event.New(rr.Version, proto, serverName, key)
	if err != nil {
		tb.Fatalf("%s: build %s event: %v", serverName, proto.Type, err)
	}
	return p
}

// authEvents picks an event's auth events from the state. rr.mu is held.
func (rr *RemoteRoom) authEvents(proto event.Proto) []id.EventID {
	var out []id.EventID
	add := func(typ, sk string) {
		if eid, ok := rr.state[stateKey{typ, sk}]; ok {
			out = append(out, eid)
		}
	}
	if !rr.Version.RoomIDIsCreateEventID() {
		add(event.TypeCreate, "")
	}
	add(event.TypePowerLevels, "")
	add(event.TypeMember, string(proto.Sender))
	if proto.Type == event.TypeMember && proto.StateKey != nil {
		if *proto.StateKey != string(proto.Sender) {
			add(event.TypeMember, *proto.StateKey)
		}
		var c struct {
			Membership string `json:"membership"`
		}
		_ = json.Unmarshal(proto.Content, &c)
		switch c.Membership {
		case "join", "invite", "knock":
			add(event.TypeJoinRules, "")
		}
	}
	return out
}

// MustJSON marshals v, failing the test if it cannot: for event content.
func MustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("marshal %T: %v", v, err)
	}
	return data
}

package room_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// Federation benchmarks: inbound PDUs into one busy room, and joining a
// remote room of 10,000 members. The other server is a fake: events signed
// with a fixed key (remoteKey), answered through federation.Config.Transport.
// Run (figures in docs/benchmarks.md, "Federation"):
//
//	go test ./internal/room -run '^$' -bench BenchmarkReceivePDUs -benchtime 5000x
//	go test ./internal/room -run '^$' -bench BenchmarkJoinRemoteRoom10k -benchtime 2x -timeout 30m

const remoteName = "remote.test"

// remoteKey is the fake remote server's signing key.
var remoteKey = func() *keys.SigningKey {
	k, err := keys.FromSeed("bench", bytes.Repeat([]byte{7}, ed25519.SeedSize))
	if err != nil {
		panic(err)
	}
	return k
}()

// fakeKeys is a room.KeySource that knows only remoteKey.
type fakeKeys struct{}

var _ room.KeySource = fakeKeys{}

func (fakeKeys) VerifyKey(_ context.Context, server string, keyID id.KeyID) (ed25519.PublicKey, time.Time, error) {
	if server != remoteName || keyID != remoteKey.KeyID() {
		return nil, time.Time{}, fmt.Errorf("no key %s of %s", keyID, server)
	}
	return remoteKey.Public(), time.Now().Add(24 * time.Hour), nil
}

func (fakeKeys) Prefetch(context.Context, map[string][]id.KeyID) error { return nil }

// newFedService is newService with the fake key source and, if fed is not
// nil, a federation client.
func newFedService(tb testing.TB, db *store.DB, fed *federation.Client) *room.Service {
	tb.Helper()
	k, err := keys.Generate("")
	if err != nil {
		tb.Fatal(err)
	}
	pos, err := db.StreamPos(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	cfg := room.Config{ServerName: server, Key: k, Keys: fakeKeys{}, Federation: fed}
	return room.New(cfg, db, notify.New(notify.Position{Stream: pos}), slog.New(slog.DiscardHandler))
}

// mustRemoteJoin joins user of the fake remote to a room of s as the
// remote would: make_join, sign the template, send_join.
func mustRemoteJoin(tb testing.TB, s *room.Service, roomID id.RoomID, user id.UserID) *event.PDU {
	tb.Helper()
	ctx := context.Background()
	mk, err := s.MakeMembership(ctx, remoteName, roomID, user, room.Join, event.SupportedVersions())
	if err != nil {
		tb.Fatalf("MakeMembership(%s): %v", user, err)
	}
	signed, err := event.HashAndSign(mk.RoomVersion, mk.Event, remoteName, remoteKey)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := event.Parse(mk.RoomVersion, signed)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := s.SendJoin(ctx, remoteName, roomID, p.EventID(), p.JSON(), false); err != nil {
		tb.Fatalf("SendJoin(%s): %v", user, err)
	}
	return p
}

// remoteMessage builds a message of the fake remote's user.
func remoteMessage(tb testing.TB, version id.RoomVersion, roomID id.RoomID, sender id.UserID, auth, prev []id.EventID, depth int64, n int) *event.PDU {
	tb.Helper()
	p, err := event.New(version, event.Proto{
		Type: "m.room.message", Sender: sender, RoomID: roomID,
		Content:    fmt.Appendf(nil, `{"msgtype":"m.text","body":"remote message number %d, of a typical length for a chat line"}`, n),
		PrevEvents: prev, AuthEvents: auth, Depth: depth,
	}, remoteName, remoteKey)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// messageAuth is the auth events of a message of sender: power levels,
// the sender's membership and, before room version 12, the create event.
func messageAuth(tb testing.TB, s *room.Service, roomID id.RoomID, version id.RoomVersion, sender id.UserID) []id.EventID {
	tb.Helper()
	ctx := context.Background()
	var out []id.EventID
	types := [][2]string{{"m.room.power_levels", ""}, {"m.room.member", string(sender)}}
	if !version.RoomIDIsCreateEventID() {
		types = append(types, [2]string{"m.room.create", ""})
	}
	for _, t := range types {
		ev, err := s.StateEvent(ctx, roomID, t[0], t[1])
		if err != nil {
			tb.Fatalf("state %s/%s: %v", t[0], t[1], err)
		}
		out = append(out, ev.EventID())
	}
	return out
}

// pduBatch is the size of the inbound transactions of BenchmarkReceivePDUs
// (the spec's limit of PDUs per transaction).
const pduBatch = 50

// BenchmarkReceivePDUs measures inbound PDUs into one room through
// room.Service.ReceivePDUs, in transactions of 50, on a real store. One op
// is one PDU. The PDUs are built and signed before the clock starts.
//
// linear: one remote sender, each message's prev event the one before it
// (the room's only forward extremity moves with each PDU).
//
// fork: two remote senders, each continuing their own chain, and a local
// message before each transaction (not timed) that merges the forward
// extremities: every remote PDU lands beside two or three extremities, so
// its ingest resolves the current state.
func BenchmarkReceivePDUs(b *testing.B) {
	for _, e := range storetest.Engines(b) {
		b.Run(e.Name+"/linear", func(b *testing.B) { benchReceive(b, e, false) })
		b.Run(e.Name+"/fork", func(b *testing.B) { benchReceive(b, e, true) })
	}
}

func benchReceive(b *testing.B, e storetest.Engine, fork bool) {
	ctx := context.Background()
	db := storetest.Open(b, e.Options(b))
	s := newFedService(b, db, nil)
	alice := mustAccount(b, db, "alice")
	roomID, err := s.Create(ctx, alice, room.CreateRequest{Preset: room.PresetPublic})
	if err != nil {
		b.Fatal(err)
	}
	version, err := s.Version(ctx, roomID)
	if err != nil {
		b.Fatal(err)
	}
	senders := []id.UserID{"@rita:" + remoteName}
	if fork {
		senders = append(senders, "@remo:"+remoteName)
	}
	var last *event.PDU
	for _, u := range senders {
		last = mustRemoteJoin(b, s, roomID, u)
	}
	auth := make([][]id.EventID, len(senders))
	prev := make([]id.EventID, len(senders))
	for i, u := range senders {
		auth[i] = messageAuth(b, s, roomID, version, u)
		prev[i] = last.EventID()
	}
	depth := last.Depth()
	raws := make([]json.RawMessage, b.N)
	for i := range raws {
		k := i % len(senders)
		if k == 0 {
			depth++
		}
		p := remoteMessage(b, version, roomID, senders[k], auth[k], []id.EventID{prev[k]}, depth, i)
		prev[k] = p.EventID()
		raws[i] = p.JSON()
	}
	runtime.GC()
	b.ResetTimer()
	for lo := 0; lo < len(raws); lo += pduBatch {
		if fork {
			b.StopTimer()
			if _, err := s.Send(ctx, alice, roomID, room.Draft{Type: "m.room.message", Content: []byte(`{"msgtype":"m.text","body":"local"}`)}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		batch := raws[lo:min(lo+pduBatch, len(raws))]
		res := s.ReceivePDUs(ctx, remoteName, batch)
		for eid, err := range res {
			if err != nil {
				b.Fatalf("PDU %s: %v", eid, err)
			}
		}
		if len(res) != len(batch) {
			b.Fatalf("ReceivePDUs gave %d results for %d PDUs", len(res), len(batch))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pdus/s")
	// A fork leaves the last local message and the ends of the remote
	// chains that the last transaction continued.
	want := 1
	if fork {
		want = 1 + min(len(senders), b.N-(b.N-1)/pduBatch*pduBatch)
	}
	if x, err := db.Extremities(ctx, roomID); err != nil || len(x) != want {
		b.Fatalf("forward extremities = %v, %v; want %d", x, err, want)
	}
}

// bigRoom is a room of the fake remote with members joined members, all
// of the remote: create, the creator's join, power levels, join rules
// (public), history visibility, then the other members' joins, each on
// the one before.
type bigRoom struct {
	version  id.RoomVersion
	roomID   id.RoomID
	pl, jr   id.EventID
	create   id.EventID
	last     id.EventID
	depth    int64
	state    int // state events
	sendJoin []byte
}

var (
	big10kOnce sync.Once
	big10k     *bigRoom
	big10kErr  error
)

// mustBigRoom returns the 10,000-member room, built once per process.
func mustBigRoom(tb testing.TB) *bigRoom {
	tb.Helper()
	big10kOnce.Do(func() { big10k, big10kErr = buildBigRoom("12", 10000) })
	if big10kErr != nil {
		tb.Fatal(big10kErr)
	}
	return big10k
}

func buildBigRoom(version id.RoomVersion, members int) (*bigRoom, error) {
	r := &bigRoom{version: version}
	var state, chain []json.RawMessage
	var prev []id.EventID
	add := func(sender id.UserID, typ string, sk string, content string, auth []id.EventID, inChain bool) (*event.PDU, error) {
		if !version.RoomIDIsCreateEventID() && typ != "m.room.create" {
			auth = append([]id.EventID{r.create}, auth...)
		}
		r.depth++
		p, err := event.New(version, event.Proto{
			Type: typ, StateKey: &sk, Sender: sender, RoomID: r.roomID, Content: []byte(content),
			PrevEvents: prev, AuthEvents: auth, Depth: r.depth,
		}, remoteName, remoteKey)
		if err != nil {
			return nil, fmt.Errorf("build %s %s: %w", typ, sk, err)
		}
		if r.roomID == "" {
			r.roomID = p.RoomID()
		}
		prev = []id.EventID{p.EventID()}
		r.last = p.EventID()
		state = append(state, p.JSON())
		if inChain {
			chain = append(chain, p.JSON())
		}
		return p, nil
	}
	creator := id.UserID("@creator:" + remoteName)
	createContent := fmt.Sprintf(`{"room_version":%q}`, version)
	if !version.RoomIDIsCreateEventID() {
		createContent = fmt.Sprintf(`{"room_version":%q,"creator":%q}`, version, creator)
		r.roomID = id.RoomID("!big10k:" + remoteName)
	}
	c, err := add(creator, "m.room.create", "", createContent, nil, true)
	if err != nil {
		return nil, err
	}
	r.create = c.EventID()
	cm, err := add(creator, "m.room.member", string(creator), `{"membership":"join","displayname":"Creator"}`, nil, true)
	if err != nil {
		return nil, err
	}
	pl, err := add(creator, "m.room.power_levels", "", `{"ban":50,"events":{"m.room.history_visibility":100,"m.room.name":50,"m.room.power_levels":100},"events_default":0,"invite":0,"kick":50,"redact":50,"state_default":50,"users":{},"users_default":0}`,
		[]id.EventID{cm.EventID()}, true)
	if err != nil {
		return nil, err
	}
	r.pl = pl.EventID()
	jr, err := add(creator, "m.room.join_rules", "", `{"join_rule":"public"}`, []id.EventID{r.pl, cm.EventID()}, true)
	if err != nil {
		return nil, err
	}
	r.jr = jr.EventID()
	if _, err := add(creator, "m.room.history_visibility", "", `{"history_visibility":"shared"}`, []id.EventID{r.pl, cm.EventID()}, false); err != nil {
		return nil, err
	}
	for i := 1; i < members; i++ {
		u := fmt.Sprintf("@user%05d:%s", i, remoteName)
		content := fmt.Sprintf(`{"membership":"join","displayname":"User number %d"}`, i)
		if _, err := add(id.UserID(u), "m.room.member", u, content, []id.EventID{r.pl, r.jr}, false); err != nil {
			return nil, err
		}
	}
	r.state = len(state)
	body, err := json.Marshal(federation.SendJoinResponse{Origin: remoteName, State: state, AuthChain: chain, ServersInRoom: []string{remoteName}})
	if err != nil {
		return nil, err
	}
	r.sendJoin = body
	return r, nil
}

// RoundTrip answers make_join and send_join of the room as the remote
// server would (federation.Config.Transport); anything else is 404.
func (r *bigRoom) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	answer := func(status int, body []byte) (*http.Response, error) {
		return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req}, nil
	}
	parts := strings.Split(req.URL.Path, "/") // "", _matrix, federation, v1, make_join, room, user
	switch {
	case req.Host != remoteName || len(parts) != 7:
	case req.Method == http.MethodGet && parts[3] == "v1" && parts[4] == "make_join" && parts[5] == string(r.roomID):
		user := parts[6]
		auth := []id.EventID{r.pl, r.jr}
		if !r.version.RoomIDIsCreateEventID() {
			auth = append([]id.EventID{r.create}, auth...)
		}
		tmpl, _ := json.Marshal(map[string]any{
			"type": "m.room.member", "room_id": r.roomID, "sender": user, "state_key": user,
			"content": map[string]any{"membership": "join"}, "depth": r.depth + 1,
			"prev_events": []id.EventID{r.last}, "auth_events": auth,
			"origin_server_ts": time.Now().UnixMilli(), "origin": remoteName,
		})
		body, _ := json.Marshal(federation.MakeResponse{RoomVersion: r.version, Event: tmpl})
		return answer(http.StatusOK, body)
	case req.Method == http.MethodPut && parts[3] == "v2" && parts[4] == "send_join" && parts[5] == string(r.roomID):
		return answer(http.StatusOK, r.sendJoin)
	}
	return answer(http.StatusNotFound, []byte(`{"errcode":"M_NOT_FOUND","error":"not served by the fake"}`))
}

// heapSampler records the peak of the heap's live and unswept objects
// (HeapAlloc) while it runs, from runtime/metrics, which does not stop
// the world.
type heapSampler struct {
	stop chan struct{}
	done chan struct{}
	peak uint64
}

const heapObjects = "/memory/classes/heap/objects:bytes"

func readMetric(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{}), peak: readMetric(heapObjects)}
	go func() {
		defer close(h.done)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				h.peak = max(h.peak, readMetric(heapObjects))
				return
			case <-t.C:
				h.peak = max(h.peak, readMetric(heapObjects))
			}
		}
	}()
	return h
}

// Stop ends sampling and returns the peak.
func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	<-h.done
	return h.peak
}

// BenchmarkJoinRemoteRoom10k measures a local user's join of a remote
// room of 10,000 joined members (SetMembership with Via): make_join and
// send_join through the federation client over a fake transport (the
// answer, 6.4 MB of JSON, is built once per process), verification of
// 10,004 events, their auth checks, and their persistence with the join.
// One op is one join into a fresh database (its opening not timed).
// cold: the join is the database's first write; warm: a local room was
// created before, as on a server that has done anything, so that the
// statements that persist events are prepared (SQLite prepares those met
// in a transaction only before the next one).
// peak-heap-MB is the highest heap of live and not yet swept objects
// during the join, above what it was before (after a GC); alloc-MB is
// what the join allocated in all.
func BenchmarkJoinRemoteRoom10k(b *testing.B) {
	r := mustBigRoom(b)
	for _, e := range storetest.Engines(b) {
		for _, warm := range []bool{false, true} {
			name := e.Name + "/cold"
			if warm {
				name = e.Name + "/warm"
			}
			b.Run(name, func(b *testing.B) { benchJoin(b, e, r, warm) })
		}
	}
}

func benchJoin(b *testing.B, e storetest.Engine, r *bigRoom, warm bool) {
	ctx := context.Background()
	var peak, alloc uint64
	b.StopTimer()
	for range b.N {
		db := storetest.Open(b, e.Options(b))
		fed := federation.NewClient(federation.Config{ServerName: server, Key: mustKey(b), Transport: r}, slog.New(slog.DiscardHandler))
		s := newFedService(b, db, fed)
		bob := mustAccount(b, db, "bob")
		if warm {
			// A server that has done anything: the statements that
			// persist events are prepared (SQLite prepares a statement
			// met inside a transaction only before the next one).
			if _, err := s.Create(ctx, bob, room.CreateRequest{Preset: room.PresetPublic}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		base := readMetric(heapObjects)
		allocBase := readMetric("/gc/heap/allocs:bytes")
		h := startHeapSampler()
		b.StartTimer()
		_, err := s.SetMembership(ctx, room.MemberChange{RoomID: r.roomID, Sender: bob, Target: bob, Membership: room.Join, Via: []string{remoteName}})
		b.StopTimer()
		p := h.Stop()
		alloc += readMetric("/gc/heap/allocs:bytes") - allocBase
		if p > base {
			peak = max(peak, p-base)
		}
		if err != nil {
			b.Fatalf("join: %v", err)
		}
		checkBigJoin(b, s, db, r, bob)
		db.Close()
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(alloc)/float64(b.N)/(1<<20), "alloc-MB/op")
}

func mustKey(tb testing.TB) *keys.SigningKey {
	tb.Helper()
	k, err := keys.Generate("")
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// checkBigJoin checks that user is joined and the room's current state
// holds every member.
func checkBigJoin(tb testing.TB, s *room.Service, db *store.DB, r *bigRoom, user id.UserID) {
	tb.Helper()
	ctx := context.Background()
	if m, err := s.Membership(ctx, r.roomID, user); err != nil || m != room.Join {
		tb.Fatalf("membership of %s = %q, %v; want join", user, m, err)
	}
	ms, err := db.RoomMemberships(ctx, r.roomID, room.Join)
	if err != nil {
		tb.Fatal(err)
	}
	members := r.state - 4 + 1 // the remote's members, and user
	if len(ms) != members {
		tb.Fatalf("%d joined members, want %d", len(ms), members)
	}
	cur, err := db.CurrentState(ctx, r.roomID)
	if err != nil {
		tb.Fatal(err)
	}
	if len(cur) != r.state+1 {
		tb.Fatalf("current state has %d entries, want %d", len(cur), r.state+1)
	}
}

package e2ee_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/e2ee"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// Users of other servers: a fake Remote stands for their servers, and a
// room of the local server holds the memberships (remote users join it
// through a room service without federation, which accepts their
// membership events as it would a local user's).

const (
	localServer = "hs.test"
	alice       = id.UserID("@alice:hs.test")
	bob         = id.UserID("@bob:remote.test")  // shares the room
	dan         = id.UserID("@dan:other.test")   // shares the room
	carol       = id.UserID("@carol:far.test")   // shares no room
	erin        = id.UserID("@erin:down.test")   // shares no room; server down
	frank       = id.UserID("@frank:slow.test")  // shares no room; server hangs
	gina        = id.UserID("@gina:broken.test") // shares no room; server answers 500
)

// fakeRemote is an e2ee.Remote whose answers are functions.
type fakeRemote struct {
	mu      sync.Mutex
	calls   []string
	devices func(dest string, user id.UserID) (*federation.UserDevicesResponse, error)
	query   func(ctx context.Context, dest string, req federation.UserKeysQueryRequest) (*federation.UserKeysQueryResponse, error)
	claim   func(ctx context.Context, dest string, req federation.UserKeysClaimRequest) (*federation.UserKeysClaimResponse, error)
}

var _ e2ee.Remote = (*fakeRemote)(nil)

func (f *fakeRemote) record(format string, a ...any) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
	f.mu.Unlock()
}

// count returns how many calls started with prefix.
func (f *fakeRemote) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func (f *fakeRemote) UserDevices(ctx context.Context, dest string, user id.UserID) (*federation.UserDevicesResponse, error) {
	f.record("devices %s", user)
	if f.devices == nil {
		return nil, errors.New("no devices answer")
	}
	return f.devices(dest, user)
}

func (f *fakeRemote) UserKeysQuery(ctx context.Context, dest string, req federation.UserKeysQueryRequest) (*federation.UserKeysQueryResponse, error) {
	f.record("query %s", dest)
	if f.query == nil {
		return nil, errors.New("no query answer")
	}
	return f.query(ctx, dest, req)
}

func (f *fakeRemote) UserKeysClaim(ctx context.Context, dest string, req federation.UserKeysClaimRequest) (*federation.UserKeysClaimResponse, error) {
	f.record("claim %s", dest)
	if f.claim == nil {
		return nil, errors.New("no claim answer")
	}
	return f.claim(ctx, dest, req)
}

// unreachable is what federation.Client returns for a server that cannot
// be reached.
var unreachable = fmt.Errorf("dial: connection refused: %w", federation.ErrUnreachable)

type world struct {
	t      *testing.T
	db     *store.DB
	n      *notify.Notifier
	rooms  *room.Service
	remote *fakeRemote
	svc    *e2ee.Service
	roomID id.RoomID
}

// newWorld makes a local server with alice in a public room that bob and
// dan joined.
func newWorld(t *testing.T, db *store.DB) *world {
	t.Helper()
	ctx := context.Background()
	k, err := keys.Generate("")
	if err != nil {
		t.Fatal(err)
	}
	pos, err := db.StreamPos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, db: db, n: notify.New(notify.Position{Stream: pos}), remote: &fakeRemote{}}
	w.rooms = room.New(room.Config{ServerName: localServer, Key: k}, db, w.n, slog.New(slog.DiscardHandler))
	if err := db.CreateAccount(ctx, store.Account{Localpart: "alice"}, "alice"); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	if w.roomID, err = w.rooms.Create(ctx, alice, room.CreateRequest{Preset: "public_chat"}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	w.member(bob, room.Join)
	w.member(dan, room.Join)
	w.svc = w.newService()
	return w
}

func (w *world) newService() *e2ee.Service {
	svc := e2ee.New(e2ee.Config{ServerName: localServer, Remote: w.remote}, w.db, w.n, slog.New(slog.DiscardHandler))
	e2ee.SetRemoteBackoff(svc, 20*time.Millisecond, 100*time.Millisecond)
	return svc
}

func (w *world) member(u id.UserID, membership string) {
	w.t.Helper()
	if _, err := w.rooms.SetMembership(context.Background(), room.MemberChange{RoomID: w.roomID, Sender: u, Target: u, Membership: membership}); err != nil {
		w.t.Fatalf("%s %s: %v", u, membership, err)
	}
}

// run runs svc's worker until the test ends.
func (w *world) run(svc *e2ee.Service) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		svc.Run(ctx)
		close(done)
	}()
	stop = func() {
		cancel()
		<-done
	}
	w.t.Cleanup(stop)
	return stop
}

func (w *world) pos() int64 {
	w.t.Helper()
	p, err := w.db.StreamPos(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

func (w *world) edu(origin string, u federation.DeviceListUpdate) {
	w.t.Helper()
	if err := w.svc.ReceiveDeviceListUpdate(context.Background(), origin, u); err != nil {
		w.t.Fatalf("ReceiveDeviceListUpdate(%s, %s %s %d): %v", origin, u.UserID, u.DeviceID, u.StreamID, err)
	}
}

func (w *world) state(u id.UserID) (store.RemoteDeviceList, store.RemoteListState, bool) {
	w.t.Helper()
	lists, states, err := w.db.RemoteDeviceLists(context.Background(), []id.UserID{u})
	if err != nil {
		w.t.Fatalf("RemoteDeviceLists: %v", err)
	}
	st, ok := states[u]
	return lists[u], st, ok
}

func (w *world) query(want map[id.UserID][]id.DeviceID, timeout time.Duration) *e2ee.QueryResponse {
	w.t.Helper()
	out, err := w.svc.Query(context.Background(), alice, want, timeout)
	if err != nil {
		w.t.Fatalf("Query: %v", err)
	}
	return out
}

// devicesOf returns the device IDs of u in a query answer, sorted.
func devicesOf(out *e2ee.QueryResponse, u id.UserID) []string {
	var ds []string
	for d := range out.DeviceKeys[u] {
		ds = append(ds, string(d))
	}
	slices.Sort(ds)
	return ds
}

func deviceKeys(u id.UserID, d id.DeviceID) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"user_id":%q,"device_id":%q,"algorithms":["m.olm.v1.curve25519-aes-sha2","m.megolm.v1.aes-sha2"],`+
		`"keys":{"curve25519:%[2]s":"c-%[2]s","ed25519:%[2]s":"e-%[2]s"},"signatures":{%[1]q:{"ed25519:%[2]s":"sig"}}}`, u, d))
}

func crossSigningKey(u id.UserID, usage, key string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"user_id":%q,"usage":[%q],"keys":{"ed25519:%s":%[3]q}}`, u, usage, key))
}

// devicesAnswer is a /user/devices answer of user with devices at
// streamID.
func devicesAnswer(user id.UserID, streamID int64, devices ...id.DeviceID) *federation.UserDevicesResponse {
	r := &federation.UserDevicesResponse{UserID: user, StreamID: streamID, Devices: []federation.UserDevice{}}
	for _, d := range devices {
		r.Devices = append(r.Devices, federation.UserDevice{DeviceID: d, Keys: deviceKeys(user, d)})
	}
	return r
}

func TestRemoteDeviceListUpdates(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		w := newWorld(t, db)
		var mu sync.Mutex
		bobDevices := devicesAnswer(bob, 5, "D1")
		w.remote.devices = func(dest string, user id.UserID) (*federation.UserDevicesResponse, error) {
			mu.Lock()
			defer mu.Unlock()
			if user != bob || dest != "remote.test" {
				return nil, fmt.Errorf("unexpected devices of %s from %s", user, dest)
			}
			return bobDevices, nil
		}
		all := map[id.UserID][]id.DeviceID{bob: nil}
		wantDevices := func(step string, want ...string) {
			t.Helper()
			out := w.query(all, time.Second)
			if got := devicesOf(out, bob); !slices.Equal(got, want) {
				t.Errorf("%s: Query devices of bob = %v, want %v (failures %s)", step, got, want, out.Failures)
			}
		}

		// The first update of a user whose list is unknown: a resync.
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D1", StreamID: 5, Keys: deviceKeys(bob, "D1")})
		if _, st, ok := w.state(bob); !ok || !st.Stale || st.HasList {
			t.Fatalf("after a first update: state %+v (found %v), want stale without a list", st, ok)
		}
		wantDevices("first query", "D1")
		if n := w.remote.count("devices"); n != 1 {
			t.Errorf("first query: %d /user/devices calls, want 1", n)
		}
		if _, st, _ := w.state(bob); !st.Tracked() || st.StreamID != 5 {
			t.Errorf("after the resync: state %+v, want tracked at stream_id 5", st)
		}
		wantDevices("cached query", "D1")
		if n := w.remote.count("devices") + w.remote.count("query"); n != 1 {
			t.Errorf("a query of a tracked list asked the remote (%d calls in all)", n)
		}

		// In order: applied without asking the remote, and reported to
		// alice's /sync.
		before := w.pos()
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D2", DeviceDisplayName: "Phone", StreamID: 6, PrevID: []int64{5}, Keys: deviceKeys(bob, "D2")})
		if changed, _, err := w.svc.DeviceListChanges(context.Background(), alice, before, w.pos()); err != nil || !slices.Contains(changed, bob) {
			t.Errorf("DeviceListChanges of alice after an update of bob = %v, %v; want bob in it", changed, err)
		}
		wantDevices("after D2 was added", "D1", "D2")
		out := w.query(map[id.UserID][]id.DeviceID{bob: {"D2"}}, time.Second)
		var d2 struct {
			Unsigned struct {
				Name string `json:"device_display_name"`
			} `json:"unsigned"`
		}
		if err := json.Unmarshal(out.DeviceKeys[bob]["D2"], &d2); err != nil || d2.Unsigned.Name != "Phone" {
			t.Errorf("D2's keys = %s, want unsigned.device_display_name Phone", out.DeviceKeys[bob]["D2"])
		}
		if got := devicesOf(out, bob); !slices.Equal(got, []string{"D2"}) {
			t.Errorf("Query of bob's D2 gave devices %v", got)
		}
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D1", StreamID: 7, PrevID: []int64{6}, Deleted: true})
		wantDevices("after D1 was deleted", "D2")
		// A second copy of an applied update is dropped.
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D1", StreamID: 6, PrevID: []int64{5}, Keys: deviceKeys(bob, "D1")})
		wantDevices("after a replayed update", "D2")
		// A server with several writers: two updates follow the same one.
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D3", StreamID: 8, PrevID: []int64{7}, Keys: deviceKeys(bob, "D3")})
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D4", StreamID: 9, PrevID: []int64{7}, Keys: deviceKeys(bob, "D4")})
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D4", StreamID: 10, PrevID: []int64{8, 9}, Deleted: true})
		wantDevices("after concurrent updates", "D2", "D3")
		if n := w.remote.count("devices"); n != 1 {
			t.Errorf("updates in order: %d /user/devices calls, want 1", n)
		}
		if _, st, _ := w.state(bob); !st.Tracked() || st.StreamID != 10 {
			t.Errorf("after updates in order: state %+v, want tracked at stream_id 10", st)
		}

		// Keys of another device are dropped: the device has none.
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D5", StreamID: 11, PrevID: []int64{10}, Keys: deviceKeys(bob, "D6")})
		wantDevices("after keys of another device", "D2", "D3")
		if l, _, _ := w.state(bob); len(l.Devices) != 3 {
			t.Errorf("after an update of D5: %d devices cached, want 3 (D2, D3, D5 without keys)", len(l.Devices))
		}

		// Updates of a user of another server, or of a user sharing no
		// room, are ignored.
		w.edu("other.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D7", StreamID: 12, PrevID: []int64{11}, Keys: deviceKeys(bob, "D7")})
		w.edu("far.test", federation.DeviceListUpdate{UserID: carol, DeviceID: "C1", StreamID: 1, Keys: deviceKeys(carol, "C1")})
		if _, _, ok := w.state(carol); ok {
			t.Errorf("an update of carol, who shares no room, was kept")
		}
		w.edu("hs.test", federation.DeviceListUpdate{UserID: alice, DeviceID: "A1", StreamID: 1})
		if _, _, ok := w.state(alice); ok {
			t.Errorf("an update of a local user from a remote was kept")
		}
		wantDevices("after updates of another origin", "D2", "D3")

		// A gap: the list is stale and the next query fetches it again.
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D8", StreamID: 20, PrevID: []int64{19}, Keys: deviceKeys(bob, "D8")})
		if _, st, _ := w.state(bob); !st.Stale {
			t.Errorf("after a gap: state %+v, want stale", st)
		}
		mu.Lock()
		bobDevices = devicesAnswer(bob, 20, "D2", "D8")
		mu.Unlock()
		wantDevices("after the gap", "D2", "D8")
		if n := w.remote.count("devices"); n != 2 {
			t.Errorf("after a gap: %d /user/devices calls, want 2", n)
		}
		if _, st, _ := w.state(bob); !st.Tracked() || st.StreamID != 20 {
			t.Errorf("after the resync: state %+v, want tracked at stream_id 20", st)
		}
		// Updates up to the resync's stream_id are in the list already.
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D9", StreamID: 19, PrevID: []int64{18}, Keys: deviceKeys(bob, "D9")})
		if _, st, _ := w.state(bob); !st.Tracked() {
			t.Errorf("an update older than the resync: state %+v, want still tracked", st)
		}
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D9", StreamID: 21, PrevID: []int64{20}, Keys: deviceKeys(bob, "D9")})
		wantDevices("after an update following the resync", "D2", "D8", "D9")
	})
}

func TestRemoteSigningKeyUpdates(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		w := newWorld(t, db)
		ctx := context.Background()
		w.remote.devices = func(dest string, user id.UserID) (*federation.UserDevicesResponse, error) {
			r := devicesAnswer(user, 3, "D1")
			r.MasterKey = crossSigningKey(user, "master", "m1")
			r.SelfSigningKey = crossSigningKey(user, "self_signing", "s1")
			return r, nil
		}
		out := w.query(map[id.UserID][]id.DeviceID{bob: nil}, time.Second)
		if !strings.Contains(string(out.MasterKeys[bob]), "m1") || !strings.Contains(string(out.SelfSigningKeys[bob]), "s1") {
			t.Fatalf("first query: master %s, self-signing %s; want m1 and s1", out.MasterKeys[bob], out.SelfSigningKeys[bob])
		}
		upd := func(origin string, u federation.SigningKeyUpdate) {
			t.Helper()
			if err := w.svc.ReceiveSigningKeyUpdate(ctx, origin, u); err != nil {
				t.Fatalf("ReceiveSigningKeyUpdate: %v", err)
			}
		}
		// A new master key replaces the old; a self-signing key with the
		// wrong usage is dropped, the old one stays.
		upd("remote.test", federation.SigningKeyUpdate{UserID: bob, MasterKey: crossSigningKey(bob, "master", "m2"), SelfSigningKey: crossSigningKey(bob, "user_signing", "u2")})
		out = w.query(map[id.UserID][]id.DeviceID{bob: nil}, time.Second)
		if !strings.Contains(string(out.MasterKeys[bob]), "m2") || !strings.Contains(string(out.SelfSigningKeys[bob]), "s1") {
			t.Errorf("after an update: master %s, self-signing %s; want m2 and s1", out.MasterKeys[bob], out.SelfSigningKeys[bob])
		}
		// Only the self-signing key, of another user: dropped.
		upd("remote.test", federation.SigningKeyUpdate{UserID: bob, SelfSigningKey: crossSigningKey(dan, "self_signing", "s3")})
		// From another origin: ignored.
		upd("other.test", federation.SigningKeyUpdate{UserID: bob, MasterKey: crossSigningKey(bob, "master", "m4")})
		upd("remote.test", federation.SigningKeyUpdate{UserID: bob, SelfSigningKey: crossSigningKey(bob, "self_signing", "s5")})
		out = w.query(map[id.UserID][]id.DeviceID{bob: nil}, time.Second)
		if !strings.Contains(string(out.MasterKeys[bob]), "m2") || !strings.Contains(string(out.SelfSigningKeys[bob]), "s5") {
			t.Errorf("after more updates: master %s, self-signing %s; want m2 and s5", out.MasterKeys[bob], out.SelfSigningKeys[bob])
		}
		if n := w.remote.count("devices"); n != 1 {
			t.Errorf("%d /user/devices calls, want 1", n)
		}
		// A user sharing no room: ignored.
		upd("far.test", federation.SigningKeyUpdate{UserID: carol, MasterKey: crossSigningKey(carol, "master", "c1")})
		if _, _, ok := w.state(carol); ok {
			t.Errorf("a signing key update of carol, who shares no room, was kept")
		}
		// A user sharing a room, whose list is unknown: kept, the list
		// is to be fetched.
		upd("other.test", federation.SigningKeyUpdate{UserID: dan, MasterKey: crossSigningKey(dan, "master", "d1")})
		if l, st, ok := w.state(dan); !ok || !st.Stale || !strings.Contains(string(l.MasterKey), "d1") {
			t.Errorf("a signing key update of dan: list %+v state %+v (found %v); want stale with master key d1", l, st, ok)
		}
	})
}

func TestRemoteQuery(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		w := newWorld(t, db)
		w.remote.devices = func(dest string, user id.UserID) (*federation.UserDevicesResponse, error) {
			if user == dan {
				// A server that does not serve /user/devices.
				return nil, &federation.RemoteError{Server: dest, Status: 404, ErrCode: "M_UNRECOGNIZED", Message: "no"}
			}
			return devicesAnswer(user, 1, "D1"), nil
		}
		w.remote.query = func(ctx context.Context, dest string, req federation.UserKeysQueryRequest) (*federation.UserKeysQueryResponse, error) {
			switch dest {
			case "down.test":
				return nil, unreachable
			case "broken.test":
				return nil, &federation.RemoteError{Server: dest, Status: 500, ErrCode: "M_UNKNOWN", Message: "secret internal detail"}
			case "slow.test":
				<-ctx.Done()
				return nil, fmt.Errorf("slow: %w", ctx.Err())
			}
			resp := &federation.UserKeysQueryResponse{DeviceKeys: map[id.UserID]map[id.DeviceID]json.RawMessage{},
				MasterKeys: map[id.UserID]json.RawMessage{}, SelfSigningKeys: map[id.UserID]json.RawMessage{}}
			for u, ds := range req.DeviceKeys {
				if ds == nil {
					return nil, fmt.Errorf("device list of %s is null", u)
				}
				resp.DeviceKeys[u] = map[id.DeviceID]json.RawMessage{
					"K1":   deviceKeys(u, "K1"),
					"K2":   deviceKeys(u, "K3"),      // keys of another device
					"K4":   deviceKeys("@x:x", "K4"), // of another user
					"NULL": json.RawMessage("null"),
				}
				resp.MasterKeys[u] = crossSigningKey(u, "master", "m")
				resp.SelfSigningKeys[u] = crossSigningKey(u, "master", "s") // wrong usage
			}
			// Keys of a user not asked for, and of another server.
			resp.DeviceKeys["@zed:far.test"] = map[id.DeviceID]json.RawMessage{"Z": deviceKeys("@zed:far.test", "Z")}
			resp.DeviceKeys[bob] = map[id.DeviceID]json.RawMessage{"B": deviceKeys(bob, "B")}
			resp.MasterKeys[bob] = crossSigningKey(bob, "master", "evil")
			return resp, nil
		}
		e2ee.SetRemoteBackoff(w.svc, time.Second, time.Second)
		start := time.Now()
		out := w.query(map[id.UserID][]id.DeviceID{carol: nil, dan: {}, erin: nil, frank: nil, gina: nil}, 500*time.Millisecond)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Query took %v with a timeout of 500ms", d)
		}
		for _, u := range []id.UserID{carol, dan} {
			if got := devicesOf(out, u); !slices.Equal(got, []string{"K1"}) {
				t.Errorf("devices of %s = %v, want [K1] (only keys of the device asked for)", u, got)
			}
			if out.MasterKeys[u] == nil || out.SelfSigningKeys[u] != nil {
				t.Errorf("cross-signing keys of %s: master %s, self-signing %s; want master only", u, out.MasterKeys[u], out.SelfSigningKeys[u])
			}
		}
		if out.DeviceKeys["@zed:far.test"] != nil || out.DeviceKeys[bob] != nil || out.MasterKeys[bob] != nil {
			t.Errorf("keys of users not asked for passed: %v", out.DeviceKeys)
		}
		if _, _, ok := w.state(carol); ok {
			t.Errorf("carol's keys were cached; she shares no room")
		}
		for server, want := range map[string]string{"down.test": `"status":503`, "broken.test": `"status":500`, "slow.test": `"status":503`} {
			f := string(out.Failures[server])
			if !strings.Contains(f, want) || strings.Contains(f, "secret") || !strings.Contains(f, `"message"`) {
				t.Errorf("failures[%s] = %s, want %s and a message of ours", server, f, want)
			}
		}
		if len(out.Failures) != 3 {
			t.Errorf("failures = %s, want down.test, broken.test and slow.test", out.Failures)
		}
		// A server that could not be reached is left alone for a while.
		n := w.remote.count("query down.test")
		out = w.query(map[id.UserID][]id.DeviceID{erin: nil}, time.Second)
		if w.remote.count("query down.test") != n || !strings.Contains(string(out.Failures["down.test"]), "retry") {
			t.Errorf("a query right after down.test failed: asked it again (%d calls before, %d now), failure %s", n, w.remote.count("query down.test"), out.Failures["down.test"])
		}
		time.Sleep(time.Until(start.Add(1300 * time.Millisecond))) // the backoff with its jitter
		w.query(map[id.UserID][]id.DeviceID{erin: nil}, time.Second)
		if w.remote.count("query down.test") != n+1 {
			t.Errorf("after the backoff, down.test was not asked again")
		}
	})
}

func TestRemoteClaim(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		w := newWorld(t, db)
		w.remote.claim = func(ctx context.Context, dest string, req federation.UserKeysClaimRequest) (*federation.UserKeysClaimResponse, error) {
			if dest == "down.test" {
				return nil, unreachable
			}
			if len(req.OneTimeKeys) != 1 || req.OneTimeKeys[bob]["D1"] != "signed_curve25519" {
				return nil, fmt.Errorf("unexpected claim %v", req.OneTimeKeys)
			}
			k := json.RawMessage(`{"key":"k","signatures":{}}`)
			return &federation.UserKeysClaimResponse{OneTimeKeys: map[id.UserID]map[id.DeviceID]map[string]json.RawMessage{
				bob: {
					"D1": {"signed_curve25519:AAA": k, "curve25519:BBB": k}, // the second is of another algorithm
					"D9": {"signed_curve25519:CCC": k},                      // not asked for
				},
				dan: {"D1": {"signed_curve25519:DDD": k}}, // another server's user
			}}, nil
		}
		out, err := w.svc.Claim(context.Background(), map[id.UserID]map[id.DeviceID]string{
			bob:  {"D1": "signed_curve25519"},
			erin: {"E1": "signed_curve25519"},
		}, time.Second)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		got, _ := json.Marshal(out.OneTimeKeys)
		if want := `{"@bob:remote.test":{"D1":{"signed_curve25519:AAA":{"key":"k","signatures":{}}}}}`; string(got) != want {
			t.Errorf("one-time keys = %s, want %s", got, want)
		}
		if f := string(out.Failures["down.test"]); !strings.Contains(f, `"status":503`) || len(out.Failures) != 1 {
			t.Errorf("failures = %s, want down.test with status 503", out.Failures)
		}
	})
}

func TestRemoteResyncWorker(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		w := newWorld(t, db)
		var mu sync.Mutex
		bobFailures := 2
		w.remote.devices = func(dest string, user id.UserID) (*federation.UserDevicesResponse, error) {
			mu.Lock()
			defer mu.Unlock()
			if user == bob && bobFailures > 0 {
				bobFailures--
				return nil, unreachable
			}
			return devicesAnswer(user, 4, "D1", "D2"), nil
		}
		tracked := func(u id.UserID) error {
			if _, st, ok := w.state(u); !ok || !st.Tracked() {
				return fmt.Errorf("state of %s: %+v (found %v), want tracked", u, st, ok)
			}
			return nil
		}
		eventually := func(what string, check func() error) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for {
				err := check()
				if err == nil {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %v", what, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}

		stop := w.run(w.svc)
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D1", StreamID: 1})
		w.edu("other.test", federation.DeviceListUpdate{UserID: dan, DeviceID: "D1", StreamID: 1})
		// dan's server answers while bob's is down, then bob's too.
		eventually("dan resynced", func() error { return tracked(dan) })
		eventually("bob resynced after his server came back", func() error { return tracked(bob) })
		if n := w.remote.count("devices " + string(bob)); n != 3 {
			t.Errorf("/user/devices of bob called %d times, want 3 (two failures, then the answer)", n)
		}
		if l, _, _ := w.state(bob); len(l.Devices) != 2 || l.StreamID != 4 {
			t.Errorf("bob's list = %+v, want D1 and D2 at stream_id 4", l)
		}
		stop()

		// A gap while no worker runs: the next server's worker resyncs it.
		w.edu("other.test", federation.DeviceListUpdate{UserID: dan, DeviceID: "D3", StreamID: 9, PrevID: []int64{8}})
		if _, st, _ := w.state(dan); !st.Stale {
			t.Fatalf("after a gap: dan's state %+v, want stale", st)
		}
		w.svc = w.newService()
		w.run(w.svc)
		eventually("dan resynced after a restart", func() error { return tracked(dan) })

		// A user who left every shared room is forgotten, not resynced.
		w.member(dan, room.Leave)
		n := w.remote.count("devices " + string(dan))
		if err := db.MarkRemoteDeviceListsStale(context.Background(), []id.UserID{dan}); err != nil {
			t.Fatal(err)
		}
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D3", StreamID: 9, PrevID: []int64{8}}) // wakes the worker
		eventually("dan forgotten", func() error {
			if _, st, ok := w.state(dan); ok {
				return fmt.Errorf("dan's list is still there: %+v", st)
			}
			return nil
		})
		if w.remote.count("devices "+string(dan)) != n {
			t.Errorf("dan, who left, was resynced")
		}
	})
}

// A break in sharing a room: bob's server stops sending his updates, so a
// list fetched before the break is not trusted after it.
func TestRemoteSharingBreak(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		w := newWorld(t, db)
		w.remote.devices = func(dest string, user id.UserID) (*federation.UserDevicesResponse, error) {
			return devicesAnswer(user, 3, "D1"), nil
		}
		all := map[id.UserID][]id.DeviceID{bob: nil}
		w.query(all, time.Second)
		w.query(all, time.Second)
		if n := w.remote.count("devices"); n != 1 {
			t.Fatalf("%d /user/devices calls, want 1 (the second query from the cache)", n)
		}
		// bob leaves and comes back: the next query fetches his list.
		w.member(bob, room.Leave)
		w.member(bob, room.Join)
		w.query(all, time.Second)
		if n := w.remote.count("devices"); n != 2 {
			t.Errorf("after a break: %d /user/devices calls, want 2", n)
		}
		w.query(all, time.Second)
		if n := w.remote.count("devices"); n != 2 {
			t.Errorf("after the resync: %d /user/devices calls, want still 2", n)
		}
		// alice leaves and comes back: an update that follows the last
		// one applied still means a resync.
		w.member(alice, room.Leave)
		w.member(alice, room.Join)
		w.edu("remote.test", federation.DeviceListUpdate{UserID: bob, DeviceID: "D2", StreamID: 4, PrevID: []int64{3}, Keys: deviceKeys(bob, "D2")})
		if _, st, _ := w.state(bob); !st.Stale {
			t.Errorf("an update after a break: state %+v, want stale", st)
		}
		// While no local user shares a room, bob's list is forgotten at
		// the next query, which asks his server live.
		w.member(alice, room.Leave)
		w.remote.query = func(ctx context.Context, dest string, req federation.UserKeysQueryRequest) (*federation.UserKeysQueryResponse, error) {
			return &federation.UserKeysQueryResponse{DeviceKeys: map[id.UserID]map[id.DeviceID]json.RawMessage{bob: {"D1": deviceKeys(bob, "D1")}}}, nil
		}
		if out := w.query(all, time.Second); !slices.Equal(devicesOf(out, bob), []string{"D1"}) {
			t.Errorf("query while sharing no room: devices %v, want D1", devicesOf(out, bob))
		}
		if _, _, ok := w.state(bob); ok {
			t.Errorf("bob's list is kept while he shares no room")
		}
	})
}

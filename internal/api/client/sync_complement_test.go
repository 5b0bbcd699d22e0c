package client_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

// Sync cases Complement found (its tests named in each), over HTTP against
// a Polder (hs1) that a scripted remote server ("remote.polder.test")
// federates with: events of a fork that arrive late, and a gap in the
// room's graph that the server does not fill.

const (
	scHS     = "hs1.polder.test"
	scRemote = "remote.polder.test"
)

// scEnv is hs1 with alice, and the remote with @charlie joined to a public
// room of alice's.
type scEnv struct {
	hs     *hstest.Server
	alice  *hstest.Client
	remote *hstest.Remote
	room   *hstest.RemoteRoom
	roomID string
}

// eachSyncFed runs fn per database engine, with a fresh scEnv.
func eachSyncFed(t *testing.T, fn func(t *testing.T, e *scEnv)) {
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			f := hstest.NewFederation(t, hstest.Options{Engine: &eng}, scHS)
			e := &scEnv{hs: f.Server(scHS), remote: f.NewRemote(t, scRemote)}
			e.alice = e.hs.Register(t, "alice", "password-alice")
			e.roomID = createRoom(t, e.alice, map[string]any{"preset": "public_chat"})
			e.room = e.remote.Join(t, scHS, id.RoomID(e.roomID), e.charlie())
			fn(t, e)
		})
	}
}

func (e *scEnv) charlie() id.UserID { return e.remote.UserID("charlie") }

// build makes an event of charlie's, with prev events prev (nil: the
// remote's latest event).
func (e *scEnv) build(t *testing.T, typ string, stateKey *string, content map[string]any, prev ...id.EventID) *event.PDU {
	t.Helper()
	return e.room.Build(t, event.Proto{Type: typ, StateKey: stateKey, Sender: e.charlie(), Content: hstest.MustJSON(t, content), PrevEvents: prev})
}

// send sends PDUs to hs1 in one transaction and fails unless each was
// accepted.
func (e *scEnv) send(t *testing.T, pdus ...*event.PDU) {
	t.Helper()
	raws := make([]json.RawMessage, len(pdus))
	for i, p := range pdus {
		raws[i] = p.JSON()
	}
	resp := e.remote.Send(t, scHS, raws...)
	for eid, r := range resp.PDUs {
		if r.Error != "" {
			t.Fatalf("hs1 did not accept %s: %s", eid, r.Error)
		}
	}
}

func eventIDs(evs []syncEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.EventID
	}
	return out
}

// A sync timeline's prev_batch leads /messages to the events that arrived
// before the timeline even when a fork's event that arrived late sorts
// before them topologically (Complement TestNetworkPartitionOrdering):
// events 1-4 are alice's, 1' a fork of charlie's sent after them, 5-7
// merge the forks. An incremental sync with limit 4 has 1',5,6,7 (stream
// order); /messages backwards from its prev_batch has 4,3,2,1.
func TestSyncComplementPartitionOrdering(t *testing.T) {
	eachSyncFed(t, func(t *testing.T, e *scEnv) {
		since := doSync(t, e.alice, "").NextBatch
		onePrime := e.build(t, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "1'"}, e.room.Latest())
		var ids []string
		for _, body := range []string{"1", "2", "3", "4"} {
			ids = append(ids, sendText(t, e.alice, e.roomID, body))
		}
		e.send(t, onePrime)
		for _, body := range []string{"5", "6", "7"} {
			ids = append(ids, sendText(t, e.alice, e.roomID, body))
		}
		s := doSync(t, e.alice, syncSince(since)+"&"+syncFilter(map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 4}}}))
		jr := s.join(e.roomID)
		if jr == nil {
			t.Fatalf("incremental sync has no room %s", e.roomID)
		}
		want := []string{string(onePrime.EventID()), ids[4], ids[5], ids[6]}
		if got := eventIDs(jr.Timeline.Events); !slices.Equal(got, want) {
			t.Fatalf("timeline = %v, want 1',5,6,7 = %v", got, want)
		}
		if !jr.Timeline.Limited {
			t.Errorf("timeline not limited")
		}
		r := e.alice.Do(t, "GET", roomPath(e.roomID, "/messages?dir=b&limit=4&from="+url.QueryEscape(jr.Timeline.PrevBatch)), nil)
		page := hstest.Decode[struct {
			Chunk []syncEvent `json:"chunk"`
			End   string      `json:"end"`
		}](t, r)
		if r.Status != http.StatusOK {
			t.Fatalf("/messages from %s: %d %s", jr.Timeline.PrevBatch, r.Status, r.Body)
		}
		want = []string{ids[3], ids[2], ids[1], ids[0]}
		if got := eventIDs(page.Chunk); !slices.Equal(got, want) {
			t.Errorf("/messages from prev_batch %s = %v (%v), want 4,3,2,1 = %v", jr.Timeline.PrevBatch, got, syncBodies(page.Chunk), want)
		}
		// The page's end continues topologically, before event 1.
		r = e.alice.Do(t, "GET", roomPath(e.roomID, "/messages?dir=b&limit=50&from="+url.QueryEscape(page.End)), nil)
		rest := hstest.Decode[struct {
			Chunk []syncEvent `json:"chunk"`
		}](t, r)
		for _, ev := range rest.Chunk {
			if slices.Contains(ids, ev.EventID) || ev.EventID == string(onePrime.EventID()) {
				t.Errorf("/messages from %s repeats %s (%v)", page.End, ev.EventID, ev.Content["body"])
			}
		}
	})
}

// A state event of a fork that arrived late, behind a filtered-out event
// that merges the forks, is in the state section of an initial sync
// (Complement TestSyncOmitsStateChangeOnFilteredEvents, Synapse issue
// 16928): E1, then E3 and E4 of alice's, S2 of charlie's forked at E1 (a
// new displayname), E5 merging them, which the filter hides. The initial
// timeline, in topological order, is E4; the state has S2.
func TestSyncComplementFilteredStateChange(t *testing.T) {
	eachSyncFed(t, func(t *testing.T, e *scEnv) {
		e1 := sendText(t, e.alice, e.roomID, "E1")
		e.remote.Await(t, id.EventID(e1))
		key := string(e.charlie())
		s2 := e.build(t, "m.room.member", &key, map[string]any{"membership": "join", "displayname": "S2"}, id.EventID(e1))
		e3 := sendText(t, e.alice, e.roomID, "E3")
		e4 := sendText(t, e.alice, e.roomID, "E4")
		e.send(t, s2)
		send(t, e.alice, e.roomID, "please_filter_me", map[string]any{"body": "E5"})

		filter := syncFilter(map[string]any{"room": map[string]any{"timeline": map[string]any{"not_types": []string{"please_filter_me"}, "limit": 1}}})
		jr := doSync(t, e.alice, filter).join(e.roomID)
		if jr == nil {
			t.Fatalf("initial sync has no room %s", e.roomID)
		}
		if got := eventIDs(jr.Timeline.Events); !slices.Equal(got, []string{e4}) || !jr.Timeline.Limited {
			t.Errorf("timeline = %v %v (limited %v), want E4 %s, limited", got, syncBodies(jr.Timeline.Events), jr.Timeline.Limited, e4)
		}
		m := syncFind(jr.State, "m.room.member", key)
		if m == nil || m.EventID != string(s2.EventID()) {
			t.Errorf("state has charlie's member event %v, want S2 %s", m, s2.EventID())
		}
		// /messages from the topological prev_batch goes on before E4, in
		// topological order: S2 (as deep as E3, arrived after it), E3.
		r := e.alice.Do(t, "GET", roomPath(e.roomID, "/messages?dir=b&limit=2&from="+url.QueryEscape(jr.Timeline.PrevBatch)), nil)
		page := hstest.Decode[struct {
			Chunk []syncEvent `json:"chunk"`
		}](t, r)
		if got := eventIDs(page.Chunk); !slices.Equal(got, []string{string(s2.EventID()), e3}) {
			t.Errorf("/messages from prev_batch %s = %v, want S2, E3 = %s, %s", jr.Timeline.PrevBatch, got, s2.EventID(), e3)
		}
	})
}

// A gap in the room's graph that the server did not fill makes the
// timeline limited, starting after the gap (Complement
// TestSyncTimelineGap, Synapse issue 16463): charlie sends M1-M5 to no
// one, then End; hs1 fetches M4 and M5 with get_missing_events, the state
// before them with state_ids, and M3 only as an outlier. alice's
// incremental sync from before her own message has M4, M5, End, limited,
// and not her message.
func TestSyncComplementTimelineGap(t *testing.T) {
	eachSyncFed(t, func(t *testing.T, e *scEnv) {
		filter := syncFilter(map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 20}}})
		since := doSync(t, e.alice, filter).NextBatch
		e.remote.Await(t, id.EventID(sendText(t, e.alice, e.roomID, "Hi from alice")))

		var missing []*event.PDU
		for _, body := range []string{"M1", "M2", "M3", "M4", "M5"} {
			p := e.build(t, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": body})
			e.room.Add(p)
			missing = append(missing, p)
		}
		end := e.build(t, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "End"})
		e.room.Add(end)

		var state []id.EventID
		for _, k := range [][2]string{{"m.room.create", ""}, {"m.room.power_levels", ""}, {"m.room.join_rules", ""},
			{"m.room.history_visibility", ""}, {"m.room.guest_access", ""}, {"m.room.member", e.alice.UserID}, {"m.room.member", string(e.charlie())}} {
			if p := e.room.StateEvent(k[0], k[1]); p != nil {
				state = append(state, p.EventID())
			}
		}
		e.remote.Mux.HandleFunc("GET /_matrix/federation/v1/state_ids/{room}", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"pdu_ids": state, "auth_chain_ids": state})
		})
		e.remote.Mux.HandleFunc("POST /_matrix/federation/v1/get_missing_events/{room}", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"events": []json.RawMessage{missing[3].JSON(), missing[4].JSON()}})
		})
		e.send(t, end)

		jr := doSync(t, e.alice, syncSince(since)+"&"+filter).join(e.roomID)
		if jr == nil {
			t.Fatalf("incremental sync has no room %s", e.roomID)
		}
		if got := syncBodies(jr.Timeline.Events); !slices.Equal(got, []string{"M4", "M5", "End"}) || !jr.Timeline.Limited {
			t.Errorf("timeline = %v (limited %v), want M4, M5, End, limited", got, jr.Timeline.Limited)
		}
		// Without the gap (a sync from after it) nothing is limited.
		next := doSync(t, e.alice, syncSince(since)+"&"+filter).NextBatch
		sendText(t, e.alice, e.roomID, "after")
		jr = doSync(t, e.alice, syncSince(next)+"&"+filter).join(e.roomID)
		if jr == nil || !slices.Equal(syncBodies(jr.Timeline.Events), []string{"after"}) || jr.Timeline.Limited {
			t.Errorf("sync after the gap = %+v, want only \"after\", not limited", jr)
		}

		// M3, held as an outlier, then reaches hs1 live (its sender's
		// server was slow to send it): it becomes a timeline event that
		// alice can read and that her next sync has, late, without
		// becoming a forward extremity.
		m3 := missing[2].EventID()
		if r := e.alice.Do(t, "GET", roomPath(e.roomID, "/event/"+url.PathEscape(string(m3))), nil); r.Status != http.StatusNotFound {
			t.Errorf("GET outlier M3 before it arrived: %d %s, want 404", r.Status, r.Body)
		}
		next = doSync(t, e.alice, syncSince(next)+"&"+filter).NextBatch
		e.send(t, missing[2])
		if r := e.alice.Do(t, "GET", roomPath(e.roomID, "/event/"+url.PathEscape(string(m3))), nil); r.Status != http.StatusOK {
			t.Errorf("GET M3 after it arrived: %d %s", r.Status, r.Body)
		}
		jr = doSync(t, e.alice, syncSince(next)+"&"+filter).join(e.roomID)
		if jr == nil || !slices.Equal(syncBodies(jr.Timeline.Events), []string{"M3"}) {
			t.Errorf("sync after M3 arrived = %+v, want M3", jr)
		}
		last := sendText(t, e.alice, e.roomID, "after M3")
		if p := e.remote.Await(t, id.EventID(last)); slices.Contains(p.PrevEventIDs(), m3) {
			t.Errorf("alice's next message builds on M3 (%v): a late outlier became a forward extremity", p.PrevEventIDs())
		}
	})
}

// A transaction whose second event builds on an event hs1 must fetch
// (get_missing_events), which itself builds on the transaction's first
// event: B1 and B2 come in one transaction, A1 (between them) is fetched.
// hs1 takes B1, A1, B2 in depth order, without asking for the state at a
// gap (state_ids), and each is a timeline event alice can read.
func TestFederationGapBuildsOnTransaction(t *testing.T) {
	eachSyncFed(t, func(t *testing.T, e *scEnv) {
		b1 := e.build(t, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "B1"})
		e.room.Add(b1)
		a1 := e.build(t, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "A1"})
		e.room.Add(a1)
		b2 := e.build(t, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "B2"})
		e.room.Add(b2)
		var stateIDs atomic.Int32
		e.remote.Mux.HandleFunc("GET /_matrix/federation/v1/state_ids/{room}", func(w http.ResponseWriter, _ *http.Request) {
			stateIDs.Add(1)
			http.Error(w, `{"errcode":"M_NOT_FOUND","error":"not here"}`, http.StatusNotFound)
		})
		e.remote.Mux.HandleFunc("POST /_matrix/federation/v1/get_missing_events/{room}", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"events": []json.RawMessage{b1.JSON(), a1.JSON()}})
		})
		e.send(t, b1, b2)
		for _, p := range []*event.PDU{b1, a1, b2} {
			if r := e.alice.Do(t, "GET", roomPath(e.roomID, "/event/"+url.PathEscape(string(p.EventID()))), nil); r.Status != http.StatusOK {
				t.Errorf("GET %s: %d %s", p.EventID(), r.Status, r.Body)
			}
		}
		if n := stateIDs.Load(); n != 0 {
			t.Errorf("hs1 asked for state_ids %d times", n)
		}
	})
}

// The federation fan-out sends an event to the servers that were in the
// room when it was sent: each joined server's position of joining
// (store.RoomServersJoined) survives a profile change, which is a join
// after a join, and moves on a leave and a new join.
func TestFederationServersJoinedSince(t *testing.T) {
	eachSyncFed(t, func(t *testing.T, e *scEnv) {
		joined := func() map[string]int64 {
			j, err := e.hs.DB().RoomServersJoined(t.Context(), id.RoomID(e.roomID))
			if err != nil {
				t.Fatal(err)
			}
			return j
		}
		first := joined()
		if len(first) != 2 || first[scRemote] <= first[scHS] {
			t.Fatalf("servers joined = %v, want hs1 and the remote, which joined later", first)
		}
		key := string(e.charlie())
		rename := e.build(t, "m.room.member", &key, map[string]any{"membership": "join", "displayname": "Charlie"})
		e.send(t, rename)
		e.room.Add(rename)
		hstest.MustOK(t, e.alice.Do(t, "PUT", profilePath(e.alice.UserID, "displayname"), map[string]any{"displayname": "Alice"}))
		if got := joined(); got[scRemote] != first[scRemote] || got[scHS] != first[scHS] {
			t.Errorf("after profile changes: %v, want %v", got, first)
		}
		leave := e.build(t, "m.room.member", &key, map[string]any{"membership": "leave"})
		e.send(t, leave)
		e.room.Add(leave)
		if got := joined(); len(got) != 1 {
			t.Errorf("after the remote left: %v, want hs1 only", got)
		}
		rejoin := e.build(t, "m.room.member", &key, map[string]any{"membership": "join"})
		e.send(t, rejoin)
		if got := joined(); got[scRemote] <= first[scRemote] {
			t.Errorf("after the remote joined again: %v, want a later position than %v", got, first)
		}
	})
}

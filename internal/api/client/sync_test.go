package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
)

// syncEvent is an event as /sync gives it.
type syncEvent struct {
	EventID  string         `json:"event_id"`
	RoomID   string         `json:"room_id"`
	Type     string         `json:"type"`
	Sender   string         `json:"sender"`
	StateKey *string        `json:"state_key"`
	Content  map[string]any `json:"content"`
	Unsigned map[string]any `json:"unsigned"`
}

type syncEvents struct {
	Events []syncEvent `json:"events"`
}

type syncCounts struct {
	Highlights    int `json:"highlight_count"`
	Notifications int `json:"notification_count"`
}

type syncRoom struct {
	Summary    map[string]json.RawMessage `json:"summary"`
	State      *syncEvents                `json:"state"`
	StateAfter *syncEvents                `json:"state_after"`
	Timeline   struct {
		Events    []syncEvent `json:"events"`
		Limited   bool        `json:"limited"`
		PrevBatch string      `json:"prev_batch"`
	} `json:"timeline"`
	Ephemeral     syncEvents            `json:"ephemeral"`
	AccountData   syncEvents            `json:"account_data"`
	Unread        *syncCounts           `json:"unread_notifications"`
	UnreadThreads map[string]syncCounts `json:"unread_thread_notifications"`
	InviteState   syncEvents            `json:"invite_state"`
	KnockState    syncEvents            `json:"knock_state"`
}

type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     *struct {
		Join   map[string]*syncRoom `json:"join"`
		Invite map[string]*syncRoom `json:"invite"`
		Knock  map[string]*syncRoom `json:"knock"`
		Leave  map[string]*syncRoom `json:"leave"`
	} `json:"rooms"`
	AccountData *syncEvents     `json:"account_data"`
	Presence    *syncEvents     `json:"presence"`
	ToDevice    *syncEvents     `json:"to_device"`
	DeviceLists json.RawMessage `json:"device_lists"`
	OTKCount    map[string]int  `json:"device_one_time_keys_count"`
	Fallback    []string        `json:"device_unused_fallback_key_types"`
}

func (s syncResponse) join(r string) *syncRoom {
	if s.Rooms == nil {
		return nil
	}
	return s.Rooms.Join[r]
}

// doSync calls GET /sync with the query and decodes the response.
func doSync(t testing.TB, c *hstest.Client, query string) syncResponse {
	t.Helper()
	r := c.Do(t, "GET", c3+"/sync?"+query, nil)
	hstest.MustOK(t, r)
	return hstest.Decode[syncResponse](t, r)
}

func syncSince(tok string) string { return "since=" + url.QueryEscape(tok) }

func syncFilter(f map[string]any) string {
	b, _ := json.Marshal(f)
	return "filter=" + url.QueryEscape(string(b))
}

var syncTxnN atomic.Int64

func syncSend(t testing.TB, c *hstest.Client, roomID, typ string, content map[string]any) string {
	t.Helper()
	r := c.Do(t, "PUT", roomPath(roomID, fmt.Sprintf("/send/%s/sy%d", typ, syncTxnN.Add(1))), content)
	return hstest.Str(t, hstest.MustOK(t, r), "event_id")
}

func syncState(t testing.TB, c *hstest.Client, roomID, typ, key string, content map[string]any) string {
	t.Helper()
	r := c.Do(t, "PUT", roomPath(roomID, "/state/"+typ+"/"+url.PathEscape(key)), content)
	return hstest.Str(t, hstest.MustOK(t, r), "event_id")
}

func syncBodies(evs []syncEvent) []string {
	var out []string
	for _, e := range evs {
		if b, ok := e.Content["body"].(string); ok {
			out = append(out, b)
		}
	}
	return out
}

func syncTypes(evs []syncEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func syncFind(l *syncEvents, typ, key string) *syncEvent {
	if l == nil {
		return nil
	}
	for i, e := range l.Events {
		if e.Type == typ && e.StateKey != nil && *e.StateKey == key {
			return &l.Events[i]
		}
	}
	return nil
}

// The initial sync of a new room: the whole room fits the timeline, so the
// state is empty; the summary, the always-present E2EE sections and the
// client event format are there.
func TestSyncInitial(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		roomID := createRoom(t, alice, map[string]any{"name": "Garden"})
		eid := syncSend(t, alice, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "hello"})

		r := alice.Do(t, "GET", c3+"/sync", nil)
		raw := hstest.MustOK(t, r)
		for _, k := range []string{"next_batch", "device_one_time_keys_count", "device_unused_fallback_key_types", "device_lists", "to_device"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("initial sync lacks %s: %s", k, r.Body)
			}
		}
		s := hstest.Decode[syncResponse](t, r)
		if !strings.HasPrefix(s.NextBatch, "s") {
			t.Errorf("next_batch = %q, want a stream token", s.NextBatch)
		}
		if s.OTKCount["signed_curve25519"] != 0 || s.Fallback == nil {
			t.Errorf("key counts = %v %v, want signed_curve25519 0 and []", s.OTKCount, s.Fallback)
		}
		jr := s.join(roomID)
		if jr == nil {
			t.Fatalf("initial sync has no join entry for %s: %s", roomID, r.Body)
		}
		tl := jr.Timeline.Events
		if len(tl) == 0 || tl[0].Type != "m.room.create" || tl[len(tl)-1].EventID != eid {
			t.Fatalf("timeline = %v, want the create event first and the message last", syncTypes(tl))
		}
		if jr.Timeline.Limited {
			t.Errorf("timeline of a new room is limited")
		}
		if jr.State == nil || len(jr.State.Events) != 0 {
			t.Errorf("state = %+v, want present and empty (everything is in the timeline)", jr.State)
		}
		if jr.StateAfter != nil {
			t.Errorf("state_after present without use_state_after")
		}
		last := tl[len(tl)-1]
		if last.RoomID != "" {
			t.Errorf("timeline event has room_id %q; sync leaves it out", last.RoomID)
		}
		if last.Unsigned["transaction_id"] == nil {
			t.Errorf("own message lacks unsigned.transaction_id: %v", last.Unsigned)
		}
		if string(jr.Summary["m.joined_member_count"]) != "1" || string(jr.Summary["m.invited_member_count"]) != "0" {
			t.Errorf("summary = %v, want 1 joined, 0 invited", jr.Summary)
		}
		if _, ok := jr.Summary["m.heroes"]; ok {
			t.Errorf("summary of a named room has heroes: %v", jr.Summary)
		}
		if jr.Unread == nil {
			t.Errorf("no unread_notifications")
		}
		if !strings.HasPrefix(jr.Timeline.PrevBatch, "s") {
			// The stream position before the timeline (sync_complement_test.go).
			t.Errorf("prev_batch = %q, want a stream token", jr.Timeline.PrevBatch)
		}
	})
}

// An incremental sync carries only what happened since the token.
func TestSyncIncremental(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		other := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), nil))
		s0 := doSync(t, alice, "")

		// Nothing new: an empty sync returns at once and carries no rooms.
		s1 := doSync(t, alice, syncSince(s0.NextBatch))
		if s1.Rooms != nil {
			t.Errorf("sync with nothing new has rooms: %+v", s1.Rooms)
		}

		eid := sendText(t, bob, roomID, "hi alice")
		s2 := doSync(t, alice, syncSince(s1.NextBatch))
		jr := s2.join(roomID)
		if jr == nil {
			t.Fatalf("incremental sync lacks the room with a new message")
		}
		if len(jr.Timeline.Events) != 1 || jr.Timeline.Events[0].EventID != eid {
			t.Errorf("timeline = %v, want just %s", syncTypes(jr.Timeline.Events), eid)
		}
		if jr.Timeline.Limited || len(jr.State.Events) != 0 {
			t.Errorf("limited %v, state %v; want an unlimited timeline and no state", jr.Timeline.Limited, jr.State.Events)
		}
		if s2.join(other) != nil {
			t.Errorf("incremental sync has the unchanged room %s", other)
		}
		if jr.Unread == nil || jr.Unread.Notifications != 1 {
			t.Errorf("unread = %+v, want 1 notification", jr.Unread)
		}
		// The same token again gives the same answer: tokens are positions.
		again := doSync(t, alice, syncSince(s1.NextBatch))
		if j := again.join(roomID); j == nil || len(j.Timeline.Events) != 1 {
			t.Errorf("repeating a since token did not repeat the answer")
		}
	})
}

// A long-poll wakes within milliseconds of another user's send, and one
// that times out returns no rooms and a usable next_batch.
func TestSyncLongPoll(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), nil))
		tok := doSync(t, alice, "").NextBatch

		// Times out: no rooms, next_batch usable.
		start := time.Now()
		empty := doSync(t, alice, syncSince(tok)+"&timeout=300")
		if el := time.Since(start); el < 250*time.Millisecond {
			t.Errorf("empty long-poll returned after %v, want about 300ms", el)
		}
		if empty.Rooms != nil {
			t.Errorf("timed-out sync has rooms")
		}
		if empty.NextBatch != tok {
			t.Errorf("timed-out sync next_batch = %q, want the since token %q", empty.NextBatch, tok)
		}

		type result struct {
			s   syncResponse
			at  time.Time
			err string
		}
		done := make(chan result, 1)
		go func() {
			r := alice.Send(t, hstest.Request{Method: "GET", Path: c3 + "/sync?" + syncSince(tok) + "&timeout=20000"})
			var res result
			res.at = time.Now()
			if r.Status != 200 {
				res.err = string(r.Body)
			} else if err := json.Unmarshal(r.Body, &res.s); err != nil {
				res.err = err.Error()
			}
			done <- res
		}()
		time.Sleep(200 * time.Millisecond) // let the request park
		sent := time.Now()
		eid := sendText(t, bob, roomID, "wake up")
		var res result
		select {
		case res = <-done:
		case <-time.After(15 * time.Second):
			t.Fatalf("long-poll did not return within 15s of a send")
		}
		if res.err != "" {
			t.Fatalf("long-poll: %s", res.err)
		}
		if lat := res.at.Sub(sent); lat > 2*time.Second {
			t.Errorf("long-poll returned %v after the send, want well under the timeout", lat)
		} else {
			t.Logf("long-poll returned %v after the send started", lat)
		}
		jr := res.s.join(roomID)
		if jr == nil || len(jr.Timeline.Events) != 1 || jr.Timeline.Events[0].EventID != eid {
			t.Fatalf("woken sync = %+v, want the message %s", res.s.Rooms, eid)
		}
	})
}

// A timeline over the limit is limited, with a prev_batch that /messages
// continues from, and a state delta that covers the gap.
func TestSyncLimitedAndStateDelta(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		roomID := createRoom(t, alice, map[string]any{"name": "Before"})
		for i := range 12 {
			sendText(t, alice, roomID, fmt.Sprintf("m%d", i))
		}
		lim := syncFilter(map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 5}}})
		s0 := doSync(t, alice, lim)
		jr := s0.join(roomID)
		if jr == nil {
			t.Fatalf("no room")
		}
		if got := syncBodies(jr.Timeline.Events); strings.Join(got, ",") != "m7,m8,m9,m10,m11" || !jr.Timeline.Limited {
			t.Fatalf("timeline = %v limited %v, want m7..m11 limited", got, jr.Timeline.Limited)
		}
		// The initial state is the state at the start of the timeline.
		if n := syncFind(jr.State, "m.room.name", ""); n == nil || n.Content["name"] != "Before" {
			t.Errorf("initial state lacks the name: %+v", jr.State)
		}
		if syncFind(jr.State, "m.room.member", alice.UserID) == nil || syncFind(jr.State, "m.room.create", "") == nil {
			t.Errorf("initial state lacks create or own member event")
		}
		// /messages from prev_batch continues before m7.
		r := alice.Do(t, "GET", roomPath(roomID, "/messages?dir=b&limit=3&from="+url.QueryEscape(jr.Timeline.PrevBatch)), nil)
		if r.Status == 200 {
			var p struct {
				Chunk []syncEvent `json:"chunk"`
			}
			json.Unmarshal(r.Body, &p)
			if got := strings.Join(syncBodies(p.Chunk), ","); got != "m6,m5,m4" {
				t.Errorf("/messages from prev_batch = %v, want m6,m5,m4", got)
			}
		} else {
			t.Logf("/messages answered %d: %s", r.Status, r.Body)
		}

		// A state change in the gap of a limited incremental sync is in
		// the state delta; the unchanged state is not.
		topic := syncState(t, alice, roomID, "m.room.topic", "", map[string]any{"topic": "gap"})
		for i := range 8 {
			sendText(t, alice, roomID, fmt.Sprintf("n%d", i))
		}
		s1 := doSync(t, alice, lim+"&"+syncSince(s0.NextBatch))
		jr = s1.join(roomID)
		if jr == nil || !jr.Timeline.Limited || len(jr.Timeline.Events) != 5 {
			t.Fatalf("incremental = %+v, want 5 events, limited", jr)
		}
		if ev := syncFind(jr.State, "m.room.topic", ""); ev == nil || ev.EventID != topic {
			t.Errorf("state delta lacks the topic set in the gap: %+v", jr.State)
		}
		if syncFind(jr.State, "m.room.name", "") != nil || syncFind(jr.State, "m.room.create", "") != nil {
			t.Errorf("state delta repeats unchanged state: %v", syncTypes(jr.State.Events))
		}
		// A state change inside the timeline is not repeated in state.
		name := syncState(t, alice, roomID, "m.room.name", "", map[string]any{"name": "After"})
		s2 := doSync(t, alice, lim+"&"+syncSince(s1.NextBatch))
		jr = s2.join(roomID)
		if jr == nil || len(jr.Timeline.Events) != 1 || jr.Timeline.Events[0].EventID != name || len(jr.State.Events) != 0 {
			t.Errorf("sync after a name change = %+v, want the name event in the timeline only", jr)
		}
		if jr != nil && jr.Timeline.Events[0].Unsigned["prev_content"] == nil {
			t.Errorf("state event in the timeline lacks prev_content: %v", jr.Timeline.Events[0].Unsigned)
		}
	})
}

// full_state gives the whole state of every joined room in an incremental
// sync, and returns at once despite a timeout.
func TestSyncFullState(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		roomID := createRoom(t, alice, map[string]any{"name": "Full", "topic": "t"})
		s0 := doSync(t, alice, "")
		start := time.Now()
		s1 := doSync(t, alice, syncSince(s0.NextBatch)+"&full_state=true&timeout=10000")
		if time.Since(start) > 5*time.Second {
			t.Errorf("full_state waited for the timeout")
		}
		jr := s1.join(roomID)
		if jr == nil {
			t.Fatalf("full_state sync lacks the room")
		}
		for _, typ := range []string{"m.room.create", "m.room.name", "m.room.topic", "m.room.power_levels", "m.room.join_rules"} {
			if syncFind(jr.State, typ, "") == nil {
				t.Errorf("full state lacks %s: %v", typ, syncTypes(jr.State.Events))
			}
		}
		if len(jr.Timeline.Events) != 0 {
			t.Errorf("full_state timeline = %v, want empty (nothing since the token)", syncTypes(jr.Timeline.Events))
		}
	})
}

// Kicked: the room moves to the leave section with the timeline up to the
// kick; later events are not sent.
func TestSyncLeaveAfterKick(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), nil))
		s0 := doSync(t, bob, "")
		before := sendText(t, alice, roomID, "before the kick")
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/kick"), map[string]any{"user_id": bob.UserID, "reason": "bye"}))
		sendText(t, alice, roomID, "after the kick")
		s1 := doSync(t, bob, syncSince(s0.NextBatch))
		if s1.Rooms == nil || s1.Rooms.Leave[roomID] == nil {
			t.Fatalf("sync after a kick lacks the leave entry: %+v", s1.Rooms)
		}
		if s1.join(roomID) != nil {
			t.Errorf("kicked room still in join")
		}
		tl := s1.Rooms.Leave[roomID].Timeline.Events
		if len(tl) != 2 || tl[0].EventID != before || tl[1].Type != "m.room.member" || tl[1].Content["membership"] != "leave" {
			t.Errorf("leave timeline = %v, want the message and the kick", syncTypes(tl))
		}
		for _, b := range syncBodies(tl) {
			if b == "after the kick" {
				t.Errorf("leave timeline has an event after the kick")
			}
		}
		// Later syncs no longer mention the room.
		sendText(t, alice, roomID, "later")
		s2 := doSync(t, bob, syncSince(s1.NextBatch))
		if s2.Rooms != nil {
			t.Errorf("sync after the leave entry still has rooms: %+v", s2.Rooms)
		}
		// include_leave brings it back in an initial sync.
		il := doSync(t, bob, syncFilter(map[string]any{"room": map[string]any{"include_leave": true}}))
		if il.Rooms == nil || il.Rooms.Leave[roomID] == nil {
			t.Errorf("initial sync with include_leave lacks the left room")
		} else if lr := il.Rooms.Leave[roomID]; syncFind(lr.State, "m.room.create", "") == nil && !syncHasType(lr.Timeline.Events, "m.room.create") {
			t.Errorf("left room of an initial sync has no state: %+v", lr.State)
		}
		if plain := doSync(t, bob, ""); plain.Rooms != nil && plain.Rooms.Leave[roomID] != nil {
			t.Errorf("initial sync without include_leave has the left room")
		}
	})
}

func syncHasType(evs []syncEvent, typ string) bool {
	for _, e := range evs {
		if e.Type == typ {
			return true
		}
	}
	return false
}

// An invite appears with the stripped state of the room and the invite;
// joining moves the room to join with its full state.
func TestSyncInvite(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"name": "Secret garden", "preset": "private_chat"})
		s0 := doSync(t, bob, "")
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/invite"), map[string]any{"user_id": bob.UserID}))
		s1 := doSync(t, bob, syncSince(s0.NextBatch))
		if s1.Rooms == nil || s1.Rooms.Invite[roomID] == nil {
			t.Fatalf("sync after an invite lacks it: %+v", s1.Rooms)
		}
		is := &s1.Rooms.Invite[roomID].InviteState
		if n := syncFind(is, "m.room.name", ""); n == nil || n.Content["name"] != "Secret garden" {
			t.Errorf("invite_state lacks the name: %+v", is.Events)
		}
		if syncFind(is, "m.room.create", "") == nil || syncFind(is, "m.room.join_rules", "") == nil {
			t.Errorf("invite_state lacks create or join rules: %v", syncTypes(is.Events))
		}
		inv := syncFind(is, "m.room.member", bob.UserID)
		if inv == nil || inv.Content["membership"] != "invite" || inv.Sender != alice.UserID {
			t.Errorf("invite_state lacks the invite itself: %+v", is.Events)
		}
		for _, e := range is.Events {
			// The create event goes whole (MSC4311, spec v1.16), the
			// others stripped.
			if (e.EventID != "" && e.Type != "m.room.create") || e.Unsigned != nil {
				t.Errorf("invite_state event is not stripped: %+v", e)
			}
			if e.Type == "m.room.create" && (e.EventID == "" || e.RoomID != roomID) {
				t.Errorf("invite_state's create event lacks event_id or room_id: %+v", e)
			}
		}
		// Initial sync has it too.
		if i := doSync(t, bob, ""); i.Rooms == nil || i.Rooms.Invite[roomID] == nil {
			t.Errorf("initial sync lacks the invite")
		}
		// Joining: the room moves to join, with its full state.
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), nil))
		s2 := doSync(t, bob, syncSince(s1.NextBatch))
		jr := s2.join(roomID)
		if jr == nil {
			t.Fatalf("sync after joining lacks the room")
		}
		all := append(append([]syncEvent{}, jr.State.Events...), jr.Timeline.Events...)
		if !syncHasType(all, "m.room.create") || !syncHasType(all, "m.room.name") {
			t.Errorf("newly joined room lacks its state: state %v timeline %v", syncTypes(jr.State.Events), syncTypes(jr.Timeline.Events))
		}
		if s2.Rooms.Invite[roomID] != nil {
			t.Errorf("joined room still in invite")
		}
		// Rejecting an invite puts the room in leave.
		other := createRoom(t, alice, map[string]any{})
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(other, "/invite"), map[string]any{"user_id": bob.UserID}))
		s3 := doSync(t, bob, syncSince(s2.NextBatch))
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(other, "/leave"), nil))
		s4 := doSync(t, bob, syncSince(s3.NextBatch))
		if s4.Rooms == nil || s4.Rooms.Leave[other] == nil {
			t.Fatalf("rejected invite not in leave: %+v", s4.Rooms)
		}
		lr := s4.Rooms.Leave[other]
		if len(lr.Timeline.Events) != 1 || lr.Timeline.Events[0].Content["membership"] != "leave" {
			t.Errorf("rejected invite's leave timeline = %v, want just the leave", syncTypes(lr.Timeline.Events))
		}
		if lr.State != nil && len(lr.State.Events) != 0 {
			t.Errorf("rejected invite's room gives state %v to a user who never joined", syncTypes(lr.State.Events))
		}
	})
}

// Filters: stored by ID and inline, timeline limit, types and not_types,
// senders, room lists, lazy loading of members.
func TestSyncFilters(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		carol := hs.Register(t, "carol", "pw")
		// Named, so that the summary has no heroes, whose member events
		// lazy loading would send too.
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Filters"})
		other := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		for _, c := range []*hstest.Client{bob, carol} {
			hstest.MustOK(t, c.Do(t, "POST", roomPath(roomID, "/join"), nil))
		}
		sendText(t, bob, roomID, "from bob")
		syncSend(t, carol, roomID, "org.example.custom", map[string]any{"x": 1})
		sendText(t, carol, roomID, "from carol")

		// Stored filter.
		fr := hstest.MustOK(t, alice.Do(t, "POST", c3+"/user/"+url.PathEscape(alice.UserID)+"/filter",
			map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 2, "types": []string{"m.room.message"}}}}))
		fid := hstest.Str(t, fr, "filter_id")
		got := hstest.MustOK(t, alice.Do(t, "GET", c3+"/user/"+url.PathEscape(alice.UserID)+"/filter/"+fid, nil))
		if _, ok := got["room"]; !ok {
			t.Errorf("GET filter = %v", got)
		}
		s := doSync(t, alice, "filter="+fid)
		jr := s.join(roomID)
		if jr == nil || strings.Join(syncBodies(jr.Timeline.Events), ",") != "from bob,from carol" || len(jr.Timeline.Events) != 2 || jr.Timeline.Limited {
			t.Fatalf("stored filter timeline = %+v, want the two messages, not limited (there are no more)", jr)
		}
		s = doSync(t, alice, "filter="+url.QueryEscape(`{"room":{"timeline":{"limit":1,"types":["m.room.message"]}}}`))
		if jr := s.join(roomID); jr == nil || strings.Join(syncBodies(jr.Timeline.Events), ",") != "from carol" || !jr.Timeline.Limited {
			t.Fatalf("limit 1 of two messages = %+v, want the last, limited", jr)
		}

		// Inline: not_types with a wildcard, senders.
		s = doSync(t, alice, syncFilter(map[string]any{"room": map[string]any{"timeline": map[string]any{
			"not_types": []string{"m.room.*"}, "senders": []string{carol.UserID}}}}))
		jr = s.join(roomID)
		if jr == nil || len(jr.Timeline.Events) != 1 || jr.Timeline.Events[0].Type != "org.example.custom" {
			t.Errorf("inline filter timeline = %v, want carol's custom event", syncTypes(jr.Timeline.Events))
		}

		// Room lists.
		s = doSync(t, alice, syncFilter(map[string]any{"room": map[string]any{"not_rooms": []string{roomID}}}))
		if s.join(roomID) != nil || s.join(other) == nil {
			t.Errorf("not_rooms did not exclude %s only", roomID)
		}
		s = doSync(t, alice, syncFilter(map[string]any{"room": map[string]any{"rooms": []string{other}}}))
		if s.join(roomID) != nil || s.join(other) == nil {
			t.Errorf("rooms did not keep %s only", other)
		}

		// State filter by type.
		s = doSync(t, alice, syncFilter(map[string]any{"room": map[string]any{
			"timeline": map[string]any{"limit": 1}, "state": map[string]any{"types": []string{"m.room.create"}}}}))
		if jr := s.join(roomID); jr == nil || len(jr.State.Events) != 1 || jr.State.Events[0].Type != "m.room.create" {
			t.Errorf("state types filter = %v, want only the create event", syncTypes(jr.State.Events))
		}

		// Lazy loading: only the senders' member events (and one's own).
		s = doSync(t, alice, syncFilter(map[string]any{"room": map[string]any{
			"timeline": map[string]any{"limit": 1}, "state": map[string]any{"lazy_load_members": true}}}))
		jr = s.join(roomID)
		var members []string
		for _, e := range jr.State.Events {
			if e.Type == "m.room.member" {
				members = append(members, *e.StateKey)
			}
		}
		if strings.Join(members, ",") != alice.UserID+","+carol.UserID && strings.Join(members, ",") != carol.UserID+","+alice.UserID {
			t.Errorf("lazy-loaded members = %v, want alice (self) and carol (the sender)", members)
		}
		if syncFind(jr.State, "m.room.create", "") == nil {
			t.Errorf("lazy loading dropped non-member state")
		}
		// Redundant members are left out of the next sync, unless asked for.
		lazy := syncFilter(map[string]any{"room": map[string]any{
			"timeline": map[string]any{"limit": 1}, "state": map[string]any{"lazy_load_members": true}}})
		s0 := doSync(t, alice, lazy)
		sendText(t, carol, roomID, "again")
		sendText(t, bob, roomID, "bob again")
		sendText(t, carol, roomID, "carol last")
		s1 := doSync(t, alice, lazy+"&"+syncSince(s0.NextBatch))
		jr = s1.join(roomID)
		if jr == nil {
			t.Fatalf("lazy incremental lacks the room")
		}
		if syncFind(jr.State, "m.room.member", carol.UserID) != nil {
			t.Errorf("lazy incremental repeats carol's member event, which the client has")
		}
		redundant := syncFilter(map[string]any{"room": map[string]any{
			"timeline": map[string]any{"limit": 1}, "state": map[string]any{"lazy_load_members": true, "include_redundant_members": true}}})
		s2 := doSync(t, alice, redundant+"&"+syncSince(s0.NextBatch))
		if jr := s2.join(roomID); jr == nil || syncFind(jr.State, "m.room.member", carol.UserID) == nil {
			t.Errorf("include_redundant_members did not send carol's member event")
		}

		// event_fields and event_format.
		s = doSync(t, alice, syncFilter(map[string]any{"event_fields": []string{"type", "content.body"},
			"room": map[string]any{"timeline": map[string]any{"limit": 1}}}))
		if jr := s.join(roomID); jr == nil || len(jr.Timeline.Events) != 1 {
			t.Errorf("event_fields sync lacks the timeline")
		} else if e := jr.Timeline.Events[0]; e.EventID != "" || e.Sender != "" || e.Content["body"] != "carol last" || e.Content["msgtype"] != nil {
			t.Errorf("event_fields gave %+v, want only type and content.body", e)
		}
		r := alice.Do(t, "GET", c3+"/sync?"+syncFilter(map[string]any{"event_format": "federation",
			"room": map[string]any{"timeline": map[string]any{"limit": 1}}}), nil)
		hstest.MustOK(t, r)
		if !strings.Contains(string(r.Body), `"auth_events"`) {
			t.Errorf("event_format federation gave no federation events: %.300s", r.Body)
		}
	})
}

// Events of ignored users are hidden from timelines; their state events
// are not.
func TestSyncIgnoredUsers(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), nil))
		err := hs.Users().SetAccountData(context.Background(), id.UserID(alice.UserID), "", "m.ignored_user_list",
			[]byte(`{"ignored_users":{"`+bob.UserID+`":{}}}`))
		if err != nil {
			t.Fatal(err)
		}
		s0 := doSync(t, alice, "")
		sendText(t, bob, roomID, "you cannot hear me")
		syncState(t, alice, roomID, "m.room.power_levels", "", map[string]any{"users": map[string]any{bob.UserID: 50}})
		topic := syncState(t, bob, roomID, "m.room.topic", "", map[string]any{"topic": "bob's topic"})
		s1 := doSync(t, alice, syncSince(s0.NextBatch))
		jr := s1.join(roomID)
		if jr == nil {
			t.Fatalf("no room")
		}
		for _, b := range syncBodies(jr.Timeline.Events) {
			if b == "you cannot hear me" {
				t.Errorf("ignored user's message in the timeline")
			}
		}
		found := false
		for _, e := range jr.Timeline.Events {
			found = found || e.EventID == topic
		}
		if !found {
			t.Errorf("ignored user's state event hidden: %v", syncTypes(jr.Timeline.Events))
		}
		if s0.AccountData == nil || len(s0.AccountData.Events) == 0 || s0.AccountData.Events[0].Type != "m.ignored_user_list" {
			t.Errorf("initial sync lacks the global account data: %+v", s0.AccountData)
		}
	})
}

// History visibility: in a joined-only room a later joiner does not see
// what was said before it joined; in a shared room it does.
func TestSyncHistoryVisibility(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		for _, vis := range []string{"joined", "shared"} {
			roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
			syncState(t, alice, roomID, "m.room.history_visibility", "", map[string]any{"history_visibility": vis})
			sendText(t, alice, roomID, "before "+vis)
			hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), nil))
			sendText(t, alice, roomID, "after "+vis)
			jr := doSync(t, bob, "").join(roomID)
			if jr == nil {
				t.Fatalf("%s: bob's sync lacks the room", vis)
			}
			got := strings.Join(syncBodies(jr.Timeline.Events), ",")
			want := "after " + vis
			if vis == "shared" {
				want = "before shared,after shared"
			}
			if got != want {
				t.Errorf("%s room: bob sees %q, want %q", vis, got, want)
			}
			// The room's creation happened under the preset's shared
			// visibility: bob sees it either way.
			if !syncHasType(jr.Timeline.Events, "m.room.create") && syncFind(jr.State, "m.room.create", "") == nil {
				t.Errorf("%s room: bob gets neither the create event nor the state", vis)
			}
		}
	})
}

// use_state_after (MSC4222): state_after instead of state, holding the
// state at the end of the timeline that changed since the token.
func TestSyncStateAfter(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		roomID := createRoom(t, alice, map[string]any{"name": "One"})
		s0 := doSync(t, alice, "use_state_after=true")
		jr := s0.join(roomID)
		if jr == nil || jr.StateAfter == nil || jr.State != nil {
			t.Fatalf("use_state_after initial = %+v, want state_after and no state", jr)
		}
		if syncFind(jr.StateAfter, "m.room.name", "") == nil || syncFind(jr.StateAfter, "m.room.create", "") == nil {
			t.Errorf("initial state_after lacks the state at the end: %v", syncTypes(jr.StateAfter.Events))
		}
		name := syncState(t, alice, roomID, "m.room.name", "", map[string]any{"name": "Two"})
		sendText(t, alice, roomID, "after the rename")
		s1 := doSync(t, alice, "use_state_after=true&"+syncSince(s0.NextBatch))
		jr = s1.join(roomID)
		if jr == nil || jr.StateAfter == nil {
			t.Fatalf("incremental lacks state_after")
		}
		if len(jr.StateAfter.Events) != 1 || jr.StateAfter.Events[0].EventID != name {
			t.Errorf("state_after = %v, want just the new name (in the timeline too)", syncTypes(jr.StateAfter.Events))
		}
		// Without the parameter: the rename is in the timeline, state empty.
		s2 := doSync(t, alice, syncSince(s0.NextBatch))
		if jr := s2.join(roomID); jr == nil || jr.State == nil || len(jr.State.Events) != 0 || jr.StateAfter != nil {
			t.Errorf("without use_state_after: %+v", jr)
		}
		// A room with nothing new is absent, and an empty state_after is
		// sent (not omitted) for one with only messages.
		s3 := doSync(t, alice, "use_state_after=true&"+syncSince(s1.NextBatch))
		if s3.Rooms != nil {
			t.Errorf("nothing new, but rooms: %+v", s3.Rooms)
		}
		sendText(t, alice, roomID, "plain")
		s4 := doSync(t, alice, "use_state_after=true&"+syncSince(s3.NextBatch))
		if jr := s4.join(roomID); jr == nil || jr.StateAfter == nil || len(jr.StateAfter.Events) != 0 {
			t.Errorf("message-only sync state_after = %+v, want present and empty", jr)
		}
	})
}

// Unread notification counts follow messages from others, mentions and
// read receipts.
func TestSyncUnreadCounts(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), nil))
		sendText(t, bob, roomID, "one")
		sendText(t, bob, roomID, "hey alice, look")
		syncSend(t, bob, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "ping",
			"m.mentions": map[string]any{"user_ids": []string{alice.UserID}}})
		syncSend(t, bob, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "alice but not mentioned",
			"m.mentions": map[string]any{}})
		sendText(t, bob, roomID, "malice is not a mention")
		s := doSync(t, alice, "")
		jr := s.join(roomID)
		if jr == nil || jr.Unread == nil {
			t.Fatalf("no unread counts")
		}
		// Push rules (v1.17): only the m.mentions mention highlights.
		if jr.Unread.Notifications != 5 || jr.Unread.Highlights != 1 {
			t.Errorf("unread = %+v, want 5 notifications, 1 highlight", *jr.Unread)
		}
		// Alice's own message reads up to it.
		sendText(t, alice, roomID, "caught up")
		sendText(t, bob, roomID, "new")
		if jr := doSync(t, alice, "").join(roomID); jr.Unread.Notifications != 1 || jr.Unread.Highlights != 0 {
			t.Errorf("after own message: %+v, want 1 notification", *jr.Unread)
		}
		// Bob's own message read alice's before it; his own never count.
		if jr := doSync(t, bob, "").join(roomID); jr.Unread.Notifications != 0 {
			t.Errorf("bob's unread = %+v, want 0", *jr.Unread)
		}
		// Threads, split on request.
		root := sendText(t, alice, roomID, "root")
		syncSend(t, bob, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "in thread",
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
		jr = doSync(t, alice, syncFilter(map[string]any{"room": map[string]any{"timeline": map[string]any{"unread_thread_notifications": true}}})).join(roomID)
		if jr.Unread.Notifications != 0 || jr.UnreadThreads[root].Notifications != 1 {
			t.Errorf("split counts: main %+v, threads %+v; want 0 and 1 in %s", *jr.Unread, jr.UnreadThreads, root)
		}
		if jr := doSync(t, alice, "").join(roomID); jr.Unread.Notifications != 1 || jr.UnreadThreads != nil {
			t.Errorf("unsplit counts %+v %v, want 1 and no thread counts", *jr.Unread, jr.UnreadThreads)
		}
	})
}

// Errors: bad tokens, filters and parameters.
func TestSyncErrors(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{Guests: true}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		for _, tc := range []struct {
			name, query string
			status      int
			code        string
		}{
			{"malformed since", "since=garbage", 400, "M_INVALID_PARAM"},
			{"topological since", "since=t1_2", 400, "M_INVALID_PARAM"},
			{"unknown filter ID", "filter=4242", 400, "M_INVALID_PARAM"},
			{"filter that is not JSON", "filter=" + url.QueryEscape("{nope"), 400, "M_NOT_JSON"},
			{"filter of the wrong shape", "filter=" + url.QueryEscape(`{"room":1}`), 400, "M_BAD_JSON"},
			{"bad limit", "filter=" + url.QueryEscape(`{"room":{"timeline":{"limit":0}}}`), 400, "M_INVALID_PARAM"},
			{"bad set_presence", "set_presence=busy", 400, "M_INVALID_PARAM"},
			{"bad timeout", "timeout=soon", 400, "M_INVALID_PARAM"},
			{"bad full_state", "full_state=yes", 400, "M_INVALID_PARAM"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				hstest.MustErr(t, alice.Do(t, "GET", c3+"/sync?"+tc.query, nil), tc.status, tc.code)
			})
		}
		hstest.MustErr(t, hs.Anon().Do(t, "GET", c3+"/sync", nil), 401, "M_MISSING_TOKEN")
		// Guests may sync.
		g := hstest.MustOK(t, hs.Anon().Do(t, "POST", c3+"/register?kind=guest", map[string]any{}))
		guest := &hstest.Client{HS: hs, AccessToken: hstest.Str(t, g, "access_token")}
		s := doSync(t, guest, "")
		if s.NextBatch == "" {
			t.Errorf("guest sync has no next_batch")
		}
		doSync(t, guest, syncSince(s.NextBatch)+"&set_presence=offline")
	})
}

// Unread counts carried from sync to sync agree with counts made afresh
// (after a restart, which empties the process's caches).
func TestSyncUnreadCountsKept(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), nil))
		split := syncFilter(map[string]any{"room": map[string]any{"timeline": map[string]any{"unread_thread_notifications": true}}})
		tok := doSync(t, alice, split).NextBatch
		root := sendText(t, alice, roomID, "root")
		var last syncResponse
		step := func(what string, act func()) {
			t.Helper()
			act()
			last = doSync(t, alice, split+"&"+syncSince(tok))
			tok = last.NextBatch
		}
		thread := func(body string) {
			syncSend(t, bob, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": body,
				"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
		}
		step("two messages", func() { sendText(t, bob, roomID, "a"); sendText(t, bob, roomID, "hi alice") })
		step("thread", func() { thread("t1"); thread("t2 alice") })
		step("own message", func() { sendText(t, alice, roomID, "mine") })
		var lastMsg string
		step("more", func() { lastMsg = sendText(t, bob, roomID, "b"); thread("t3") })
		step("thread receipt", func() {
			hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/receipt/m.read/"+url.PathEscape(lastMsg)), map[string]any{"thread_id": "main"}))
		})
		step("after receipt", func() { sendText(t, bob, roomID, "c alice"); thread("t4") })
		kept := doSync(t, alice, split).join(roomID)
		hs.Restart(t)
		fresh := doSync(t, alice, split).join(roomID)
		if kept == nil || fresh == nil {
			t.Fatalf("room missing")
		}
		if *kept.Unread != *fresh.Unread || fmt.Sprint(kept.UnreadThreads) != fmt.Sprint(fresh.UnreadThreads) {
			t.Errorf("kept counts %+v %v differ from fresh ones %+v %v", *kept.Unread, kept.UnreadThreads, *fresh.Unread, fresh.UnreadThreads)
		}
		// Main: "c alice" after the main receipt; thread: t1..t4 (no
		// thread receipt; alice's own message was in the main timeline).
		// Names in bodies do not highlight (push rules, v1.17).
		if fresh.Unread.Notifications != 1 || fresh.Unread.Highlights != 0 || fresh.UnreadThreads[root].Notifications != 4 || fresh.UnreadThreads[root].Highlights != 0 {
			t.Errorf("counts = %+v %v, want main 1/0 and thread 4/0", *fresh.Unread, fresh.UnreadThreads)
		}
	})
}

// Knocking puts the room in knock with its stripped state; an invite from
// an ignored user is not sent; summaries come when the members change.
func TestSyncKnockIgnoredInviteSummary(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		carol := hs.Register(t, "carol", "pw")
		knockRoom := createRoom(t, alice, map[string]any{"name": "Knock here", "room_version": "10",
			"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}}}})
		s0 := doSync(t, bob, "")
		hstest.MustOK(t, bob.Do(t, "POST", c3+"/knock/"+url.PathEscape(knockRoom), map[string]any{"reason": "let me in"}))
		s1 := doSync(t, bob, syncSince(s0.NextBatch))
		if s1.Rooms == nil || s1.Rooms.Knock[knockRoom] == nil {
			t.Fatalf("sync after a knock lacks it: %+v", s1.Rooms)
		}
		ks := &s1.Rooms.Knock[knockRoom].KnockState
		if n := syncFind(ks, "m.room.name", ""); n == nil || n.Content["name"] != "Knock here" {
			t.Errorf("knock_state lacks the name: %v", syncTypes(ks.Events))
		}
		if k := syncFind(ks, "m.room.member", bob.UserID); k == nil || k.Content["membership"] != "knock" {
			t.Errorf("knock_state lacks the knock: %v", syncTypes(ks.Events))
		}

		// An invite from an ignored user is not sent.
		if err := hs.Users().SetAccountData(context.Background(), id.UserID(carol.UserID), "", "m.ignored_user_list",
			[]byte(`{"ignored_users":{"`+alice.UserID+`":{}}}`)); err != nil {
			t.Fatal(err)
		}
		c0 := doSync(t, carol, "")
		room2 := createRoom(t, alice, map[string]any{})
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(room2, "/invite"), map[string]any{"user_id": carol.UserID}))
		if c1 := doSync(t, carol, syncSince(c0.NextBatch)); c1.Rooms != nil && c1.Rooms.Invite[room2] != nil {
			t.Errorf("invite from an ignored user was sent")
		}
		if c2 := doSync(t, carol, ""); c2.Rooms != nil && c2.Rooms.Invite[room2] != nil {
			t.Errorf("initial sync has the invite from an ignored user")
		}

		// Summaries: sent in full, then only when the members change.
		pub := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		a0 := doSync(t, alice, "")
		if s := a0.join(pub).Summary; string(s["m.joined_member_count"]) != "1" || s["m.heroes"] != nil {
			t.Errorf("initial summary = %v, want 1 joined and no heroes (alice alone)", s)
		}
		sendText(t, alice, pub, "just a message")
		a1 := doSync(t, alice, syncSince(a0.NextBatch))
		if jr := a1.join(pub); jr == nil || jr.Summary != nil {
			t.Errorf("summary sent though nothing in it changed: %+v", jr)
		}
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(pub, "/join"), nil))
		a2 := doSync(t, alice, syncSince(a1.NextBatch))
		s := a2.join(pub).Summary
		if string(s["m.joined_member_count"]) != "2" || string(s["m.heroes"]) != `["`+bob.UserID+`"]` {
			t.Errorf("summary after bob joined = %v, want 2 joined and bob as hero", s)
		}
	})
}

// A long-poll in flight does not hold up a shutdown.
func TestSyncShutdown(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		tok := doSync(t, alice, "").NextBatch
		done := make(chan int, 1)
		go func() {
			r, err := http.Get(hs.URL() + c3 + "/sync?timeout=30000&" + syncSince(tok) + "&access_token=" + url.QueryEscape(alice.AccessToken))
			if err != nil {
				done <- 0
				return
			}
			r.Body.Close()
			done <- r.StatusCode
		}()
		deadline := time.Now().Add(5 * time.Second)
		for hs.Process().Notify.Waiting() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		start := time.Now()
		hs.Stop(t)
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("shutdown took %v with a long-poll in flight", el)
		}
		select {
		case code := <-done:
			if code != 200 {
				t.Errorf("parked long-poll answered %d at shutdown, want 200 (an empty sync)", code)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("parked long-poll did not return at shutdown")
		}
	})
}

// Lazy loading in a limited incremental sync: member changes in the gap
// are sent even when their senders are not in the timeline.
func TestSyncLazyLoadingGap(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Lazy"})
		lazy := syncFilter(map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 2},
			"state": map[string]any{"lazy_load_members": true}}})
		s0 := doSync(t, alice, lazy)
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), nil))
		for i := range 5 {
			sendText(t, alice, roomID, fmt.Sprintf("x%d", i))
		}
		s1 := doSync(t, alice, lazy+"&"+syncSince(s0.NextBatch))
		jr := s1.join(roomID)
		if jr == nil || !jr.Timeline.Limited {
			t.Fatalf("want a limited timeline: %+v", jr)
		}
		if syncFind(jr.State, "m.room.member", bob.UserID) == nil {
			t.Errorf("bob's join in the gap is not in the lazy-loaded state: %v", syncTypes(jr.State.Events))
		}
		if syncFind(jr.State, "m.room.member", alice.UserID) != nil {
			t.Errorf("alice's own member event (known, unchanged) is repeated")
		}
	})
}

package federation_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/event"
	fed "polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/store"
)

// Bad federation input over real HTTP, against a real Polder (hs1) from a
// scripted remote server (hstest.Remote, "evil.polder.test") whose user
// @mallory has joined a room of @alice:hs1 (server-server API, "Checks
// performed on receipt of a PDU", "Rejection", "Soft failure",
// "Transactions"). After each bad input the room's state and timeline, as
// alice sees them, are what they were.

const (
	badHS    = "hs1.polder.test"
	evilName = "evil.polder.test"
	nowhere  = "nowhere.polder.test" // resolves to nothing: its keys cannot be had
	// badMaxRequest is hs1's max_request_bytes: small, so that a body
	// over it is cheap to send.
	badMaxRequest = 256 << 10
)

// badEnv is hs1 with alice, and the evil remote.
type badEnv struct {
	hs    *hstest.Server
	alice *hstest.Client
	evil  *hstest.Remote
	txn   int // alice's last transaction ID
}

func newBadEnv(t *testing.T) *badEnv {
	t.Helper()
	f := hstest.NewFederation(t, hstest.Options{Config: func(c *config.Config) {
		c.MaxRequestBytes = badMaxRequest
	}}, badHS)
	hs := f.Server(badHS)
	e := &badEnv{hs: hs, alice: hs.Register(t, "alice", "password-alice"), evil: f.NewRemote(t, evilName)}
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range strings.Split(hs.Logs(), "\n") {
				if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "not accepted") || strings.Contains(l, "soft-failed") {
					t.Logf("hs1: %s", l)
				}
			}
		}
	})
	return e
}

func clientRoomPath(roomID id.RoomID, rest string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(string(roomID)) + rest
}

// room makes a public room of alice's with a message in it, joins
// @mallory:evil to it and returns the room as evil tracks it.
func (e *badEnv) room(t *testing.T, name string) *hstest.RemoteRoom {
	t.Helper()
	return e.roomOf(t, name, "")
}

// roomOf is room of a room version ("" for hs1's default).
func (e *badEnv) roomOf(t *testing.T, name string, version id.RoomVersion) *hstest.RemoteRoom {
	t.Helper()
	req := map[string]any{"preset": "public_chat", "name": name}
	if version != "" {
		req["room_version"] = version
	}
	roomID := id.RoomID(hstest.Str(t, hstest.MustOK(t, e.alice.Do(t, "POST", "/_matrix/client/v3/createRoom", req)), "room_id"))
	e.aliceSays(t, roomID, "welcome to "+name)
	return e.evil.Join(t, badHS, roomID, e.evil.UserID("mallory"))
}

// aliceSays sends a message as alice and returns its ID.
func (e *badEnv) aliceSays(t *testing.T, roomID id.RoomID, body string) id.EventID {
	t.Helper()
	e.txn++
	r := e.alice.Do(t, "PUT", clientRoomPath(roomID, fmt.Sprintf("/send/m.room.message/bad%d", e.txn)),
		map[string]any{"msgtype": "m.text", "body": body})
	return id.EventID(hstest.Str(t, hstest.MustOK(t, r), "event_id"))
}

// message is a text message of sender's, for RemoteRoom.Build.
func message(t *testing.T, sender id.UserID, body string) event.Proto {
	return event.Proto{Type: "m.room.message", Sender: sender, Content: hstest.MustJSON(t, map[string]any{"msgtype": "m.text", "body": body})}
}

// snapshot is a room as alice sees it: its current state and its latest
// timeline events.
type snapshot struct {
	state    []string // type|state_key|event_id, sorted
	timeline []string // event IDs, newest first
}

func (e *badEnv) snapshot(t *testing.T, roomID id.RoomID) snapshot {
	t.Helper()
	var s snapshot
	r := e.alice.Do(t, "GET", clientRoomPath(roomID, "/state"), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("%s: %d %s", r.Call, r.Status, r.Body)
	}
	for _, ev := range hstest.Decode[[]struct {
		Type     string `json:"type"`
		StateKey string `json:"state_key"`
		EventID  string `json:"event_id"`
	}](t, r) {
		s.state = append(s.state, ev.Type+"|"+ev.StateKey+"|"+ev.EventID)
	}
	slices.Sort(s.state)
	m := hstest.MustOK(t, e.alice.Do(t, "GET", clientRoomPath(roomID, "/messages?dir=b&limit=100"), nil))
	chunk, _ := m["chunk"].([]any)
	for _, ev := range chunk {
		s.timeline = append(s.timeline, ev.(map[string]any)["event_id"].(string))
	}
	return s
}

// unchanged checks that the room is as it was.
func (e *badEnv) unchanged(t *testing.T, roomID id.RoomID, before snapshot) {
	t.Helper()
	after := e.snapshot(t, roomID)
	if !slices.Equal(before.state, after.state) {
		t.Errorf("GET /rooms/%s/state changed:\nbefore %v\nafter  %v", roomID, before.state, after.state)
	}
	if !slices.Equal(before.timeline, after.timeline) {
		t.Errorf("GET /rooms/%s/messages changed:\nbefore %v\nafter  %v", roomID, before.timeline, after.timeline)
	}
}

// stored reads an event from hs1's database, behind the API: nil if it
// was never stored.
func (e *badEnv) stored(t *testing.T, eventID id.EventID) *store.Event {
	t.Helper()
	ev, err := e.hs.DB().Event(t.Context(), eventID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("DB().Event(%s): %v", eventID, err)
	}
	return ev
}

// dropped checks that an event was neither stored nor shown to alice.
func (e *badEnv) dropped(t *testing.T, roomID id.RoomID, eventID id.EventID) {
	t.Helper()
	if ev := e.stored(t, eventID); ev != nil {
		t.Errorf("event %s was stored (rejected %v, soft-failed %v); want it dropped", eventID, ev.IsRejected, ev.SoftFailed)
	}
	e.hidden(t, roomID, eventID)
}

// hidden checks that alice cannot read an event.
func (e *badEnv) hidden(t *testing.T, roomID id.RoomID, eventID id.EventID) {
	t.Helper()
	r := e.alice.Do(t, "GET", clientRoomPath(roomID, "/event/"+url.PathEscape(string(eventID))), nil)
	if r.Status != http.StatusNotFound {
		t.Errorf("%s as alice: %d %s; want 404", r.Call, r.Status, r.Body)
	}
}

// wantError checks that the transaction's answer gives the event an
// error that contains want (lower case).
func wantError(t *testing.T, resp *fed.TransactionResponse, eventID id.EventID, want string) {
	t.Helper()
	res, ok := resp.PDUs[eventID]
	if !ok || res.Error == "" {
		t.Errorf("PUT /send: result of %s = %+v (present %v); want an error", eventID, res, ok)
		return
	}
	if !strings.Contains(strings.ToLower(res.Error), want) {
		t.Errorf("PUT /send: error of %s = %q; want one about %q", eventID, res.Error, want)
	}
}

func wantAccepted(t *testing.T, resp *fed.TransactionResponse, eventID id.EventID) {
	t.Helper()
	res, ok := resp.PDUs[eventID]
	if !ok || res.Error != "" {
		t.Errorf("PUT /send: result of %s = %+v (present %v); want it accepted", eventID, res, ok)
	}
}

// editJSON decodes an event (numbers kept as they are), lets edit change
// it and encodes it again.
func editJSON(t *testing.T, raw []byte, edit func(m map[string]any)) json.RawMessage {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// flipSignatures corrupts every signature of an event.
func flipSignatures(t *testing.T, raw []byte) json.RawMessage {
	t.Helper()
	return editJSON(t, raw, func(m map[string]any) {
		for _, byKey := range m["signatures"].(map[string]any) {
			sigs := byKey.(map[string]any)
			for k, v := range sigs {
				sig, err := base64.RawStdEncoding.DecodeString(v.(string))
				if err != nil {
					t.Fatalf("signature %q: %v", v, err)
				}
				sig[0] ^= 0xff
				sigs[k] = base64.RawStdEncoding.EncodeToString(sig)
			}
		}
	})
}

func mustKey(t *testing.T, version string) *keys.SigningKey {
	t.Helper()
	k, err := keys.Generate(version)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestBadFederationInput(t *testing.T) {
	t.Parallel()
	e := newBadEnv(t)
	mallory := e.evil.UserID("mallory")

	// Step 2: an event whose signatures do not verify is dropped, whether
	// the signature is wrong, made with a key its server does not publish,
	// or by a server whose keys cannot be had at all.
	t.Run("signatures", func(t *testing.T) {
		rr := e.room(t, "signatures")
		before := e.snapshot(t, rr.ID)
		flipped := rr.Build(t, message(t, mallory, "flipped signature"))
		unpublished := rr.BuildAs(t, message(t, mallory, "signed with an unpublished key"), evilName, mustKey(t, "unpublished"))
		x := id.UserID("@x:" + nowhere)
		stranger := rr.BuildAs(t, message(t, x, "from a server that does not exist"), nowhere, mustKey(t, ""))
		for _, c := range []struct {
			name string
			p    *event.PDU
			raw  json.RawMessage
		}{
			{"flipped signature", flipped, flipSignatures(t, flipped.JSON())},
			{"key evil does not publish", unpublished, unpublished.JSON()},
			{"server whose keys cannot be fetched", stranger, stranger.JSON()},
		} {
			t.Run(c.name, func(t *testing.T) {
				resp := e.evil.Send(t, badHS, c.raw)
				wantError(t, resp, c.p.EventID(), "signature")
				e.dropped(t, rr.ID, c.p.EventID())
				e.unchanged(t, rr.ID, before)
			})
		}
	})

	// Request authentication: a request that is not signed by its origin
	// with a key the origin publishes is refused with 401 before anything
	// is looked at.
	t.Run("request signatures", func(t *testing.T) {
		rr := e.room(t, "request signatures")
		before := e.snapshot(t, rr.ID)
		p := rr.Build(t, message(t, mallory, "in a badly signed request"))
		body := hstest.MustJSON(t, fed.Transaction{Origin: evilName, PDUs: []json.RawMessage{p.JSON()}})
		strangerBody := hstest.MustJSON(t, fed.Transaction{Origin: nowhere, PDUs: []json.RawMessage{p.JSON()}})
		for _, c := range []struct {
			name string
			req  hstest.RawRequest
		}{
			{"unsigned", hstest.RawRequest{Body: body, Unsigned: true}},
			{"origin whose keys cannot be fetched", hstest.RawRequest{Body: strangerBody, Origin: nowhere, Key: mustKey(t, "")}},
			{"key evil does not publish", hstest.RawRequest{Body: body, Key: mustKey(t, "unpublished")}},
			{"evil's key, another server's name", hstest.RawRequest{Body: strangerBody, Origin: nowhere}},
		} {
			t.Run(c.name, func(t *testing.T) {
				c.req.Method, c.req.Path = "PUT", "/_matrix/federation/v1/send/unauth-"+strings.ReplaceAll(c.name, " ", "-")
				status, answer := e.evil.Do(t, badHS, c.req)
				wantMatrixError(t, "PUT /send", status, answer, http.StatusUnauthorized, "M_UNAUTHORIZED")
				e.dropped(t, rr.ID, p.EventID())
				e.unchanged(t, rr.ID, before)
			})
		}
		// The transaction's origin must be the server that signed it.
		t.Run("transaction origin is not the signer", func(t *testing.T) {
			status, answer := e.evil.Do(t, badHS, hstest.RawRequest{Method: "PUT", Path: "/_matrix/federation/v1/send/other-origin",
				Body: hstest.MustJSON(t, fed.Transaction{Origin: badHS, PDUs: []json.RawMessage{p.JSON()}})})
			wantMatrixError(t, "PUT /send", status, answer, http.StatusForbidden, "M_FORBIDDEN")
			e.dropped(t, rr.ID, p.EventID())
			e.unchanged(t, rr.ID, before)
		})
		// A body that is not the one signed.
		t.Run("body changed after signing", func(t *testing.T) {
			other := rr.Build(t, message(t, mallory, "swapped in"))
			status, answer := e.evil.Do(t, badHS, hstest.RawRequest{Method: "PUT", Path: "/_matrix/federation/v1/send/swapped",
				Body: hstest.MustJSON(t, fed.Transaction{Origin: evilName, PDUs: []json.RawMessage{other.JSON()}}), SignedBody: body})
			wantMatrixError(t, "PUT /send", status, answer, http.StatusUnauthorized, "M_UNAUTHORIZED")
			e.dropped(t, rr.ID, other.EventID())
			e.unchanged(t, rr.ID, before)
		})
	})

	// Step 3: an event whose content hash does not match is redacted
	// before anything else; the redacted copy is what is stored and
	// shown ("the receiving server should use the redacted copy it
	// calculated rather than the full copy it received").
	t.Run("content hash", func(t *testing.T) {
		rr := e.room(t, "content hash")
		p := rr.Build(t, message(t, mallory, "the original"))
		tampered := editJSON(t, p.JSON(), func(m map[string]any) {
			m["content"] = map[string]any{"msgtype": "m.text", "body": "changed after hashing"}
		})
		resp := e.evil.Send(t, badHS, tampered)
		wantAccepted(t, resp, p.EventID())
		rr.Add(p)
		ev := hstest.MustOK(t, e.alice.Do(t, "GET", clientRoomPath(rr.ID, "/event/"+url.PathEscape(string(p.EventID()))), nil))
		if c, _ := ev["content"].(map[string]any); len(c) != 0 {
			t.Errorf("GET /event of the tampered message as alice: content %v; want {} (the redacted copy)", c)
		}
		if st := e.stored(t, p.EventID()); st == nil {
			t.Errorf("the tampered message was not stored; want its redacted copy stored")
		} else if bytes.Contains(st.JSON(), []byte("changed after hashing")) || bytes.Contains(st.JSON(), []byte("the original")) {
			t.Errorf("stored JSON %s holds a body; want the redacted copy", st.JSON())
		}
		if s := e.snapshot(t, rr.ID); len(s.timeline) == 0 || s.timeline[0] != string(p.EventID()) {
			t.Errorf("/messages = %v; want the redacted message %s first", s.timeline, p.EventID())
		}
	})

	// Steps 4 and 5: events that fail the auth rules are rejected: stored
	// as rejected, never shown, and they change no state.
	t.Run("auth", func(t *testing.T) {
		rr := e.room(t, "auth")
		eve := e.evil.UserID("eve")
		pl := editJSON(t, rr.StateEvent(event.TypePowerLevels, "").Content(), func(m map[string]any) {
			users, _ := m["users"].(map[string]any)
			if users == nil {
				users = map[string]any{}
				m["users"] = users
			}
			users[string(mallory)] = 100
		})
		empty := ""
		noMember := message(t, mallory, "auth events without my membership")
		noMember.AuthEvents = []id.EventID{rr.StateEvent(event.TypePowerLevels, "").EventID()}
		for _, c := range []struct {
			name  string
			proto event.Proto
		}{
			{"power levels raised by a user without power", event.Proto{Type: event.TypePowerLevels, StateKey: &empty, Sender: mallory, Content: pl}},
			{"topic set by a user without power", event.Proto{Type: "m.room.topic", StateKey: &empty, Sender: mallory, Content: hstest.MustJSON(t, map[string]any{"topic": "mallory's"})}},
			{"message by a user who is not in the room", message(t, eve, "I never joined")},
			{"auth events without the sender's membership", noMember},
			{"join of a user who is not the sender", event.Proto{Type: event.TypeMember, StateKey: (*string)(&eve), Sender: mallory, Content: hstest.MustJSON(t, map[string]any{"membership": "join"})}},
		} {
			t.Run(c.name, func(t *testing.T) {
				before := e.snapshot(t, rr.ID)
				plBefore := hstest.MustOK(t, e.alice.Do(t, "GET", clientRoomPath(rr.ID, "/state/m.room.power_levels/"), nil))
				p := rr.Build(t, c.proto)
				resp := e.evil.Send(t, badHS, p.JSON())
				wantError(t, resp, p.EventID(), "")
				if st := e.stored(t, p.EventID()); st != nil && !st.IsRejected {
					t.Errorf("event %s stored as accepted (soft-failed %v); want rejected", p.EventID(), st.SoftFailed)
				}
				e.hidden(t, rr.ID, p.EventID())
				e.unchanged(t, rr.ID, before)
				plAfter := hstest.MustOK(t, e.alice.Do(t, "GET", clientRoomPath(rr.ID, "/state/m.room.power_levels/"), nil))
				if fmt.Sprint(plBefore) != fmt.Sprint(plAfter) {
					t.Errorf("power levels changed: %v, then %v", plBefore, plAfter)
				}
				// The rejected event is not a prev event of what hs1 sends
				// next ("Rejection").
				next := e.aliceSays(t, rr.ID, "after "+c.name)
				if prev := e.prevEvents(t, next); slices.Contains(prev, p.EventID()) {
					t.Errorf("alice's next message %s has prev_events %v; want the rejected %s left out", next, prev, p.EventID())
				}
				e.evil.Await(t, next) // the next case builds on it
			})
		}
		// A rejected event does not fail the transaction or the other
		// events in it ("Rejection").
		t.Run("with a good event in the same transaction", func(t *testing.T) {
			bad := rr.Build(t, event.Proto{Type: event.TypePowerLevels, StateKey: &empty, Sender: mallory, Content: pl})
			good := rr.Build(t, message(t, mallory, "a good message beside a bad event"))
			resp := e.evil.Send(t, badHS, bad.JSON(), good.JSON())
			wantError(t, resp, bad.EventID(), "rejected")
			wantAccepted(t, resp, good.EventID())
			rr.Add(good)
			e.hidden(t, rr.ID, bad.EventID())
			hstest.MustOK(t, e.alice.Do(t, "GET", clientRoomPath(rr.ID, "/event/"+url.PathEscape(string(good.EventID()))), nil))
		})
		// A rejected state event that a good event names as its prev
		// event leaves the state as it was ("Rejection": the state is
		// calculated as normal, except not updating with the rejected
		// event).
		t.Run("good event after a rejected one", func(t *testing.T) {
			before := e.snapshot(t, rr.ID)
			bad := rr.Build(t, event.Proto{Type: event.TypePowerLevels, StateKey: &empty, Sender: mallory, Content: pl})
			wantError(t, e.evil.Send(t, badHS, bad.JSON()), bad.EventID(), "rejected")
			good := rr.Build(t, event.Proto{Type: "m.room.message", Sender: mallory, PrevEvents: []id.EventID{bad.EventID()},
				Content: hstest.MustJSON(t, map[string]any{"msgtype": "m.text", "body": "after a rejected event"})})
			wantAccepted(t, e.evil.Send(t, badHS, good.JSON()), good.EventID())
			rr.Add(good)
			after := e.snapshot(t, rr.ID)
			if !slices.Equal(before.state, after.state) {
				t.Errorf("state changed:\nbefore %v\nafter  %v", before.state, after.state)
			}
			// And mallory still has no power: a topic of hers on top is
			// rejected.
			topic := rr.Build(t, event.Proto{Type: "m.room.topic", StateKey: &empty, Sender: mallory, PrevEvents: []id.EventID{good.EventID()},
				Content: hstest.MustJSON(t, map[string]any{"topic": "on top of my rejected power"})})
			wantError(t, e.evil.Send(t, badHS, topic.JSON()), topic.EventID(), "rejected")
			e.unchanged(t, rr.ID, after)
		})
		// Events whose auth events are of another room are rejected,
		// though the sender is joined there.
		t.Run("auth events of another room", func(t *testing.T) {
			elsewhere := e.room(t, "auth elsewhere")
			e.evil.Join(t, badHS, elsewhere.ID, eve)
			before := e.snapshot(t, rr.ID)
			p := rr.Build(t, event.Proto{Type: "m.room.message", Sender: eve,
				Content:    hstest.MustJSON(t, map[string]any{"msgtype": "m.text", "body": "joined elsewhere"}),
				AuthEvents: []id.EventID{elsewhere.StateEvent(event.TypePowerLevels, "").EventID(), elsewhere.StateEvent(event.TypeMember, string(eve)).EventID()}})
			resp := e.evil.Send(t, badHS, p.JSON())
			wantError(t, resp, p.EventID(), "")
			if st := e.stored(t, p.EventID()); st != nil && !st.IsRejected {
				t.Errorf("event %s stored as accepted (soft-failed %v); want rejected or dropped", p.EventID(), st.SoftFailed)
			}
			e.hidden(t, rr.ID, p.EventID())
			e.unchanged(t, rr.ID, before)
		})
	})

	// Step 6: an event that passes auth at its place in the DAG but not
	// against the current state is soft-failed: stored, not shown, not a
	// forward extremity.
	t.Run("soft failure", func(t *testing.T) {
		rr := e.room(t, "soft failure")
		// eve keeps evil in the room after mallory's ban, so that evil
		// may read hs1's events.
		e.evil.Join(t, badHS, rr.ID, e.evil.UserID("eve"))
		// Built before the ban, on the DAG before it.
		evading := rr.Build(t, message(t, mallory, "evading my ban"))
		mKey := string(mallory)
		evadingState := rr.Build(t, event.Proto{Type: event.TypeMember, StateKey: &mKey, Sender: mallory,
			Content: hstest.MustJSON(t, map[string]any{"membership": "join", "displayname": "Evader"})})
		hstest.MustOK(t, e.alice.Do(t, "POST", clientRoomPath(rr.ID, "/ban"), map[string]any{"user_id": mallory, "reason": "spam"}))
		before := e.snapshot(t, rr.ID)
		resp := e.evil.Send(t, badHS, evading.JSON(), evadingState.JSON())
		for _, p := range []*event.PDU{evading, evadingState} {
			wantAccepted(t, resp, p.EventID()) // soft failure is not an error
			if st := e.stored(t, p.EventID()); st == nil || !st.SoftFailed || st.IsRejected {
				t.Errorf("the event %s evading the ban was stored as %+v; want soft-failed", p.EventID(), st)
			}
			e.hidden(t, rr.ID, p.EventID())
		}
		e.unchanged(t, rr.ID, before)
		next := e.aliceSays(t, rr.ID, "after the evasion")
		if prev := e.prevEvents(t, next); slices.Contains(prev, evading.EventID()) {
			t.Errorf("alice's next message %s has prev_events %v; want the soft-failed %s left out", next, prev, evading.EventID())
		}

		// Step 5: after the ban in the DAG, with the auth events of before
		// it (which allow it), the event fails against the state before
		// it and is rejected.
		before = e.snapshot(t, rr.ID)
		after := rr.Build(t, event.Proto{Type: "m.room.message", Sender: mallory,
			Content:    hstest.MustJSON(t, map[string]any{"msgtype": "m.text", "body": "after my ban, citing my join"}),
			PrevEvents: []id.EventID{next}, AuthEvents: evading.AuthEventIDs()})
		resp = e.evil.Send(t, badHS, after.JSON())
		wantError(t, resp, after.EventID(), "rejected")
		if st := e.stored(t, after.EventID()); st != nil && !st.IsRejected {
			t.Errorf("event %s stored as accepted (soft-failed %v); want rejected", after.EventID(), st.SoftFailed)
		}
		e.hidden(t, rr.ID, after.EventID())
		e.unchanged(t, rr.ID, before)

		// Nor can she join again.
		status, answer := e.evil.Do(t, badHS, hstest.RawRequest{Method: "GET",
			Path: "/_matrix/federation/v1/make_join/" + url.PathEscape(string(rr.ID)) + "/" + url.PathEscape(mKey) + "?ver=" + string(rr.Version)})
		wantMatrixError(t, "GET /make_join of a banned user", status, answer, http.StatusForbidden, "M_FORBIDDEN")
		rejoin := rr.Build(t, event.Proto{Type: event.TypeMember, StateKey: &mKey, Sender: mallory, PrevEvents: []id.EventID{next},
			AuthEvents: evadingState.AuthEventIDs(), Content: hstest.MustJSON(t, map[string]any{"membership": "join"})})
		status, answer = e.evil.Do(t, badHS, hstest.RawRequest{Method: "PUT", Body: rejoin.JSON(),
			Path: "/_matrix/federation/v2/send_join/" + url.PathEscape(string(rr.ID)) + "/" + url.PathEscape(string(rejoin.EventID()))})
		wantMatrixError(t, "PUT /send_join of a banned user", status, answer, http.StatusForbidden, "M_FORBIDDEN")
		e.hidden(t, rr.ID, rejoin.EventID())
		e.unchanged(t, rr.ID, before)
	})

	// Events that hs1 lacks the prev or auth events of: what evil answers
	// when asked for them cannot make an event pass that should not.
	t.Run("forged history", func(t *testing.T) {
		rr := e.room(t, "forged history")
		e.evil.Join(t, badHS, rr.ID, e.evil.UserID("eve"))
		mJoin := rr.StateEvent(event.TypeMember, string(mallory)).EventID()
		plEv := rr.StateEvent(event.TypePowerLevels, "")
		empty := ""
		roomPath := url.PathEscape(string(rr.ID))

		// An auth event hs1 lacks, which evil's event_auth answers with a
		// power level event of mallory's that gives her 100.
		forgedPL := rr.Build(t, event.Proto{Type: event.TypePowerLevels, StateKey: &empty, Sender: mallory,
			Content: editJSON(t, plEv.Content(), func(m map[string]any) {
				users, _ := m["users"].(map[string]any)
				if users == nil {
					users = map[string]any{}
					m["users"] = users
				}
				users[string(mallory)] = 100
			})})
		rr.Remember(forgedPL)
		topic := rr.Build(t, event.Proto{Type: "m.room.topic", StateKey: &empty, Sender: mallory,
			Content:    hstest.MustJSON(t, map[string]any{"topic": "by the power of a forged event"}),
			AuthEvents: []id.EventID{forgedPL.EventID(), mJoin}})
		e.evil.Mux.HandleFunc("GET /_matrix/federation/v1/event_auth/"+roomPath+"/{eventId}", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, fed.EventAuthResponse{AuthChain: []json.RawMessage{forgedPL.JSON()}})
		})
		t.Run("auth event hs1 lacks", func(t *testing.T) {
			before := e.snapshot(t, rr.ID)
			resp := e.evil.Send(t, badHS, topic.JSON())
			wantError(t, resp, topic.EventID(), "")
			e.hidden(t, rr.ID, topic.EventID())
			if st := e.stored(t, forgedPL.EventID()); st != nil && !st.IsRejected {
				t.Errorf("the forged power levels %s were stored as accepted; want rejected or dropped", forgedPL.EventID())
			}
			e.unchanged(t, rr.ID, before)
		})

		// A prev event evil can produce nothing about.
		t.Run("prev event nobody has", func(t *testing.T) {
			before := e.snapshot(t, rr.ID)
			p := rr.Build(t, event.Proto{Type: "m.room.message", Sender: mallory,
				Content:    hstest.MustJSON(t, map[string]any{"msgtype": "m.text", "body": "after an event that does not exist"}),
				PrevEvents: []id.EventID{id.EventID("$" + strings.Repeat("A", 43))}, Depth: 100})
			resp := e.evil.Send(t, badHS, p.JSON())
			wantError(t, resp, p.EventID(), "")
			e.dropped(t, rr.ID, p.EventID())
			e.unchanged(t, rr.ID, before)
		})

		// After mallory's ban: a prev event hs1 lacks (after the ban), for
		// which evil answers state_ids with a state where mallory is still
		// joined. The event may pass at its place in the DAG, as evil tells
		// it, but not against the current state.
		hstest.MustOK(t, e.alice.Do(t, "POST", clientRoomPath(rr.ID, "/ban"), map[string]any{"user_id": mallory}))
		snap := e.snapshot(t, rr.ID)
		ban := id.EventID(stateID(t, snap, event.TypeMember, string(mallory)))
		hidden := rr.Build(t, event.Proto{Type: "m.room.message", Sender: mallory,
			Content:    hstest.MustJSON(t, map[string]any{"msgtype": "m.text", "body": "kept from hs1"}),
			PrevEvents: []id.EventID{ban}, AuthEvents: []id.EventID{plEv.EventID(), mJoin}})
		rr.Remember(hidden)
		var forgedState []id.EventID
		for _, entry := range snap.state {
			parts := strings.SplitN(entry, "|", 3)
			if parts[2] == string(ban) {
				forgedState = append(forgedState, mJoin)
			} else {
				forgedState = append(forgedState, id.EventID(parts[2]))
			}
		}
		e.evil.Mux.HandleFunc("POST /_matrix/federation/v1/get_missing_events/"+roomPath, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, fed.MissingEventsResponse{Events: []json.RawMessage{}})
		})
		e.evil.Mux.HandleFunc("GET /_matrix/federation/v1/state_ids/"+roomPath, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, fed.StateIDsResponse{PDUIDs: forgedState, AuthChainIDs: []id.EventID{}})
		})
		t.Run("prev event hs1 lacks, with a forged state", func(t *testing.T) {
			before := e.snapshot(t, rr.ID)
			p := rr.Build(t, event.Proto{Type: "m.room.message", Sender: mallory,
				Content:    hstest.MustJSON(t, map[string]any{"msgtype": "m.text", "body": "banned, on a forged state"}),
				PrevEvents: []id.EventID{hidden.EventID()}, AuthEvents: []id.EventID{plEv.EventID(), mJoin}})
			resp := e.evil.Send(t, badHS, p.JSON())
			if st := e.stored(t, p.EventID()); st != nil && !st.IsRejected && !st.SoftFailed {
				t.Errorf("PUT /send: %s accepted into the timeline (result %+v); want it rejected or soft-failed", p.EventID(), resp.PDUs[p.EventID()])
			}
			e.hidden(t, rr.ID, p.EventID())
			e.hidden(t, rr.ID, hidden.EventID())
			e.unchanged(t, rr.ID, before)

			// A good event of eve's that merges the forged branch with the
			// real one is accepted, and state resolution keeps the ban.
			eve := e.evil.UserID("eve")
			merge := rr.Build(t, event.Proto{Type: "m.room.message", Sender: eve,
				Content:    hstest.MustJSON(t, map[string]any{"msgtype": "m.text", "body": "merging the branches"}),
				PrevEvents: []id.EventID{p.EventID(), id.EventID(before.timeline[0])}})
			wantAccepted(t, e.evil.Send(t, badHS, merge.JSON()), merge.EventID())
			after := e.snapshot(t, rr.ID)
			if !slices.Equal(before.state, after.state) {
				t.Errorf("state changed by merging the forged branch:\nbefore %v\nafter  %v", before.state, after.state)
			}
			if len(after.timeline) == 0 || after.timeline[0] != string(merge.EventID()) {
				t.Errorf("/messages = %v; want eve's merge %s first", after.timeline, merge.EventID())
			}
			m := hstest.MustOK(t, e.alice.Do(t, "GET", clientRoomPath(rr.ID, "/state/m.room.member/"+url.PathEscape(string(mallory))), nil))
			if m["membership"] != "ban" {
				t.Errorf("mallory's membership after the merge: %v; want ban", m)
			}
		})
	})

	// Another room's events where this room's belong: as prev events, or
	// named by evil's state_ids as the state at a prev event hs1 lacks.
	// The other room's state must not leak into this one.
	for _, version := range []id.RoomVersion{"10", "11", "12"} {
		t.Run("prev event of another room, v"+string(version), func(t *testing.T) {
			rr := e.roomOf(t, "prev here", version)
			elsewhere := e.roomOf(t, "prev elsewhere", version)
			e.aliceSays(t, elsewhere.ID, "elsewhere")
			before := e.snapshot(t, rr.ID)
			other := e.snapshot(t, elsewhere.ID)
			p := rr.Build(t, event.Proto{Type: "m.room.message", Sender: mallory,
				Content:    hstest.MustJSON(t, map[string]any{"msgtype": "m.text", "body": "my prev is in another room"}),
				PrevEvents: []id.EventID{id.EventID(other.timeline[0])}})
			resp := e.evil.Send(t, badHS, p.JSON())
			wantError(t, resp, p.EventID(), "")
			e.hidden(t, rr.ID, p.EventID())
			e.unchanged(t, rr.ID, before)
			// alice's next message names no event of the other room.
			next := e.aliceSays(t, rr.ID, "after the cross-room event")
			if prev := e.prevEvents(t, next); slices.Contains(prev, id.EventID(other.timeline[0])) || slices.Contains(prev, p.EventID()) {
				t.Errorf("alice's message %s has prev_events %v; want neither %s of the other room nor %s", next, prev, other.timeline[0], p.EventID())
			}
			// A good event of mallory's on top of both: whatever hs1 makes
			// of it, the other room's state stays out of this one.
			before = e.snapshot(t, rr.ID)
			top := rr.Build(t, event.Proto{Type: "m.room.message", Sender: mallory, PrevEvents: []id.EventID{p.EventID(), next},
				Content: hstest.MustJSON(t, map[string]any{"msgtype": "m.text", "body": "on top of the cross-room event"})})
			resp = e.evil.Send(t, badHS, top.JSON())
			t.Logf("PUT /send: result of %s: %+v", top.EventID(), resp.PDUs[top.EventID()])
			after := e.snapshot(t, rr.ID)
			if !slices.Equal(before.state, after.state) {
				t.Errorf("state changed by an event on top of the cross-room one:\nbefore %v\nafter  %v", before.state, after.state)
			}
		})
		t.Run("state_ids naming another room's events, v"+string(version), func(t *testing.T) {
			rr := e.roomOf(t, "state here", version)
			elsewhere := e.roomOf(t, "state elsewhere", version)
			before := e.snapshot(t, rr.ID)
			var otherState []id.EventID
			for _, entry := range e.snapshot(t, elsewhere.ID).state {
				otherState = append(otherState, id.EventID(strings.SplitN(entry, "|", 3)[2]))
			}
			lacked := rr.Build(t, message(t, mallory, "hs1 lacks me"))
			rr.Remember(lacked)
			roomPath := url.PathEscape(string(rr.ID))
			e.evil.Mux.HandleFunc("POST /_matrix/federation/v1/get_missing_events/"+roomPath, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, fed.MissingEventsResponse{Events: []json.RawMessage{}})
			})
			e.evil.Mux.HandleFunc("GET /_matrix/federation/v1/state_ids/"+roomPath, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, fed.StateIDsResponse{PDUIDs: otherState, AuthChainIDs: []id.EventID{}})
			})
			p := rr.Build(t, event.Proto{Type: "m.room.message", Sender: mallory, PrevEvents: []id.EventID{lacked.EventID()},
				Content: hstest.MustJSON(t, map[string]any{"msgtype": "m.text", "body": "on another room's state"})})
			resp := e.evil.Send(t, badHS, p.JSON())
			t.Logf("PUT /send: result of %s: %+v", p.EventID(), resp.PDUs[p.EventID()])
			e.unchanged(t, rr.ID, before)
		})
	}

	// A redaction by a user without the power to redact others' events is
	// kept as an event but redacts nothing of theirs; her own events it
	// redacts (server-server API "Redactions", room versions 3 and later).
	t.Run("redaction without power", func(t *testing.T) {
		rr := e.room(t, "redaction without power")
		target := e.aliceSays(t, rr.ID, "alice's words")
		red := rr.Build(t, event.Proto{Type: event.TypeRedaction, Sender: mallory, Redacts: target, Content: []byte(`{}`)})
		resp := e.evil.Send(t, badHS, red.JSON())
		if res := resp.PDUs[red.EventID()]; res.Error == "" {
			rr.Add(red)
		}
		ev := hstest.MustOK(t, e.alice.Do(t, "GET", clientRoomPath(rr.ID, "/event/"+url.PathEscape(string(target))), nil))
		if c, _ := ev["content"].(map[string]any); c["body"] != "alice's words" {
			t.Errorf("alice's message after mallory's redaction: content %v; want it intact", c)
		}
		// Control: her own message she may redact.
		own := rr.Build(t, message(t, mallory, "mallory's words"))
		wantAccepted(t, e.evil.Send(t, badHS, own.JSON()), own.EventID())
		rr.Add(own)
		red2 := rr.Build(t, event.Proto{Type: event.TypeRedaction, Sender: mallory, Redacts: own.EventID(), Content: []byte(`{}`)})
		wantAccepted(t, e.evil.Send(t, badHS, red2.JSON()), red2.EventID())
		ev = hstest.MustOK(t, e.alice.Do(t, "GET", clientRoomPath(rr.ID, "/event/"+url.PathEscape(string(own.EventID()))), nil))
		if c, _ := ev["content"].(map[string]any); len(c) != 0 {
			t.Errorf("mallory's message after her own redaction: content %v; want {}", c)
		}
	})

	// An event at the greatest depth the room version allows is valid;
	// hs1's next event must then be at that depth too ("If the room's
	// depth is already at the limit, the depth must be set to the
	// limit"), not one more, which no server would accept.
	t.Run("depth at the limit", func(t *testing.T) {
		rr := e.room(t, "depth at the limit")
		const maxDepth = 1<<53 - 1
		deep := rr.Build(t, event.Proto{Type: "m.room.message", Sender: mallory, Depth: maxDepth,
			Content: hstest.MustJSON(t, map[string]any{"msgtype": "m.text", "body": "as deep as can be"})})
		wantAccepted(t, e.evil.Send(t, badHS, deep.JSON()), deep.EventID())
		rr.Add(deep)
		r := e.alice.Do(t, "PUT", clientRoomPath(rr.ID, "/send/m.room.message/after-deep"), map[string]any{"msgtype": "m.text", "body": "after the deep one"})
		if r.Status != http.StatusOK {
			t.Fatalf("%s after an event at depth 2^53-1: %d %s; want 200", r.Call, r.Status, r.Body)
		}
		next := id.EventID(hstest.Str(t, r.JSON(t), "event_id"))
		raw, err := e.evil.Client().Event(t.Context(), badHS, next)
		if err != nil {
			t.Fatal(err)
		}
		var ev struct{ Depth int64 }
		_ = json.Unmarshal(raw, &ev)
		if ev.Depth != maxDepth {
			t.Errorf("depth of alice's message after one at 2^53-1: %d; want 2^53-1", ev.Depth)
		}
	})

	// Step 1: PDUs that are not valid events of the room version are
	// dropped; the valid one beside them is accepted.
	t.Run("invalid events", func(t *testing.T) {
		rr := e.room(t, "invalid events")
		before := e.snapshot(t, rr.ID)
		resign := func(raw []byte) json.RawMessage {
			out, err := event.HashAndSign(rr.Version, raw, evilName, e.evil.Key)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		base := rr.Build(t, message(t, mallory, "invalid"))
		var prevs []string
		for i := range 21 {
			prevs = append(prevs, "$"+strings.Repeat(string(rune('A'+i)), 43))
		}
		good := rr.Build(t, message(t, mallory, "valid, among invalid ones"))
		resp := e.evil.Send(t, badHS,
			json.RawMessage(`1`), json.RawMessage(`"an event"`), json.RawMessage(`{}`),
			json.RawMessage(`{"room_id":"`+string(rr.ID)+`"}`),
			resign(editJSON(t, base.JSON(), func(m map[string]any) { m["prev_events"] = prevs })),
			resign(editJSON(t, base.JSON(), func(m map[string]any) { delete(m, "sender") })),
			resign(editJSON(t, base.JSON(), func(m map[string]any) { m["depth"] = -1 })),
			resign(editJSON(t, base.JSON(), func(m map[string]any) { m["content"] = "not an object" })),
			resign(editJSON(t, base.JSON(), func(m map[string]any) { m["sender"] = "mallory" })),
			resign(editJSON(t, base.JSON(), func(m map[string]any) {
				m["content"] = map[string]any{"msgtype": "m.text", "body": strings.Repeat("x", event.MaxSize)}
			})),
			good.JSON())
		for eid, res := range resp.PDUs {
			if eid != good.EventID() && res.Error == "" {
				t.Errorf("PUT /send: %s accepted; want only %s accepted", eid, good.EventID())
			}
		}
		wantAccepted(t, resp, good.EventID())
		rr.Add(good)
		after := e.snapshot(t, rr.ID)
		want := append([]string{string(good.EventID())}, before.timeline...)
		if !slices.Equal(after.timeline, want[:min(len(want), 100)]) {
			t.Errorf("/messages after the invalid events = %v; want only %s added to %v", after.timeline, good.EventID(), before.timeline)
		}
		if !slices.Equal(before.state, after.state) {
			t.Errorf("state changed: %v, then %v", before.state, after.state)
		}

		// A PDU with a key twice (which parsers read differently) is not
		// canonical JSON: the request it is in fails authentication, as
		// its body cannot be signed over.
		dup := rr.Build(t, message(t, mallory, "one content"))
		dupRaw := bytes.Replace(dup.JSON(), []byte(`{"auth_events"`), []byte(`{"content":{"msgtype":"m.text","body":"another content"},"auth_events"`), 1)
		status, answer := e.evil.Do(t, badHS, hstest.RawRequest{Method: "PUT", Path: "/_matrix/federation/v1/send/duplicate-keys",
			Body:       []byte(`{"origin":"` + evilName + `","origin_server_ts":1,"pdus":[` + string(dupRaw) + `]}`),
			SignedBody: hstest.MustJSON(t, fed.Transaction{Origin: evilName, OriginServerTS: 1, PDUs: []json.RawMessage{dup.JSON()}})})
		wantMatrixError(t, "PUT /send with a duplicate key", status, answer, http.StatusBadRequest, "M_NOT_JSON")
		e.dropped(t, rr.ID, dup.EventID())
		e.unchanged(t, rr.ID, after)
	})

	// A retried txnId is answered as the first time and not processed
	// again, whatever it holds now ("Transactions").
	t.Run("replayed transaction ID", func(t *testing.T) {
		rr := e.room(t, "replayed transaction ID")
		first := rr.Build(t, message(t, mallory, "first"))
		rr.Add(first)
		second := rr.Build(t, message(t, mallory, "second, same txnId"))
		var answers [2]fed.TransactionResponse
		for i, p := range []*event.PDU{first, second} {
			status, body := e.evil.Do(t, badHS, hstest.RawRequest{Method: "PUT", Path: "/_matrix/federation/v1/send/replayed",
				Body: hstest.MustJSON(t, fed.Transaction{Origin: evilName, PDUs: []json.RawMessage{p.JSON()}})})
			if status != http.StatusOK {
				t.Fatalf("PUT /send/replayed #%d: %d %s", i+1, status, body)
			}
			if err := json.Unmarshal(body, &answers[i]); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := answers[1].PDUs[first.EventID()]; !ok || len(answers[1].PDUs) != 1 {
			t.Errorf("second PUT /send/replayed answered %+v; want the first answer %+v", answers[1], answers[0])
		}
		e.dropped(t, rr.ID, second.EventID())
	})

	// Transactions: at most 50 PDUs and 100 EDUs (400 M_BAD_JSON), and a
	// body within max_request_bytes (413 M_TOO_LARGE); nothing of a
	// refused transaction is processed.
	t.Run("transaction limits", func(t *testing.T) {
		rr := e.room(t, "transaction limits")
		before := e.snapshot(t, rr.ID)
		var pdus []json.RawMessage
		var ids []id.EventID
		for i := range 51 {
			p := rr.Build(t, message(t, mallory, fmt.Sprintf("one of 51: %d", i)))
			pdus, ids = append(pdus, p.JSON()), append(ids, p.EventID())
		}
		edus := make([]fed.EDU, 101)
		for i := range edus {
			edus[i] = fed.EDU{Type: "m.typing", Content: hstest.MustJSON(t, map[string]any{"room_id": rr.ID, "user_id": mallory, "typing": true})}
		}
		big := hstest.MustJSON(t, fed.Transaction{Origin: evilName, PDUs: pdus[:1],
			EDUs: []fed.EDU{{Type: "m.padding", Content: hstest.MustJSON(t, map[string]any{"pad": strings.Repeat("x", badMaxRequest)})}}})
		for _, c := range []struct {
			name    string
			req     hstest.RawRequest
			status  int
			errcode string
		}{
			{"51 PDUs", hstest.RawRequest{Body: hstest.MustJSON(t, fed.Transaction{Origin: evilName, PDUs: pdus})}, 400, "M_BAD_JSON"},
			{"101 EDUs", hstest.RawRequest{Body: hstest.MustJSON(t, fed.Transaction{Origin: evilName, PDUs: pdus[:1], EDUs: edus})}, 400, "M_BAD_JSON"},
			{"body over max_request_bytes", hstest.RawRequest{Body: big}, 413, "M_TOO_LARGE"},
			{"chunked body over max_request_bytes", hstest.RawRequest{Body: big, Chunked: true}, 413, "M_TOO_LARGE"},
		} {
			t.Run(c.name, func(t *testing.T) {
				c.req.Method, c.req.Path = "PUT", "/_matrix/federation/v1/send/limits-"+strings.ReplaceAll(c.name, " ", "-")
				status, answer := e.evil.Do(t, badHS, c.req)
				wantMatrixError(t, "PUT /send", status, answer, c.status, c.errcode)
				for _, eid := range ids {
					if e.stored(t, eid) != nil {
						t.Errorf("event %s of the refused transaction was stored", eid)
					}
				}
				e.unchanged(t, rr.ID, before)
			})
		}
		// 50 is the limit, not over it.
		resp := e.evil.Send(t, badHS, pdus[:50]...)
		for _, eid := range ids[:50] {
			wantAccepted(t, resp, eid)
		}
	})

	// PDUs of rooms hs1 is not in change nothing: a room it never heard
	// of, and one whose last local member left.
	t.Run("rooms hs1 is not in", func(t *testing.T) {
		rr := e.room(t, "left by alice")
		e.evil.Join(t, badHS, rr.ID, e.evil.UserID("eve"))
		hstest.MustOK(t, e.alice.Do(t, "POST", clientRoomPath(rr.ID, "/leave"), map[string]any{}))
		left := rr.Build(t, message(t, mallory, "nobody on hs1 reads this"))
		resp := e.evil.Send(t, badHS, left.JSON())
		wantError(t, resp, left.EventID(), "not in the room")
		e.dropped(t, rr.ID, left.EventID())

		unknown := rr.Build(t, message(t, mallory, "in a room hs1 never heard of"))
		unknownRoom := editJSON(t, unknown.JSON(), func(m map[string]any) { m["room_id"] = "!nosuchroom:" + evilName })
		resp = e.evil.Send(t, badHS, unknownRoom)
		for eid, res := range resp.PDUs {
			if res.Error == "" {
				t.Errorf("PUT /send of a PDU of an unknown room: %s accepted; want no result or an error", eid)
			}
		}
		r := e.alice.Do(t, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape("!nosuchroom:"+evilName)+"/messages?dir=b", nil)
		if r.Status == http.StatusOK {
			t.Errorf("%s as alice: %d %s; want an error", r.Call, r.Status, r.Body)
		}
	})

	// Server ACLs: a PDU from a denied server gets an error result and is
	// dropped; so are its joins and its reads.
	t.Run("server ACL", func(t *testing.T) {
		rr := e.room(t, "server ACL")
		hstest.MustOK(t, e.alice.Do(t, "PUT", clientRoomPath(rr.ID, "/state/m.room.server_acl/"), map[string]any{
			"allow": []string{"*"}, "deny": []string{evilName}, "allow_ip_literals": true,
		}))
		before := e.snapshot(t, rr.ID)
		p := rr.Build(t, message(t, mallory, "from a denied server"))
		resp := e.evil.Send(t, badHS, p.JSON())
		wantError(t, resp, p.EventID(), "acl")
		e.dropped(t, rr.ID, p.EventID())
		e.unchanged(t, rr.ID, before)

		status, answer := e.evil.Do(t, badHS, hstest.RawRequest{Method: "GET",
			Path: "/_matrix/federation/v1/make_join/" + url.PathEscape(string(rr.ID)) + "/" + url.PathEscape(string(e.evil.UserID("eve"))) + "?ver=" + string(rr.Version)})
		wantMatrixError(t, "GET /make_join", status, answer, http.StatusForbidden, "M_FORBIDDEN")
		status, answer = e.evil.Do(t, badHS, hstest.RawRequest{Method: "GET",
			Path: "/_matrix/federation/v1/event/" + url.PathEscape(before.timeline[0])})
		wantMatrixError(t, "GET /event", status, answer, http.StatusForbidden, "M_FORBIDDEN")
		e.unchanged(t, rr.ID, before)
	})

	// send_join: the event must be a join of its sender, of the
	// requesting server, with the ID of the path, signed.
	t.Run("send_join", func(t *testing.T) {
		rr := e.room(t, "send_join")
		eve := e.evil.UserID("eve")
		mk, err := e.evil.Client().MakeJoin(t.Context(), badHS, rr.ID, eve, event.SupportedVersions())
		if err != nil {
			t.Fatalf("make_join for eve: %v", err)
		}
		sign := func(raw []byte) *event.PDU {
			signed, err := event.HashAndSign(mk.RoomVersion, raw, evilName, e.evil.Key)
			if err != nil {
				t.Fatal(err)
			}
			p, err := event.Parse(mk.RoomVersion, signed)
			if err != nil {
				t.Fatalf("parse %s: %v", signed, err)
			}
			return p
		}
		good := sign(mk.Event)
		bob := string(e.evil.UserID("bob"))
		alice := e.alice.UserID
		other := rr.Build(t, message(t, mallory, "some other event"))
		for _, c := range []struct {
			name    string
			p       *event.PDU
			body    json.RawMessage
			pathID  id.EventID
			status  int
			errcode string
		}{
			{"join of another user", sign(editJSON(t, mk.Event, func(m map[string]any) { m["state_key"] = bob })), nil, "", 400, "M_BAD_JSON"},
			{"join of another server's user", sign(editJSON(t, mk.Event, func(m map[string]any) { m["state_key"], m["sender"] = alice, alice })), nil, "", 403, "M_FORBIDDEN"},
			{"leave, not a join", sign(editJSON(t, mk.Event, func(m map[string]any) { m["content"] = map[string]any{"membership": "leave"} })), nil, "", 400, "M_BAD_JSON"},
			{"event ID of another event in the path", good, nil, other.EventID(), 400, "M_BAD_JSON"},
			{"flipped signature", good, flipSignatures(t, good.JSON()), "", 403, "M_FORBIDDEN"},
		} {
			t.Run(c.name, func(t *testing.T) {
				before := e.snapshot(t, rr.ID)
				body, pathID := c.body, c.pathID
				if body == nil {
					body = c.p.JSON()
				}
				if pathID == "" {
					pathID = c.p.EventID()
				}
				status, answer := e.evil.Do(t, badHS, hstest.RawRequest{Method: "PUT",
					Path: "/_matrix/federation/v2/send_join/" + url.PathEscape(string(rr.ID)) + "/" + url.PathEscape(string(pathID)), Body: body})
				wantMatrixError(t, "PUT /send_join", status, answer, c.status, c.errcode)
				e.dropped(t, rr.ID, c.p.EventID())
				e.unchanged(t, rr.ID, before)
			})
		}
		// The good join still works afterwards.
		if _, err := e.evil.Client().SendJoin(t.Context(), badHS, rr.ID, good.EventID(), good.JSON()); err != nil {
			t.Errorf("send_join of eve's own join after the bad ones: %v", err)
		}
	})
}

// prevEvents reads an event of hs1 over federation, as evil, and returns
// its prev_events (the client format does not show them).
func (e *badEnv) prevEvents(t *testing.T, eventID id.EventID) []id.EventID {
	t.Helper()
	raw, err := e.evil.Client().Event(t.Context(), badHS, eventID)
	if err != nil {
		t.Fatalf("GET /_matrix/federation/v1/event/%s as evil: %v", eventID, err)
	}
	var ev struct {
		PrevEvents []id.EventID `json:"prev_events"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return ev.PrevEvents
}

// stateID finds the event ID of a state entry in a snapshot.
func stateID(t *testing.T, s snapshot, typ, key string) string {
	t.Helper()
	for _, entry := range s.state {
		if parts := strings.SplitN(entry, "|", 3); parts[0] == typ && parts[1] == key {
			return parts[2]
		}
	}
	t.Fatalf("no %s %q in the state %v", typ, key, s.state)
	return ""
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// wantMatrixError checks a raw answer's status and errcode.
func wantMatrixError(t *testing.T, call string, status int, body []byte, wantStatus int, wantCode string) {
	t.Helper()
	var m struct {
		ErrCode string `json:"errcode"`
	}
	_ = json.Unmarshal(body, &m)
	if status != wantStatus || m.ErrCode != wantCode {
		t.Errorf("%s: %d %s; want %d %s", call, status, body, wantStatus, wantCode)
	}
}

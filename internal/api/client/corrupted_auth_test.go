package client_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

// Events fetched for the state at a gap whose auth events cannot be had
// are not taken, nor are the events that hang on them (Complement
// TestCorruptedAuthChain). charlie changes his name five times (A to E,
// each authorised by the one before); hs1 gets a message after E whose
// prev events it lacks, asks /get_missing_events (answered with a message
// whose prev event it also lacks), then /state_ids, which names A to E, of
// which B cannot be fetched. C, D and E must not become state: a message
// of charlie's sent after his first join is accepted and his member
// event is still that join. /state_ids is asked once.
func TestCorruptedAuthChain(t *testing.T) {
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			f := hstest.NewFederation(t, hstest.Options{Engine: &eng}, scHS)
			hs := f.Server(scHS)
			t.Cleanup(func() {
				if t.Failed() {
					for _, l := range strings.Split(hs.Logs(), "\n") {
						if strings.Contains(l, "component=room") && !strings.Contains(l, "msg=request") {
							t.Log(l)
						}
					}
				}
			})
			remote := f.NewRemote(t, scRemote)
			alice := hs.Register(t, "alice", "password-alice")
			roomID := createRoom(t, alice, map[string]any{"preset": "public_chat", "room_version": "10"})
			room := remote.Join(t, scHS, id.RoomID(roomID), remote.UserID("charlie"))
			charlie := remote.UserID("charlie")
			sk := string(charlie)
			create := room.StateEvent(event.TypeCreate, "")
			pl := room.StateEvent(event.TypePowerLevels, "")
			jr := room.StateEvent(event.TypeJoinRules, "")
			join := room.StateEvent(event.TypeMember, sk)

			var names []*event.PDU
			prev := join
			for _, name := range []string{"A", "B", "C", "D", "E"} {
				p := room.Build(t, event.Proto{
					Type: event.TypeMember, StateKey: &sk, Sender: charlie,
					Content:    hstest.MustJSON(t, map[string]any{"membership": "join", "displayname": name}),
					PrevEvents: []id.EventID{prev.EventID()},
					AuthEvents: []id.EventID{create.EventID(), pl.EventID(), jr.EventID(), prev.EventID()},
				})
				if name != "B" {
					room.Remember(p) // B is never served
				}
				names = append(names, p)
				prev = p
			}
			e := names[4]
			msgAfter := func(body string, after *event.PDU, authMember *event.PDU) *event.PDU {
				p := room.Build(t, event.Proto{
					Type: "m.room.message", Sender: charlie,
					Content:    hstest.MustJSON(t, map[string]any{"msgtype": "m.text", "body": body}),
					PrevEvents: []id.EventID{after.EventID()},
					AuthEvents: []id.EventID{create.EventID(), pl.EventID(), authMember.EventID()},
				})
				room.Remember(p)
				return p
			}
			forStateIDs := msgAfter("for /state_ids", e, e)
			gme := msgAfter("for /get_missing_events", forStateIDs, e)
			sendTxn := msgAfter("for /send", gme, e)

			remote.Mux.HandleFunc("POST /_matrix/federation/v1/get_missing_events/{roomId}", func(w http.ResponseWriter, req *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(federation.MissingEventsResponse{Events: []json.RawMessage{gme.JSON()}})
			})
			var stateIDs atomic.Int32
			remote.Mux.HandleFunc("GET /_matrix/federation/v1/state_ids/{roomId}", func(w http.ResponseWriter, req *http.Request) {
				stateIDs.Add(1)
				if got := id.EventID(req.URL.Query().Get("event_id")); got != forStateIDs.EventID() {
					t.Errorf("/state_ids asked for %s, want %s (the prev event of the missing events)", got, forStateIDs.EventID())
				}
				resp := federation.StateIDsResponse{AuthChainIDs: []id.EventID{create.EventID(), pl.EventID(), jr.EventID(), join.EventID()}}
				for _, p := range names[:4] {
					resp.AuthChainIDs = append(resp.AuthChainIDs, p.EventID())
				}
				for _, typ := range []string{event.TypeCreate, event.TypePowerLevels, event.TypeJoinRules, "m.room.history_visibility"} {
					if p := room.StateEvent(typ, ""); p != nil {
						resp.PDUIDs = append(resp.PDUIDs, p.EventID())
					}
				}
				resp.PDUIDs = append(resp.PDUIDs, room.StateEvent(event.TypeMember, alice.UserID).EventID(), e.EventID())
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(resp)
			})
			remote.Send(t, scHS, sendTxn.JSON())

			sentinel := msgAfter("finished", join, join)
			remote.Send(t, scHS, sentinel.JSON())
			seesEvent(t, alice, roomID, string(sentinel.EventID()))
			r := alice.Do(t, "GET", roomPath(roomID, "/state/m.room.member/"+url.PathEscape(sk)), nil)
			if m := hstest.MustOK(t, r); m["displayname"] != nil {
				t.Errorf("charlie's member state = %v, want his first join (no displayname): C, D and E hang on B, which hs1 never had", m)
			}
			for _, p := range names[2:] {
				if r := alice.Do(t, "GET", roomPath(roomID, "/event/"+string(p.EventID())), nil); r.Status != http.StatusNotFound {
					t.Errorf("GET /event of %s = %d, want 404 (never accepted)", p.EventID(), r.Status)
				}
			}
			if n := stateIDs.Load(); n != 1 {
				t.Errorf("/state_ids asked %d times, want once", n)
			}
		})
	}
}

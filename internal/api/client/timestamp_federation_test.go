package client_test

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

// GET /timestamp_to_event for a time before the server joined the room:
// the events are on another server, which is asked over federation
// (Complement TestJumpToDateEndpoint/parallel/federation).
func TestTimestampToEventFederation(t *testing.T) {
	t.Parallel()
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			f := hstest.NewFederation(t, hstest.Options{Engine: &eng}, "hs1.polder.test", "hs2.polder.test")
			hs1, hs2 := f.Server("hs1.polder.test"), f.Server("hs2.polder.test")
			alice := hs1.Register(t, "alice", "pw")
			bob := hs2.Register(t, "bob", "pw")
			room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
			ts := func(eventID string) int64 {
				t.Helper()
				m := hstest.MustOK(t, alice.Do(t, "GET", roomPath(room, "/event/"+url.PathEscape(eventID)), nil))
				return int64(m["origin_server_ts"].(float64))
			}
			a := sendText(t, alice, room, "A")
			b := sendText(t, alice, room, "B")
			aTS, bTS := ts(a), ts(b)
			// C and bob's join come later than B on the clock; C keeps B
			// from being the join's prev event.
			for time.Now().UnixMilli() <= bTS+1 {
				time.Sleep(time.Millisecond)
			}
			sendText(t, alice, room, "C")
			joinVia(t, bob, room, hs1.ServerName())

			ask := func(at int64, dir string) string {
				t.Helper()
				r := bob.Do(t, "GET", c1+"/rooms/"+url.PathEscape(room)+fmt.Sprintf("/timestamp_to_event?ts=%d&dir=%s", at, dir), nil)
				return hstest.Str(t, hstest.MustOK(t, r), "event_id")
			}
			if got := ask(aTS-1, "f"); got != a {
				t.Errorf("forwards from before A on hs2 = %s, want A %s (on hs1 only)", got, a)
			}
			if got := ask(bTS, "b"); got != b {
				t.Errorf("backwards from B on hs2 = %s, want B %s (on hs1 only)", got, b)
			}
			// bob reads around it on hs2.
			m := hstest.MustOK(t, bob.Do(t, "GET", roomPath(room, "/context/"+url.PathEscape(b)), nil))
			if ev, _ := m["event"].(map[string]any); ev["event_id"] != b {
				t.Errorf("/context of B on hs2 = %v, want B", m)
			}
			// A room hs2 holds from its start answers from hs2 alone.
			own := createRoom(t, bob, map[string]any{"preset": "public_chat"})
			c := sendText(t, bob, own, "C")
			r := bob.Do(t, "GET", c1+"/rooms/"+url.PathEscape(own)+"/timestamp_to_event?ts=0&dir=f", nil)
			if got := hstest.Str(t, hstest.MustOK(t, r), "event_id"); got == c {
				t.Errorf("forwards from 0 in bob's own room = C, want its create event")
			}
		})
	}
}

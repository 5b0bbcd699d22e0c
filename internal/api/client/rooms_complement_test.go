package client_test

import (
	"net/url"
	"testing"

	"polder.dev/polder/internal/hstest"
)

// Room details Complement's csapi tests found, each named.
func TestRoomsComplementDetails(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")

		t.Run("createRoom writes the topic as m.topic too", func(t *testing.T) {
			// TestRoomCreate "makes a room with a topic and writes rich
			// topic representation".
			roomID := createRoom(t, alice, map[string]any{"preset": "public_chat", "topic": "Test Room"})
			c := hstest.MustOK(t, alice.Do(t, "GET", roomPath(roomID, "/state/m.room.topic/"), nil))
			mt, _ := c["m.topic"].(map[string]any)
			texts, _ := mt["m.text"].([]any)
			if c["topic"] != "Test Room" || len(texts) != 1 || texts[0].(map[string]any)["body"] != "Test Room" {
				t.Errorf("m.room.topic = %v, want topic and m.topic.m.text[0].body both \"Test Room\"", c)
			}
		})

		t.Run("join with custom content", func(t *testing.T) {
			// TestRoomMembers "POST /join/:room_id can join a room with
			// custom content".
			roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
			hstest.MustOK(t, bob.Do(t, "POST", c3+"/join/"+url.PathEscape(roomID), map[string]any{"foo": "bar", "reason": "hi", "membership": "leave"}))
			c := hstest.MustOK(t, alice.Do(t, "GET", roomPath(roomID, "/state/m.room.member/"+url.PathEscape(bob.UserID)), nil))
			if c["membership"] != "join" || c["foo"] != "bar" || c["reason"] != "hi" {
				t.Errorf("bob's member content = %v, want membership join, foo bar, reason hi", c)
			}
		})

		t.Run("joining twice is idempotent", func(t *testing.T) {
			// TestRoomCreationReportsEventsToMyself "Joining room twice is
			// idempotent".
			roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
			memberID := func() string {
				t.Helper()
				r := alice.Do(t, "GET", roomPath(roomID, "/state"), nil)
				for _, ev := range hstest.Decode[[]map[string]any](t, r) {
					if ev["type"] == "m.room.member" && ev["state_key"] == bob.UserID {
						return ev["event_id"].(string)
					}
				}
				t.Fatalf("no member event of bob in %s", r.Body)
				return ""
			}
			hstest.MustOK(t, bob.Do(t, "POST", c3+"/join/"+url.PathEscape(roomID), map[string]any{}))
			first := memberID()
			hstest.MustOK(t, bob.Do(t, "POST", c3+"/join/"+url.PathEscape(roomID), map[string]any{}))
			if second := memberID(); second != first {
				t.Errorf("second join sent %s, want bob's first join %s kept", second, first)
			}
			// A join with new content is a change.
			hstest.MustOK(t, bob.Do(t, "POST", c3+"/join/"+url.PathEscape(roomID), map[string]any{"reason": "again"}))
			if third := memberID(); third == first {
				t.Errorf("join with a reason sent nothing, want a new member event")
			}
		})

		t.Run("joined_members has avatar_url and display_name, null when unset", func(t *testing.T) {
			// TestRoomState "GET /rooms/:room_id/joined_members fetches my
			// membership".
			roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
			r := alice.Do(t, "GET", roomPath(roomID, "/joined_members"), nil)
			m := hstest.MustOK(t, r)
			me, _ := m["joined"].(map[string]any)[alice.UserID].(map[string]any)
			if v, ok := me["avatar_url"]; !ok || v != nil {
				t.Errorf("alice in joined_members = %v (%s), want avatar_url null", me, r.Body)
			}
			if _, ok := me["display_name"]; !ok {
				t.Errorf("alice in joined_members = %v, want display_name", me)
			}
		})
	})
}

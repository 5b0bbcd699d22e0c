package client_test

import (
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"

	"polder.dev/polder/internal/hstest"
)

const c3 = "/_matrix/client/v3"

// createRoom creates a room and returns its ID.
func createRoom(t testing.TB, c *hstest.Client, body map[string]any) string {
	t.Helper()
	r := c.Do(t, "POST", c3+"/createRoom", body)
	return hstest.Str(t, hstest.MustOK(t, r), "room_id")
}

func roomPath(roomID, rest string) string { return c3 + "/rooms/" + url.PathEscape(roomID) + rest }

var txnCounter atomic.Int64

func sendText(t testing.TB, c *hstest.Client, roomID, body string) string {
	t.Helper()
	r := c.Do(t, "PUT", roomPath(roomID, fmt.Sprintf("/send/m.room.message/t%d", txnCounter.Add(1))), map[string]any{"msgtype": "m.text", "body": body})
	return hstest.Str(t, hstest.MustOK(t, r), "event_id")
}

// createRoom, state, membership and sending in every room version
// (client-server API, "Rooms").
func TestRoomLifecycle(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		eve := hs.Register(t, "eve", "pw")
		for _, v := range []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"} {
			t.Run("v"+v, func(t *testing.T) {
				roomID := createRoom(t, alice, map[string]any{"room_version": v, "name": "Room " + v, "topic": "t", "preset": "private_chat"})
				// State reads.
				name := hstest.MustOK(t, alice.Do(t, "GET", roomPath(roomID, "/state/m.room.name/"), nil))
				if name["name"] != "Room "+v {
					t.Errorf("name = %v", name)
				}
				hstest.MustOK(t, alice.Do(t, "GET", roomPath(roomID, "/state/m.room.name"), nil))
				hstest.MustErr(t, alice.Do(t, "GET", roomPath(roomID, "/state/m.room.nothing/"), nil), 404, "M_NOT_FOUND")
				hstest.MustErr(t, eve.Do(t, "GET", roomPath(roomID, "/state/m.room.name/"), nil), 403, "M_FORBIDDEN")
				// Not invited: bob cannot join, or send.
				hstest.MustErr(t, bob.Do(t, "POST", roomPath(roomID, "/join"), map[string]any{}), 403, "M_FORBIDDEN")
				hstest.MustErr(t, bob.Do(t, "PUT", roomPath(roomID, "/send/m.room.message/x1"), map[string]any{"body": "hi"}), 403, "M_FORBIDDEN")
				// Invite, join, send.
				hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/invite"), map[string]any{"user_id": "@bob:" + hs.Config.ServerName}))
				hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), map[string]any{}))
				e1 := sendText(t, bob, roomID, "hello")
				// Transaction IDs are idempotent per device.
				r1 := hstest.MustOK(t, bob.Do(t, "PUT", roomPath(roomID, "/send/m.room.message/same"), map[string]any{"body": "once"}))
				r2 := hstest.MustOK(t, bob.Do(t, "PUT", roomPath(roomID, "/send/m.room.message/same"), map[string]any{"body": "once"}))
				if r1["event_id"] != r2["event_id"] {
					t.Errorf("same txn gave %v and %v", r1["event_id"], r2["event_id"])
				}
				// Power: bob may not set the name.
				hstest.MustErr(t, bob.Do(t, "PUT", roomPath(roomID, "/state/m.room.name/"), map[string]any{"name": "x"}), 403, "M_FORBIDDEN")
				// Redaction: eve (not a member) cannot; alice (moderator) can.
				hstest.MustErr(t, eve.Do(t, "PUT", roomPath(roomID, "/redact/"+url.PathEscape(e1)+"/r1"), map[string]any{}), 403, "M_FORBIDDEN")
				hstest.MustOK(t, alice.Do(t, "PUT", roomPath(roomID, "/redact/"+url.PathEscape(e1)+"/r1"), map[string]any{"reason": "spam"}))
				// Kick, ban, unban.
				hstest.MustErr(t, bob.Do(t, "POST", roomPath(roomID, "/kick"), map[string]any{"user_id": "@alice:" + hs.Config.ServerName}), 403, "M_FORBIDDEN")
				hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/ban"), map[string]any{"user_id": "@bob:" + hs.Config.ServerName, "reason": "r"}))
				hstest.MustErr(t, bob.Do(t, "POST", roomPath(roomID, "/join"), map[string]any{}), 403, "M_FORBIDDEN")
				hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/unban"), map[string]any{"user_id": "@bob:" + hs.Config.ServerName}))
				// Joined rooms.
				jr := hstest.MustOK(t, alice.Do(t, "GET", c3+"/joined_rooms", nil))
				found := false
				for _, r := range jr["joined_rooms"].([]any) {
					found = found || r == roomID
				}
				if !found {
					t.Errorf("joined_rooms %v lacks %s", jr, roomID)
				}
				// Leave and forget.
				hstest.MustErr(t, alice.Do(t, "POST", roomPath(roomID, "/forget"), nil), 400, "M_UNKNOWN")
				hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/leave"), nil))
				hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/forget"), nil))
			})
		}
	})
}

func TestCreateRoomErrors(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		hstest.MustErr(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{"room_version": "99"}), 400, "M_UNSUPPORTED_ROOM_VERSION")
		hstest.MustErr(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{"preset": "nope"}), 400, "M_INVALID_PARAM")
		createRoom(t, alice, map[string]any{"room_alias_name": "taken"})
		hstest.MustErr(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{"room_alias_name": "taken"}), 400, "M_ROOM_IN_USE")
		hstest.MustErr(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{"initial_state": []any{map[string]any{"type": "m.room.member", "state_key": "@x:y", "content": map[string]any{}}}}), 400, "M_INVALID_ROOM_STATE")
		// Join by alias.
		bob := hs.Register(t, "bob", "pw")
		pub := createRoom(t, alice, map[string]any{"preset": "public_chat", "room_alias_name": "pub"})
		r := hstest.MustOK(t, bob.Do(t, "POST", c3+"/join/"+url.PathEscape("#pub:"+hs.Config.ServerName), nil))
		if r["room_id"] != pub {
			t.Errorf("join by alias gave %v, want %s", r, pub)
		}
		hstest.MustErr(t, bob.Do(t, "POST", c3+"/join/"+url.PathEscape("#nope:"+hs.Config.ServerName), nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, bob.Do(t, "POST", c3+"/join/"+url.PathEscape("!nope:"+hs.Config.ServerName), nil), 404, "M_NOT_FOUND")
		// Upgrade.
		up := hstest.MustOK(t, alice.Do(t, "POST", roomPath(pub, "/upgrade"), map[string]any{"new_version": "11"}))
		newID := hstest.Str(t, up, "replacement_room")
		tomb := hstest.MustOK(t, alice.Do(t, "GET", roomPath(pub, "/state/m.room.tombstone/"), nil))
		if tomb["replacement_room"] != newID {
			t.Errorf("tombstone %v, want replacement %s", tomb, newID)
		}
		cr := hstest.MustOK(t, alice.Do(t, "GET", roomPath(newID, "/state/m.room.create/"), nil))
		if p, _ := cr["predecessor"].(map[string]any); p == nil || p["room_id"] != pub {
			t.Errorf("create %v lacks predecessor %s", cr, pub)
		}
		hstest.MustErr(t, bob.Do(t, "POST", roomPath(newID, "/upgrade"), map[string]any{"new_version": "12"}), 403, "M_FORBIDDEN")
		r = hstest.MustOK(t, bob.Do(t, "POST", c3+"/join/"+url.PathEscape("#pub:"+hs.Config.ServerName), nil))
		if r["room_id"] != newID {
			t.Errorf("alias after upgrade gives %v, want %s", r, newID)
		}
	})
}

// Knocking (room versions 7+): a knock on a knock room, accepted by an
// invite; refused on a room that does not allow it.
func TestKnock(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		knockRoom := createRoom(t, alice, map[string]any{"room_version": "10", "initial_state": []any{
			map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}},
		}})
		inviteRoom := createRoom(t, alice, map[string]any{"room_version": "10"})
		oldRoom := createRoom(t, alice, map[string]any{"room_version": "6", "initial_state": []any{
			map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}},
		}})
		hstest.MustErr(t, bob.Do(t, "POST", c3+"/knock/"+url.PathEscape(inviteRoom), map[string]any{}), 403, "M_FORBIDDEN")
		hstest.MustErr(t, bob.Do(t, "POST", c3+"/knock/"+url.PathEscape(oldRoom), map[string]any{}), 403, "M_FORBIDDEN")
		r := hstest.MustOK(t, bob.Do(t, "POST", c3+"/knock/"+url.PathEscape(knockRoom), map[string]any{"reason": "let me in"}))
		if r["room_id"] != knockRoom {
			t.Errorf("knock answered %v", r)
		}
		m := hstest.MustOK(t, alice.Do(t, "GET", roomPath(knockRoom, "/state/m.room.member/"+url.PathEscape(hs.UserID("bob"))), nil))
		if m["membership"] != "knock" || m["reason"] != "let me in" {
			t.Errorf("bob's member event after knocking: %v", m)
		}
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(knockRoom, "/invite"), map[string]any{"user_id": hs.UserID("bob")}))
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(knockRoom, "/join"), nil))
	})
}

// Guests join only rooms whose guest_access is can_join, and may only
// send messages.
func TestGuestJoin(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{Guests: true}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		g := hstest.MustOK(t, hs.Anon().Do(t, "POST", c3+"/register?kind=guest", map[string]any{}))
		guest := hs.Anon().WithToken(hstest.Str(t, g, "access_token"))
		closed := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		open := createRoom(t, alice, map[string]any{"preset": "public_chat", "initial_state": []any{
			map[string]any{"type": "m.room.guest_access", "state_key": "", "content": map[string]any{"guest_access": "can_join"}},
		}})
		hstest.MustErr(t, guest.Do(t, "POST", roomPath(closed, "/join"), nil), 403, "M_FORBIDDEN")
		hstest.MustOK(t, guest.Do(t, "POST", roomPath(open, "/join"), nil))
		hstest.MustOK(t, guest.Do(t, "PUT", roomPath(open, "/send/m.room.message/g1"), map[string]any{"msgtype": "m.text", "body": "hi"}))
		hstest.MustErr(t, guest.Do(t, "PUT", roomPath(open, "/send/org.example.custom/g2"), map[string]any{}), 403, "M_GUEST_ACCESS_FORBIDDEN")
		hstest.MustErr(t, guest.Do(t, "POST", c3+"/createRoom", map[string]any{}), 403, "M_GUEST_ACCESS_FORBIDDEN")
	})
}

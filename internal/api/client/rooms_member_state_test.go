package client_test

import (
	"net/url"
	"testing"

	"polder.dev/polder/internal/hstest"
)

// PUT /state/m.room.create is a bad request, in every room version.
func TestPutCreateState(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		for _, v := range []string{"11", "12"} {
			t.Run("v"+v, func(t *testing.T) {
				roomID := createRoom(t, alice, map[string]any{"room_version": v})
				r := alice.Do(t, "PUT", roomPath(roomID, "/state/m.room.create/"), map[string]any{"room_version": v, "entropy": 100})
				hstest.MustErr(t, r, 400, "M_BAD_JSON")
			})
		}
	})
}

// PUT /state/m.room.member/{userId} changes membership like the
// membership endpoints (Complement's TestBannedUserCannotSendJoin bans
// this way), keeping the rest of the content.
func TestPutMemberState(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		join(t, bob, roomID)
		memberOf := func(t *testing.T, user string) map[string]any {
			t.Helper()
			return hstest.MustOK(t, alice.Do(t, "GET", roomPath(roomID, "/state/m.room.member/"+url.PathEscape(user)), nil))
		}
		bobID := hs.UserID("bob")

		t.Run("per-room displayname", func(t *testing.T) {
			// join_authorised_via_users_server is the server's: ignored.
			putState(t, bob, roomID, "m.room.member", url.PathEscape(bobID), map[string]any{"membership": "join", "displayname": "Bobby", "join_authorised_via_users_server": "unused"})
			m := memberOf(t, bobID)
			if m["membership"] != "join" || m["displayname"] != "Bobby" {
				t.Errorf("bob's member content = %v, want join with displayname Bobby", m)
			}
			if _, ok := m["join_authorised_via_users_server"]; ok {
				t.Errorf("bob's member content = %v, want no join_authorised_via_users_server", m)
			}
		})
		t.Run("ban and unban", func(t *testing.T) {
			putState(t, alice, roomID, "m.room.member", url.PathEscape(bobID), map[string]any{"membership": "ban", "reason": "spam"})
			if m := memberOf(t, bobID); m["membership"] != "ban" || m["reason"] != "spam" {
				t.Errorf("bob's member content = %v, want ban with reason spam", m)
			}
			hstest.MustErr(t, bob.Do(t, "POST", roomPath(roomID, "/join"), map[string]any{}), 403, "M_FORBIDDEN")
			putState(t, alice, roomID, "m.room.member", url.PathEscape(bobID), map[string]any{"membership": "leave"})
			if m := memberOf(t, bobID); m["membership"] != "leave" {
				t.Errorf("bob's member content = %v, want leave", m)
			}
			join(t, bob, roomID)
		})
		t.Run("refused", func(t *testing.T) {
			for _, tc := range []struct {
				name    string
				c       *hstest.Client
				key     string
				content map[string]any
				status  int
				errcode string
			}{
				{"no membership", alice, bobID, map[string]any{"displayname": "x"}, 400, "M_BAD_JSON"},
				{"unknown membership", alice, bobID, map[string]any{"membership": "bogus"}, 400, "M_BAD_JSON"},
				{"state key not a user ID", alice, "bob", map[string]any{"membership": "ban"}, 400, "M_INVALID_PARAM"},
				{"ban without the power", bob, hs.UserID("alice"), map[string]any{"membership": "ban"}, 403, "M_FORBIDDEN"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := tc.c.Do(t, "PUT", roomPath(roomID, "/state/m.room.member/"+url.PathEscape(tc.key)), tc.content)
					hstest.MustErr(t, r, tc.status, tc.errcode)
				})
			}
		})
	})
}

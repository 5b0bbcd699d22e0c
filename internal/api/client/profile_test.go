package client_test

import (
	"net/url"
	"strings"
	"testing"

	"polder.dev/polder/internal/hstest"
)

func profilePath(user string, key ...string) string {
	p := c3 + "/profile/" + url.PathEscape(user)
	if len(key) > 0 {
		p += "/" + url.PathEscape(key[0])
	}
	return p
}

// memberContent returns the content of user's current member event in a
// room, and its event ID.
func memberContent(t *testing.T, c *hstest.Client, roomID, user string) (map[string]any, string) {
	t.Helper()
	r := c.Do(t, "GET", roomPath(roomID, "/state/m.room.member/"+url.PathEscape(user)+"?format=event"), nil)
	m := hstest.MustOK(t, r)
	content, _ := m["content"].(map[string]any)
	return content, hstest.Str(t, m, "event_id")
}

// Profiles (client-server API, "Profiles"): GET /profile/{userId}, GET, PUT
// and DELETE /profile/{userId}/{keyName}, and propagation to member events.
func TestProfiles(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		sn := hs.ServerName()

		t.Run("read", func(t *testing.T) {
			// Registration sets the display name to the localpart; anyone
			// may read a local profile, without a token.
			m := hstest.MustOK(t, hs.Anon().Do(t, "GET", profilePath(alice.UserID), nil))
			if len(m) != 1 || m["displayname"] != "alice" {
				t.Errorf("profile of alice = %v, want only displayname alice", m)
			}
			m = hstest.MustOK(t, bob.Do(t, "GET", profilePath(alice.UserID, "displayname"), nil))
			if len(m) != 1 || m["displayname"] != "alice" {
				t.Errorf("displayname of alice = %v", m)
			}
			hstest.MustErr(t, bob.Do(t, "GET", profilePath(alice.UserID, "avatar_url"), nil), 404, "M_NOT_FOUND")
			hstest.MustErr(t, bob.Do(t, "GET", profilePath("@nobody:"+sn), nil), 404, "M_NOT_FOUND")
			hstest.MustErr(t, bob.Do(t, "GET", profilePath("@nobody:"+sn, "displayname"), nil), 404, "M_NOT_FOUND")
			hstest.MustErr(t, bob.Do(t, "GET", profilePath("nobody"), nil), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, bob.Do(t, "GET", profilePath("@someone:other.test"), nil), 502, "M_UNKNOWN")
			hstest.MustErr(t, bob.Do(t, "GET", profilePath(alice.UserID, "Not.Valid"), nil), 400, "M_INVALID_PARAM")
		})

		t.Run("write", func(t *testing.T) {
			put := func(c *hstest.Client, user, key string, body any) *hstest.Response {
				return c.Do(t, "PUT", profilePath(user, key), body)
			}
			hstest.MustOK(t, put(alice, alice.UserID, "displayname", map[string]any{"displayname": "Alice Liddell"}))
			hstest.MustOK(t, put(alice, alice.UserID, "avatar_url", map[string]any{"avatar_url": "mxc://" + sn + "/rabbit"}))
			hstest.MustOK(t, put(alice, alice.UserID, "m.tz", map[string]any{"m.tz": "Europe/London"}))
			hstest.MustOK(t, put(alice, alice.UserID, "org.example.pet", map[string]any{"org.example.pet": map[string]any{"kind": "cat", "name": "Dinah"}}))
			m := hstest.MustOK(t, hs.Anon().Do(t, "GET", profilePath(alice.UserID), nil))
			pet, _ := m["org.example.pet"].(map[string]any)
			if m["displayname"] != "Alice Liddell" || m["avatar_url"] != "mxc://"+sn+"/rabbit" || m["m.tz"] != "Europe/London" || pet["name"] != "Dinah" {
				t.Errorf("profile after PUTs = %v", m)
			}
			if m := hstest.MustOK(t, bob.Do(t, "GET", profilePath(alice.UserID, "org.example.pet"), nil)); m["org.example.pet"] == nil {
				t.Errorf("GET org.example.pet = %v", m)
			}

			for _, tc := range []struct {
				name   string
				c      *hstest.Client
				user   string
				key    string
				body   any
				status int
				code   string
			}{
				{"another user's", bob, alice.UserID, "displayname", map[string]any{"displayname": "Mallory"}, 403, "M_FORBIDDEN"},
				{"a remote user's", bob, "@bob:other.test", "displayname", map[string]any{"displayname": "x"}, 403, "M_FORBIDDEN"},
				{"no token", hs.Anon(), alice.UserID, "displayname", map[string]any{"displayname": "x"}, 401, "M_MISSING_TOKEN"},
				{"missing key", alice, alice.UserID, "displayname", map[string]any{"name": "x"}, 400, "M_MISSING_PARAM"},
				{"null", alice, alice.UserID, "displayname", map[string]any{"displayname": nil}, 400, "M_INVALID_PARAM"},
				{"not a string", alice, alice.UserID, "displayname", map[string]any{"displayname": 5}, 400, "M_BAD_JSON"},
				{"too long", alice, alice.UserID, "displayname", map[string]any{"displayname": strings.Repeat("é", 257)}, 400, "M_INVALID_PARAM"},
				{"avatar not mxc", alice, alice.UserID, "avatar_url", map[string]any{"avatar_url": "https://example.org/a.png"}, 400, "M_INVALID_PARAM"},
				{"avatar without media ID", alice, alice.UserID, "avatar_url", map[string]any{"avatar_url": "mxc://" + sn + "/"}, 400, "M_INVALID_PARAM"},
				{"m.tz not a string", alice, alice.UserID, "m.tz", map[string]any{"m.tz": 1}, 400, "M_BAD_JSON"},
				{"bad key", alice, alice.UserID, "Pet", map[string]any{"Pet": 1}, 400, "M_INVALID_PARAM"},
				{"key without namespace", alice, alice.UserID, "pet", map[string]any{"pet": 1}, 400, "M_INVALID_PARAM"},
				{"key too long", alice, alice.UserID, "org." + strings.Repeat("x", 252), map[string]any{"org." + strings.Repeat("x", 252): 1}, 400, "M_KEY_TOO_LARGE"},
				{"profile too large", alice, alice.UserID, "org.example.big", map[string]any{"org.example.big": strings.Repeat("x", 64*1024)}, 400, "M_PROFILE_TOO_LARGE"},
				{"not JSON", alice, alice.UserID, "displayname", "{", 400, "M_NOT_JSON"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					hstest.MustErr(t, put(tc.c, tc.user, tc.key, tc.body), tc.status, tc.code)
				})
			}
			// Nothing changed.
			m2 := hstest.MustOK(t, alice.Do(t, "GET", profilePath(alice.UserID), nil))
			if len(m2) != 4 || m2["displayname"] != "Alice Liddell" {
				t.Errorf("profile after refused PUTs = %v, want the 4 fields set before", m2)
			}
			// A display name of exactly 256 characters is fine.
			hstest.MustOK(t, put(alice, alice.UserID, "displayname", map[string]any{"displayname": strings.Repeat("é", 256)}))
			hstest.MustOK(t, put(alice, alice.UserID, "displayname", map[string]any{"displayname": "Alice Liddell"}))
		})

		t.Run("delete", func(t *testing.T) {
			hstest.MustErr(t, bob.Do(t, "DELETE", profilePath(alice.UserID, "m.tz"), nil), 403, "M_FORBIDDEN")
			hstest.MustOK(t, alice.Do(t, "DELETE", profilePath(alice.UserID, "m.tz"), nil))
			hstest.MustOK(t, alice.Do(t, "DELETE", profilePath(alice.UserID, "m.tz"), nil)) // already gone: fine
			hstest.MustOK(t, alice.Do(t, "DELETE", profilePath(alice.UserID, "org.example.pet"), nil))
			hstest.MustErr(t, bob.Do(t, "GET", profilePath(alice.UserID, "m.tz"), nil), 404, "M_NOT_FOUND")
			// An empty avatar_url removes it too.
			hstest.MustOK(t, alice.Do(t, "PUT", profilePath(alice.UserID, "avatar_url"), map[string]any{"avatar_url": ""}))
			m := hstest.MustOK(t, bob.Do(t, "GET", profilePath(alice.UserID), nil))
			if len(m) != 1 || m["displayname"] != "Alice Liddell" {
				t.Errorf("profile after deletions = %v, want only the display name", m)
			}
		})

		t.Run("propagation to member events", func(t *testing.T) {
			roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
			join(t, bob, roomID)
			other := createRoom(t, alice, map[string]any{"preset": "private_chat"})
			hstest.MustOK(t, alice.Do(t, "PUT", profilePath(alice.UserID, "displayname"), map[string]any{"displayname": "Queen of Hearts"}))
			hstest.MustOK(t, alice.Do(t, "PUT", profilePath(alice.UserID, "avatar_url"), map[string]any{"avatar_url": "mxc://" + sn + "/crown"}))
			for r, reader := range map[string]*hstest.Client{roomID: bob, other: alice} {
				c, _ := memberContent(t, reader, r, alice.UserID)
				if c["displayname"] != "Queen of Hearts" || c["avatar_url"] != "mxc://"+sn+"/crown" || c["membership"] != "join" {
					t.Errorf("alice's member event in %s = %v, want the new profile", r, c)
				}
			}
			// bob's member event is his own business.
			if c, _ := memberContent(t, alice, roomID, bob.UserID); c["displayname"] != "bob" {
				t.Errorf("bob's member event = %v", c)
			}
			// Setting the same name again sends nothing; custom fields send
			// nothing.
			_, before := memberContent(t, alice, roomID, alice.UserID)
			hstest.MustOK(t, alice.Do(t, "PUT", profilePath(alice.UserID, "displayname"), map[string]any{"displayname": "Queen of Hearts"}))
			hstest.MustOK(t, alice.Do(t, "PUT", profilePath(alice.UserID, "org.example.mood"), map[string]any{"org.example.mood": "cross"}))
			if _, after := memberContent(t, alice, roomID, alice.UserID); after != before {
				t.Errorf("member event changed from %s to %s with no change of name or avatar", before, after)
			}
			hstest.MustOK(t, alice.Do(t, "DELETE", profilePath(alice.UserID, "displayname"), nil))
			if c, _ := memberContent(t, bob, roomID, alice.UserID); c["displayname"] != nil || c["avatar_url"] != "mxc://"+sn+"/crown" {
				t.Errorf("alice's member event after deleting the name = %v", c)
			}
		})

		t.Run("deactivated users have an empty profile", func(t *testing.T) {
			carol := hs.Register(t, "carol", "pw")
			hstest.MustOK(t, carol.Do(t, "PUT", profilePath(carol.UserID, "m.tz"), map[string]any{"m.tz": "UTC"}))
			hstest.MustOK(t, carol.UIA(t, "POST", c3+"/account/deactivate", map[string]any{}, carol.PasswordAuth()))
			m := hstest.MustOK(t, bob.Do(t, "GET", profilePath(carol.UserID), nil))
			if len(m) != 0 {
				t.Errorf("profile of a deactivated user = %v, want {}", m)
			}
			hstest.MustErr(t, bob.Do(t, "GET", profilePath(carol.UserID, "displayname"), nil), 404, "M_NOT_FOUND")
		})
	})
}

// Guests may set their display name and nothing else (as Synapse allows).
func TestProfileGuests(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{Guests: true}, func(t *testing.T, hs *hstest.Server) {
		r := hs.Anon().Do(t, "POST", c3+"/register?kind=guest", map[string]any{})
		m := hstest.MustOK(t, r)
		guest := &hstest.Client{HS: hs, UserID: hstest.Str(t, m, "user_id"), AccessToken: hstest.Str(t, m, "access_token")}
		hstest.MustOK(t, guest.Do(t, "PUT", profilePath(guest.UserID, "displayname"), map[string]any{"displayname": "Visitor"}))
		hstest.MustErr(t, guest.Do(t, "PUT", profilePath(guest.UserID, "avatar_url"), map[string]any{"avatar_url": "mxc://a/b"}), 403, "M_GUEST_ACCESS_FORBIDDEN")
		if m := hstest.MustOK(t, hs.Anon().Do(t, "GET", profilePath(guest.UserID), nil)); m["displayname"] != "Visitor" {
			t.Errorf("guest profile = %v", m)
		}
		// Nor may guests publish rooms (as in Synapse), even their own.
		alice := hs.Register(t, "alice", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		hstest.MustErr(t, guest.Do(t, "PUT", visibilityPath(roomID), map[string]any{"visibility": "public"}), 403, "M_FORBIDDEN")
	})
}

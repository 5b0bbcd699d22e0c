package client_test

import (
	"testing"

	"polder.dev/polder/internal/hstest"
)

type userDirResult struct {
	Results []struct {
		UserID      string `json:"user_id"`
		DisplayName string `json:"display_name"`
		AvatarURL   string `json:"avatar_url"`
	} `json:"results"`
	Limited *bool `json:"limited"`
}

func (r userDirResult) ids() []string {
	var out []string
	for _, u := range r.Results {
		out = append(out, u.UserID)
	}
	return out
}

func searchUsers(t *testing.T, c *hstest.Client, body map[string]any) userDirResult {
	t.Helper()
	r := c.Do(t, "POST", c3+"/user_directory/search", body)
	hstest.MustOK(t, r)
	out := hstest.Decode[userDirResult](t, r)
	if out.Limited == nil || out.Results == nil {
		t.Fatalf("user directory answer %s lacks results or limited", r.Body)
	}
	return out
}

// The user directory (client-server API, "User directory"): users who
// share a room with the searcher or are joined to public rooms, matched on
// user ID and display name.
func TestUserDirectory(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")     // shares a private room with alice
		carol := hs.Register(t, "carol", "pw") // joined to a public room
		dave := hs.Register(t, "dave", "pw")   // only in a private room of his own
		erin := hs.Register(t, "erin", "pw")   // shares a room with alice, then deactivated
		al := hs.Register(t, "al", "pw")       // in the public room too
		sn := hs.ServerName()
		setName := func(c *hstest.Client, name string) {
			hstest.MustOK(t, c.Do(t, "PUT", profilePath(c.UserID, "displayname"), map[string]any{"displayname": name}))
		}
		setName(bob, "Robert Tables")
		setName(carol, "Zoë Ünal")
		setName(dave, "Bobby Hidden")
		hstest.MustOK(t, carol.Do(t, "PUT", profilePath(carol.UserID, "avatar_url"), map[string]any{"avatar_url": "mxc://" + sn + "/z"}))

		private := createRoom(t, alice, map[string]any{"preset": "private_chat"})
		invite(t, alice, private, bob.UserID)
		invite(t, alice, private, erin.UserID)
		join(t, bob, private)
		join(t, erin, private)
		public := createRoom(t, carol, map[string]any{"preset": "public_chat"})
		join(t, al, public)
		join(t, alice, public)
		createRoom(t, dave, map[string]any{"preset": "private_chat"})
		hstest.MustOK(t, erin.UIA(t, "POST", c3+"/account/deactivate", map[string]any{}, erin.PasswordAuth()))

		for _, tc := range []struct {
			name string
			c    *hstest.Client
			term string
			want []string
		}{
			{"localpart", alice, "bob", []string{bob.UserID}},
			{"display name word, any case", alice, "TABLES", []string{bob.UserID}},
			{"display name prefix", alice, "rob", []string{bob.UserID}},
			{"two words", alice, "robert tab", []string{bob.UserID}},
			{"user ID", alice, bob.UserID, []string{bob.UserID}},
			{"non-ASCII", alice, "ünal", []string{carol.UserID}},
			{"public room member", alice, "carol", []string{carol.UserID}},
			{"not visible", alice, "dave", nil},
			{"not visible by display name", alice, "hidden", nil},
			{"deactivated", alice, "erin", nil},
			{"word inside, not a prefix", alice, "obert", nil},
			{"nobody", alice, "zzz", nil},
			{"blank", alice, "  ", nil},
			// dave sees the members of the public room, not alice's.
			{"dave sees public", dave, "carol", []string{carol.UserID}},
			{"dave does not see bob", dave, "robert", nil},
			// Exact matches first: "al" is al's localpart, a prefix of
			// alice's.
			{"exact first", carol, "al", []string{al.UserID, alice.UserID}},
			// Not oneself (as Synapse; Complement
			// TestRoomSpecificUsernameChange): alice's "al" finds al.
			{"not oneself", alice, "al", []string{al.UserID}},
			{"not oneself by user ID", bob, bob.UserID, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := searchUsers(t, tc.c, map[string]any{"search_term": tc.term})
				if !sameIDs(got.ids(), tc.want) || *got.Limited {
					t.Errorf("search %q as %s = %v (limited %v), want %v", tc.term, tc.c.UserID, got.ids(), *got.Limited, tc.want)
				}
			})
		}

		t.Run("profile in results", func(t *testing.T) {
			got := searchUsers(t, alice, map[string]any{"search_term": "zoë"})
			if len(got.Results) != 1 || got.Results[0].DisplayName != "Zoë Ünal" || got.Results[0].AvatarURL != "mxc://"+sn+"/z" {
				t.Errorf("search zoë = %+v", got.Results)
			}
		})
		t.Run("limit", func(t *testing.T) {
			// al and alice match "al"; al first.
			got := searchUsers(t, carol, map[string]any{"search_term": "al", "limit": 1})
			if !sameIDs(got.ids(), []string{al.UserID}) || !*got.Limited {
				t.Errorf("search al limit 1 = %v limited %v, want al and limited", got.ids(), *got.Limited)
			}
			got = searchUsers(t, carol, map[string]any{"search_term": "al"})
			if len(got.Results) != 2 || *got.Limited {
				t.Errorf("search al = %v limited %v, want al and alice", got.ids(), *got.Limited)
			}
		})
		t.Run("profile changes show at once", func(t *testing.T) {
			setName(bob, "Mad Hatter")
			if got := searchUsers(t, alice, map[string]any{"search_term": "hatter"}); !sameIDs(got.ids(), []string{bob.UserID}) {
				t.Errorf("search hatter after the rename = %v", got.ids())
			}
			if got := searchUsers(t, alice, map[string]any{"search_term": "robert"}); len(got.Results) != 0 {
				t.Errorf("search robert after the rename = %v", got.ids())
			}
		})
		t.Run("leaving the shared room hides", func(t *testing.T) {
			hstest.MustOK(t, bob.Do(t, "POST", roomPath(private, "/leave"), nil))
			if got := searchUsers(t, alice, map[string]any{"search_term": "hatter"}); len(got.Results) != 0 {
				t.Errorf("search after bob left = %v, want nothing", got.ids())
			}
		})
		t.Run("errors", func(t *testing.T) {
			hstest.MustErr(t, alice.Do(t, "POST", c3+"/user_directory/search", map[string]any{}), 400, "M_MISSING_PARAM")
			hstest.MustErr(t, alice.Do(t, "POST", c3+"/user_directory/search", map[string]any{"search_term": 1}), 400, "M_BAD_JSON")
			hstest.MustErr(t, alice.Do(t, "POST", c3+"/user_directory/search", map[string]any{"search_term": "a", "limit": -1}), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, alice.Do(t, "POST", c3+"/user_directory/search", nil), 400, "M_NOT_JSON")
			hstest.MustErr(t, hs.Anon().Do(t, "POST", c3+"/user_directory/search", map[string]any{"search_term": "a"}), 401, "M_MISSING_TOKEN")
		})
	})
}

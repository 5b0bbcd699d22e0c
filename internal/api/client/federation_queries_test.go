package client_test

import (
	"net/url"
	"testing"

	"polder.dev/polder/internal/hstest"
)

// Aliases, room directories and profiles of another server, asked over
// federation between two test servers.
func TestFederationQueries(t *testing.T) {
	t.Parallel()
	f := hstest.NewFederation(t, hstest.Options{})
	hs1, hs2 := f.Server("hs1.polder.test"), f.Server("hs2.polder.test")
	alice := hs1.Register(t, "alice", "password-alice")
	bob := hs2.Register(t, "bob", "password-bob")

	r := hstest.MustOK(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{
		"preset": "public_chat", "visibility": "public", "room_alias_name": "lounge", "name": "The lounge",
	}))
	roomID := hstest.Str(t, r, "room_id")
	hstest.MustOK(t, alice.Do(t, "PUT", profilePath(alice.UserID, "displayname"), map[string]any{"displayname": "Alice"}))

	t.Run("alias", func(t *testing.T) {
		r := hstest.MustOK(t, bob.Do(t, "GET", aliasPath("#lounge:hs1.polder.test"), nil))
		if got := hstest.Str(t, r, "room_id"); got != roomID {
			t.Errorf("GET alias: room_id %s, want %s", got, roomID)
		}
		if s, _ := r["servers"].([]any); len(s) == 0 || s[0] != "hs1.polder.test" {
			t.Errorf("GET alias: servers %v, want hs1.polder.test first", r["servers"])
		}
		hstest.MustErr(t, bob.Do(t, "GET", aliasPath("#nope:hs1.polder.test"), nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, bob.Do(t, "GET", aliasPath("#lounge:nowhere.polder.test"), nil), 502, "M_UNKNOWN")
	})

	t.Run("profile", func(t *testing.T) {
		r := hstest.MustOK(t, bob.Do(t, "GET", profilePath(alice.UserID), nil))
		if r["displayname"] != "Alice" {
			t.Errorf("GET profile of %s = %v, want displayname Alice", alice.UserID, r)
		}
		r = hstest.MustOK(t, bob.Do(t, "GET", profilePath(alice.UserID, "displayname"), nil))
		if r["displayname"] != "Alice" || len(r) != 1 {
			t.Errorf("GET displayname of %s = %v, want Alice", alice.UserID, r)
		}
		hstest.MustErr(t, bob.Do(t, "GET", profilePath(alice.UserID, "avatar_url"), nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, bob.Do(t, "GET", profilePath("@nobody:hs1.polder.test"), nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, bob.Do(t, "GET", profilePath("@x:nowhere.polder.test"), nil), 502, "M_UNKNOWN")
	})

	t.Run("public rooms", func(t *testing.T) {
		p := getPublicRooms(t, bob, "server=hs1.polder.test&limit=5")
		if len(p.Chunk) != 1 || p.Chunk[0].RoomID != roomID || p.Chunk[0].Name != "The lounge" || p.Chunk[0].NumJoinedMembers != 1 {
			t.Errorf("GET publicRooms?server=hs1 = %+v, want the lounge", p)
		}
		r := bob.Do(t, "POST", c3+"/publicRooms?server=hs1.polder.test", map[string]any{"filter": map[string]any{"generic_search_term": "nothing like it"}})
		hstest.MustOK(t, r)
		if p := hstest.Decode[publicRoomsPage](t, r); len(p.Chunk) != 0 {
			t.Errorf("POST publicRooms?server=hs1 with a filter matching nothing = %+v, want no rooms", p)
		}
		hstest.MustErr(t, bob.Do(t, "GET", c3+"/publicRooms?server="+url.QueryEscape("nowhere.polder.test"), nil), 502, "M_UNKNOWN")
	})
}

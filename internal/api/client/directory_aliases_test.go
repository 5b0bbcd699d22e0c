package client_test

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"

	"polder.dev/polder/internal/hstest"
)

func aliasPath(alias string) string { return c3 + "/directory/room/" + url.PathEscape(alias) }

// mustAdmin makes c a server admin. Call it before c's first authenticated
// request: identities are cached.
func mustAdmin(t *testing.T, hs *hstest.Server, c *hstest.Client) {
	t.Helper()
	lp := strings.TrimPrefix(strings.Split(c.UserID, ":")[0], "@")
	if err := hs.Users().SetAdmin(context.Background(), lp, true); err != nil {
		t.Fatalf("SetAdmin(%s): %v", lp, err)
	}
}

func roomAliasList(t *testing.T, c *hstest.Client, roomID string) []string {
	t.Helper()
	m := hstest.MustOK(t, c.Do(t, "GET", roomPath(roomID, "/aliases"), nil))
	var out []string
	for _, a := range m["aliases"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

// Room aliases (client-server API, "Room aliases"): PUT, GET and DELETE
// /directory/room/{roomAlias} and GET /rooms/{roomId}/aliases.
func TestRoomAliases(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		root := hs.Register(t, "root", "pw")
		mustAdmin(t, hs, root)
		eve := hs.Register(t, "eve", "pw")
		sn := hs.ServerName()
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		join(t, bob, roomID)
		a1, a2 := "#lounge:"+sn, "#café lounge:"+sn

		t.Run("create and resolve", func(t *testing.T) {
			hstest.MustOK(t, alice.Do(t, "PUT", aliasPath(a1), map[string]any{"room_id": roomID}))
			m := hstest.MustOK(t, eve.Do(t, "GET", aliasPath(a1), nil))
			if m["room_id"] != roomID {
				t.Errorf("GET %s = %v, want room %s", a1, m, roomID)
			}
			if s, _ := m["servers"].([]any); len(s) == 0 || s[0] != sn {
				t.Errorf("servers = %v, want this server first", m["servers"])
			}
			// Anyone may resolve, without a token.
			hstest.MustOK(t, hs.Anon().Do(t, "GET", aliasPath(a1), nil))
			hstest.MustErr(t, bob.Do(t, "PUT", aliasPath(a1), map[string]any{"room_id": roomID}), 409, "M_UNKNOWN")
			uni := "#café:" + sn
			hstest.MustOK(t, bob.Do(t, "PUT", aliasPath(uni), map[string]any{"room_id": roomID}))
			if m := hstest.MustOK(t, bob.Do(t, "GET", aliasPath(uni), nil)); m["room_id"] != roomID {
				t.Errorf("GET %s = %v", uni, m)
			}
			if got := roomAliasList(t, alice, roomID); !slices.Equal(got, []string{"#café:" + sn, a1}) && !slices.Equal(got, []string{a1, "#café:" + sn}) {
				t.Errorf("aliases = %v, want %s and #café", got, a1)
			}
		})

		t.Run("errors", func(t *testing.T) {
			for _, tc := range []struct {
				name, alias string
				body        any
				status      int
				code        string
				badAlias    bool // GET refuses it too
			}{
				{"no sigil", "lounge:" + sn, map[string]any{"room_id": roomID}, 400, "M_INVALID_PARAM", true},
				{"no server", "#lounge", map[string]any{"room_id": roomID}, 400, "M_INVALID_PARAM", true},
				{"empty localpart", "#:" + sn, map[string]any{"room_id": roomID}, 400, "M_INVALID_PARAM", true},
				{"whitespace", a2, map[string]any{"room_id": roomID}, 400, "M_INVALID_PARAM", true},
				{"too long", "#" + strings.Repeat("x", 250) + ":" + sn, map[string]any{"room_id": roomID}, 400, "M_INVALID_PARAM", true},
				{"other server", "#lounge2:other.test", map[string]any{"room_id": roomID}, 400, "M_INVALID_PARAM", false},
				{"no room_id", "#x1:" + sn, map[string]any{}, 400, "M_MISSING_PARAM", false},
				{"bad room_id", "#x2:" + sn, map[string]any{"room_id": "nope"}, 400, "M_INVALID_PARAM", false},
				{"not JSON", "#x3:" + sn, "{", 400, "M_NOT_JSON", false},
				{"not in the room", "#x4:" + sn, map[string]any{"room_id": roomID}, 403, "M_FORBIDDEN", false},
				{"unknown room", "#x5:" + sn, map[string]any{"room_id": "!nope:" + sn}, 403, "M_FORBIDDEN", false},
			} {
				t.Run(tc.name, func(t *testing.T) {
					c := alice
					if tc.code == "M_FORBIDDEN" {
						c = eve
					}
					hstest.MustErr(t, c.Do(t, "PUT", aliasPath(tc.alias), tc.body), tc.status, tc.code)
					if tc.badAlias {
						hstest.MustErr(t, alice.Do(t, "GET", aliasPath(tc.alias), nil), 400, "M_INVALID_PARAM")
					}
				})
			}
			hstest.MustErr(t, alice.Do(t, "GET", aliasPath("#nope:"+sn), nil), 404, "M_NOT_FOUND")
			hstest.MustErr(t, alice.Do(t, "GET", aliasPath("#x:other.test"), nil), 502, "M_UNKNOWN")
			hstest.MustErr(t, hs.Anon().Do(t, "PUT", aliasPath("#x6:"+sn), map[string]any{"room_id": roomID}), 401, "M_MISSING_TOKEN")
			// An admin may alias a room it is not in, but not an unknown one.
			hstest.MustOK(t, root.Do(t, "PUT", aliasPath("#byroot:"+sn), map[string]any{"room_id": roomID}))
			hstest.MustErr(t, root.Do(t, "PUT", aliasPath("#x7:"+sn), map[string]any{"room_id": "!nope:" + sn}), 404, "M_NOT_FOUND")
		})

		t.Run("list needs membership or world_readable", func(t *testing.T) {
			hstest.MustErr(t, eve.Do(t, "GET", roomPath(roomID, "/aliases"), nil), 403, "M_FORBIDDEN")
			hstest.MustErr(t, eve.Do(t, "GET", roomPath("!nope:"+sn, "/aliases"), nil), 403, "M_FORBIDDEN")
			hstest.MustErr(t, eve.Do(t, "GET", roomPath("nope", "/aliases"), nil), 400, "M_INVALID_PARAM")
			if got := roomAliasList(t, root, roomID); len(got) != 3 {
				t.Errorf("aliases as admin = %v, want 3", got)
			}
			putState(t, alice, roomID, "m.room.history_visibility", "", map[string]any{"history_visibility": "world_readable"})
			if got := roomAliasList(t, eve, roomID); len(got) != 3 {
				t.Errorf("aliases of a world_readable room, as a stranger = %v, want 3", got)
			}
			putState(t, alice, roomID, "m.room.history_visibility", "", map[string]any{"history_visibility": "shared"})
			empty := createRoom(t, alice, map[string]any{})
			if got := roomAliasList(t, alice, empty); len(got) != 0 {
				t.Errorf("aliases of a room without = %v", got)
			}
		})

		t.Run("delete", func(t *testing.T) {
			bobs := "#bobs:" + sn
			hstest.MustOK(t, bob.Do(t, "PUT", aliasPath(bobs), map[string]any{"room_id": roomID}))
			// bob (power 0) may not delete alice's alias; eve, outside, neither.
			hstest.MustErr(t, bob.Do(t, "DELETE", aliasPath(a1), nil), 403, "M_FORBIDDEN")
			hstest.MustErr(t, eve.Do(t, "DELETE", aliasPath(bobs), nil), 403, "M_FORBIDDEN")
			hstest.MustErr(t, eve.Do(t, "DELETE", aliasPath("#nope:"+sn), nil), 404, "M_NOT_FOUND")
			hstest.MustErr(t, eve.Do(t, "DELETE", aliasPath("#nope:other.test"), nil), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, hs.Anon().Do(t, "DELETE", aliasPath(bobs), nil), 401, "M_MISSING_TOKEN")

			// The canonical alias names a1 and bobs; alice deletes a1 (she
			// has the power): the event loses it.
			putState(t, alice, roomID, "m.room.canonical_alias", "", map[string]any{"alias": a1, "alt_aliases": []string{bobs, a1}})
			hstest.MustOK(t, alice.Do(t, "DELETE", aliasPath(a1), nil))
			hstest.MustErr(t, alice.Do(t, "GET", aliasPath(a1), nil), 404, "M_NOT_FOUND")
			ca := hstest.MustOK(t, alice.Do(t, "GET", roomPath(roomID, "/state/m.room.canonical_alias/"), nil))
			if _, ok := ca["alias"]; ok || len(ca["alt_aliases"].([]any)) != 1 || ca["alt_aliases"].([]any)[0] != bobs {
				t.Errorf("canonical alias after deleting %s = %v, want only alt_aliases [%s]", a1, ca, bobs)
			}
			// bob deletes his own alias although he may not edit the
			// canonical alias: the deletion stands, the event stays.
			hstest.MustOK(t, bob.Do(t, "DELETE", aliasPath(bobs), nil))
			hstest.MustErr(t, bob.Do(t, "GET", aliasPath(bobs), nil), 404, "M_NOT_FOUND")
			ca = hstest.MustOK(t, alice.Do(t, "GET", roomPath(roomID, "/state/m.room.canonical_alias/"), nil))
			if alts, _ := ca["alt_aliases"].([]any); len(alts) != 1 {
				t.Errorf("canonical alias after bob's deletion = %v, want it unchanged", ca)
			}
			// An admin may delete anyone's alias; alice, with power, bob's.
			hstest.MustOK(t, root.Do(t, "DELETE", aliasPath("#café:"+sn), nil))
			hstest.MustOK(t, bob.Do(t, "PUT", aliasPath(bobs), map[string]any{"room_id": roomID}))
			hstest.MustOK(t, alice.Do(t, "DELETE", aliasPath(bobs), nil))
			hstest.MustErr(t, alice.Do(t, "DELETE", aliasPath(bobs), nil), 404, "M_NOT_FOUND")
			if got := roomAliasList(t, alice, roomID); !slices.Equal(got, []string{"#byroot:" + sn}) {
				t.Errorf("aliases left = %v, want only #byroot", got)
			}
		})
	})
}

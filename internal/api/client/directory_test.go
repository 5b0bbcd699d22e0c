package client_test

import (
	"net/url"
	"testing"

	"polder.dev/polder/internal/hstest"
)

func visibilityPath(roomID string) string {
	return c3 + "/directory/list/room/" + url.PathEscape(roomID)
}

// publicRoomsPage is a /publicRooms response.
type publicRoomsPage struct {
	Chunk []struct {
		RoomID           string `json:"room_id"`
		Name             string `json:"name"`
		Topic            string `json:"topic"`
		CanonicalAlias   string `json:"canonical_alias"`
		AvatarURL        string `json:"avatar_url"`
		NumJoinedMembers int    `json:"num_joined_members"`
		WorldReadable    bool   `json:"world_readable"`
		GuestCanJoin     bool   `json:"guest_can_join"`
		JoinRule         string `json:"join_rule"`
		RoomType         string `json:"room_type"`
	} `json:"chunk"`
	NextBatch string `json:"next_batch"`
	PrevBatch string `json:"prev_batch"`
	Total     *int   `json:"total_room_count_estimate"`
}

func (p publicRoomsPage) ids() []string {
	var out []string
	for _, r := range p.Chunk {
		out = append(out, r.RoomID)
	}
	return out
}

func getPublicRooms(t *testing.T, c *hstest.Client, query string) publicRoomsPage {
	t.Helper()
	r := c.Do(t, "GET", c3+"/publicRooms?"+query, nil)
	hstest.MustOK(t, r)
	return hstest.Decode[publicRoomsPage](t, r)
}

func postPublicRooms(t *testing.T, c *hstest.Client, body map[string]any) publicRoomsPage {
	t.Helper()
	r := c.Do(t, "POST", c3+"/publicRooms", body)
	hstest.MustOK(t, r)
	return hstest.Decode[publicRoomsPage](t, r)
}

func sameIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The published room directory (client-server API, "Published room
// directory"): GET/PUT /directory/list/room/{roomId} and GET/POST
// /publicRooms.
func TestPublishedRoomDirectory(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		carol := hs.Register(t, "carol", "pw")
		root := hs.Register(t, "root", "pw")
		mustAdmin(t, hs, root)
		sn := hs.ServerName()

		// big (3 members), mid (2, a space), small (1, world_readable):
		// published. hidden: public but not published. invite: published
		// but neither joinable nor readable: not listed.
		big := createRoom(t, alice, map[string]any{"visibility": "public", "preset": "public_chat", "name": "Big Room",
			"topic": "All about Cheese", "room_alias_name": "big"})
		join(t, bob, big)
		join(t, carol, big)
		mid := createRoom(t, alice, map[string]any{"visibility": "public", "preset": "public_chat", "name": "Middle",
			"creation_content": map[string]any{"type": "m.space"}})
		join(t, bob, mid)
		small := createRoom(t, alice, map[string]any{"visibility": "public", "preset": "private_chat", "name": "Small",
			"initial_state": []any{map[string]any{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": "world_readable"}}}})
		putState(t, alice, small, "m.room.avatar", "", map[string]any{"url": "mxc://" + sn + "/avatar"})
		hidden := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Hidden"})
		invite := createRoom(t, alice, map[string]any{"visibility": "public", "preset": "private_chat", "name": "Invite only"})

		t.Run("visibility", func(t *testing.T) {
			for roomID, want := range map[string]string{big: "public", hidden: "private", invite: "public"} {
				m := hstest.MustOK(t, hs.Anon().Do(t, "GET", visibilityPath(roomID), nil))
				if m["visibility"] != want {
					t.Errorf("visibility of %s = %v, want %s", roomID, m, want)
				}
			}
			hstest.MustErr(t, alice.Do(t, "GET", visibilityPath("!nope:"+sn), nil), 404, "M_NOT_FOUND")
			hstest.MustErr(t, alice.Do(t, "GET", visibilityPath("nope"), nil), 400, "M_INVALID_PARAM")
			// bob is in big with power 0; carol is not in hidden.
			hstest.MustErr(t, bob.Do(t, "PUT", visibilityPath(big), map[string]any{"visibility": "private"}), 403, "M_FORBIDDEN")
			hstest.MustErr(t, carol.Do(t, "PUT", visibilityPath(hidden), map[string]any{"visibility": "public"}), 403, "M_FORBIDDEN")
			hstest.MustErr(t, alice.Do(t, "PUT", visibilityPath(hidden), map[string]any{"visibility": "secret"}), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, alice.Do(t, "PUT", visibilityPath("!nope:"+sn), map[string]any{"visibility": "public"}), 404, "M_NOT_FOUND")
			hstest.MustErr(t, hs.Anon().Do(t, "PUT", visibilityPath(hidden), map[string]any{}), 401, "M_MISSING_TOKEN")
			// Publishing defaults to public; an admin may change any room.
			hstest.MustOK(t, alice.Do(t, "PUT", visibilityPath(hidden), map[string]any{}))
			if m := hstest.MustOK(t, alice.Do(t, "GET", visibilityPath(hidden), nil)); m["visibility"] != "public" {
				t.Errorf("visibility after PUT {} = %v, want public", m)
			}
			hstest.MustOK(t, root.Do(t, "PUT", visibilityPath(hidden), map[string]any{"visibility": "private"}))
			if m := hstest.MustOK(t, alice.Do(t, "GET", visibilityPath(hidden), nil)); m["visibility"] != "private" {
				t.Errorf("visibility after the admin's PUT = %v, want private", m)
			}
		})

		t.Run("listing", func(t *testing.T) {
			p := getPublicRooms(t, hs.Anon(), "")
			if want := []string{big, mid, small}; !sameIDs(p.ids(), want) {
				t.Fatalf("publicRooms = %v, want %v (largest first, no hidden or invite-only room)", p.ids(), want)
			}
			if p.Total == nil || *p.Total != 3 || p.NextBatch != "" || p.PrevBatch != "" {
				t.Errorf("total %v, next %q, prev %q; want 3 and no tokens", p.Total, p.NextBatch, p.PrevBatch)
			}
			b := p.Chunk[0]
			if b.Name != "Big Room" || b.Topic != "All about Cheese" || b.CanonicalAlias != "#big:"+sn || b.NumJoinedMembers != 3 ||
				b.WorldReadable || b.GuestCanJoin || b.JoinRule != "public" || b.RoomType != "" {
				t.Errorf("entry of big = %+v", b)
			}
			if m := p.Chunk[1]; m.RoomType != "m.space" || m.NumJoinedMembers != 2 {
				t.Errorf("entry of mid = %+v", m)
			}
			if s := p.Chunk[2]; !s.WorldReadable || !s.GuestCanJoin || s.JoinRule != "invite" || s.AvatarURL != "mxc://"+sn+"/avatar" {
				t.Errorf("entry of small = %+v", s)
			}
		})

		t.Run("pages", func(t *testing.T) {
			p1 := getPublicRooms(t, alice, "limit=1")
			if !sameIDs(p1.ids(), []string{big}) || p1.NextBatch == "" || p1.PrevBatch != "" || *p1.Total != 3 {
				t.Fatalf("page 1 = %v next %q prev %q", p1.ids(), p1.NextBatch, p1.PrevBatch)
			}
			p2 := getPublicRooms(t, alice, "limit=1&since="+url.QueryEscape(p1.NextBatch))
			if !sameIDs(p2.ids(), []string{mid}) || p2.NextBatch == "" || p2.PrevBatch == "" {
				t.Fatalf("page 2 = %v next %q prev %q", p2.ids(), p2.NextBatch, p2.PrevBatch)
			}
			p3 := postPublicRooms(t, alice, map[string]any{"limit": 5, "since": p2.NextBatch})
			if !sameIDs(p3.ids(), []string{small}) || p3.NextBatch != "" || p3.PrevBatch == "" {
				t.Errorf("page 3 = %v next %q prev %q", p3.ids(), p3.NextBatch, p3.PrevBatch)
			}
			back := getPublicRooms(t, alice, "limit=1&since="+url.QueryEscape(p2.PrevBatch))
			if !sameIDs(back.ids(), []string{big}) || back.PrevBatch != "" || back.NextBatch == "" {
				t.Errorf("back from page 2 = %v next %q prev %q", back.ids(), back.NextBatch, back.PrevBatch)
			}
			back2 := postPublicRooms(t, alice, map[string]any{"limit": 2, "since": p3.PrevBatch})
			if !sameIDs(back2.ids(), []string{big, mid}) {
				t.Errorf("back from page 3, limit 2 = %v, want big and mid", back2.ids())
			}
		})

		t.Run("filters", func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				filter map[string]any
				want   []string
			}{
				{"topic, any case", map[string]any{"generic_search_term": "cheese"}, []string{big}},
				{"name", map[string]any{"generic_search_term": "midd"}, []string{mid}},
				{"alias", map[string]any{"generic_search_term": "#BIG"}, []string{big}},
				{"room ID", map[string]any{"generic_search_term": small}, []string{small}},
				{"nothing", map[string]any{"generic_search_term": "zzz"}, nil},
				{"spaces", map[string]any{"room_types": []any{"m.space"}}, []string{mid}},
				{"untyped", map[string]any{"room_types": []any{nil}}, []string{big, small}},
				{"both", map[string]any{"room_types": []any{nil, "m.space"}}, []string{big, mid, small}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					p := postPublicRooms(t, bob, map[string]any{"filter": tc.filter})
					if !sameIDs(p.ids(), tc.want) || *p.Total != len(tc.want) {
						t.Errorf("filter %v = %v (total %d), want %v", tc.filter, p.ids(), *p.Total, tc.want)
					}
				})
			}
			p := postPublicRooms(t, bob, map[string]any{"third_party_instance_id": "irc"})
			if len(p.Chunk) != 0 {
				t.Errorf("third_party_instance_id irc = %v, want nothing (no bridges)", p.ids())
			}
			p = postPublicRooms(t, bob, map[string]any{"include_all_networks": true})
			if len(p.Chunk) != 3 {
				t.Errorf("include_all_networks = %v, want all 3", p.ids())
			}
			if p := getPublicRooms(t, bob, "server="+sn); len(p.Chunk) != 3 {
				t.Errorf("server=%s = %v, want all 3", sn, p.ids())
			}
		})

		t.Run("membership changes the order", func(t *testing.T) {
			hstest.MustOK(t, bob.Do(t, "POST", roomPath(big, "/leave"), nil))
			hstest.MustOK(t, carol.Do(t, "POST", roomPath(big, "/leave"), nil))
			join(t, carol, mid)
			p := getPublicRooms(t, alice, "")
			// big and small now have one member each: room ID breaks the tie.
			rest := []string{big, small}
			if small < big {
				rest = []string{small, big}
			}
			if want := append([]string{mid}, rest...); !sameIDs(p.ids(), want) {
				t.Fatalf("after leaves and a join = %v, want %v", p.ids(), want)
			}
			if p.Chunk[0].NumJoinedMembers != 3 || p.Chunk[1].NumJoinedMembers != 1 || p.Chunk[2].NumJoinedMembers != 1 {
				t.Errorf("member counts = %d, %d, %d; want 3, 1, 1", p.Chunk[0].NumJoinedMembers, p.Chunk[1].NumJoinedMembers, p.Chunk[2].NumJoinedMembers)
			}
		})

		t.Run("errors", func(t *testing.T) {
			hstest.MustErr(t, alice.Do(t, "GET", c3+"/publicRooms?server=other.test", nil), 502, "M_UNKNOWN")
			hstest.MustErr(t, alice.Do(t, "POST", c3+"/publicRooms?server=other.test", map[string]any{}), 502, "M_UNKNOWN")
			hstest.MustErr(t, alice.Do(t, "GET", c3+"/publicRooms?limit=-1", nil), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, alice.Do(t, "GET", c3+"/publicRooms?limit=many", nil), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, alice.Do(t, "GET", c3+"/publicRooms?since=garbage", nil), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, alice.Do(t, "POST", c3+"/publicRooms", map[string]any{"limit": "ten"}), 400, "M_BAD_JSON")
			hstest.MustErr(t, alice.Do(t, "POST", c3+"/publicRooms", map[string]any{"include_all_networks": true, "third_party_instance_id": "irc"}), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, hs.Anon().Do(t, "POST", c3+"/publicRooms", map[string]any{}), 401, "M_MISSING_TOKEN")
		})
	})
}

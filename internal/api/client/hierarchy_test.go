package client_test

import (
	"net/url"
	"slices"
	"strconv"
	"testing"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

type hierRoom struct {
	RoomID           string           `json:"room_id"`
	Name             string           `json:"name"`
	RoomType         string           `json:"room_type"`
	JoinRule         string           `json:"join_rule"`
	WorldReadable    bool             `json:"world_readable"`
	NumJoinedMembers int              `json:"num_joined_members"`
	RoomVersion      string           `json:"room_version"`
	Encryption       string           `json:"encryption"`
	AllowedRoomIDs   []string         `json:"allowed_room_ids"`
	ChildrenState    []map[string]any `json:"children_state"`
	Membership       string           `json:"membership"`
}

type hierPage struct {
	Rooms     []hierRoom `json:"rooms"`
	NextBatch string     `json:"next_batch"`
}

func hierarchyPath(roomID, query string) string {
	return c1 + "/rooms/" + url.PathEscape(roomID) + "/hierarchy" + query
}

func getHierarchy(t testing.TB, c *hstest.Client, roomID, query string) hierPage {
	t.Helper()
	r := c.Do(t, "GET", hierarchyPath(roomID, query), nil)
	hstest.MustOK(t, r)
	p := hstest.Decode[hierPage](t, r)
	for _, room := range p.Rooms {
		if room.ChildrenState == nil {
			t.Fatalf("%s: room %s has no children_state (required): %s", r.Call, room.RoomID, r.Body)
		}
	}
	return p
}

// walkAll pages through the whole hierarchy with limit rooms a page.
func walkAll(t testing.TB, c *hstest.Client, roomID, query string, limit int) []string {
	t.Helper()
	var ids []string
	from := ""
	for pages := 0; ; pages++ {
		if pages > 50 {
			t.Fatalf("hierarchy of %s: more than 50 pages", roomID)
		}
		q := "?limit=" + strconv.Itoa(limit) + query
		if from != "" {
			q += "&from=" + url.QueryEscape(from)
		}
		p := getHierarchy(t, c, roomID, q)
		if len(p.Rooms) > limit {
			t.Fatalf("page of %d rooms, limit %d", len(p.Rooms), limit)
		}
		ids = append(ids, roomIDs(p.Rooms)...)
		if p.NextBatch == "" {
			return ids
		}
		from = p.NextBatch
	}
}

func roomIDs(rs []hierRoom) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.RoomID)
	}
	return out
}

// addChild puts an m.space.child event for child into space.
func addChild(t testing.TB, c *hstest.Client, space, child string, content map[string]any) {
	t.Helper()
	hstest.MustOK(t, c.Do(t, "PUT", roomPath(space, "/state/m.space.child/"+url.PathEscape(child)), content))
}

func spaceBody(name, preset string) map[string]any {
	return map[string]any{"name": name, "preset": preset, "creation_content": map[string]any{"type": "m.space"}}
}

func stateEv(typ string, content map[string]any) map[string]any {
	return map[string]any{"type": typ, "state_key": "", "content": content}
}

// names maps room IDs to names for failure messages.
type names map[string]string

func (n names) of(ids []string) []string {
	var out []string
	for _, id := range ids {
		if s, ok := n[id]; ok {
			out = append(out, s)
		} else {
			out = append(out, id)
		}
	}
	return out
}

// A space with a public, a private, a restricted (through the space), a
// world-readable and encrypted, a suggested child and a subspace with a
// child of its own and a loop back to the space, walked by a member of
// the space, its creator and strangers: which rooms, in which order, by
// pages, with max_depth and suggested_only; room summaries of each.
func TestSpaceHierarchy(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		eve := hs.Register(t, "eve", "pw")
		sn := hs.ServerName()
		with := func(extra map[string]any) map[string]any {
			out := map[string]any{"via": []string{sn}}
			for k, v := range extra {
				out[k] = v
			}
			return out
		}

		space := createRoom(t, alice, spaceBody("Space", "public_chat"))
		pub := createRoom(t, alice, map[string]any{"name": "Public", "preset": "public_chat", "room_alias_name": "pubroom"})
		priv := createRoom(t, alice, map[string]any{"name": "Private", "preset": "private_chat"})
		restr := createRoom(t, alice, map[string]any{"name": "Restricted", "preset": "private_chat", "initial_state": []any{
			stateEv("m.room.join_rules", map[string]any{"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}}}),
		}})
		wr := createRoom(t, alice, map[string]any{"name": "Readable", "preset": "private_chat", "initial_state": []any{
			stateEv("m.room.history_visibility", map[string]any{"history_visibility": "world_readable"}),
			stateEv("m.room.encryption", map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}),
		}})
		sub := createRoom(t, alice, spaceBody("Subspace", "public_chat"))
		deep := createRoom(t, alice, map[string]any{"name": "Deep", "preset": "public_chat"})
		sugg := createRoom(t, alice, map[string]any{"name": "Suggested", "preset": "public_chat"})
		privSpace := createRoom(t, alice, spaceBody("Private space", "private_chat"))
		n := names{space: "space", pub: "pub", priv: "priv", restr: "restr", wr: "wr", sub: "sub", deep: "deep", sugg: "sugg"}

		// Orders a..f; sugg has no order and comes last.
		addChild(t, alice, space, sugg, with(map[string]any{"suggested": true}))
		addChild(t, alice, space, sub, with(map[string]any{"order": "e"}))
		addChild(t, alice, space, wr, with(map[string]any{"order": "d"}))
		addChild(t, alice, space, restr, with(map[string]any{"order": "c"}))
		addChild(t, alice, space, priv, with(map[string]any{"order": "b"}))
		addChild(t, alice, space, pub, with(map[string]any{"order": "a"}))
		// A child without via is no child.
		addChild(t, alice, space, "!gone:"+sn, map[string]any{})
		// Ordered: without an order, two children sent in the same
		// millisecond would be ordered by room ID.
		addChild(t, alice, sub, deep, with(map[string]any{"order": "a"}))
		addChild(t, alice, sub, space, with(map[string]any{"order": "b"})) // a loop
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(space, "/join"), map[string]any{}))

		check := func(t *testing.T, what string, got []string, want ...string) {
			t.Helper()
			if !slices.Equal(got, want) {
				t.Fatalf("%s = %v, want %v", what, n.of(got), n.of(want))
			}
		}

		t.Run("member", func(t *testing.T) {
			p := getHierarchy(t, bob, space, "")
			check(t, "bob's hierarchy", roomIDs(p.Rooms), space, pub, restr, wr, sub, deep, sugg)
			if p.NextBatch != "" {
				t.Errorf("next_batch = %q on the only page", p.NextBatch)
			}
			root := p.Rooms[0]
			if root.RoomType != "m.space" || root.Name != "Space" || root.JoinRule != "public" || root.NumJoinedMembers != 2 || root.RoomVersion == "" {
				t.Errorf("space = %+v", root)
			}
			var kids []string
			for _, ev := range root.ChildrenState {
				if ev["type"] != "m.space.child" || ev["sender"] != alice.UserID || ev["origin_server_ts"] == nil || ev["event_id"] != nil {
					t.Errorf("children_state entry %v is not a stripped m.space.child event with origin_server_ts", ev)
				}
				kids = append(kids, ev["state_key"].(string))
			}
			check(t, "children_state", kids, pub, priv, restr, wr, sub, sugg)
			for _, r := range p.Rooms[1:] {
				switch r.RoomID {
				case restr:
					if r.JoinRule != "restricted" || !slices.Equal(r.AllowedRoomIDs, []string{space}) {
						t.Errorf("restricted room = %+v", r)
					}
				case wr:
					if !r.WorldReadable || r.Encryption != "m.megolm.v1.aes-sha2" {
						t.Errorf("world-readable room = %+v", r)
					}
				case sub:
					check(t, "subspace children", childKeys(r), deep, space)
				default:
					if len(r.ChildrenState) != 0 {
						t.Errorf("room %s (not a space) has children_state %v", n[r.RoomID], r.ChildrenState)
					}
				}
			}
		})
		t.Run("creator", func(t *testing.T) {
			check(t, "alice's hierarchy", roomIDs(getHierarchy(t, alice, space, "").Rooms), space, pub, priv, restr, wr, sub, deep, sugg)
		})
		t.Run("stranger", func(t *testing.T) {
			// Not in the space: restricted is out, the public and world
			// readable rooms stay.
			check(t, "eve's hierarchy", roomIDs(getHierarchy(t, eve, space, "").Rooms), space, pub, wr, sub, deep, sugg)
			hstest.MustErr(t, eve.Do(t, "GET", hierarchyPath(privSpace, ""), nil), 403, "M_FORBIDDEN")
			hstest.MustErr(t, eve.Do(t, "GET", hierarchyPath("!unknown:"+sn, ""), nil), 403, "M_FORBIDDEN")
			hstest.MustErr(t, hs.Anon().Do(t, "GET", hierarchyPath(space, ""), nil), 401, "M_MISSING_TOKEN")
		})
		t.Run("pages", func(t *testing.T) {
			for _, limit := range []int{1, 2, 3} {
				check(t, "pages of "+strconv.Itoa(limit), walkAll(t, bob, space, "", limit), space, pub, restr, wr, sub, deep, sugg)
			}
			// A token used twice: the second time the walk is made again
			// up to it (as in a process that did not make the token).
			p1 := getHierarchy(t, bob, space, "?limit=3")
			a := getHierarchy(t, bob, space, "?limit=3&from="+url.QueryEscape(p1.NextBatch))
			b := getHierarchy(t, bob, space, "?limit=3&from="+url.QueryEscape(p1.NextBatch))
			check(t, "second page", roomIDs(a.Rooms), wr, sub, deep)
			check(t, "second page again", roomIDs(b.Rooms), wr, sub, deep)
			check(t, "last page", roomIDs(getHierarchy(t, bob, space, "?limit=3&from="+url.QueryEscape(b.NextBatch)).Rooms), sugg)
			// The token holds the first request's suggested_only and
			// max_depth.
			hstest.MustErr(t, bob.Do(t, "GET", hierarchyPath(space, "?limit=3&suggested_only=true&from="+url.QueryEscape(p1.NextBatch)), nil), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, bob.Do(t, "GET", hierarchyPath(space, "?limit=3&max_depth=1&from="+url.QueryEscape(p1.NextBatch)), nil), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, bob.Do(t, "GET", hierarchyPath(sub, "?from="+url.QueryEscape(p1.NextBatch)), nil), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, bob.Do(t, "GET", hierarchyPath(space, "?from=garbage"), nil), 400, "M_INVALID_PARAM")
			for _, q := range []string{"?limit=0", "?limit=x", "?max_depth=-1", "?suggested_only=maybe"} {
				hstest.MustErr(t, bob.Do(t, "GET", hierarchyPath(space, q), nil), 400, "M_INVALID_PARAM")
			}
		})
		t.Run("max_depth", func(t *testing.T) {
			check(t, "max_depth=0", roomIDs(getHierarchy(t, bob, space, "?max_depth=0").Rooms), space)
			check(t, "max_depth=1", roomIDs(getHierarchy(t, bob, space, "?max_depth=1").Rooms), space, pub, restr, wr, sub, sugg)
			check(t, "max_depth=1 by pages", walkAll(t, bob, space, "&max_depth=1", 2), space, pub, restr, wr, sub, sugg)
		})
		t.Run("suggested_only", func(t *testing.T) {
			p := getHierarchy(t, bob, space, "?suggested_only=true")
			check(t, "suggested only", roomIDs(p.Rooms), space, sugg)
			check(t, "suggested children_state", childKeys(p.Rooms[0]), sugg)
		})
		t.Run("room_summary", func(t *testing.T) {
			summary := func(c *hstest.Client, room string) *hstest.Response {
				return c.Do(t, "GET", c1+"/room_summary/"+url.PathEscape(room), nil)
			}
			s := hstest.Decode[hierRoom](t, summary(bob, space))
			if s.RoomID != space || s.Membership != "join" || s.RoomType != "m.space" || s.RoomVersion == "" || s.ChildrenState != nil {
				t.Errorf("bob's summary of the space = %+v", s)
			}
			s = hstest.Decode[hierRoom](t, summary(bob, pub))
			if s.Membership != "leave" || s.JoinRule != "public" || s.Name != "Public" || s.NumJoinedMembers != 1 {
				t.Errorf("bob's summary of the public room = %+v", s)
			}
			s = hstest.Decode[hierRoom](t, summary(bob, restr))
			if s.Membership != "leave" || !slices.Equal(s.AllowedRoomIDs, []string{space}) {
				t.Errorf("bob's summary of the restricted room = %+v", s)
			}
			s = hstest.Decode[hierRoom](t, summary(alice, wr))
			if s.Membership != "join" || s.Encryption != "m.megolm.v1.aes-sha2" || !s.WorldReadable {
				t.Errorf("alice's summary of the world-readable room = %+v", s)
			}
			hstest.MustErr(t, summary(bob, priv), 404, "M_NOT_FOUND")
			hstest.MustErr(t, summary(eve, restr), 404, "M_NOT_FOUND")
			hstest.MustErr(t, summary(bob, "!unknown:"+sn), 404, "M_NOT_FOUND")
			// Anonymous: rooms anyone may see only, and no membership.
			anon := hs.Anon()
			m := hstest.MustOK(t, summary(anon, pub))
			if _, ok := m["membership"]; ok {
				t.Errorf("anonymous summary has a membership: %v", m)
			}
			hstest.MustOK(t, summary(anon, wr))
			hstest.MustErr(t, summary(anon, restr), 404, "M_NOT_FOUND")
			// By alias, and on MSC3266's unstable paths.
			s = hstest.Decode[hierRoom](t, summary(bob, "#pubroom:"+sn))
			if s.RoomID != pub {
				t.Errorf("summary by alias = %+v, want room %s", s, pub)
			}
			hstest.MustErr(t, summary(bob, "#nothing:"+sn), 404, "M_NOT_FOUND")
			for _, p := range []string{"/_matrix/client/unstable/im.nheko.summary/summary/" + url.PathEscape("#pubroom:"+sn),
				"/_matrix/client/unstable/im.nheko.summary/rooms/" + url.PathEscape(pub) + "/summary"} {
				m := hstest.MustOK(t, bob.Do(t, "GET", p, nil))
				if m["room_id"] != pub || m["room_version"] == nil || m["im.nheko.summary.version"] != m["room_version"] || m["im.nheko.summary.room_version"] != m["room_version"] || m["membership"] != "leave" {
					t.Errorf("GET %s = %v", p, m)
				}
			}
		})
	})
}

func childKeys(r hierRoom) []string {
	var out []string
	for _, ev := range r.ChildrenState {
		out = append(out, ev["state_key"].(string))
	}
	return out
}

// A space on hs1 with children only on hs2 (a public room, a private one,
// a subspace with a child of its own), walked by a user of hs1: hs1 asks
// hs2 with GET /_matrix/federation/v1/hierarchy, and hs2 answers with
// what hs1 may see. Room summaries of hs2's rooms through via.
func TestSpaceHierarchyFederation(t *testing.T) {
	t.Parallel()
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			t.Parallel()
			f := hstest.NewFederation(t, hstest.Options{Engine: &e})
			hs1, hs2 := f.Server("hs1.polder.test"), f.Server("hs2.polder.test")
			alice := hs1.Register(t, "alice", "pw")
			bob := hs2.Register(t, "bob", "pw")
			withOrder := func(o string) map[string]any {
				return map[string]any{"via": []string{hs2.ServerName()}, "order": o}
			}

			space := createRoom(t, alice, spaceBody("Space", "public_chat"))
			remote := createRoom(t, bob, map[string]any{"name": "Remote", "preset": "public_chat"})
			hidden := createRoom(t, bob, map[string]any{"name": "Hidden", "preset": "private_chat"})
			sub := createRoom(t, bob, spaceBody("Remote subspace", "public_chat"))
			deep := createRoom(t, bob, map[string]any{"name": "Deep", "preset": "public_chat"})
			n := names{space: "space", remote: "remote", hidden: "hidden", sub: "sub", deep: "deep"}
			addChild(t, alice, space, remote, withOrder("a"))
			addChild(t, alice, space, hidden, withOrder("b"))
			addChild(t, alice, space, sub, withOrder("c"))
			addChild(t, bob, sub, hidden, withOrder("a"))
			addChild(t, bob, sub, deep, withOrder("b"))

			p := getHierarchy(t, alice, space, "")
			if got, want := roomIDs(p.Rooms), []string{space, remote, sub, deep}; !slices.Equal(got, want) {
				t.Fatalf("hierarchy = %v, want %v", n.of(got), n.of(want))
			}
			for _, r := range p.Rooms {
				if r.RoomID == remote && (r.Name != "Remote" || r.JoinRule != "public" || r.RoomVersion == "") {
					t.Errorf("remote room = %+v", r)
				}
				if r.RoomID == sub {
					if got, want := childKeys(r), []string{hidden, deep}; !slices.Equal(got, want) {
						t.Errorf("remote subspace children_state = %v, want %v", n.of(got), n.of(want))
					}
				}
			}
			check := func(what string, got []string, want ...string) {
				t.Helper()
				if !slices.Equal(got, want) {
					t.Fatalf("%s = %v, want %v", what, n.of(got), n.of(want))
				}
			}
			check("by pages", walkAll(t, alice, space, "", 1), space, remote, sub, deep)
			check("max_depth=1", roomIDs(getHierarchy(t, alice, space, "?max_depth=1").Rooms), space, remote, sub)

			// The remote space itself, which hs1 is not in.
			check("remote root", roomIDs(getHierarchy(t, alice, sub, "").Rooms), sub, deep)
			hstest.MustErr(t, alice.Do(t, "GET", hierarchyPath(hidden, ""), nil), 403, "M_FORBIDDEN")

			summary := func(room string, via string) *hstest.Response {
				return alice.Do(t, "GET", c1+"/room_summary/"+url.PathEscape(room)+"?via="+url.QueryEscape(via), nil)
			}
			s := hstest.Decode[hierRoom](t, summary(remote, hs2.ServerName()))
			if s.RoomID != remote || s.Membership != "leave" || s.Name != "Remote" || s.RoomVersion == "" {
				t.Errorf("summary of the remote room = %+v", s)
			}
			hstest.MustErr(t, summary(hidden, hs2.ServerName()), 404, "M_NOT_FOUND")
		})
	}
}

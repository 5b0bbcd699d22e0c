package federation_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix/id"

	fed "polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

func fedHierarchy(t *testing.T, r *hstest.Remote, dest string, roomID string, query string) (int, fed.HierarchyResponse) {
	t.Helper()
	status, body := r.Do(t, dest, hstest.RawRequest{Method: "GET", Path: "/_matrix/federation/v1/hierarchy/" + url.PathEscape(roomID) + query})
	var out fed.HierarchyResponse
	if status == 200 {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("hierarchy of %s: %s: %v", roomID, body, err)
		}
		var raw map[string]json.RawMessage
		_ = json.Unmarshal(body, &raw)
		for _, k := range []string{"room", "children", "inaccessible_children"} {
			if string(raw[k]) == "" || string(raw[k]) == "null" {
				t.Fatalf("hierarchy of %s: no %s (required) in %s", roomID, k, body)
			}
		}
	}
	return status, out
}

func summaryIDs(ss []fed.RoomSummary) []id.RoomID {
	var out []id.RoomID
	for _, s := range ss {
		out = append(out, s.RoomID)
	}
	return out
}

// GET /_matrix/federation/v1/hierarchy as another server sees it: the
// children it may see (public; restricted once it has a user in the
// space), those it may not (private, its server banned by ACL), children
// this server is not in left out; 404 for a room it may not see or that
// this server is not in, 403 when the room's ACL bans it.
func TestFederationHierarchy(t *testing.T) {
	t.Parallel()
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			t.Parallel()
			f := hstest.NewFederation(t, hstest.Options{Engine: &e}, "hs1.polder.test")
			hs1 := f.Server("hs1.polder.test")
			remote := f.NewRemote(t, "remote.polder.test")
			alice := hs1.Register(t, "alice", "pw")
			sn := hs1.ServerName()
			create := func(body map[string]any) string {
				return hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", "/_matrix/client/v3/createRoom", body)), "room_id")
			}
			addChild := func(space, child string, content map[string]any) {
				hstest.MustOK(t, alice.Do(t, "PUT", clientRoomPath(idOf(space), "/state/m.space.child/"+url.PathEscape(child)), content))
			}
			space := create(map[string]any{"preset": "public_chat", "name": "Space", "creation_content": map[string]any{"type": "m.space"}})
			pub := create(map[string]any{"preset": "public_chat", "name": "Public"})
			priv := create(map[string]any{"preset": "private_chat"})
			restr := create(map[string]any{"preset": "private_chat", "initial_state": []any{map[string]any{
				"type": "m.room.join_rules", "state_key": "",
				"content": map[string]any{"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}}},
			}}})
			acl := create(map[string]any{"preset": "public_chat", "initial_state": []any{map[string]any{
				"type": "m.room.server_acl", "state_key": "",
				"content": map[string]any{"allow": []string{"*"}, "deny": []string{remote.Name}},
			}}})
			addChild(space, pub, map[string]any{"via": []string{sn}, "order": "a", "suggested": true})
			addChild(space, priv, map[string]any{"via": []string{sn}, "order": "b"})
			addChild(space, restr, map[string]any{"via": []string{sn}, "order": "c"})
			addChild(space, acl, map[string]any{"via": []string{sn}, "order": "d"})
			addChild(space, "!elsewhere:other.polder.test", map[string]any{"via": []string{"other.polder.test"}, "order": "e"})

			status, h := fedHierarchy(t, remote, sn, space, "")
			if status != 200 {
				t.Fatalf("hierarchy of the space: %d", status)
			}
			if h.Room.RoomID != id.RoomID(space) || h.Room.RoomType != "m.space" || h.Room.Name != "Space" || len(h.Room.ChildrenState) != 5 {
				t.Errorf("room = %+v", h.Room)
			}
			if got, want := summaryIDs(h.Children), []id.RoomID{id.RoomID(pub)}; !slices.Equal(got, want) {
				t.Errorf("children = %v, want %v", got, want)
			}
			if got, want := h.InaccessibleChildren, []id.RoomID{id.RoomID(priv), id.RoomID(restr), id.RoomID(acl)}; !slices.Equal(got, want) {
				t.Errorf("inaccessible_children = %v, want %v", got, want)
			}

			// With a user in the space, the restricted room is for the
			// remote to see (it filters for its users).
			remote.Join(t, sn, id.RoomID(space), remote.UserID("rita"))
			_, h = fedHierarchy(t, remote, sn, space, "")
			if got, want := summaryIDs(h.Children), []id.RoomID{id.RoomID(pub), id.RoomID(restr)}; !slices.Equal(got, want) {
				t.Errorf("children with a member in the space = %v, want %v", got, want)
			}
			for _, c := range h.Children {
				if c.RoomID == id.RoomID(restr) && !slices.Equal(c.AllowedRoomIDs, []id.RoomID{id.RoomID(space)}) {
					t.Errorf("restricted child = %+v, want allowed_room_ids [%s]", c, space)
				}
			}

			_, h = fedHierarchy(t, remote, sn, space, "?suggested_only=true")
			if len(h.Room.ChildrenState) != 1 || !slices.Equal(summaryIDs(h.Children), []id.RoomID{id.RoomID(pub)}) {
				t.Errorf("suggested only: children_state %d, children %v", len(h.Room.ChildrenState), summaryIDs(h.Children))
			}
			if status, _ := fedHierarchy(t, remote, sn, priv, ""); status != 404 {
				t.Errorf("hierarchy of a private room: %d, want 404", status)
			}
			if status, _ := fedHierarchy(t, remote, sn, "!unknown:"+sn, ""); status != 404 {
				t.Errorf("hierarchy of an unknown room: %d, want 404", status)
			}
			if status, _ := fedHierarchy(t, remote, sn, acl, ""); status != 403 {
				t.Errorf("hierarchy of a room whose ACL bans the asker: %d, want 403", status)
			}
		})
	}
}

// What hs1 does with a remote's answers: a bad child summary is dropped,
// children_state comes out in the spec's order, and the answer is cached
// (a second walk asks only about the room the remote refused: a refusal
// is not remembered, the remote may learn that we may see the room).
func TestHierarchyRemoteAnswer(t *testing.T) {
	t.Parallel()
	f := hstest.NewFederation(t, hstest.Options{}, "hs1.polder.test")
	hs1 := f.Server("hs1.polder.test")
	remote := f.NewRemote(t, "remote.polder.test")
	alice := hs1.Register(t, "alice", "pw")
	const rspace, rchild, rbad = "!rspace:remote.polder.test", "!rchild:remote.polder.test", "!rbad:remote.polder.test"
	var asked atomic.Int32
	remote.Mux.HandleFunc("GET /_matrix/federation/v1/hierarchy/{roomId}", func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if r.PathValue("roomId") != rspace {
			w.WriteHeader(404)
			w.Write([]byte(`{"errcode":"M_NOT_FOUND","error":"no"}`))
			return
		}
		child := func(roomID string, ts int64, order string) map[string]any {
			c := map[string]any{"via": []string{remote.Name}}
			if order != "" {
				c["order"] = order
			}
			return map[string]any{"type": "m.space.child", "state_key": roomID, "sender": "@r:remote.polder.test", "origin_server_ts": ts, "content": c}
		}
		json.NewEncoder(w).Encode(map[string]any{
			"room": map[string]any{"room_id": rspace, "room_type": "m.space", "num_joined_members": 3, "world_readable": false, "guest_can_join": false, "join_rule": "public",
				"children_state": []any{child(rbad, 1, ""), child(rchild, 2, "z"), map[string]any{"type": "m.room.name", "state_key": ""}}},
			"children": []any{
				map[string]any{"room_id": rchild, "name": "Child", "num_joined_members": 2, "world_readable": false, "guest_can_join": false, "join_rule": "public"},
				map[string]any{"room_id": rbad, "name": 42},
			},
			"inaccessible_children": []any{},
		})
	})
	space := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "public_chat", "creation_content": map[string]any{"type": "m.space"}})), "room_id")
	hstest.MustOK(t, alice.Do(t, "PUT", clientRoomPath(idOf(space), "/state/m.space.child/"+url.PathEscape(rspace)), map[string]any{"via": []string{remote.Name}}))

	walk := func() []string {
		r := alice.Do(t, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(space)+"/hierarchy", nil)
		hstest.MustOK(t, r)
		var p struct {
			Rooms []struct {
				RoomID        string           `json:"room_id"`
				Name          string           `json:"name"`
				ChildrenState []map[string]any `json:"children_state"`
			} `json:"rooms"`
		}
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, room := range p.Rooms {
			out = append(out, room.RoomID)
			if room.RoomID == rspace {
				var kids []any
				for _, ev := range room.ChildrenState {
					kids = append(kids, ev["state_key"])
				}
				if !slices.Equal(kids, []any{rchild, rbad}) {
					t.Errorf("remote space's children_state = %v, want [%s %s] (order first)", kids, rchild, rbad)
				}
			}
			if room.RoomID == rchild && room.Name != "Child" {
				t.Errorf("remote child = %+v", room)
			}
		}
		return out
	}
	// rbad's summary did not parse: it is asked about on its own (404),
	// and left out.
	want := []string{space, rspace, rchild}
	if got := walk(); !slices.Equal(got, want) {
		t.Fatalf("hierarchy = %v, want %v", got, want)
	}
	n := asked.Load()
	if n != 2 {
		t.Errorf("remote asked %d times, want 2 (the space, the child whose summary was bad)", n)
	}
	if got := walk(); !slices.Equal(got, want) {
		t.Fatalf("hierarchy again = %v, want %v", got, want)
	}
	if asked.Load() != n+1 {
		t.Errorf("remote asked %d more times on the second walk, want 1 (the space cached, rbad's 404 not)", asked.Load()-n)
	}
}

package client_test

import (
	"net/url"
	"slices"
	"testing"

	"polder.dev/polder/internal/hstest"
)

func adminRoomPath(version, roomID, rest string) string {
	return adminV + "/" + version + "/rooms/" + url.PathEscape(roomID) + rest
}

type adminRoomEntry struct {
	RoomID             string  `json:"room_id"`
	Name               *string `json:"name"`
	CanonicalAlias     *string `json:"canonical_alias"`
	JoinedMembers      int     `json:"joined_members"`
	JoinedLocalMembers int     `json:"joined_local_members"`
	Version            string  `json:"version"`
	Creator            *string `json:"creator"`
	Encryption         *string `json:"encryption"`
	Federatable        bool    `json:"federatable"`
	Public             bool    `json:"public"`
	JoinRules          *string `json:"join_rules"`
	GuestAccess        *string `json:"guest_access"`
	HistoryVisibility  *string `json:"history_visibility"`
	StateEvents        int     `json:"state_events"`
	RoomType           *string `json:"room_type"`
	// Details only.
	Topic              *string `json:"topic"`
	JoinedLocalDevices int     `json:"joined_local_devices"`
	Forgotten          bool    `json:"forgotten"`
}

type adminRoomList struct {
	Rooms      []adminRoomEntry `json:"rooms"`
	Offset     int              `json:"offset"`
	TotalRooms int              `json:"total_rooms"`
	NextBatch  *int             `json:"next_batch"`
	PrevBatch  *int             `json:"prev_batch"`
}

func adminRoomIDs(l adminRoomList) []string {
	var out []string
	for _, r := range l.Rooms {
		out = append(out, r.RoomID)
	}
	return out
}

// The Synapse room admin API: list, details, members, state, block and
// delete (every local member leaves).
func TestAdminRooms(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		admin := hs.Admin(t, "admin")
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		apple := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Apple", "topic": "fruit",
			"room_alias_name": "apple", "visibility": "public"})
		banana := createRoom(t, alice, map[string]any{"preset": "private_chat", "name": "Banana",
			"creation_content": map[string]any{"m.federate": false},
			"initial_state":    []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
		cherry := createRoom(t, bob, map[string]any{"preset": "public_chat", "name": "Cherry"})
		join(t, bob, apple)
		list := func(t *testing.T, query string) adminRoomList {
			t.Helper()
			return decodeOK[adminRoomList](t, admin.Do(t, "GET", adminV+"/v1/rooms?"+query, nil))
		}

		t.Run("non-admins are refused", func(t *testing.T) {
			for _, c := range []struct{ method, path string }{
				{"GET", adminV + "/v1/rooms"},
				{"GET", adminRoomPath("v1", apple, "")},
				{"GET", adminRoomPath("v1", apple, "/members")},
				{"GET", adminRoomPath("v1", apple, "/state")},
				{"GET", adminRoomPath("v1", apple, "/block")},
				{"PUT", adminRoomPath("v1", apple, "/block")},
				{"DELETE", adminRoomPath("v1", apple, "")},
				{"DELETE", adminRoomPath("v2", apple, "")},
				{"GET", adminRoomPath("v2", apple, "/delete_status")},
				{"GET", adminV + "/v2/rooms/delete_status/x"},
			} {
				hstest.MustErr(t, alice.Do(t, c.method, c.path, map[string]any{"block": true}), 403, "M_FORBIDDEN")
			}
			bob.MustWhoami(t)
			if m := hstest.MustOK(t, alice.Do(t, "GET", roomPath(apple, "/joined_members"), nil))["joined"].(map[string]any); len(m) != 2 {
				t.Errorf("apple's members after refused deletions = %v, want alice and bob", m)
			}
		})

		t.Run("list", func(t *testing.T) {
			l := list(t, "")
			if got, want := adminRoomIDs(l), []string{apple, banana, cherry}; !slices.Equal(got, want) || l.TotalRooms != 3 || l.Offset != 0 ||
				l.NextBatch != nil || l.PrevBatch != nil {
				t.Fatalf("GET /v1/rooms = %v (%+v); want %v by name", got, l, want)
			}
			a, b := l.Rooms[0], l.Rooms[1]
			if a.Name == nil || *a.Name != "Apple" || a.CanonicalAlias == nil || *a.CanonicalAlias != "#apple:"+hs.ServerName() ||
				a.JoinedMembers != 2 || a.JoinedLocalMembers != 2 || !a.Public || !a.Federatable || a.Encryption != nil ||
				a.Creator == nil || *a.Creator != alice.UserID || a.JoinRules == nil || *a.JoinRules != "public" || a.Version == "" ||
				a.StateEvents < 5 || a.RoomType != nil || a.HistoryVisibility == nil {
				t.Errorf("apple = %+v", a)
			}
			if b.Federatable || b.Encryption == nil || *b.Encryption != "m.megolm.v1.aes-sha2" || b.Public || *b.JoinRules != "invite" {
				t.Errorf("banana = %+v; want not federatable, megolm, not public, invite", b)
			}
			p1 := list(t, "limit=2")
			if p1.NextBatch == nil || *p1.NextBatch != 2 || len(p1.Rooms) != 2 {
				t.Fatalf("page 1 = %+v; want 2 rooms and next_batch 2", p1)
			}
			p2 := list(t, "limit=2&from=2")
			if got := adminRoomIDs(p2); !slices.Equal(got, []string{cherry}) || p2.NextBatch != nil || p2.PrevBatch == nil || *p2.PrevBatch != 0 || p2.Offset != 2 {
				t.Errorf("page 2 = %+v; want cherry, prev_batch 0, no next_batch", p2)
			}
			for _, c := range []struct {
				query string
				want  []string
			}{
				{"dir=b", []string{cherry, banana, apple}},
				{"order_by=joined_members", []string{apple, min(banana, cherry), max(banana, cherry)}},
				{"order_by=creator&dir=b", []string{cherry, min(apple, banana), max(apple, banana)}},
				{"search_term=ANAN", []string{banana}},
				{"search_term=" + url.QueryEscape("#apple"), []string{apple}},
				{"search_term=" + url.QueryEscape(cherry), []string{cherry}},
				{"public_rooms=true", []string{apple}},
				{"empty_rooms=false&public_rooms=false", []string{banana, cherry}},
			} {
				if got := adminRoomIDs(list(t, c.query)); !slices.Equal(got, c.want) {
					t.Errorf("GET /v1/rooms?%s = %v, want %v", c.query, got, c.want)
				}
			}
			hstest.MustErr(t, admin.Do(t, "GET", adminV+"/v1/rooms?order_by=colour", nil), 400, "M_INVALID_PARAM")
			hstest.MustErr(t, admin.Do(t, "GET", adminV+"/v1/rooms?search_term=", nil), 400, "M_INVALID_PARAM")
		})

		t.Run("details, members, state", func(t *testing.T) {
			d := decodeOK[adminRoomEntry](t, admin.Do(t, "GET", adminRoomPath("v1", apple, ""), nil))
			if d.RoomID != apple || d.Topic == nil || *d.Topic != "fruit" || d.JoinedLocalDevices != 2 || d.Forgotten || d.JoinedMembers != 2 {
				t.Errorf("GET room apple = %+v; want topic fruit, 2 local devices", d)
			}
			type members struct {
				Members []string `json:"members"`
				Total   int      `json:"total"`
			}
			m := decodeOK[members](t, admin.Do(t, "GET", adminRoomPath("v1", apple, "/members"), nil))
			slices.Sort(m.Members)
			if want := []string{alice.UserID, bob.UserID}; !slices.Equal(m.Members, want) || m.Total != 2 {
				t.Errorf("members of apple = %+v, want %v", m, want)
			}
			type state struct {
				State []struct {
					Type     string         `json:"type"`
					StateKey *string        `json:"state_key"`
					Content  map[string]any `json:"content"`
					EventID  string         `json:"event_id"`
				} `json:"state"`
			}
			// The admin is in none of these rooms.
			s := decodeOK[state](t, admin.Do(t, "GET", adminRoomPath("v1", banana, "/state"), nil))
			var types []string
			for _, e := range s.State {
				types = append(types, e.Type)
				if e.StateKey == nil || e.EventID == "" {
					t.Errorf("state event %+v has no state_key or event_id", e)
				}
			}
			for _, want := range []string{"m.room.create", "m.room.power_levels", "m.room.encryption", "m.room.name", "m.room.member"} {
				if !slices.Contains(types, want) {
					t.Errorf("state of banana has types %v, missing %s", types, want)
				}
			}
			s = decodeOK[state](t, admin.Do(t, "GET", adminRoomPath("v1", apple, "/state?type=m.room.member"), nil))
			if len(s.State) != 2 {
				t.Errorf("member state of apple = %+v, want 2 events", s.State)
			}
			unknown := "!unknown:" + hs.ServerName()
			for _, p := range []string{"", "/members", "/state"} {
				hstest.MustErr(t, admin.Do(t, "GET", adminRoomPath("v1", unknown, p), nil), 404, "M_NOT_FOUND")
			}
			hstest.MustErr(t, admin.Do(t, "GET", adminRoomPath("v1", "not-a-room", ""), nil), 400, "M_INVALID_PARAM")
		})

		t.Run("block", func(t *testing.T) {
			type block struct {
				Block  bool    `json:"block"`
				UserID *string `json:"user_id"`
			}
			if b := decodeOK[block](t, admin.Do(t, "GET", adminRoomPath("v1", cherry, "/block"), nil)); b.Block || b.UserID != nil {
				t.Errorf("block of cherry = %+v, want none", b)
			}
			hstest.MustOK(t, admin.Do(t, "PUT", adminRoomPath("v1", cherry, "/block"), map[string]any{"block": true}))
			if b := decodeOK[block](t, admin.Do(t, "GET", adminRoomPath("v1", cherry, "/block"), nil)); !b.Block || b.UserID == nil || *b.UserID != admin.UserID {
				t.Errorf("block of cherry = %+v, want blocked by %s", b, admin.UserID)
			}
			hstest.MustErr(t, alice.Do(t, "POST", roomPath(cherry, "/join"), map[string]any{}), 403, "M_FORBIDDEN")
			hstest.MustErr(t, alice.Do(t, "POST", c3+"/join/"+url.PathEscape(cherry), map[string]any{}), 403, "M_FORBIDDEN")
			hstest.MustOK(t, admin.Do(t, "PUT", adminRoomPath("v1", cherry, "/block"), map[string]any{"block": false}))
			join(t, alice, cherry)
			hstest.MustErr(t, admin.Do(t, "PUT", adminRoomPath("v1", cherry, "/block"), map[string]any{}), 400, "M_MISSING_PARAM")
		})

		t.Run("delete v2: members leave, room blocked", func(t *testing.T) {
			bobSync := doSync(t, bob, "")
			if bobSync.join(apple) == nil {
				t.Fatalf("bob's initial sync has no apple")
			}
			// Unknown rooms and unsupported options change nothing.
			hstest.MustErr(t, admin.Do(t, "DELETE", adminRoomPath("v2", "!unknown:"+hs.ServerName(), ""), map[string]any{}), 404, "M_NOT_FOUND")
			hstest.MustErr(t, admin.Do(t, "DELETE", adminRoomPath("v2", apple, ""), map[string]any{"new_room_user_id": admin.UserID}), 400, "M_INVALID_PARAM")

			r := hstest.MustOK(t, admin.Do(t, "DELETE", adminRoomPath("v2", apple, ""), map[string]any{"block": true}))
			deleteID := hstest.Str(t, r, "delete_id")
			type shutdown struct {
				KickedUsers       []string `json:"kicked_users"`
				FailedToKickUsers []string `json:"failed_to_kick_users"`
				LocalAliases      []string `json:"local_aliases"`
				NewRoomID         *string  `json:"new_room_id"`
				Purged            bool     `json:"purged"`
			}
			type status struct {
				DeleteID     string   `json:"delete_id"`
				RoomID       string   `json:"room_id"`
				Status       string   `json:"status"`
				ShutdownRoom shutdown `json:"shutdown_room"`
			}
			st := decodeOK[status](t, admin.Do(t, "GET", adminV+"/v2/rooms/delete_status/"+url.PathEscape(deleteID), nil))
			slices.Sort(st.ShutdownRoom.KickedUsers)
			if want := []string{alice.UserID, bob.UserID}; st.Status != "complete" || st.RoomID != apple || st.DeleteID != deleteID ||
				!slices.Equal(st.ShutdownRoom.KickedUsers, want) || len(st.ShutdownRoom.FailedToKickUsers) != 0 ||
				!slices.Equal(st.ShutdownRoom.LocalAliases, []string{"#apple:" + hs.ServerName()}) || st.ShutdownRoom.Purged {
				t.Errorf("delete status = %+v; want complete, %v kicked, the alias deleted, not purged", st, want)
			}
			byRoom := decodeOK[struct {
				Results []status `json:"results"`
			}](t, admin.Do(t, "GET", adminRoomPath("v2", apple, "/delete_status"), nil))
			if len(byRoom.Results) != 1 || byRoom.Results[0].DeleteID != deleteID {
				t.Errorf("delete status of apple = %+v, want %s", byRoom, deleteID)
			}
			hstest.MustErr(t, admin.Do(t, "GET", adminV+"/v2/rooms/delete_status/nope", nil), 404, "M_NOT_FOUND")
			hstest.MustErr(t, admin.Do(t, "GET", adminRoomPath("v2", banana, "/delete_status"), nil), 404, "M_NOT_FOUND")

			// bob's /sync shows the leave, with the leave event.
			next := doSync(t, bob, syncSince(bobSync.NextBatch))
			if next.Rooms == nil || next.Rooms.Leave[apple] == nil {
				t.Fatalf("bob's sync after the deletion has no apple in rooms.leave: %+v", next.Rooms)
			}
			left := false
			for _, e := range next.Rooms.Leave[apple].Timeline.Events {
				if e.Type == "m.room.member" && e.StateKey != nil && *e.StateKey == bob.UserID && e.Content["membership"] == "leave" && e.Sender == bob.UserID {
					left = true
				}
			}
			if !left {
				t.Errorf("bob's leave timeline of apple = %+v, want his own leave event", next.Rooms.Leave[apple].Timeline.Events)
			}
			// Nobody local is left; the room is out of the directory,
			// its alias is gone, and it cannot be joined.
			d := decodeOK[adminRoomEntry](t, admin.Do(t, "GET", adminRoomPath("v1", apple, ""), nil))
			if d.JoinedMembers != 0 || d.JoinedLocalMembers != 0 || d.Public {
				t.Errorf("apple after deletion = %+v; want no members, not public", d)
			}
			hstest.MustErr(t, alice.Do(t, "GET", c3+"/directory/room/"+url.PathEscape("#apple:"+hs.ServerName()), nil), 404, "M_NOT_FOUND")
			hstest.MustErr(t, bob.Do(t, "POST", roomPath(apple, "/join"), map[string]any{}), 403, "M_FORBIDDEN")
			if got := adminRoomIDs(list(t, "empty_rooms=true")); !slices.Equal(got, []string{apple}) {
				t.Errorf("empty rooms = %v, want apple", got)
			}
		})

		t.Run("delete v1", func(t *testing.T) {
			type shutdown struct {
				KickedUsers []string `json:"kicked_users"`
				NewRoomID   *string  `json:"new_room_id"`
			}
			s := decodeOK[shutdown](t, admin.Do(t, "DELETE", adminRoomPath("v1", banana, ""), map[string]any{"purge": true}))
			if !slices.Equal(s.KickedUsers, []string{alice.UserID}) || s.NewRoomID != nil {
				t.Errorf("DELETE v1 banana = %+v, want alice kicked", s)
			}
			// Not blocked: alice may not come back on her own (invite only),
			// but the room is not on the block list.
			if b := hstest.MustOK(t, admin.Do(t, "GET", adminRoomPath("v1", banana, "/block"), nil)); b["block"] != false {
				t.Errorf("banana blocked after a delete without block: %v", b)
			}
			// v1 may block a room this server does not know, and only that.
			unknown := "!future:" + hs.ServerName()
			hstest.MustErr(t, admin.Do(t, "DELETE", adminRoomPath("v1", unknown, ""), map[string]any{}), 400, "M_INVALID_PARAM")
			hstest.MustOK(t, admin.Do(t, "DELETE", adminRoomPath("v1", unknown, ""), map[string]any{"block": true}))
			if b := hstest.MustOK(t, admin.Do(t, "GET", adminRoomPath("v1", unknown, "/block"), nil)); b["block"] != true {
				t.Errorf("unknown room not blocked: %v", b)
			}
		})
	})
}

package client_test

import (
	"fmt"
	"net/url"
	"testing"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

// A server that is no longer in the room that allows a restricted join
// cannot tell whether a remote user is in it: make_join answers
// M_UNABLE_TO_AUTHORISE_JOIN, and the joining server tries the next
// server the client named (Complement TestRestrictedRoomsRemoteJoinFailOver).
// alice (hs1) makes R, restricted to members of A; bob (hs2) may invite in
// R and joins both, then leaves A; charlie (hs3) is in A. charlie's join
// through hs2 alone fails; through hs2 then hs1 it is authorised by alice.
func TestRestrictedJoinFailOver(t *testing.T) {
	t.Parallel()
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			f := hstest.NewFederation(t, hstest.Options{Engine: &eng}, "hs1.polder.test", "hs2.polder.test", "hs3.polder.test")
			hs1, hs2, hs3 := f.Server("hs1.polder.test"), f.Server("hs2.polder.test"), f.Server("hs3.polder.test")
			alice := hs1.Register(t, "alice", "pw")
			bob := hs2.Register(t, "bob", "pw")
			charlie := hs3.Register(t, "charlie", "pw")
			allowed := createRoom(t, alice, map[string]any{"preset": "public_chat"})
			room := createRoom(t, alice, map[string]any{
				"preset": "public_chat", "room_version": "10",
				"initial_state": []map[string]any{{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{
					"join_rule": "restricted", "allow": []map[string]any{{"type": "m.room_membership", "room_id": allowed, "via": []string{hs1.ServerName()}}},
				}}},
			})
			joinVia(t, bob, allowed, hs1.ServerName())
			joinVia(t, bob, room, hs1.ServerName())
			joinVia(t, charlie, allowed, hs1.ServerName())
			putState(t, alice, room, "m.room.power_levels", "", map[string]any{
				"invite": 100, "users": map[string]any{alice.UserID: 100, bob.UserID: 100},
			})
			eventually(t, "hs2 sees bob's power", func() error {
				pl, code := stateOf(t, bob, room, "m.room.power_levels")
				if users, _ := pl["users"].(map[string]any); code != 200 || users[bob.UserID] == nil {
					return fmt.Errorf("power levels on hs2: %d %v", code, pl)
				}
				return nil
			})
			hstest.MustOK(t, bob.Do(t, "POST", roomPath(allowed, "/leave"), map[string]any{}))

			r := charlie.Do(t, "POST", c3+"/join/"+url.PathEscape(room)+"?via="+hs2.ServerName(), map[string]any{})
			hstest.MustErr(t, r, 400, "M_UNABLE_TO_AUTHORISE_JOIN")
			hstest.MustOK(t, charlie.Do(t, "POST", c3+"/join/"+url.PathEscape(room)+"?via="+hs2.ServerName()+"&via="+hs1.ServerName(), map[string]any{}))
			m := hstest.MustOK(t, charlie.Do(t, "GET", roomPath(room, "/state/m.room.member/"+url.PathEscape(charlie.UserID)), nil))
			if m["join_authorised_via_users_server"] != alice.UserID {
				t.Errorf("charlie's join = %v, want authorised by %s", m, alice.UserID)
			}
		})
	}
}

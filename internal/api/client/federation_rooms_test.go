package client_test

import (
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"polder.dev/polder/internal/hstest"
)

// eventually retries check until it returns nil or the time is up.
func eventually(t testing.TB, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// seesEvent waits until c can read an event of the room.
func seesEvent(t testing.TB, c *hstest.Client, roomID, eventID string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s sees %s", c.UserID, eventID), func() error {
		r := c.Do(t, "GET", roomPath(roomID, "/event/"+url.PathEscape(eventID)), nil)
		if r.Status != 200 {
			return fmt.Errorf("GET event: %d %s", r.Status, r.Body)
		}
		return nil
	})
}

func stateOf(t testing.TB, c *hstest.Client, roomID, typ string) (map[string]any, int) {
	r := c.Do(t, "GET", roomPath(roomID, "/state/"+typ+"/"), nil)
	if r.Status != 200 {
		return nil, r.Status
	}
	return r.JSON(t), 200
}

func joinVia(t testing.TB, c *hstest.Client, roomID, via string) {
	t.Helper()
	hstest.MustOK(t, c.Do(t, "POST", c3+"/join/"+url.PathEscape(roomID)+"?via="+url.QueryEscape(via), map[string]any{}))
}

// Three servers share a room: one creates it, the others join (one through
// a server that is not the creator's), messages and state flow in every
// direction, a server that was down catches up, and concurrent power level
// changes during a split resolve to the same state everywhere.
func TestFederationRoom(t *testing.T) {
	t.Parallel()
	f := hstest.NewFederation(t, hstest.Options{}, "hs1.polder.test", "hs2.polder.test", "hs3.polder.test")
	hs1, hs2, hs3 := f.Server("hs1.polder.test"), f.Server("hs2.polder.test"), f.Server("hs3.polder.test")
	alice := hs1.Register(t, "alice", "password-alice")
	bob := hs2.Register(t, "bob", "password-bob")
	carol := hs3.Register(t, "carol", "password-carol")
	t.Cleanup(func() {
		if t.Failed() {
			for _, hs := range f.Servers() {
				for _, l := range strings.Split(hs.Logs(), "\n") {
					if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "not accepted") || strings.Contains(l, "soft-failed") || strings.Contains(l, "failed") {
						t.Logf("%s: %s", hs.ServerName(), l)
					}
				}
			}
		}
	})
	clients := []*hstest.Client{alice, bob, carol}

	roomID := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{
		"preset": "public_chat", "name": "Across servers",
	})), "room_id")
	joinVia(t, bob, roomID, "hs1.polder.test")
	joinVia(t, carol, roomID, "hs2.polder.test") // through a server that is not the creator's

	t.Run("members", func(t *testing.T) {
		for _, c := range clients {
			eventually(t, c.UserID+" sees three members", func() error {
				r := c.Do(t, "GET", roomPath(roomID, "/joined_members"), nil)
				if r.Status != 200 {
					return fmt.Errorf("joined_members: %d %s", r.Status, r.Body)
				}
				if j, _ := r.JSON(t)["joined"].(map[string]any); len(j) != 3 {
					return fmt.Errorf("joined = %v", j)
				}
				return nil
			})
		}
	})

	t.Run("messages in every direction", func(t *testing.T) {
		var sent []string
		for _, c := range clients {
			sent = append(sent, send(t, c, roomID, "m.room.message", msg("hello from "+c.UserID)))
		}
		for _, c := range clients {
			for _, eid := range sent {
				seesEvent(t, c, roomID, eid)
			}
		}
	})

	t.Run("state", func(t *testing.T) {
		putState(t, alice, roomID, "m.room.topic", "", map[string]any{"topic": "set on hs1"})
		// A profile change on hs3 becomes a member event everywhere.
		hstest.MustOK(t, carol.Do(t, "PUT", profilePath(carol.UserID, "displayname"), map[string]any{"displayname": "Carol of hs3"}))
		for _, c := range clients {
			eventually(t, c.UserID+" sees the topic and carol's name", func() error {
				st, code := stateOf(t, c, roomID, "m.room.topic")
				if code != 200 || st["topic"] != "set on hs1" {
					return fmt.Errorf("topic = %v (%d)", st, code)
				}
				r := c.Do(t, "GET", roomPath(roomID, "/state/m.room.member/"+url.PathEscape(carol.UserID)), nil)
				if r.Status != 200 || r.JSON(t)["displayname"] != "Carol of hs3" {
					return fmt.Errorf("carol's member event: %d %s", r.Status, r.Body)
				}
				return nil
			})
		}
	})

	t.Run("a server down catches up", func(t *testing.T) {
		hs3.Stop(t)
		var sent []string
		for i := range 3 {
			sent = append(sent, send(t, alice, roomID, "m.room.message", msg(fmt.Sprintf("while hs3 was down %d", i))))
			sent = append(sent, send(t, bob, roomID, "m.room.message", msg(fmt.Sprintf("bob while hs3 was down %d", i))))
		}
		hs3.Restart(t)
		carol := hs3.Login(t, "carol", "password-carol")
		for _, eid := range sent {
			seesEvent(t, carol, roomID, eid)
		}
		// And hs3's news reaches the others.
		eid := send(t, carol, roomID, "m.room.message", msg("back"))
		seesEvent(t, alice, roomID, eid)
		seesEvent(t, bob, roomID, eid)
	})

	t.Run("power levels changed on both sides of a split", func(t *testing.T) {
		// Alice gives bob the power to change power levels.
		pl, _ := stateOf(t, alice, roomID, "m.room.power_levels")
		users := pl["users"].(map[string]any)
		users[bob.UserID] = 100
		eid := putState(t, alice, roomID, "m.room.power_levels", "", pl)
		seesEvent(t, bob, roomID, eid)
		seesEvent(t, carol, roomID, eid)

		// Split: hs1 and hs2 each change power levels while the other
		// is away.
		hs2.Stop(t)
		pl1, _ := stateOf(t, alice, roomID, "m.room.power_levels")
		pl1["users"].(map[string]any)[carol.UserID] = 50
		putState(t, alice, roomID, "m.room.power_levels", "", pl1)
		hs1.Stop(t)
		hs2.Restart(t)
		bob := hs2.Login(t, "bob", "password-bob")
		pl2, _ := stateOf(t, bob, roomID, "m.room.power_levels")
		pl2["events_default"] = 10
		putState(t, bob, roomID, "m.room.power_levels", "", pl2)
		hs1.Restart(t)
		alice := hs1.Login(t, "alice", "password-alice")
		carol := hs3.Login(t, "carol", "password-carol")

		// Both sides merge; every server ends with the same state.
		// A message from each side after the merge references both
		// forks.
		eventually(t, "the same power levels everywhere", func() error {
			var first map[string]any
			for i, c := range []*hstest.Client{alice, bob, carol} {
				st, code := stateOf(t, c, roomID, "m.room.power_levels")
				if code != 200 {
					return fmt.Errorf("%s: %d", c.UserID, code)
				}
				if i == 0 {
					first = st
				} else if !reflect.DeepEqual(first, st) {
					return fmt.Errorf("%s has %v, %s has %v", alice.UserID, first, c.UserID, st)
				}
			}
			return nil
		})
		a := send(t, alice, roomID, "m.room.message", msg("after the split, from hs1"))
		b := send(t, bob, roomID, "m.room.message", msg("after the split, from hs2"))
		for _, c := range []*hstest.Client{alice, bob, carol} {
			seesEvent(t, c, roomID, a)
			seesEvent(t, c, roomID, b)
		}
	})
}

// A user who joins a room over federation pages back through the history
// from before the join: the server backfills it from the room's other
// server, and sync does not report it as news.
func TestFederationBackfill(t *testing.T) {
	t.Parallel()
	f := hstest.NewFederation(t, hstest.Options{})
	hs1, hs2 := f.Server("hs1.polder.test"), f.Server("hs2.polder.test")
	alice := hs1.Register(t, "alice", "password-alice")
	bob := hs2.Register(t, "bob", "password-bob")
	roomID := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{
		"preset": "public_chat", "name": "History",
	})), "room_id")
	var want []string
	for i := range 45 {
		body := fmt.Sprintf("old message %d", i)
		send(t, alice, roomID, "m.room.message", msg(body))
		want = append(want, body)
	}
	joinVia(t, bob, roomID, "hs1.polder.test")
	sync0 := doSync(t, bob, "")

	// Page back 20 at a time until the start of the room.
	var got []string
	from := ""
	for range 20 {
		params := []string{"dir=b", "limit=20"}
		if from != "" {
			params = append(params, "from="+url.QueryEscape(from))
		}
		p := getPage(t, bob, roomID, params...)
		for _, e := range p.Chunk {
			if e.Type == "m.room.message" {
				got = append(got, e.body())
			}
		}
		if p.End == nil {
			break
		}
		from = *p.End
	}
	slices.Reverse(got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("bob's history = %d messages %v, want %d", len(got), got, len(want))
	}
	// Backfilled events are not news to sync.
	s := doSync(t, bob, syncSince(sync0.NextBatch)+"&timeout=0")
	if r := s.join(roomID); r != nil && len(r.Timeline.Events) > 0 {
		t.Errorf("incremental sync after backfill returned %v", syncBodies(r.Timeline.Events))
	}
}

// Invites, rejections, knocks, restricted joins authorised by a member
// server, and room upgrades, between two servers.
func TestFederationMemberships(t *testing.T) {
	t.Parallel()
	f := hstest.NewFederation(t, hstest.Options{})
	hs1, hs2 := f.Server("hs1.polder.test"), f.Server("hs2.polder.test")
	alice := hs1.Register(t, "alice", "password-alice")
	bob := hs2.Register(t, "bob", "password-bob")

	t.Run("invite, reject, invite again and join", func(t *testing.T) {
		roomID := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{
			"preset": "private_chat", "name": "Invite only", "invite": []string{bob.UserID},
		})), "room_id")
		eventually(t, "bob sees the invite with the room's name", func() error {
			s := doSync(t, bob, "")
			if s.Rooms == nil || s.Rooms.Invite[roomID] == nil {
				return fmt.Errorf("no invite")
			}
			if n := syncFind(&s.Rooms.Invite[roomID].InviteState, "m.room.name", ""); n == nil || n.Content["name"] != "Invite only" {
				return fmt.Errorf("invite_state has no name: %+v", s.Rooms.Invite[roomID].InviteState)
			}
			return nil
		})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/leave"), map[string]any{}))
		eventually(t, "alice sees bob reject", func() error {
			r := alice.Do(t, "GET", roomPath(roomID, "/state/m.room.member/"+url.PathEscape(bob.UserID)), nil)
			if r.Status != 200 || r.JSON(t)["membership"] != "leave" {
				return fmt.Errorf("bob's membership: %d %s", r.Status, r.Body)
			}
			return nil
		})
		invite(t, alice, roomID, bob.UserID)
		eventually(t, "bob is invited again", func() error {
			if s := doSync(t, bob, ""); s.Rooms == nil || s.Rooms.Invite[roomID] == nil {
				return fmt.Errorf("no invite")
			}
			return nil
		})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), map[string]any{}))
		eid := send(t, bob, roomID, "m.room.message", msg("thanks for the invite"))
		seesEvent(t, alice, roomID, eid)
	})

	t.Run("a rescinded invite reaches the invitee", func(t *testing.T) {
		roomID := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{
			"preset": "private_chat", "invite": []string{bob.UserID},
		})), "room_id")
		var since string
		eventually(t, "bob is invited", func() error {
			s := doSync(t, bob, "")
			if s.Rooms == nil || s.Rooms.Invite[roomID] == nil {
				return fmt.Errorf("no invite")
			}
			since = s.NextBatch
			return nil
		})
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/kick"), map[string]any{"user_id": bob.UserID, "reason": "oops"}))
		eventually(t, "bob sees his invite withdrawn, with his leave in the timeline", func() error {
			s := doSync(t, bob, syncSince(since))
			if s.Rooms == nil || s.Rooms.Leave[roomID] == nil {
				return fmt.Errorf("room not in the leave section")
			}
			if m := syncFind(&syncEvents{Events: s.Rooms.Leave[roomID].Timeline.Events}, "m.room.member", bob.UserID); m == nil || m.Content["membership"] != "leave" {
				return fmt.Errorf("leave timeline: %+v", s.Rooms.Leave[roomID].Timeline)
			}
			return nil
		})
	})

	t.Run("a kick of an invitee by another member is no rescission", func(t *testing.T) {
		// Complement TestFederationRoomsInvite "Non-invitee user cannot
		// rescind invite over federation".
		carol := hs1.Register(t, "carol-kick", "password-carol")
		joined := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{
			"preset": "private_chat", "invite": []string{bob.UserID},
		})), "room_id")
		eventually(t, "bob can join the first room", func() error {
			if r := bob.Do(t, "POST", roomPath(joined, "/join"), map[string]any{}); r.Status != 200 {
				return fmt.Errorf("join: %d %s", r.Status, r.Body)
			}
			return nil
		})
		roomID := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{
			"preset": "private_chat", "invite": []string{carol.UserID},
		})), "room_id")
		hstest.MustOK(t, carol.Do(t, "POST", roomPath(roomID, "/join"), map[string]any{}))
		invite(t, carol, roomID, bob.UserID)
		eventually(t, "bob is invited by carol", func() error {
			if s := doSync(t, bob, ""); s.Rooms == nil || s.Rooms.Invite[roomID] == nil {
				return fmt.Errorf("no invite")
			}
			return nil
		})
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/kick"), map[string]any{"user_id": bob.UserID, "reason": "not carol"}))
		// hs1 sends hs2 its events in order: once bob sees a later
		// message, hs2 has had the kick if it was sent.
		eid := send(t, alice, joined, "m.room.message", msg("after the kick"))
		seesEvent(t, bob, joined, eid)
		if s := doSync(t, bob, ""); s.Rooms == nil || s.Rooms.Invite[roomID] == nil {
			t.Errorf("after alice's kick, bob's invite from carol is gone; want it kept (only the inviter rescinds)")
		}
	})

	t.Run("knock", func(t *testing.T) {
		roomID := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{
			"preset": "private_chat", "room_version": "12",
			"initial_state": []map[string]any{{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}}},
		})), "room_id")
		hstest.MustOK(t, bob.Do(t, "POST", c3+"/knock/"+url.PathEscape(roomID)+"?via=hs1.polder.test", map[string]any{"reason": "let me in"}))
		eventually(t, "alice sees the knock", func() error {
			r := alice.Do(t, "GET", roomPath(roomID, "/state/m.room.member/"+url.PathEscape(bob.UserID)), nil)
			if r.Status != 200 || r.JSON(t)["membership"] != "knock" {
				return fmt.Errorf("bob's membership: %d %s", r.Status, r.Body)
			}
			return nil
		})
		invite(t, alice, roomID, bob.UserID)
		eventually(t, "bob can join after the invite", func() error {
			r := bob.Do(t, "POST", roomPath(roomID, "/join"), map[string]any{})
			if r.Status != 200 {
				return fmt.Errorf("join: %d %s", r.Status, r.Body)
			}
			return nil
		})
	})

	t.Run("restricted room authorised by a member server", func(t *testing.T) {
		space := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{"preset": "public_chat"})), "room_id")
		restricted := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{
			"preset": "private_chat", "room_version": "10",
			"initial_state": []map[string]any{{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{
				"join_rule": "restricted", "allow": []map[string]any{{"type": "m.room_membership", "room_id": space}},
			}}},
		})), "room_id")
		r := bob.Do(t, "POST", c3+"/join/"+url.PathEscape(restricted)+"?via=hs1.polder.test", map[string]any{})
		hstest.MustErr(t, r, 403, "M_FORBIDDEN")
		joinVia(t, bob, space, "hs1.polder.test")
		joinVia(t, bob, restricted, "hs1.polder.test")
		r = bob.Do(t, "GET", roomPath(restricted, "/state/m.room.member/"+url.PathEscape(bob.UserID)), nil)
		if m := hstest.MustOK(t, r); m["join_authorised_via_users_server"] != alice.UserID {
			t.Errorf("bob's join = %v, want authorised by %s", m, alice.UserID)
		}
	})

	t.Run("upgrade", func(t *testing.T) {
		old := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", c3+"/createRoom", map[string]any{"preset": "public_chat", "room_version": "10", "name": "Old"})), "room_id")
		joinVia(t, bob, old, "hs1.polder.test")
		newID := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", roomPath(old, "/upgrade"), map[string]any{"new_version": "12"})), "replacement_room")
		eventually(t, "bob sees the tombstone", func() error {
			st, code := stateOf(t, bob, old, "m.room.tombstone")
			if code != 200 || st["replacement_room"] != newID {
				return fmt.Errorf("tombstone: %v (%d)", st, code)
			}
			return nil
		})
		joinVia(t, bob, newID, "hs1.polder.test")
		st, _ := stateOf(t, bob, newID, "m.room.name")
		if st["name"] != "Old" {
			t.Errorf("name in the new room = %v", st)
		}
	})
}

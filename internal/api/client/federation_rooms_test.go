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
	deadline := time.Now().Add(45 * time.Second)
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

package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestPresence(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const alice, bob, carol = id.UserID("@alice:hs"), id.UserID("@bob:hs"), id.UserID("@carol:hs")
		if _, err := db.Presence(ctx, alice); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Presence before any: got %v, want ErrNotFound", err)
		}
		set := func(u id.UserID, p store.Presence) int64 {
			t.Helper()
			pos, err := db.UpdatePresence(ctx, u, func(cur store.Presence, found bool) (store.Presence, bool, error) {
				return p, true, nil
			})
			if err != nil || pos == 0 {
				t.Fatalf("UpdatePresence(%s) = %d, %v", u, pos, err)
			}
			return pos
		}
		p1 := set(alice, store.Presence{State: "online", StatusMsg: "hi", LastActiveTS: 1000, LastSyncTS: 1000})
		p2 := set(bob, store.Presence{State: "unavailable", LastActiveTS: 500, LastSyncTS: 5000})
		p3 := set(carol, store.Presence{State: "offline"})

		// fn sees the current state and may decline to write.
		pos, err := db.UpdatePresence(ctx, alice, func(cur store.Presence, found bool) (store.Presence, bool, error) {
			if !found || cur.State != "online" || cur.StatusMsg != "hi" || cur.LastActiveTS != 1000 || cur.StreamPos != p1 {
				t.Errorf("UpdatePresence fn got %+v, found %v", cur, found)
			}
			return cur, false, nil
		})
		if err != nil || pos != 0 {
			t.Errorf("UpdatePresence without write = %d, %v; want 0", pos, err)
		}
		_, err = db.UpdatePresence(ctx, "@new:hs", func(cur store.Presence, found bool) (store.Presence, bool, error) {
			if found || cur.State != "offline" || cur.UserID != "@new:hs" {
				t.Errorf("UpdatePresence fn of a user without presence got %+v, found %v", cur, found)
			}
			return cur, false, nil
		})
		if err != nil {
			t.Errorf("UpdatePresence: %v", err)
		}

		p, err := db.Presence(ctx, alice)
		if err != nil || p.State != "online" || p.StatusMsg != "hi" || p.StreamPos != p1 {
			t.Errorf("Presence(alice) = %+v, %v", p, err)
		}
		names := func(ps []store.Presence) string {
			var s []string
			for _, p := range ps {
				s = append(s, string(p.UserID)+"="+p.State)
			}
			return strings.Join(s, " ")
		}
		ps, err := db.PresenceSince(ctx, []id.UserID{alice, bob, carol}, 0, p3)
		if got := names(ps); err != nil || got != "@alice:hs=online @bob:hs=unavailable @carol:hs=offline" {
			t.Errorf("PresenceSince all = %s, %v", got, err)
		}
		ps, err = db.PresenceSince(ctx, []id.UserID{alice, bob, carol}, p1, p2)
		if got := names(ps); err != nil || got != "@bob:hs=unavailable" {
			t.Errorf("PresenceSince (p1, p2] = %s, %v", got, err)
		}
		ps, err = db.PresenceSince(ctx, []id.UserID{carol}, 0, p3)
		if got := names(ps); err != nil || got != "@carol:hs=offline" {
			t.Errorf("PresenceSince(carol) = %s, %v", got, err)
		}

		// Times move forward only, without a stream position.
		if err := db.SetPresenceTimes(ctx, alice, 900, 2000); err != nil {
			t.Fatalf("SetPresenceTimes: %v", err)
		}
		if p, err := db.Presence(ctx, alice); err != nil || p.LastActiveTS != 1000 || p.LastSyncTS != 2000 || p.StreamPos != p1 {
			t.Errorf("Presence after SetPresenceTimes = %+v, %v; want last active 1000, last sync 2000, position %d", p, err, p1)
		}
		if err := db.SetPresenceTimes(ctx, alice, 1000, 1000); err != nil {
			t.Fatalf("SetPresenceTimes: %v", err)
		}
		if err := db.SetPresenceTimes(ctx, "@nobody:hs", 1, 1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SetPresenceTimes of a user without presence: got %v, want ErrNotFound", err)
		}
		if pos, _ := db.StreamPos(ctx); pos != p3 {
			t.Errorf("StreamPos after SetPresenceTimes = %d, want %d", pos, p3)
		}

		// Stale: alice online but inactive since 1000; bob not syncing
		// since 5000; carol offline is never stale.
		for _, c := range []struct {
			activeBefore, syncBefore int64
			want                     string
		}{
			{1001, 0, "@alice:hs=online"},
			{0, 5001, "@alice:hs=online @bob:hs=unavailable"},
			{0, 2001, "@alice:hs=online"},
			{0, 2000, ""},
			{1000, 2000, ""},
		} {
			ps, err := db.StalePresence(ctx, c.activeBefore, c.syncBefore)
			if got := names(ps); err != nil || got != c.want {
				t.Errorf("StalePresence(%d, %d) = %q, %v; want %q", c.activeBefore, c.syncBefore, got, err, c.want)
			}
		}
	})
}

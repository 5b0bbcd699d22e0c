package presence_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/presence"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const alice, bob = id.UserID("@alice:hs"), id.UserID("@bob:hs")

func setup(t *testing.T, db *store.DB) (*presence.Service, *notify.Notifier, *clock) {
	t.Helper()
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	n := notify.New(notify.Position{})
	return presence.New(presence.Config{Now: clk.Now}, db, n, slog.New(slog.DiscardHandler)), n, clk
}

func state(t *testing.T, s *presence.Service, u id.UserID) presence.Presence {
	t.Helper()
	p, err := s.Get(context.Background(), u)
	if err != nil {
		t.Fatalf("Get(%s): %v", u, err)
	}
	return p
}

// events decodes Since's m.presence events by sender.
func events(t *testing.T, s *presence.Service, users []id.UserID, from, to int64) map[id.UserID]map[string]any {
	t.Helper()
	evs, err := s.Since(context.Background(), users, from, to)
	if err != nil {
		t.Fatalf("Since: %v", err)
	}
	out := map[id.UserID]map[string]any{}
	for _, raw := range evs {
		var ev struct {
			Type    string
			Sender  id.UserID
			Content map[string]any
		}
		if err := json.Unmarshal(raw, &ev); err != nil || ev.Type != "m.presence" {
			t.Fatalf("presence event %s: %v", raw, err)
		}
		out[ev.Sender] = ev.Content
	}
	return out
}

func TestPresenceSetAndGet(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, n, clk := setup(t, db)
		if p := state(t, s, alice); p.State != presence.Offline || !p.LastActive.IsZero() {
			t.Errorf("Get of a user without presence = %+v, want offline", p)
		}
		err := s.Set(ctx, alice, "away", "")
		if e, ok := mxerr.As(err); !ok || e.Code != "M_INVALID_PARAM" {
			t.Errorf("Set(away) = %v, want M_INVALID_PARAM", err)
		}
		if n.Current().Stream != 0 {
			t.Errorf("a refused Set moved the stream")
		}
		if err := s.Set(ctx, alice, presence.Online, "at lunch"); err != nil {
			t.Fatalf("Set: %v", err)
		}
		pos := n.Current().Stream
		if pos == 0 {
			t.Fatalf("Set did not wake the notifier")
		}
		clk.Add(10 * time.Second)
		p := state(t, s, alice)
		if p.State != presence.Online || p.StatusMsg != "at lunch" || !p.CurrentlyActive || clk.Now().Sub(p.LastActive) != 10*time.Second {
			t.Errorf("Get after Set = %+v", p)
		}
		var c map[string]any
		if err := json.Unmarshal(p.Content(clk.Now()), &c); err != nil {
			t.Fatal(err)
		}
		if c["presence"] != "online" || c["status_msg"] != "at lunch" || c["last_active_ago"] != float64(10000) || c["currently_active"] != true {
			t.Errorf("Content = %v", c)
		}
		if err := s.Set(ctx, bob, presence.Unavailable, ""); err != nil {
			t.Fatal(err)
		}
		got := events(t, s, []id.UserID{alice, bob, "@carol:hs"}, 0, n.Current().Stream)
		if len(got) != 2 || got[alice]["presence"] != "online" || got[bob]["presence"] != "unavailable" {
			t.Errorf("Since(0) = %v", got)
		}
		if _, ok := got[bob]["currently_active"]; ok {
			t.Errorf("unavailable bob has currently_active: %v", got[bob])
		}
		got = events(t, s, []id.UserID{alice, bob}, pos, n.Current().Stream)
		if len(got) != 1 || got[bob] == nil {
			t.Errorf("Since(pos) = %v, want only bob", got)
		}
		// An initial sync leaves offline users out; an incremental one
		// reports going offline.
		before := n.Current().Stream
		if err := s.Set(ctx, bob, presence.Offline, ""); err != nil {
			t.Fatal(err)
		}
		if got := events(t, s, []id.UserID{alice, bob}, 0, n.Current().Stream); len(got) != 1 || got[bob] != nil {
			t.Errorf("Since(0) with bob offline = %v, want only alice", got)
		}
		if got := events(t, s, []id.UserID{bob}, before, n.Current().Stream); got[bob]["presence"] != "offline" {
			t.Errorf("Since(before) = %v, want bob offline", got)
		}
	})
}

func TestPresenceTouch(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, n, clk := setup(t, db)
		if err := s.Touch(ctx, alice, "busy"); err == nil {
			t.Errorf("Touch(busy) = nil, want M_INVALID_PARAM")
		}
		// set_presence=offline syncs are not seen.
		if err := s.Touch(ctx, alice, presence.Offline); err != nil {
			t.Fatal(err)
		}
		if p := state(t, s, alice); p.State != presence.Offline || n.Current().Stream != 0 {
			t.Errorf("after Touch(offline): %+v at %d, want offline and no change", p, n.Current().Stream)
		}
		// The first sync brings the user online, and wakes.
		if err := s.Touch(ctx, alice, ""); err != nil {
			t.Fatal(err)
		}
		pos := n.Current().Stream
		if p := state(t, s, alice); p.State != presence.Online || pos == 0 {
			t.Errorf("after the first Touch: %+v at %d", p, pos)
		}
		// Later syncs write nothing within a minute, and never wake.
		for range 5 {
			clk.Add(10 * time.Second)
			if err := s.Touch(ctx, alice, presence.Online); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := db.StreamPos(ctx); got != pos || n.Current().Stream != pos {
			t.Errorf("stream after repeated syncs = %d (notifier %d), want %d", got, n.Current().Stream, pos)
		}
		stored, _ := db.Presence(ctx, alice)
		clk.Add(20 * time.Second)
		if err := s.Touch(ctx, alice, presence.Online); err != nil {
			t.Fatal(err)
		}
		after, _ := db.Presence(ctx, alice)
		if after.LastSyncTS <= stored.LastSyncTS || after.StreamPos != pos {
			t.Errorf("a sync over a minute after the last write: last sync %d -> %d, position %d; want a newer time at the same position %d",
				stored.LastSyncTS, after.LastSyncTS, after.StreamPos, pos)
		}
		// Syncing is not activity: last_active stays at the first sync.
		if p := state(t, s, alice); clk.Now().Sub(p.LastActive) != 70*time.Second {
			t.Errorf("last active %v ago, want 70s (syncs are not activity)", clk.Now().Sub(p.LastActive))
		}
		// set_presence=unavailable sets it, and wakes.
		if err := s.Touch(ctx, alice, presence.Unavailable); err != nil {
			t.Fatal(err)
		}
		if p := state(t, s, alice); p.State != presence.Unavailable || n.Current().Stream == pos {
			t.Errorf("after Touch(unavailable): %+v", p)
		}
	})
}

func TestPresenceIdleAndOffline(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, n, clk := setup(t, db)
		expire := func() {
			t.Helper()
			if err := s.Expire(ctx); err != nil {
				t.Fatalf("Expire: %v", err)
			}
		}
		// alice keeps a /sync in flight; bob syncs once.
		if err := s.Touch(ctx, alice, presence.Online); err != nil {
			t.Fatal(err)
		}
		done := s.Syncing(alice)
		if err := s.Touch(ctx, bob, presence.Online); err != nil {
			t.Fatal(err)
		}
		clk.Add(59 * time.Second)
		expire()
		if a, b := state(t, s, alice), state(t, s, bob); a.State != presence.Online || b.State != presence.Online {
			t.Errorf("after 59s: alice %s, bob %s; want both online", a.State, b.State)
		}
		// bob's /sync (assumed to long-poll up to 30s) ended 30s ago.
		clk.Add(2 * time.Second)
		pos := n.Current().Stream
		expire()
		if b := state(t, s, bob); b.State != presence.Offline || n.Current().Stream == pos {
			t.Errorf("bob 61s after his only sync: %s, want offline (and a wake)", b.State)
		}
		// alice, syncing all along but inactive, goes unavailable after
		// five minutes, and activity brings her back.
		for range 18 {
			clk.Add(10 * time.Second)
			if err := s.Touch(ctx, alice, presence.Online); err != nil {
				t.Fatal(err)
			}
			expire()
		}
		if a := state(t, s, alice); a.State != presence.Online {
			t.Errorf("alice after 4m01s: %s, want online", a.State)
		}
		for range 6 {
			clk.Add(10 * time.Second)
			expire()
		}
		if a := state(t, s, alice); a.State != presence.Unavailable {
			t.Errorf("alice after 5m01s without activity: %s, want unavailable", a.State)
		}
		// A sync does not bring an idle user back; activity does.
		if err := s.Touch(ctx, alice, presence.Online); err != nil {
			t.Fatal(err)
		}
		if a := state(t, s, alice); a.State != presence.Unavailable {
			t.Errorf("idle alice after a sync: %s, want unavailable", a.State)
		}
		if err := s.Active(ctx, alice); err != nil {
			t.Fatal(err)
		}
		if a := state(t, s, alice); a.State != presence.Online || !a.CurrentlyActive {
			t.Errorf("alice after activity: %+v, want online and currently active", a)
		}
		// Her /sync ends: offline 30s later.
		done()
		done() // a second call does nothing
		clk.Add(29 * time.Second)
		expire()
		if a := state(t, s, alice); a.State != presence.Online {
			t.Errorf("alice 29s after her sync ended: %s, want online", a.State)
		}
		clk.Add(2 * time.Second)
		expire()
		if a := state(t, s, alice); a.State != presence.Offline {
			t.Errorf("alice 31s after her sync ended: %s, want offline", a.State)
		}
		// Activity of an offline user bumps last_active only.
		clk.Add(2 * time.Minute)
		if err := s.Active(ctx, alice); err != nil {
			t.Fatal(err)
		}
		if a := state(t, s, alice); a.State != presence.Offline || clk.Now().Sub(a.LastActive) != 0 {
			t.Errorf("offline alice after activity: %+v", a)
		}
	})
}

// A user online in the database that this process never saw syncing (a
// restart, another process) goes offline from the stored times.
func TestPresenceOfflineAfterRestart(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, _, clk := setup(t, db)
		if err := s.Touch(ctx, alice, presence.Online); err != nil {
			t.Fatal(err)
		}
		restarted := presence.New(presence.Config{Now: clk.Now}, db, notify.New(notify.Position{}), slog.New(slog.DiscardHandler))
		clk.Add(2 * time.Minute)
		if err := restarted.Expire(ctx); err != nil {
			t.Fatal(err)
		}
		if a := state(t, restarted, alice); a.State != presence.Online {
			t.Errorf("after 2m: %s, want online (the stored last sync may be a minute old)", a.State)
		}
		clk.Add(2 * time.Minute)
		if err := restarted.Expire(ctx); err != nil {
			t.Fatal(err)
		}
		if a := state(t, restarted, alice); a.State != presence.Offline {
			t.Errorf("after 4m: %s, want offline", a.State)
		}
	})
}

// Active skips its read while the stored presence needs no write, but a
// change in between (here: set unavailable) is seen at the next activity.
func TestPresenceActiveAfterSet(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, _, _ := setup(t, db)
		if err := s.Touch(ctx, alice, presence.Online); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second is answered from what the first read
			if err := s.Active(ctx, alice); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Set(ctx, alice, presence.Unavailable, ""); err != nil {
			t.Fatal(err)
		}
		if err := s.Active(ctx, alice); err != nil {
			t.Fatal(err)
		}
		if a := state(t, s, alice); a.State != presence.Online {
			t.Errorf("alice active after setting unavailable: %s, want online", a.State)
		}
	})
}

package typing_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
	"polder.dev/polder/internal/typing"
)

// clock is a settable clock.
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

// world is a room with alice and bob joined; carol is not in it.
type world struct {
	db                *store.DB
	n                 *notify.Notifier
	room              id.RoomID
	alice, bob, carol id.UserID
	rooms             *room.Service
}

func newWorld(t *testing.T, db *store.DB) *world {
	t.Helper()
	ctx := context.Background()
	k, err := keys.Generate("")
	if err != nil {
		t.Fatal(err)
	}
	n := notify.New(notify.Position{})
	w := &world{db: db, n: n, rooms: room.New(room.Config{ServerName: "hs.test", Key: k}, db, n, slog.New(slog.DiscardHandler))}
	for _, name := range []string{"alice", "bob", "carol"} {
		if err := db.CreateAccount(ctx, store.Account{Localpart: name}, name); err != nil {
			t.Fatal(err)
		}
	}
	w.alice, w.bob, w.carol = "@alice:hs.test", "@bob:hs.test", "@carol:hs.test"
	if w.room, err = w.rooms.Create(ctx, w.alice, room.CreateRequest{Preset: room.PresetPublic}); err != nil {
		t.Fatalf("create room: %v", err)
	}
	if _, err := w.rooms.SetMembership(ctx, room.MemberChange{RoomID: w.room, Sender: w.bob, Target: w.bob, Membership: room.Join}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	return w
}

// woken reports whether fn wakes a /sync of u waiting on the room.
func woken(t *testing.T, n *notify.Notifier, u id.UserID, r id.RoomID, fn func()) bool {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Wait(ctx, u, []id.RoomID{r}, n.Current()); close(done) }()
	for n.Waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	fn()
	// Wake unregisters the waiters it wakes before it returns, and writers
	// wake before they return: a waiter still registered was not woken.
	woke := n.Waiting() == 0
	cancel()
	<-done
	return woke
}

func TestTyping(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newWorld(t, db)
		clk := &clock{t: time.Unix(1_000_000, 0)}
		s := typing.New(typing.Config{Now: clk.Now}, db, w.n)

		check := func(step string, want ...id.UserID) int64 {
			t.Helper()
			got, changed := s.Typing(w.room)
			if !slices.Equal(got, want) {
				t.Errorf("%s: Typing = %v, want %v", step, got, want)
			}
			return changed
		}
		if users, changed := s.Typing(w.room); users != nil || changed != 0 {
			t.Errorf("Typing before anyone typed = %v, %d", users, changed)
		}

		if !woken(t, w.n, w.bob, w.room, func() {
			if err := s.Set(ctx, w.alice, w.room, true, 10*time.Second); err != nil {
				t.Fatalf("Set(alice typing): %v", err)
			}
		}) {
			t.Errorf("alice starting to type did not wake bob's /sync")
		}
		c1 := check("alice types", w.alice)
		if c1 != w.n.Current().Typing || c1 == 0 {
			t.Errorf("changed = %d, want the notifier's typing position %d", c1, w.n.Current().Typing)
		}
		// Typing again only extends the timeout.
		if woken(t, w.n, w.bob, w.room, func() {
			if err := s.Set(ctx, w.alice, w.room, true, 10*time.Second); err != nil {
				t.Fatalf("Set(alice typing again): %v", err)
			}
		}) {
			t.Errorf("alice typing again woke bob's /sync")
		}
		if c := check("alice types again", w.alice); c != c1 {
			t.Errorf("changed after a repeat = %d, want %d", c, c1)
		}

		err := s.Set(ctx, w.carol, w.room, true, 0)
		if e, ok := mxerr.As(err); !ok || e.Code != "M_FORBIDDEN" {
			t.Errorf("Set by a non-member = %v, want M_FORBIDDEN", err)
		}
		err = s.Set(ctx, w.alice, "!unknown:hs.test", true, 0)
		if e, ok := mxerr.As(err); !ok || e.Code != "M_FORBIDDEN" {
			t.Errorf("Set in an unknown room = %v, want M_FORBIDDEN", err)
		}
		check("after refusals", w.alice)

		// Bob types with a timeout far beyond the cap.
		if err := s.Set(ctx, w.bob, w.room, true, time.Hour); err != nil {
			t.Fatalf("Set(bob): %v", err)
		}
		c2 := check("both type", w.alice, w.bob)
		if !woken(t, w.n, w.bob, w.room, func() {
			if err := s.Set(ctx, w.alice, w.room, false, 0); err != nil {
				t.Fatalf("Set(alice stops): %v", err)
			}
		}) {
			t.Errorf("alice stopping did not wake bob's /sync")
		}
		c3 := check("alice stopped", w.bob)
		if !(c1 < c2 && c2 < c3) {
			t.Errorf("changed positions %d %d %d, want increasing", c1, c2, c3)
		}
		// Stopping when not typing changes nothing.
		if err := s.Set(ctx, w.alice, w.room, false, 0); err != nil {
			t.Fatalf("Set(alice stops again): %v", err)
		}
		if c := check("alice stopped again", w.bob); c != c3 {
			t.Errorf("changed after a no-op stop = %d, want %d", c, c3)
		}

		// Bob's timeout is capped at MaxTimeout.
		clk.Add(typing.MaxTimeout - time.Second)
		s.Expire()
		check("just before the cap", w.bob)
		clk.Add(2 * time.Second)
		// Before the sweep Typing already hides him.
		if c := check("after the cap, before the sweep"); c != c3 {
			t.Errorf("changed before the sweep = %d, want %d", c, c3)
		}
		if !woken(t, w.n, w.alice, w.room, func() { s.Expire() }) {
			t.Errorf("expiry did not wake alice's /sync")
		}
		if c := check("after the sweep"); c <= c3 {
			t.Errorf("changed after the sweep = %d, want > %d", c, c3)
		}

		// A typer whose timeout passed unswept and who types again is new.
		if err := s.Set(ctx, w.alice, w.room, true, time.Second); err != nil {
			t.Fatal(err)
		}
		clk.Add(2 * time.Second)
		_, before := s.Typing(w.room)
		if err := s.Set(ctx, w.alice, w.room, true, time.Second); err != nil {
			t.Fatal(err)
		}
		if c := check("typing again after an unswept timeout", w.alice); c <= before {
			t.Errorf("changed = %d, want > %d", c, before)
		}
	})
}

// Run expires typing on the real clock.
func TestTypingRun(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		w := newWorld(t, db)
		s := typing.New(typing.Config{}, db, w.n)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		if err := s.Set(ctx, w.alice, w.room, true, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			users, _ := s.Typing(w.room)
			if len(users) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("typing did not expire: %v", users)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The sweep, not only the read, saw it: the position moved twice.
		for w.n.Current().Typing < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("Run did not wake the room on expiry")
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}

package typing_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
	"polder.dev/polder/internal/typing"
)

// SetRemote applies m.typing EDUs: joined users only, for RemoteTimeout.
func TestSetRemote(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newWorld(t, db)
		clk := &clock{t: time.Unix(1_700_000_000, 0)}
		s := typing.New(typing.Config{Now: clk.Now}, db, w.n)
		typers := func() []id.UserID { u, _ := s.Typing(w.room); return u }

		if err := s.SetRemote(ctx, w.carol, w.room, true); err == nil {
			t.Errorf("SetRemote(carol, not joined) = nil, want M_FORBIDDEN")
		}
		if !woken(t, w.n, w.alice, w.room, func() {
			if err := s.SetRemote(ctx, w.bob, w.room, true); err != nil {
				t.Fatalf("SetRemote(bob, true): %v", err)
			}
		}) {
			t.Errorf("a remote typer did not wake the room's /sync")
		}
		if got := typers(); !slices.Equal(got, []id.UserID{w.bob}) {
			t.Errorf("typing after SetRemote = %v, want [bob]", got)
		}
		clk.Add(typing.RemoteTimeout - time.Second)
		if got := typers(); len(got) != 1 {
			t.Errorf("typing just before RemoteTimeout = %v, want [bob]", got)
		}
		clk.Add(time.Second)
		if got := typers(); len(got) != 0 {
			t.Errorf("typing after RemoteTimeout = %v, want nobody", got)
		}
		if err := s.SetRemote(ctx, w.bob, w.room, true); err != nil {
			t.Fatal(err)
		}
		if err := s.SetRemote(ctx, w.bob, w.room, false); err != nil {
			t.Fatal(err)
		}
		if got := typers(); len(got) != 0 {
			t.Errorf("typing after SetRemote(false) = %v, want nobody", got)
		}
	})
}

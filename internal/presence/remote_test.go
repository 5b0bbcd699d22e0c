package presence_test

import (
	"context"
	"testing"
	"time"

	"polder.dev/polder/internal/presence"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// SetRemote applies m.presence EDUs; a remote user goes offline
// RemoteTimeout after the last one, not after the local sync timeout.
func TestSetRemote(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, _, clk := setup(t, db)
		const carol = "@carol:remote.test"
		if err := s.SetRemote(ctx, presence.Remote{UserID: carol, State: "bogus"}); err == nil {
			t.Errorf("SetRemote(state bogus) = nil, want M_INVALID_PARAM")
		}
		if err := s.SetRemote(ctx, presence.Remote{UserID: carol, State: presence.Unavailable, StatusMsg: "away", LastActiveAgo: time.Minute}); err != nil {
			t.Fatalf("SetRemote: %v", err)
		}
		p := state(t, s, carol)
		if p.State != presence.Unavailable || p.StatusMsg != "away" || !p.LastActive.Equal(clk.Now().Add(-time.Minute)) {
			t.Errorf("after SetRemote: %+v, want unavailable, away, last active a minute ago", p)
		}
		clk.Add(10 * time.Minute)
		if err := s.Expire(ctx); err != nil {
			t.Fatal(err)
		}
		if p := state(t, s, carol); p.State != presence.Unavailable {
			t.Errorf("10 minutes after the EDU: %s, want unavailable still", p.State)
		}
		clk.Add(presence.RemoteTimeout)
		if err := s.Expire(ctx); err != nil {
			t.Fatal(err)
		}
		if p := state(t, s, carol); p.State != presence.Offline {
			t.Errorf("RemoteTimeout after the EDU: %s, want offline", p.State)
		}
	})
}

package presence

import (
	"context"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
)

// RemoteTimeout is how long a remote user's presence holds after the last
// m.presence EDU about it: then the user counts as offline. Servers repeat
// the presence of users that stay online (Synapse every 25 minutes, and
// it times remote users out after 30, FEDERATION_TIMEOUT).
const RemoteTimeout = 30 * time.Minute

// Remote is one entry of an m.presence EDU's push list (server-server API,
// "Presence").
type Remote struct {
	UserID          id.UserID
	State           string // online, unavailable or offline
	StatusMsg       string
	LastActiveAgo   time.Duration
	CurrentlyActive bool
}

// SetRemote applies the presence of a remote user from an m.presence EDU.
// The caller checked that the user belongs to the sending server. Unlike
// Set it is not a local change: nothing is sent on to other servers. A
// change of state or status message takes a stream position and wakes
// /sync; a newer last active time alone is written in place.
//
// Remote users share the stored presence of local users and Expire's
// rules: a remote user is set offline RemoteTimeout after the last EDU
// about it (its stored last sync time is set ahead accordingly), and an
// online remote user inactive for IdleTimeout becomes unavailable, as its
// own server would say soon anyway. Errors: M_INVALID_PARAM for an
// unknown state.
func (s *Service) SetRemote(ctx context.Context, p Remote) error {
	if err := validState(p.State); err != nil {
		return err
	}
	now := s.cfg.Now()
	lastActive := now.Add(-max(p.LastActiveAgo, 0)).UnixMilli()
	// Expire sets a user offline once its last sync time is older than
	// this window; a remote user is to last RemoteTimeout.
	offlineWindow := s.cfg.MaxPoll + s.cfg.SyncTimeout + refresh
	lastSync := now.Add(RemoteTimeout - offlineWindow).UnixMilli()
	return s.update(ctx, p.UserID, func(cur store.Presence, found bool) (store.Presence, bool, bool) {
		report := !found || cur.State != p.State || cur.StatusMsg != p.StatusMsg
		cur.UserID, cur.State, cur.StatusMsg = p.UserID, p.State, p.StatusMsg
		cur.LastActiveTS = max(cur.LastActiveTS, lastActive)
		cur.LastSyncTS = max(cur.LastSyncTS, lastSync)
		if !found && p.State == Offline {
			return cur, false, false // offline, as it was
		}
		return cur, report, true
	})
}

package typing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// RemoteTimeout is how long a remote user counts as typing after an
// m.typing EDU said so: the EDU has no timeout, and the sending server
// repeats it while the user keeps typing. Synapse uses the same minute
// (FEDERATION_TIMEOUT in its typing handler).
const RemoteTimeout = 60 * time.Second

// SetRemote applies an m.typing EDU (server-server API, "Typing
// Notifications"): user, of the sending server, starts or stops typing in
// the room. The caller checked that user belongs to the sending server and
// that the server may take part in the room. Unlike Set it is not a local
// change: nothing is sent on to other servers. M_FORBIDDEN if the user is
// not joined to the room (the EDU is then to be ignored).
func (s *Service) SetRemote(ctx context.Context, user id.UserID, roomID id.RoomID, typing bool) error {
	m, err := s.db.UserMembership(ctx, roomID, user)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("membership of %s in %s: %w", user, roomID, err)
	}
	if err != nil || m.Membership != "join" {
		return mxerr.Forbidden("User %s is not in room %s", user, roomID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r := s.rooms[roomID]
	if r == nil {
		if !typing {
			return nil
		}
		r = &room{until: map[id.UserID]time.Time{}}
		s.rooms[roomID] = r
	}
	until, was := r.until[user]
	if typing {
		r.until[user] = now.Add(RemoteTimeout)
		s.busy[roomID] = struct{}{}
		if !was || !now.Before(until) {
			r.changed = s.n.WakeTyping(roomID)
		}
		return nil
	}
	if was {
		delete(r.until, user)
		if len(r.until) == 0 {
			delete(s.busy, roomID)
		}
		r.changed = s.n.WakeTyping(roomID)
	}
	return nil
}

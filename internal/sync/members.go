package sync

import (
	"context"
	"math"
	gosync "sync"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/store"
)

// memberCache keeps each syncing user's memberships, so that an
// incremental sync reads only the memberships that changed since the
// cached list was made (one range of the memberships_user_stream index)
// instead of every room the user is in. The store stays the truth: a list
// is refreshed from the changes whose stream positions are after it, which
// another process sharing the database writes too.
type memberCache struct {
	mu gosync.Mutex
	m  map[id.UserID]*userRooms
}

// userRooms is a user's memberships as of stream position at.
type userRooms struct {
	at    int64
	rooms map[id.RoomID]store.Membership
}

// memberCacheUsers bounds the cache; when full it starts over.
const memberCacheUsers = 20000

// cachedMemberships returns the user's cached list, or nil.
func (s *Service) cachedMemberships(user id.UserID) *userRooms {
	s.members.mu.Lock()
	defer s.members.mu.Unlock()
	return s.members.m[user]
}

// memberships returns the user's current memberships (without event IDs)
// and, for an incremental sync, its membership changes in (since, to],
// moving to past memberships committed after it was read (they and
// everything before them are committed: store.Tx.NextStreamPos).
//
// cached is the user's cached list (cachedMemberships); unchanged says
// that the store has no membership change of the user after
// min(since, cached.at) (store.SyncMoved.Memberships), so that none is
// read.
func (s *Service) memberships(ctx context.Context, user id.UserID, since *notify.Position, to *notify.Position, cached *userRooms, unchanged bool) ([]store.Membership, []store.Membership, error) {
	var rooms map[id.RoomID]store.Membership
	var fresh []store.Membership // changes read now, from min(since, cached.at)
	from := int64(-1)
	if since != nil && cached != nil {
		from = min(since.Stream, cached.at)
		if !unchanged {
			var err error
			if fresh, err = s.db.MembershipChanges(ctx, user, from, math.MaxInt64); err != nil {
				return nil, nil, err
			}
		}
		rooms = make(map[id.RoomID]store.Membership, len(cached.rooms)+len(fresh))
		for r, m := range cached.rooms {
			rooms[r] = m
		}
		for _, m := range fresh {
			if m.StreamPos > cached.at {
				m.EventID = "" // as in a fresh list: looked up when needed
				if m.Forgotten {
					delete(rooms, m.RoomID)
				} else {
					rooms[m.RoomID] = m
				}
			}
		}
	} else {
		ms, err := s.db.UserRoomMemberships(ctx, user)
		if err != nil {
			return nil, nil, err
		}
		rooms = make(map[id.RoomID]store.Membership, len(ms))
		for _, m := range ms {
			rooms[m.RoomID] = m
		}
	}
	list := make([]store.Membership, 0, len(rooms))
	for _, m := range rooms {
		to.Stream = max(to.Stream, m.StreamPos)
		list = append(list, m)
	}
	s.members.mu.Lock()
	if s.members.m == nil || len(s.members.m) >= memberCacheUsers {
		s.members.m = map[id.UserID]*userRooms{}
	}
	if old := s.members.m[user]; old == nil || old.at <= to.Stream {
		s.members.m[user] = &userRooms{at: to.Stream, rooms: rooms}
	}
	s.members.mu.Unlock()

	if since == nil {
		return list, nil, nil
	}
	if from < 0 || from > since.Stream {
		ch, err := s.db.MembershipChanges(ctx, user, since.Stream, to.Stream)
		return list, ch, err
	}
	var changes []store.Membership
	for _, m := range fresh {
		if m.StreamPos > since.Stream && m.StreamPos <= to.Stream {
			changes = append(changes, m)
		}
	}
	return list, changes, nil
}

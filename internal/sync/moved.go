package sync

// What an incremental sync skips. Besides its rooms, an incremental sync
// reads streams that almost never changed for the user since its token:
// account data (and the ignored users, which are account data), receipts,
// presence and device lists. store.SyncMoved tells, in one statement of
// index steps, which of them have anything in (since, to]; the reads of
// the others are skipped, and what a later sync needs of them again is
// kept here from the last read:
//
//   - the ignored users, valid while no account data of the user changed
//     after the position they were read at;
//   - the user's read receipts (for the unread counts), valid while no
//     receipt changed after the position they were read at.
//
// The flags come from the database, not from this process's memory, so
// they hold when several processes share one PostgreSQL: a position up
// to to is committed (store.Tx.NextStreamPos) and the statement sees it,
// whichever process wrote it.

import (
	"context"
	gosync "sync"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

// keptCacheUsers bounds each kept map; when full it starts over.
const keptCacheUsers = 20000

// kept is a value read for a user at stream position at: it holds every
// change up to at (it was read after at was committed).
type kept[T any] struct {
	at int64
	v  T
}

// keptCache keeps one value per user.
type keptCache[T any] struct {
	mu gosync.Mutex
	m  map[id.UserID]kept[T]
}

// get returns the user's value if it was read at since or later: with
// nothing changed in (since, to], it is the value at to.
func (c *keptCache[T]) get(user id.UserID, since int64) (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.m[user]
	if !ok || k.at < since {
		var zero T
		return zero, false
	}
	return k.v, true
}

// put keeps v, read for user after position at, unless a value read
// further on is kept already.
func (c *keptCache[T]) put(user id.UserID, at int64, v T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= keptCacheUsers {
		c.m = map[id.UserID]kept[T]{}
	}
	if old, ok := c.m[user]; ok && old.at > at {
		return
	}
	c.m[user] = kept[T]{at: at, v: v}
}

// ignoredUsers returns the users user ignores: kept from an earlier read
// when its account data did not change since, else read (and kept, as of
// to). The map is shared: never modified.
func (s *Service) ignoredUsers(ctx context.Context, user id.UserID, since *notify.Position, moved *store.SyncMoved, to int64) (map[id.UserID]bool, error) {
	if since != nil && moved != nil && !moved.AccountData {
		if m, ok := s.ignored.get(user, since.Stream); ok {
			s.ignored.put(user, to, m) // nothing changed up to to
			return m, nil
		}
	}
	m, err := s.src.Users.IgnoredUsers(ctx, user)
	if err != nil {
		return nil, err
	}
	s.ignored.put(user, to, m)
	return m, nil
}

// readReceipts returns user's read receipt positions (store.ReadReceipts):
// kept from an earlier read when no receipt changed since. The map is
// shared: never modified.
func (b *builder) readReceipts(ctx context.Context) (map[id.RoomID]map[string]int64, error) {
	user := b.req.User
	if b.since != nil && b.moved != nil && !b.moved.Receipts {
		if m, ok := b.s.receipts.get(user, b.since.Stream); ok {
			b.s.receipts.put(user, b.to.Stream, m) // nothing changed up to to
			return m, nil
		}
	}
	m, err := b.s.db.ReadReceipts(ctx, user)
	if err != nil {
		return nil, err
	}
	b.s.receipts.put(user, b.to.Stream, m)
	return m, nil
}

// roomStateCache keeps, per room, the state at the end of the last
// timeline a sync built for it, with its snapshot (store.StateRef): the
// state at the token of the room's next incremental sync is most often
// that one, which then needs no read (a room with a new message is read
// from the snapshot after its previous newest event). A snapshot never
// changes, so an entry is right as long as it is kept; one per room bounds
// them, and the maps are those the store's snapshot cache hands out.
type roomStateCache struct {
	mu gosync.Mutex
	m  map[id.RoomID]roomState
}

type roomState struct {
	ref store.StateRef
	st  stateres.StateMap
}

// roomStateRooms bounds the cache; when full it starts over.
const roomStateRooms = 20000

// get returns the room's kept state if it is the snapshot ref.
func (c *roomStateCache) get(room id.RoomID, ref store.StateRef) (stateres.StateMap, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[room]
	if !ok || e.ref != ref {
		return nil, false
	}
	return e.st, true
}

func (c *roomStateCache) put(room id.RoomID, ref store.StateRef, st stateres.StateMap) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= roomStateRooms {
		c.m = map[id.RoomID]roomState{}
	}
	c.m[room] = roomState{ref: ref, st: st}
}

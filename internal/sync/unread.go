package sync

import (
	"context"
	"maps"
	"sync"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
)

// unread sets the unread notification counts of the joined rooms
// (client-server API, "Receiving notifications"): notification_count and
// highlight_count are the user's notification rows (internal/push, which
// evaluates the push rules on every new event; the room service writes the
// rows in the event's own transaction, so a sync that sees an event sees
// its counts) after its read position. With unread_thread_notifications
// the counts are split: unread_notifications for the main timeline and
// unread_thread_notifications per thread root (client-server API,
// "Threading").
//
// The read position of a thread is the latest of the user's unthreaded
// m.read or m.read.private receipt, its receipt for the thread ("main" for
// the main timeline) and its own latest event in the thread (sending reads
// up to it), and never before its membership event.
//
// Counts are kept per user and room (unreadCache): while the receipts stay
// where they were, a sync counts only the rows since the position the
// kept counts were made at, so that the cost follows what is new rather
// than everything unread.
func (b *builder) unread(ctx context.Context) error {
	if len(b.joined) == 0 {
		return nil
	}
	user := b.req.User
	kept := make(map[id.RoomID]*unreadEntry, len(b.joined))
	for r := range b.joined {
		kept[r] = b.s.unread.get(user, r)
	}
	receipts, err := b.readReceipts(ctx)
	if err != nil {
		return err
	}
	to := b.to.Stream
	type work struct {
		room   id.RoomID
		from   int64
		entry  *unreadEntry
		cached *unreadEntry
	}
	var todo []*work
	var ranges []store.StreamRange
	for r := range b.joined {
		m := b.memberships[r]
		c := kept[r]
		e := &unreadEntry{at: to, floor: m.StreamPos, receipts: map[string]int64{}}
		e.base = m.StreamPos
		for thread, pos := range receipts[r] {
			switch thread {
			case "":
				e.base = max(e.base, pos)
			case "main":
				e.receipts[""] = pos
			default:
				e.receipts[thread] = pos
			}
		}
		w := &work{room: r, entry: e, from: e.base}
		if c != nil && c.at <= to && c.sameInputs(e) {
			w.cached, w.from = c, c.at
		}
		todo = append(todo, w)
		ranges = append(ranges, store.StreamRange{RoomID: r, From: w.from, To: to})
	}
	owns, err := b.s.db.OwnLatest(ctx, user, ranges)
	if err != nil {
		return err
	}
	queries := make([]store.UnreadQuery, len(todo))
	for i, w := range todo {
		e := w.entry
		// The read position per thread beyond base.
		e.read = map[string]int64{}
		if w.cached != nil {
			for t, p := range w.cached.read {
				e.read[t] = p
			}
		} else {
			for t, p := range e.receipts {
				if p > e.base {
					e.read[t] = p
				}
			}
		}
		e.counts = map[string]Counts{}
		if w.cached != nil {
			for t, c := range w.cached.counts {
				e.counts[t] = c
			}
		}
		for t, p := range owns[w.room] {
			if p > e.read[t] && p > e.base {
				e.read[t] = p
				// Everything kept for the thread is at or before the
				// user's new event: read.
				delete(e.counts, t)
			}
		}
		queries[i] = store.UnreadQuery{RoomID: w.room, From: w.from, To: to, Read: e.read}
	}
	res, err := b.s.db.PushCounts(ctx, user, queries)
	if err != nil {
		return err
	}
	split := b.f.Room.Timeline.UnreadThreadNotifications
	for _, w := range todo {
		e := w.entry
		for t, n := range res[w.room] {
			c := e.counts[t]
			c.Notifications += n.Notifications
			c.Highlights += n.Highlights
			e.counts[t] = c
		}
		b.s.unread.put(user, w.room, e)
		jr := b.joined[w.room]
		for t, c := range e.counts {
			if c.Notifications == 0 && c.Highlights == 0 {
				continue
			}
			if !split || t == "" {
				jr.Unread.Notifications += c.Notifications
				jr.Unread.Highlights += c.Highlights
				continue
			}
			if jr.UnreadThreads == nil {
				jr.UnreadThreads = map[id.EventID]Counts{}
			}
			jr.UnreadThreads[id.EventID(t)] = c
		}
	}
	return nil
}

// unreadEntry is a user's unread counts in a room at a stream position,
// with what they were computed from.
type unreadEntry struct {
	at    int64 // counted up to
	floor int64 // the stream position of the user's member event
	// base is the read position of every thread (unthreaded receipt or
	// floor); receipts the threaded receipts ("" for main) and read the
	// read positions beyond base, receipts and own events together.
	base     int64
	receipts map[string]int64
	read     map[string]int64
	counts   map[string]Counts // per thread, "" for the main timeline
}

// sameInputs reports whether counts kept in c can be carried forward to e:
// the same membership and receipts.
func (c *unreadEntry) sameInputs(e *unreadEntry) bool {
	return c.floor == e.floor && c.base == e.base && maps.Equal(c.receipts, e.receipts)
}

// unreadCache keeps the latest unread counts per user and room.
type unreadCache struct {
	mu sync.Mutex
	m  map[unreadKey]*unreadEntry
}

type unreadKey struct {
	user id.UserID
	room id.RoomID
}

// unreadCacheSize bounds the cache; when full it starts over.
const unreadCacheSize = 200000

func (c *unreadCache) get(u id.UserID, r id.RoomID) *unreadEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[unreadKey{u, r}]
}

func (c *unreadCache) put(u id.UserID, r id.RoomID, e *unreadEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= unreadCacheSize {
		c.m = map[unreadKey]*unreadEntry{}
	}
	if old := c.m[unreadKey{u, r}]; old != nil && old.at > e.at {
		return // a sync further on got there first
	}
	c.m[unreadKey{u, r}] = e
}

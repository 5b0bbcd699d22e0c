package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"

	"maunium.net/go/mautrix/id"
)

// txnCache keeps, per event sync has read, the transaction ID row of the
// event (client-server API, "Transaction identifiers"), or that it has
// none. The row is written in the event's own transaction (PersistEvent)
// and never changed nor deleted, so once an event has been read, what its
// row says holds for good, whichever process wrote it: the cache needs no
// invalidation and serves both engines. It spares the look-ups of an
// initial sync whose events are the viewer's own (a sixth of its CPU
// when every event is). Each DB has its own (transaction IDs are a
// server's); it is dropped with the DB.
type txnCache struct {
	mu   sync.Mutex
	m    map[id.EventID]txnRow
	ring []id.EventID // FIFO of the keys, txnCacheSize long once full
	next int
}

// txnRow is an event's transaction ID row; user "" when it has none.
type txnRow struct {
	user   id.UserID
	device id.DeviceID
	txn    string
}

// txnCacheSize matches the parse cache (pduCacheSize): the events of an
// initial sync of about 500 rooms.
const txnCacheSize = pduCacheSize

var txnCaches sync.Map // weak.Pointer[DB] → *txnCache

func (db *DB) txnCache() *txnCache {
	return dbLocal(&txnCaches, db, func() *txnCache { return &txnCache{} })
}

// get returns what is known of the events' rows; the rest are missing.
func (c *txnCache) get(eids []any) (known map[id.EventID]txnRow, missing []any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	known = make(map[id.EventID]txnRow, len(eids))
	for _, e := range eids {
		eid := id.EventID(e.(string))
		if r, ok := c.m[eid]; ok {
			known[eid] = r
		} else {
			missing = append(missing, e)
		}
	}
	return known, missing
}

// put records the rows read for eids (an event without one in rows has
// none).
func (c *txnCache) put(eids []any, rows map[id.EventID]txnRow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[id.EventID]txnRow, txnCacheSize)
		c.ring = make([]id.EventID, 0, txnCacheSize)
	}
	for _, e := range eids {
		eid := id.EventID(e.(string))
		if _, had := c.m[eid]; !had {
			if len(c.ring) < txnCacheSize {
				c.ring = append(c.ring, eid)
			} else {
				delete(c.m, c.ring[c.next])
				c.ring[c.next] = eid
				c.next = (c.next + 1) % txnCacheSize
			}
		}
		c.m[eid] = rows[eid]
	}
}

// timelineCache keeps, per room, the rows of its newest timeline events
// as RecentEventsFor read them for a range from the room's start, with the
// room's top: the highest stream position of any of its events then. A
// room whose top is the same has had no event since, so the same newest
// events (events are written with a new position, and redacting one in
// place comes with the redaction's own event in the room or with the
// event's arrival). The top is read from the database at each use
// (roomTops), so the cache holds whichever process wrote, on both engines.
// It spares the timeline statement of an initial sync its rows (an index
// step and a table row per event) for the rooms with nothing new.
type timelineCache struct {
	mu sync.Mutex
	m  map[timelineKey]timelineEntry
}

type timelineKey struct {
	room  int64
	limit int
}

type timelineEntry struct {
	top  int64
	rows []syncRow
}

// timelineCacheRooms bounds the cache; when full it starts over.
const timelineCacheRooms = 20000

var timelineCaches sync.Map // weak.Pointer[DB] → *timelineCache

func (db *DB) timelineCache() *timelineCache {
	return dbLocal(&timelineCaches, db, func() *timelineCache { return &timelineCache{} })
}

func (c *timelineCache) get(room int64, limit int, top int64) ([]syncRow, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[timelineKey{room, limit}]
	if !ok || e.top != top {
		return nil, false
	}
	return e.rows, true
}

// put keeps rows, the newest limit timeline events of room at top; the
// slice is kept and must not be modified.
func (c *timelineCache) put(room int64, limit int, top int64, rows []syncRow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= timelineCacheRooms {
		c.m = map[timelineKey]timelineEntry{}
	}
	c.m[timelineKey{room, limit}] = timelineEntry{top: top, rows: rows}
}

// roomTops returns the highest stream position of any event of each room
// (rooms without one are left out): one index step per room
// (events_room_stream).
func roomTops(ctx context.Context, q querier, rooms []int64) (map[int64]int64, error) {
	out := make(map[int64]int64, len(rooms))
	for chunk := range chunks(rooms, roomsPerStatement) {
		var b strings.Builder
		var args []any
		for i, nid := range chunk {
			if i > 0 {
				b.WriteString(" UNION ALL ")
			}
			fmt.Fprintf(&b, `SELECT %d AS i, (SELECT MAX(e.stream_pos) FROM events e WHERE e.room_nid = %s) AS top`, i, param(&args, nid))
		}
		rows, err := q.QueryContext(ctx, b.String(), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var i int
			var top sql.NullInt64
			if err := rows.Scan(&i, &top); err != nil {
				rows.Close()
				return nil, err
			}
			if top.Valid && i >= 0 && i < len(chunk) {
				out[chunk[i]] = top.Int64
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RoomTops are the top stream positions of rooms (the highest of any of
// their events), read at one time by RoomTopsOf. Reads given them may
// answer from what they kept of those rooms while a room's top is the
// same (CachedEventsAt).
type RoomTops struct {
	tops map[int64]int64 // by room_nid
}

// RoomTopsOf reads the tops of rooms: one index step per room.
func (db *DB) RoomTopsOf(ctx context.Context, rooms []id.RoomID) (*RoomTops, error) {
	t := &RoomTops{}
	err := db.read(ctx, "room_tops", func(q querier) error {
		nids, _, err := roomNIDs(ctx, q, rooms)
		if err != nil {
			return err
		}
		all := make([]int64, 0, len(nids))
		for _, n := range nids {
			all = append(all, n)
		}
		t.tops, err = roomTops(ctx, q, all)
		return err
	})
	return t, err
}

// eventCache keeps the rows of timeline events that CachedEventsAt read,
// each with its room's top when it was read (before the row). An event's
// row changes only with a new event in its room (a redaction rewrites its
// target in the redaction's transaction; an outlier or a backfilled event,
// which may be rewritten otherwise, is not kept): while the room's top is
// the same, the row is.
type eventCache struct {
	mu sync.Mutex
	m  map[id.EventID]eventEntry
}

type eventEntry struct {
	top int64
	row syncRow
}

// eventCacheSize bounds the cache; when full it starts over. The state
// and member events an initial sync of 500 rooms reads fit.
const eventCacheSize = 2 * pduCacheSize

var eventCaches sync.Map // weak.Pointer[DB] → *eventCache

func (db *DB) eventCache() *eventCache {
	return dbLocal(&eventCaches, db, func() *eventCache { return &eventCache{} })
}

// CachedEventsAt is CachedEventsFor that answers from the rows it kept of
// the rooms whose top in tops is the one they were read at, and keeps the
// timeline events it reads of the rooms of tops. tops nil is
// CachedEventsFor.
func (db *DB) CachedEventsAt(ctx context.Context, viewer id.UserID, tops *RoomTops, ids []id.EventID) ([]*Event, error) {
	if tops == nil {
		return db.CachedEventsFor(ctx, viewer, ids)
	}
	c := db.eventCache()
	var all []syncRow
	var need []id.EventID
	c.mu.Lock()
	for _, e := range ids {
		if en, ok := c.m[e]; ok {
			if top, ok := tops.tops[en.row.roomNID]; ok && top == en.top {
				all = append(all, en.row)
				continue
			}
		}
		need = append(need, e)
	}
	c.mu.Unlock()
	var out []*Event
	err := db.read(ctx, "events", func(q querier) error {
		read, err := eventRowsByID(ctx, q, need)
		if err != nil {
			return err
		}
		c.mu.Lock()
		if c.m == nil || len(c.m)+len(read) > eventCacheSize {
			c.m = make(map[id.EventID]eventEntry, len(read))
		}
		for _, r := range read {
			if top, ok := tops.tops[r.roomNID]; ok && r.pos.Valid && r.pos.Int64 > 0 && r.pos.Int64 <= top {
				c.m[id.EventID(r.eid)] = eventEntry{top: top, row: r}
			}
		}
		c.mu.Unlock()
		out, err = db.finishEvents(ctx, q, append(all, read...), map[int64]string{}, viewer, nil)
		return err
	})
	return out, err
}

package store

// Batched reads for /sync. Every method here answers for many rooms at
// once, in a bounded number of statements, so that a sync's cost grows with
// the number of rooms it reports and not with a query per room and event
// (DESIGN-NOTES "Initial sync cost must not grow with history"). Per-room
// parts of a statement are index range scans on events_room_stream or the
// memberships primary key, joined with UNION ALL.

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/stateres"
)

// roomsPerStatement bounds how many rooms one UNION ALL statement covers.
const roomsPerStatement = 100

// Values go into the statements as parameters, never as literals, so that
// a statement's text depends only on how many rooms it covers and the
// prepared statement cache can reuse it.

// param appends v to args and returns its placeholder.
func param(args *[]any, v any) string {
	*args = append(*args, v)
	return "$" + strconv.Itoa(len(*args))
}

// timelineCond keeps the events that belong in a timeline.
const timelineCond = ` AND NOT e.rejected AND NOT e.soft_failed`

// roomParam appends a room ID to args and returns the expression of its
// numeric ID (no match for an unknown room), so that a statement needs no
// separate look-up of its rooms.
func roomParam(args *[]any, r id.RoomID) string {
	return "(SELECT room_nid FROM rooms WHERE room_id = " + param(args, string(r)) + ")"
}

// StreamRange is a room and a range of stream positions, (From, To].
type StreamRange struct {
	RoomID   id.RoomID
	From, To int64
}

// RecentEvents returns, for each range, the newest limit timeline events
// (not outliers, rejected or soft-failed) with stream positions in the
// range, in stream order. Each room may appear once in ranges; unknown
// rooms and rooms without events in their range are left out of the map.
func (db *DB) RecentEvents(ctx context.Context, ranges []StreamRange, limit int) (map[id.RoomID][]*Event, error) {
	out, _, err := db.recentEvents(ctx, ranges, limit, false)
	return out, err
}

// StateRef names a stored state: the state after an event. Two refs are
// equal when they name the same snapshot, and then the states are the
// same; the zero StateRef names none (an outlier's). Read the state with
// States.
type StateRef struct{ nid int64 }

// IsZero reports whether r names no state.
func (r StateRef) IsZero() bool { return r.nid == 0 }

// RecentEventsWithState is RecentEvents that also returns the state after
// each event read (for a rejected event, the state before it; none are
// read), so that the states of timelines and their history visibility
// need no look-up by event ID.
func (db *DB) RecentEventsWithState(ctx context.Context, ranges []StreamRange, limit int) (map[id.RoomID][]*Event, map[id.EventID]StateRef, error) {
	return db.recentEvents(ctx, ranges, limit, true)
}

// States returns the states refs name (StateRef); zero refs are left out.
// The maps are shared: callers must not modify them.
func (db *DB) States(ctx context.Context, refs []StateRef) (map[StateRef]stateres.StateMap, error) {
	out := make(map[StateRef]stateres.StateMap, len(refs))
	nids := make([]int64, 0, len(refs))
	seen := make(map[int64]bool, len(refs))
	for _, r := range refs {
		if r.nid != 0 && !seen[r.nid] {
			seen[r.nid] = true
			nids = append(nids, r.nid)
		}
	}
	if len(nids) == 0 {
		return out, nil
	}
	err := db.read(ctx, "states", func(q querier) error {
		snaps, err := readSnapshots(ctx, q, db.snapshots, nids)
		if err != nil {
			return err
		}
		for nid, s := range snaps {
			out[StateRef{nid}] = s
		}
		return nil
	})
	return out, err
}

func (db *DB) recentEvents(ctx context.Context, ranges []StreamRange, limit int, withState bool) (map[id.RoomID][]*Event, map[id.EventID]StateRef, error) {
	out := make(map[id.RoomID][]*Event, len(ranges))
	var refs map[id.EventID]StateRef
	if withState {
		refs = make(map[id.EventID]StateRef, len(ranges)*limit)
	}
	if len(ranges) == 0 || limit <= 0 {
		return out, refs, nil
	}
	cols := eventCols
	if withState {
		cols += ", e.state_snapshot"
	}
	err := db.read(ctx, "recent_events", func(q querier) error {
		for chunk := range chunks(ranges, roomsPerStatement) {
			var b strings.Builder
			var args []any
			lim := param(&args, limit)
			n := 0
			for _, r := range chunk {
				if r.To <= r.From {
					continue
				}
				if n > 0 {
					b.WriteString(" UNION ALL ")
				}
				n++
				fmt.Fprintf(&b, `SELECT * FROM (SELECT `+cols+eventFrom+`WHERE e.room_nid = %s AND e.stream_pos > %s AND e.stream_pos <= %s`+
					timelineCond+` ORDER BY e.stream_pos DESC LIMIT %s) q%d`, roomParam(&args, r.RoomID), param(&args, r.From), param(&args, r.To), lim, n)
			}
			if n == 0 {
				continue
			}
			rows, err := q.QueryContext(ctx, b.String(), args...)
			if err != nil {
				return err
			}
			var evs []*Event
			if withState {
				evs, err = scanEventsState(rows, refs)
			} else {
				evs, err = scanEvents(rows)
			}
			if err != nil {
				return err
			}
			for _, ev := range evs {
				out[ev.RoomID()] = append(out[ev.RoomID()], ev)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for _, evs := range out {
		slices.Reverse(evs) // each room's rows came newest first
	}
	return out, refs, nil
}

// scanEventsState is scanEvents for rows of eventCols followed by
// e.state_snapshot, which it records in refs.
func scanEventsState(rows *sql.Rows, refs map[id.EventID]StateRef) ([]*Event, error) {
	defer rows.Close()
	var out []*Event
	for rows.Next() {
		var r storedRow
		var snap sql.NullInt64
		if err := rows.Scan(r.dest(&snap)...); err != nil {
			return nil, err
		}
		p, err := parsed.parse(id.EventID(r.eid), id.RoomVersion(r.version), r.raw)
		if err != nil {
			return nil, fmt.Errorf("stored event %s: %w", r.eid, err)
		}
		if snap.Valid && refs != nil {
			refs[id.EventID(r.eid)] = StateRef{snap.Int64}
		}
		out = append(out, r.event(p))
	}
	return out, rows.Err()
}

// CachedEvents is Events for sync: the same rows, parsed through a cache of
// parsed events (see pduCache).
func (db *DB) CachedEvents(ctx context.Context, ids []id.EventID) ([]*Event, error) {
	var out []*Event
	err := db.read(ctx, "events", func(q querier) error {
		for chunk := range chunks(ids, 200) {
			args := make([]any, len(chunk))
			for i, e := range chunk {
				args[i] = string(e)
			}
			rows, err := q.QueryContext(ctx, `SELECT `+eventCols+`, e.state_snapshot`+eventFrom+`WHERE e.event_id IN (`+placeholders(1, len(chunk))+`)`, args...)
			if err != nil {
				return err
			}
			evs, err := scanEventsState(rows, nil)
			if err != nil {
				return err
			}
			out = append(out, evs...)
		}
		return nil
	})
	return out, err
}

// RecentEventsFor is RecentEventsWithState for what viewer is shown: the
// events' transaction IDs (TxnDevice, TxnID) are read only for the events
// viewer sent, the only ones whose transaction_id a client sees
// (client-server API, "Transaction identifiers"). Each row costs one
// index range step and one table row: the rooms' versions are read once
// per room rather than joined per event, and txn_ids is not joined.
func (db *DB) RecentEventsFor(ctx context.Context, viewer id.UserID, ranges []StreamRange, limit int) (map[id.RoomID][]*Event, map[id.EventID]StateRef, error) {
	return db.RecentEventsAt(ctx, viewer, nil, ranges, limit)
}

// RecentEventsAt is RecentEventsFor that takes the rooms' tops from tops
// (RoomTopsOf, read before) rather than reading them; tops nil is
// RecentEventsFor.
func (db *DB) RecentEventsAt(ctx context.Context, viewer id.UserID, given *RoomTops, ranges []StreamRange, limit int) (map[id.RoomID][]*Event, map[id.EventID]StateRef, error) {
	out := make(map[id.RoomID][]*Event, len(ranges))
	refs := make(map[id.EventID]StateRef, len(ranges)*limit)
	if len(ranges) == 0 || limit <= 0 {
		return out, refs, nil
	}
	err := db.read(ctx, "recent_events", func(q querier) error {
		rooms := make([]id.RoomID, 0, len(ranges))
		for _, r := range ranges {
			if r.To > r.From {
				rooms = append(rooms, r.RoomID)
			}
		}
		nids, versions, err := roomNIDs(ctx, q, rooms)
		if err != nil {
			return err
		}
		// Ranges from the start of the room (an initial sync) are taken
		// from the timeline cache where the room has no event since.
		var whole []int64
		for _, r := range ranges {
			if nid, ok := nids[r.RoomID]; ok && r.From == 0 && r.To > 0 {
				whole = append(whole, nid)
			}
		}
		var tops map[int64]int64
		if given != nil {
			tops = given.tops
		} else if tops, err = roomTops(ctx, q, whole); err != nil {
			return err
		}
		tc := db.timelineCache()
		var all []syncRow
		cached := map[int64]bool{}
		for _, r := range ranges {
			nid, ok := nids[r.RoomID]
			if !ok || r.From != 0 {
				continue
			}
			if top, ok := tops[nid]; ok && top <= r.To {
				if rows, ok := tc.get(nid, limit, top); ok {
					all = append(all, rows...)
					cached[nid] = true
				}
			}
		}
		read := len(all)
		for chunk := range chunks(ranges, roomsPerStatement) {
			var b strings.Builder
			var args []any
			lim := param(&args, limit)
			n := 0
			for _, r := range chunk {
				nid, ok := nids[r.RoomID]
				if r.To <= r.From || !ok || cached[nid] {
					continue
				}
				if n > 0 {
					b.WriteString(" UNION ALL ")
				}
				n++
				fmt.Fprintf(&b, `SELECT * FROM (SELECT `+rowCols+` FROM events e WHERE e.room_nid = %s AND e.stream_pos > %s AND e.stream_pos <= %s`+
					timelineCond+` ORDER BY e.stream_pos DESC LIMIT %s) q%d`, param(&args, nid), param(&args, r.From), param(&args, r.To), lim, n)
			}
			if n == 0 {
				continue
			}
			rs, err := scanEventRows(q.QueryContext(ctx, b.String(), args...))
			if err != nil {
				return err
			}
			all = append(all, rs...)
		}
		// Keep what was read of the rooms whose top the range reached:
		// their newest limit events.
		byRoom := map[int64][]syncRow{}
		for _, r := range all[read:] {
			byRoom[r.roomNID] = append(byRoom[r.roomNID], r)
		}
		for _, r := range ranges {
			nid, ok := nids[r.RoomID]
			if !ok || r.From != 0 || cached[nid] {
				continue
			}
			if top, ok := tops[nid]; ok && top <= r.To {
				tc.put(nid, limit, top, byRoom[nid])
			}
		}
		evs, err := db.finishEvents(ctx, q, all, versions, viewer, refs)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			out[ev.RoomID()] = append(out[ev.RoomID()], ev)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for _, evs := range out {
		slices.Reverse(evs) // each room's rows came newest first
	}
	return out, refs, nil
}

// eventRowsByID reads the rows of events by ID, 500 to a statement, in no
// particular order; unknown IDs are left out.
func eventRowsByID(ctx context.Context, q querier, ids []id.EventID) ([]syncRow, error) {
	var all []syncRow
	for chunk := range chunks(ids, 500) {
		args := make([]any, len(chunk))
		for i, e := range chunk {
			args[i] = string(e)
		}
		rs, err := scanEventRows(q.QueryContext(ctx, `SELECT `+rowCols+` FROM events e WHERE e.event_id IN (`+placeholders(1, len(chunk))+`)`, args...))
		if err != nil {
			return nil, err
		}
		all = append(all, rs...)
	}
	return all, nil
}

// CachedEventsFor is CachedEvents that reads the transaction IDs only of
// the events viewer sent (see RecentEventsFor); with viewer "", of none.
func (db *DB) CachedEventsFor(ctx context.Context, viewer id.UserID, ids []id.EventID) ([]*Event, error) {
	var out []*Event
	err := db.read(ctx, "events", func(q querier) error {
		all, err := eventRowsByID(ctx, q, ids)
		if err != nil {
			return err
		}
		out, err = db.finishEvents(ctx, q, all, map[int64]string{}, viewer, nil)
		return err
	})
	return out, err
}

// rowCols are the columns scanEventRows reads, from events e alone.
const rowCols = `e.event_id, e.room_nid, e.json, e.unsigned, e.stream_pos, e.replaces, e.rejected, e.soft_failed, e.redacted_by, e.state_snapshot`

// syncRow is a row of rowCols, not parsed yet.
type syncRow struct {
	eid                  string
	roomNID              int64
	raw, added           []byte
	pos, snap            sql.NullInt64
	replaces, redBy      sql.NullString
	rejected, softFailed bool
}

func scanEventRows(rows *sql.Rows, err error) ([]syncRow, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []syncRow
	for rows.Next() {
		var r syncRow
		if err := rows.Scan(&r.eid, &r.roomNID, &r.raw, &r.added, &r.pos, &r.replaces, &r.rejected, &r.softFailed, &r.redBy, &r.snap); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// roomNIDs returns the numeric IDs and the versions (by numeric ID) of
// the rooms among rooms that are stored.
func roomNIDs(ctx context.Context, q querier, rooms []id.RoomID) (map[id.RoomID]int64, map[int64]string, error) {
	nids := make(map[id.RoomID]int64, len(rooms))
	versions := make(map[int64]string, len(rooms))
	for chunk := range chunks(rooms, 500) {
		args := make([]any, len(chunk))
		for i, r := range chunk {
			args[i] = string(r)
		}
		rows, err := q.QueryContext(ctx, `SELECT room_id, room_nid, version FROM rooms WHERE room_id IN (`+placeholders(1, len(chunk))+`)`, args...)
		if err != nil {
			return nil, nil, err
		}
		for rows.Next() {
			var r id.RoomID
			var nid int64
			var v string
			if err := rows.Scan(&r, &nid, &v); err != nil {
				rows.Close()
				return nil, nil, err
			}
			nids[r], versions[nid] = nid, v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, err
		}
	}
	return nids, versions, nil
}

// finishEvents parses rows (through the parse cache) in their rooms'
// versions, reading those that versions lacks into it, and reads the
// transaction IDs of viewer's events (those txnCache does not know). It
// records the rows' state
// snapshots in refs unless refs is nil.
func (db *DB) finishEvents(ctx context.Context, q querier, rs []syncRow, versions map[int64]string, viewer id.UserID, refs map[id.EventID]StateRef) ([]*Event, error) {
	var missing []int64
	for _, r := range rs {
		if _, ok := versions[r.roomNID]; !ok && !slices.Contains(missing, r.roomNID) {
			missing = append(missing, r.roomNID)
		}
	}
	for chunk := range chunks(missing, 500) {
		rows, err := q.QueryContext(ctx, `SELECT room_nid, version FROM rooms WHERE room_nid IN (`+placeholders(1, len(chunk))+`)`, int64Args(chunk)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var nid int64
			var v string
			if err := rows.Scan(&nid, &v); err != nil {
				rows.Close()
				return nil, err
			}
			versions[nid] = v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	out := make([]*Event, 0, len(rs))
	var own []any
	for _, r := range rs {
		version, ok := versions[r.roomNID]
		if !ok {
			continue // as the join with rooms did
		}
		p, err := parsed.parse(id.EventID(r.eid), id.RoomVersion(version), r.raw)
		if err != nil {
			return nil, fmt.Errorf("stored event %s: %w", r.eid, err)
		}
		ev := &Event{PDU: p, Added: r.added, StreamPos: r.pos.Int64, Replaces: id.EventID(r.replaces.String),
			IsRejected: r.rejected, SoftFailed: r.softFailed, RedactedBy: id.EventID(r.redBy.String)}
		if r.snap.Valid && refs != nil {
			refs[id.EventID(r.eid)] = StateRef{r.snap.Int64}
		}
		if viewer != "" && p.Sender() == viewer {
			own = append(own, r.eid)
		}
		out = append(out, ev)
	}
	if len(own) == 0 {
		return out, nil
	}
	cache := db.txnCache()
	known, own := cache.get(own)
	read := make(map[id.EventID]txnRow, len(own))
	for chunk := range chunks(own, 500) {
		// By txn_ids_event: a condition on user_id would have the
		// planner walk all of the user's transactions instead.
		rows, err := q.QueryContext(ctx, `SELECT event_id, user_id, device_id, txn_id FROM txn_ids WHERE event_id IN (`+placeholders(1, len(chunk))+`)`, chunk...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var eid id.EventID
			var user, dev, txn string
			if err := rows.Scan(&eid, &user, &dev, &txn); err != nil {
				rows.Close()
				return nil, err
			}
			read[eid] = txnRow{user: id.UserID(user), device: id.DeviceID(dev), txn: txn}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	cache.put(own, read)
	for _, ev := range out {
		t, ok := known[ev.EventID()]
		if !ok {
			t = read[ev.EventID()]
		}
		if t.user == viewer && t.user != "" {
			ev.TxnDevice, ev.TxnID = t.device, t.txn
		}
	}
	return out, nil
}

// pduCache keeps the events that sync parsed last. Parsing a stored event
// (canonical JSON walk, reference hash) was a sixth of an initial sync's
// CPU, and the same events (every room's newest events and its state) are
// parsed by every initial sync. An entry is used only for the very bytes
// it was parsed from, in the same room version, so that an event redacted
// in place since is parsed again: the cache needs no invalidation, and it
// may be shared by every DB of the process (tests run several servers in
// one; an event ID's bytes are the same wherever they are stored). A
// parsed event is never modified (event.PDU has no setters).
type pduCache struct {
	mu   sync.Mutex
	m    map[id.EventID]pduEntry
	ring []id.EventID // FIFO of the keys, pduCacheSize long once full
	next int
}

type pduEntry struct {
	raw []byte // the stored bytes (the PDU's own JSON when the same)
	pdu *event.PDU
}

// pduCacheSize holds the newest events and state of about 500 rooms, some
// 10 MB.
const pduCacheSize = 16384

var parsed pduCache

func (c *pduCache) parse(eid id.EventID, version id.RoomVersion, raw []byte) (*event.PDU, error) {
	c.mu.Lock()
	e, ok := c.m[eid]
	c.mu.Unlock()
	if ok && e.pdu.RoomVersion() == version && bytes.Equal(e.raw, raw) {
		return e.pdu, nil
	}
	p, err := event.ParseStored(version, raw)
	if err != nil {
		return nil, err
	}
	e = pduEntry{raw: raw, pdu: p}
	if bytes.Equal(p.JSON(), raw) {
		e.raw = p.JSON()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[id.EventID]pduEntry, pduCacheSize)
		c.ring = make([]id.EventID, 0, pduCacheSize)
	}
	if _, had := c.m[eid]; !had {
		if len(c.ring) < pduCacheSize {
			c.ring = append(c.ring, eid)
		} else {
			delete(c.m, c.ring[c.next])
			c.ring[c.next] = eid
			c.next = (c.next + 1) % pduCacheSize
		}
	}
	c.m[eid] = e
	return p, nil
}

// LatestEventIDs returns, for each room, its newest timeline event with a
// stream position at or below at: the event whose state after is the
// room's state at that position. Rooms without one are left out.
func (db *DB) LatestEventIDs(ctx context.Context, rooms []id.RoomID, at int64) (map[id.RoomID]id.EventID, error) {
	out, _, err := db.LatestEventRefs(ctx, rooms, at)
	return out, err
}

// LatestEventRefs is LatestEventIDs that also returns the state after
// each event found, to be read with States (no look-up of the events by
// ID as StatesAfter makes).
func (db *DB) LatestEventRefs(ctx context.Context, rooms []id.RoomID, at int64) (map[id.RoomID]id.EventID, map[id.EventID]StateRef, error) {
	out := make(map[id.RoomID]id.EventID, len(rooms))
	refs := make(map[id.EventID]StateRef, len(rooms))
	err := db.read(ctx, "latest_event_ids", func(q querier) error {
		for chunk := range chunks(rooms, roomsPerStatement) {
			var b strings.Builder
			var args []any
			atp := param(&args, at)
			for i, r := range chunk {
				if i > 0 {
					b.WriteString(" UNION ALL ")
				}
				fmt.Fprintf(&b, `SELECT * FROM (SELECT %d AS i, e.event_id, e.state_snapshot FROM events e WHERE e.room_nid = %s AND e.stream_pos <= %s`+
					timelineCond+` ORDER BY e.stream_pos DESC LIMIT 1) q%d`, i, roomParam(&args, r), atp, i)
			}
			rows, err := q.QueryContext(ctx, b.String(), args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var i int
				var eid id.EventID
				var snap sql.NullInt64
				if err := rows.Scan(&i, &eid, &snap); err != nil {
					rows.Close()
					return err
				}
				out[chunk[i]] = eid
				if snap.Valid {
					refs[eid] = StateRef{snap.Int64}
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, refs, err
}

// StatesAfter is StateAfter for many events at once: it returns the state
// after each of ids that is stored and not an outlier (the others are left
// out). Snapshots are read in a few statements whatever their number and
// delta chains. The maps are shared: callers must not modify them.
func (db *DB) StatesAfter(ctx context.Context, ids []id.EventID) (map[id.EventID]stateres.StateMap, error) {
	out := make(map[id.EventID]stateres.StateMap, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	err := db.read(ctx, "states_after", func(q querier) error {
		snapOf := make(map[id.EventID]int64, len(ids))
		for chunk := range chunks(ids, 500) {
			args := make([]any, len(chunk))
			for i, e := range chunk {
				args[i] = string(e)
			}
			rows, err := q.QueryContext(ctx, `SELECT event_id, state_snapshot FROM events WHERE event_id IN (`+placeholders(1, len(chunk))+`)`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var eid id.EventID
				var nid sql.NullInt64
				if err := rows.Scan(&eid, &nid); err != nil {
					rows.Close()
					return err
				}
				if nid.Valid {
					snapOf[eid] = nid.Int64
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		want := make([]int64, 0, len(snapOf))
		seen := make(map[int64]bool, len(snapOf))
		for _, nid := range snapOf {
			if !seen[nid] {
				seen[nid] = true
				want = append(want, nid)
			}
		}
		snaps, err := readSnapshots(ctx, q, db.snapshots, want)
		if err != nil {
			return err
		}
		for eid, nid := range snapOf {
			out[eid] = snaps[nid]
		}
		return nil
	})
	return out, err
}

// readSnapshots is readSnapshot for many snapshots: it walks all their
// delta chains together, one statement per chain level, then reads the
// entries of every snapshot involved in one statement per few hundred.
func readSnapshots(ctx context.Context, q querier, cache *snapshotCache, nids []int64) (map[int64]stateres.StateMap, error) {
	out := make(map[int64]stateres.StateMap, len(nids))
	parent := map[int64]int64{} // 0: a full snapshot (no parent)
	var frontier []int64
	for _, nid := range nids {
		if s, ok := cache.get(nid); ok {
			out[nid] = s
		} else if _, ok := parent[nid]; !ok {
			parent[nid] = -1 // not read yet
			frontier = append(frontier, nid)
		}
	}
	if len(frontier) == 0 {
		return out, nil
	}
	cached := map[int64]stateres.StateMap{}
	for len(frontier) > 0 {
		var next []int64
		for chunk := range chunks(frontier, 500) {
			rows, err := q.QueryContext(ctx, `SELECT snapshot_nid, parent FROM state_snapshots WHERE snapshot_nid IN (`+placeholders(1, len(chunk))+`)`, int64Args(chunk)...)
			if err != nil {
				return nil, err
			}
			for rows.Next() {
				var nid int64
				var p sql.NullInt64
				if err := rows.Scan(&nid, &p); err != nil {
					rows.Close()
					return nil, err
				}
				parent[nid] = p.Int64
				if !p.Valid {
					continue
				}
				if _, ok := parent[p.Int64]; ok {
					continue
				}
				if s, ok := cache.get(p.Int64); ok {
					cached[p.Int64] = s
					parent[p.Int64] = 0
					continue
				}
				parent[p.Int64] = -1
				next = append(next, p.Int64)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, err
			}
		}
		frontier = next
	}
	// Entries of every snapshot read from the database.
	entries := map[int64][]snapshotEntry{}
	var need []int64
	for nid, p := range parent {
		if p == -1 {
			return nil, fmt.Errorf("snapshot %d: %w", nid, ErrNotFound)
		}
		if _, ok := cached[nid]; !ok {
			need = append(need, nid)
		}
	}
	for chunk := range chunks(need, 500) {
		rows, err := q.QueryContext(ctx, `SELECT s.snapshot_nid, s.type, s.state_key, e.event_id FROM state_entries s
			LEFT JOIN events e ON e.event_nid = s.event_nid WHERE s.snapshot_nid IN (`+placeholders(1, len(chunk))+`)`, int64Args(chunk)...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var nid int64
			var en snapshotEntry
			var eid sql.NullString
			if err := rows.Scan(&nid, &en.key.Type, &en.key.StateKey, &eid); err != nil {
				rows.Close()
				return nil, err
			}
			en.event = id.EventID(eid.String)
			entries[nid] = append(entries[nid], en)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	for _, nid := range nids {
		if _, ok := out[nid]; ok {
			continue
		}
		// The chain from nid up to a full or cached snapshot.
		var chain []int64
		var base stateres.StateMap
		for cur := nid; ; {
			if s, ok := cached[cur]; ok {
				base = s
				break
			}
			chain = append(chain, cur)
			if parent[cur] == 0 {
				break
			}
			cur = parent[cur]
		}
		size := len(base)
		for _, c := range chain {
			size += len(entries[c])
		}
		s := make(stateres.StateMap, size)
		for k, v := range base {
			s[k] = v
		}
		for i := len(chain) - 1; i >= 0; i-- {
			for _, en := range entries[chain[i]] {
				if en.event == "" {
					delete(s, en.key)
				} else {
					s[en.key] = en.event
				}
			}
		}
		cache.put(nid, s)
		out[nid] = s
	}
	return out, nil
}

func int64Args(v []int64) []any {
	out := make([]any, len(v))
	for i, x := range v {
		out[i] = x
	}
	return out
}

type snapshotEntry struct {
	key   stateres.StateKey
	event id.EventID // "" removes the key
}

// JoinedRoomsWithEvents returns the rooms user is joined to that have
// timeline events with stream positions in (from, to]. For a short range it
// scans the range (one index range on stream_pos); for a long one it probes
// each joined room's (room, stream position) index instead, so that the
// cost is bounded by the smaller of the two.
func (db *DB) JoinedRoomsWithEvents(ctx context.Context, user id.UserID, from, to int64) ([]id.RoomID, error) {
	var out []id.RoomID
	err := db.read(ctx, "joined_rooms_with_events", func(q querier) error {
		query := `SELECT DISTINCT r.room_id FROM events e JOIN rooms r ON r.room_nid = e.room_nid
			WHERE e.stream_pos > $2 AND e.stream_pos <= $3` + timelineCond + `
			AND EXISTS (SELECT 1 FROM memberships m WHERE m.room_nid = e.room_nid AND m.user_id = $1 AND m.membership = 'join')`
		if to-from > 5000 {
			query = `SELECT r.room_id FROM memberships m JOIN rooms r ON r.room_nid = m.room_nid
				WHERE m.user_id = $1 AND m.membership = 'join' AND EXISTS (SELECT 1 FROM events e
					WHERE e.room_nid = m.room_nid AND e.stream_pos > $2 AND e.stream_pos <= $3` + timelineCond + `)`
		}
		rows, err := q.QueryContext(ctx, query, string(user), from, to)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r id.RoomID
			if err := rows.Scan(&r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// MemberCounts are the numbers of joined and invited members of a room.
type MemberCounts struct {
	Joined, Invited int
}

// RoomMemberCounts returns the current joined and invited member counts of
// rooms. Rooms without members are left out.
func (db *DB) RoomMemberCounts(ctx context.Context, rooms []id.RoomID) (map[id.RoomID]MemberCounts, error) {
	out := make(map[id.RoomID]MemberCounts, len(rooms))
	err := db.read(ctx, "room_member_counts", func(q querier) error {
		for chunk := range chunks(rooms, 500) {
			args := make([]any, len(chunk))
			for i, r := range chunk {
				args[i] = string(r)
			}
			rows, err := q.QueryContext(ctx, `SELECT r.room_id, m.membership, COUNT(*) FROM memberships m JOIN rooms r ON r.room_nid = m.room_nid
				WHERE r.room_id IN (`+placeholders(1, len(chunk))+`) AND m.membership IN ('join', 'invite') GROUP BY r.room_id, m.membership`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var r id.RoomID
				var m string
				var n int
				if err := rows.Scan(&r, &m, &n); err != nil {
					rows.Close()
					return err
				}
				c := out[r]
				if m == "join" {
					c.Joined = n
				} else {
					c.Invited = n
				}
				out[r] = c
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// RoomHeroes returns, for each room, up to n of its members other than
// exclude, in the order of their latest membership change: those joined or
// invited, or, in a room that has none, those who left or were banned
// (client-server API, "m.heroes").
func (db *DB) RoomHeroes(ctx context.Context, rooms []id.RoomID, exclude id.UserID, n int) (map[id.RoomID][]id.UserID, error) {
	out := make(map[id.RoomID][]id.UserID, len(rooms))
	err := db.read(ctx, "room_heroes", func(q querier) error {
		run := func(list []id.RoomID, kinds string) error {
			for chunk := range chunks(list, roomsPerStatement) {
				var b strings.Builder
				args := []any{string(exclude), n}
				for i, r := range chunk {
					if i > 0 {
						b.WriteString(" UNION ALL ")
					}
					fmt.Fprintf(&b, `SELECT * FROM (SELECT %d AS i, m.user_id FROM memberships m WHERE m.room_nid = %s AND m.user_id <> $1
						AND m.membership IN (%s) ORDER BY m.stream_pos, m.user_id LIMIT $2) q%d`, i, roomParam(&args, r), kinds, i)
				}
				rows, err := q.QueryContext(ctx, b.String(), args...)
				if err != nil {
					return err
				}
				for rows.Next() {
					var i int
					var u id.UserID
					if err := rows.Scan(&i, &u); err != nil {
						rows.Close()
						return err
					}
					out[chunk[i]] = append(out[chunk[i]], u)
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					return err
				}
			}
			return nil
		}
		if err := run(rooms, `'join', 'invite'`); err != nil {
			return err
		}
		var empty []id.RoomID
		for _, r := range rooms {
			if len(out[r]) == 0 {
				empty = append(empty, r)
			}
		}
		return run(empty, `'leave', 'ban'`)
	})
	return out, err
}

// ReadReceipts returns the positions (stream positions of the receipted
// events) of user's furthest m.read or m.read.private receipts, per room and
// thread: "" for unthreaded receipts, "main" for the main timeline, else
// the thread root's event ID (client-server API, "Receipts").
func (db *DB) ReadReceipts(ctx context.Context, user id.UserID) (map[id.RoomID]map[string]int64, error) {
	out := map[id.RoomID]map[string]int64{}
	err := db.read(ctx, "read_receipts", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT room_id, thread_id, MAX(event_pos) FROM receipts
			WHERE user_id = $1 AND receipt_type IN ('m.read', 'm.read.private') GROUP BY room_id, thread_id`, string(user))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r id.RoomID
			var thread string
			var pos int64
			if err := rows.Scan(&r, &thread, &pos); err != nil {
				return err
			}
			if out[r] == nil {
				out[r] = map[string]int64{}
			}
			out[r][thread] = pos
		}
		return rows.Err()
	})
	return out, err
}

// threadExpr is the thread an event belongs to for notification counts:
// the root of an m.thread relation, else the main timeline ("").
const threadExpr = `CASE WHEN e.rel_type = 'm.thread' THEN e.relates_to ELSE '' END`

// OwnLatest returns, for each range, the stream position of user's own
// latest event in it per thread ("" for the main timeline): sending an
// event reads up to it. Rooms without one are left out.
func (db *DB) OwnLatest(ctx context.Context, user id.UserID, ranges []StreamRange) (map[id.RoomID]map[string]int64, error) {
	out := map[id.RoomID]map[string]int64{}
	err := db.read(ctx, "own_latest", func(q querier) error {
		for chunk := range chunks(ranges, roomsPerStatement) {
			var b strings.Builder
			args := []any{string(user)}
			n := 0
			for i, r := range chunk {
				if r.To <= r.From {
					continue
				}
				if n > 0 {
					b.WriteString(" UNION ALL ")
				}
				n++
				fmt.Fprintf(&b, `SELECT %d, `+threadExpr+`, MAX(e.stream_pos) FROM events e WHERE e.room_nid = %s
					AND e.stream_pos > %s AND e.stream_pos <= %s AND e.sender = $1 GROUP BY `+threadExpr, i, roomParam(&args, r.RoomID), param(&args, r.From), param(&args, r.To))
			}
			if n == 0 {
				continue
			}
			rows, err := q.QueryContext(ctx, b.String(), args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var i int
				var thread string
				var pos int64
				if err := rows.Scan(&i, &thread, &pos); err != nil {
					rows.Close()
					return err
				}
				r := chunk[i].RoomID
				if out[r] == nil {
					out[r] = map[string]int64{}
				}
				out[r][thread] = pos
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// UnreadQuery asks for the events of one room that may notify a user.
type UnreadQuery struct {
	RoomID id.RoomID
	// From and To bound the events counted: stream positions in (From, To].
	From, To int64
	// Read holds the read position of threads read further than From
	// ("" for the main timeline): their events at or before it do not
	// count.
	Read map[string]int64
	// Needles are lower-case strings; counted events whose JSON contains
	// one (ASCII case-insensitively) are returned as Candidates for the
	// caller's highlight rules.
	Needles []string
}

// Unread is what UnreadCounts finds in one room.
type Unread struct {
	// Counts holds the counted events per thread (the thread root's event
	// ID; "" for the main timeline).
	Counts map[string]int
	// Candidates are the counted events whose JSON contains a needle.
	Candidates []UnreadEvent
}

// UnreadEvent is a counted event that may be a highlight.
type UnreadEvent struct {
	Thread string
	JSON   []byte // the event in the federation format
}

// UnreadCounts counts, per room and thread, the timeline events of the
// given types that others sent in the query's range and after the thread's
// read position (client-server API, "Receiving notifications"). Edits
// (m.replace relations) do not count. The rules that decide the read
// positions (receipts, the user's own events) are the caller's.
func (db *DB) UnreadCounts(ctx context.Context, user id.UserID, queries []UnreadQuery, types []string) (map[id.RoomID]Unread, error) {
	out := make(map[id.RoomID]Unread, len(queries))
	if len(queries) == 0 || len(types) == 0 {
		return out, nil
	}
	err := db.read(ctx, "unread_counts", func(q querier) error {
		var qs []UnreadQuery
		for _, r := range queries {
			if r.From < r.To {
				qs = append(qs, r)
			}
		}
		for chunk := range chunks(qs, roomsPerStatement) {
			args := []any{string(user)}
			typeList := make([]string, len(types))
			for i, t := range types {
				args = append(args, t)
				typeList[i] = "$" + strconv.Itoa(len(args))
			}
			inner := func(rq UnreadQuery, cols string, args *[]any) string {
				return `SELECT ` + cols + ` FROM events e WHERE e.room_nid = ` + roomParam(args, rq.RoomID) +
					` AND e.stream_pos > ` + param(args, rq.From) + ` AND e.stream_pos <= ` + param(args, rq.To) +
					` AND e.sender <> $1 AND e.type IN (` + strings.Join(typeList, ", ") + `)` + timelineCond +
					` AND (e.rel_type IS NULL OR e.rel_type <> 'm.replace')`
			}
			bound := func(rq UnreadQuery, args *[]any) string {
				var b strings.Builder
				n := 0
				threads := make([]string, 0, len(rq.Read))
				for thread := range rq.Read {
					threads = append(threads, thread)
				}
				slices.Sort(threads)
				for _, thread := range threads {
					pos := rq.Read[thread]
					if pos <= rq.From {
						continue
					}
					if n == 0 {
						b.WriteString("x.stream_pos > CASE x.thread")
					}
					n++
					fmt.Fprintf(&b, " WHEN %s THEN CAST(%s AS BIGINT)", param(args, thread), param(args, pos))
				}
				if n == 0 {
					return "TRUE"
				}
				fmt.Fprintf(&b, " ELSE CAST(%s AS BIGINT) END", param(args, rq.From))
				return b.String()
			}
			var cb, hb strings.Builder
			cargs := append([]any(nil), args...)
			hargs := append([]any(nil), args...)
			nh := 0
			for i, rq := range chunk {
				if i > 0 {
					cb.WriteString(" UNION ALL ")
				}
				in := inner(rq, threadExpr+` AS thread, e.stream_pos`, &cargs)
				fmt.Fprintf(&cb, `SELECT %d, x.thread, COUNT(*) FROM (%s) x WHERE %s GROUP BY x.thread`, i, in, bound(rq, &cargs))
				if len(rq.Needles) == 0 {
					continue
				}
				hin := inner(rq, threadExpr+` AS thread, e.stream_pos, e.json`, &hargs)
				var match []string
				for _, n := range rq.Needles {
					if db.dialect == Postgres {
						match = append(match, "strpos(lower(convert_from(e.json, 'UTF8')), "+param(&hargs, n)+") > 0")
					} else {
						match = append(match, "instr(lower(CAST(e.json AS TEXT)), "+param(&hargs, n)+") > 0")
					}
				}
				if nh > 0 {
					hb.WriteString(" UNION ALL ")
				}
				nh++
				fmt.Fprintf(&hb, `SELECT %d, x.thread, x.json FROM (%s AND (%s)) x WHERE %s`, i, hin, strings.Join(match, " OR "), bound(rq, &hargs))
			}
			rows, err := q.QueryContext(ctx, cb.String(), cargs...)
			if err != nil {
				return fmt.Errorf("count unread: %w", err)
			}
			for rows.Next() {
				var i, n int
				var thread string
				if err := rows.Scan(&i, &thread, &n); err != nil {
					rows.Close()
					return err
				}
				u := out[chunk[i].RoomID]
				if u.Counts == nil {
					u.Counts = map[string]int{}
				}
				u.Counts[thread] = n
				out[chunk[i].RoomID] = u
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if nh == 0 {
				continue
			}
			rows, err = q.QueryContext(ctx, hb.String(), hargs...)
			if err != nil {
				return fmt.Errorf("unread highlights: %w", err)
			}
			for rows.Next() {
				var i int
				var ue UnreadEvent
				if err := rows.Scan(&i, &ue.Thread, &ue.JSON); err != nil {
					rows.Close()
					return err
				}
				u := out[chunk[i].RoomID]
				u.Candidates = append(u.Candidates, ue)
				out[chunk[i].RoomID] = u
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// PresenceChangedPeers returns the users whose presence changed at stream
// positions in (from, to] and who are user itself or share a joined room
// with it. It reads the range of presence changes (presence_stream) and
// checks each changed user's rooms, so that an incremental sync pays for
// the changes, not for the size of its rooms.
func (db *DB) PresenceChangedPeers(ctx context.Context, user id.UserID, from, to int64) ([]id.UserID, error) {
	var out []id.UserID
	err := db.read(ctx, "presence_changed_peers", func(q querier) error {
		var err error
		out, err = column[id.UserID](q.QueryContext(ctx, `SELECT p.user_id FROM presence p WHERE p.stream_pos > $2 AND p.stream_pos <= $3
			AND (p.user_id = $1 OR EXISTS (SELECT 1 FROM memberships o JOIN memberships m ON m.room_nid = o.room_nid
				WHERE o.user_id = p.user_id AND o.membership = 'join' AND m.user_id = $1 AND m.membership = 'join'))
			ORDER BY p.stream_pos`, string(user), from, to))
		return err
	})
	return out, err
}

// UserRoomMemberships is UserMemberships without the member events' IDs
// (EventID is left empty): reading those costs a look-up in the events
// table per room, which a sync of a user in hundreds of rooms needs only
// for the few rooms it reports (MembershipEventIDs).
func (db *DB) UserRoomMemberships(ctx context.Context, user id.UserID) ([]Membership, error) {
	var out []Membership
	err := db.read(ctx, "user_room_memberships", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT r.room_id, m.membership, m.sender, m.stream_pos FROM memberships m
			JOIN rooms r ON r.room_nid = m.room_nid WHERE m.user_id = $1 AND NOT m.forgotten ORDER BY m.stream_pos`, string(user))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			m := Membership{UserID: user}
			if err := rows.Scan(&m.RoomID, &m.Membership, &m.Sender, &m.StreamPos); err != nil {
				return err
			}
			out = append(out, m)
		}
		return rows.Err()
	})
	return out, err
}

// MembershipEventIDs returns the current member event of user in each of
// rooms that it has a membership of.
func (db *DB) MembershipEventIDs(ctx context.Context, user id.UserID, rooms []id.RoomID) (map[id.RoomID]id.EventID, error) {
	out := make(map[id.RoomID]id.EventID, len(rooms))
	err := db.read(ctx, "membership_event_ids", func(q querier) error {
		for chunk := range chunks(rooms, 500) {
			args := []any{string(user)}
			for _, r := range chunk {
				args = append(args, string(r))
			}
			rows, err := q.QueryContext(ctx, `SELECT r.room_id, e.event_id FROM memberships m JOIN rooms r ON r.room_nid = m.room_nid
				JOIN events e ON e.event_nid = m.event_nid WHERE m.user_id = $1 AND r.room_id IN (`+placeholders(2, len(chunk))+`)`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var r id.RoomID
				var e id.EventID
				if err := rows.Scan(&r, &e); err != nil {
					rows.Close()
					return err
				}
				out[r] = e
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// JoinedRoomIDs returns the rooms user is joined to.
func (db *DB) JoinedRoomIDs(ctx context.Context, user id.UserID) ([]id.RoomID, error) {
	var out []id.RoomID
	err := db.read(ctx, "joined_room_ids", func(q querier) error {
		var err error
		out, err = column[id.RoomID](q.QueryContext(ctx, `SELECT r.room_id FROM memberships m JOIN rooms r ON r.room_nid = m.room_nid
			WHERE m.user_id = $1 AND m.membership = 'join'`, string(user)))
		return err
	})
	return out, err
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/stateres"
)

// Event is a persisted event with what the server knows of it.
type Event struct {
	*event.PDU
	// StreamPos is the event's position in the server's stream; 0 for an
	// outlier.
	StreamPos int64
	// Added is what the server adds to unsigned (prev_content,
	// replaces_state, prev_sender) as a JSON object, or nil.
	Added []byte
	// Replaces is, for a state event, the event it replaced in the state
	// ("" if none).
	Replaces   id.EventID
	IsRejected bool
	SoftFailed bool
	// RedactedBy is the redaction that applied to the event, if any. The
	// PDU is then the redacted form.
	RedactedBy id.EventID
	// TxnDevice and TxnID are the sender's device and transaction ID for
	// events a local client sent with one.
	TxnDevice id.DeviceID
	TxnID     string
	// Handshake marks an event that reached the room's other servers
	// through a membership handshake (our join through send_join, which
	// the resident server passes on): the federation queue must not send
	// it again. Not stored.
	Handshake bool
}

// Rejected implements eventauth.Rejecter.
func (e *Event) Rejected() bool { return e.IsRejected }

// Txn is a client's transaction ID (client-server API, "Transaction
// identifiers"): scoped to the device that sent it.
type Txn struct {
	UserID   id.UserID
	DeviceID id.DeviceID
	TxnID    string
}

// NewEvent is an event to persist and what it changes.
type NewEvent struct {
	PDU   *event.PDU
	Added []byte
	// Outlier events get no stream position and no state.
	Outlier bool
	// Backfilled events (history fetched with /backfill) get a negative
	// stream position (NextBackfillPos), so that sync never reports them.
	Backfilled bool
	Rejected   bool
	SoftFailed bool
	// StateBase is the event whose state-after the event's state-after is
	// built on ("" for the empty state), and StateChanges what changes
	// relative to it ("" as a value removes a key). For a message event of
	// a linear room: the prev event and nothing.
	StateBase    id.EventID
	StateChanges stateres.StateMap
	// Replaces is, for a state event, the event it replaces in the state.
	Replaces id.EventID
	// Extremities, if not nil, become the room's forward extremities.
	Extremities []id.EventID
	// CurrentChanges change the room's current state ("" removes a key).
	// Memberships follow the member events among them.
	CurrentChanges stateres.StateMap
	// Txn, if set, records the client's transaction ID. If that
	// transaction ID already names an event, PersistEvent returns
	// ErrConflict and writes nothing.
	Txn *Txn
}

// PersistEvent writes an event and its consequences in the transaction and
// returns its stream position (0 for an outlier). It returns ErrConflict if
// the event is already stored (or its Txn is taken).
func (tx *Tx) PersistEvent(ctx context.Context, ne NewEvent) (int64, error) {
	p := ne.PDU
	roomNID, err := tx.roomNID(ctx, p.RoomID())
	if err != nil {
		return 0, fmt.Errorf("room of %s: %w", p.EventID(), err)
	}
	if ne.Txn != nil {
		_, err := tx.ExecContext(ctx, `INSERT INTO txn_ids (user_id, device_id, txn_id, event_id, created_ts) VALUES ($1, $2, $3, $4, $5)`,
			string(ne.Txn.UserID), string(ne.Txn.DeviceID), ne.Txn.TxnID, string(p.EventID()), nowMS())
		if isUniqueViolation(err) {
			return 0, ErrConflict
		}
		if err != nil {
			return 0, fmt.Errorf("insert txn id: %w", err)
		}
	}
	var pos sql.NullInt64
	var snap sql.NullInt64
	if !ne.Outlier {
		next := tx.NextStreamPos
		if ne.Backfilled {
			next = tx.NextBackfillPos
		}
		v, err := next(ctx)
		if err != nil {
			return 0, err
		}
		pos = sql.NullInt64{Int64: v, Valid: true}
	}
	// The snapshot names events by their rows: one that holds this event
	// is written after the event's row, others (a message's, which reuses
	// its predecessor's) before it, so that the row is written once. A
	// message of a linear room reuses its base's snapshot, read by the
	// INSERT itself ($18): one statement less per message.
	selfInState := false
	for _, v := range ne.StateChanges {
		selfInState = selfInState || v == p.EventID()
	}
	var baseSnap sql.NullString
	reuseBase := !ne.Outlier && len(ne.StateChanges) == 0 && ne.StateBase != ""
	if reuseBase {
		baseSnap = sql.NullString{String: string(ne.StateBase), Valid: true}
	} else if !ne.Outlier && !selfInState {
		if snap, err = tx.writeSnapshot(ctx, roomNID, ne.StateBase, ne.StateChanges); err != nil {
			return 0, fmt.Errorf("state after %s: %w", p.EventID(), err)
		}
	}
	relTo, relType, relKey := relation(p.Content())
	var nid int64
	err = tx.QueryRowContext(ctx, `INSERT INTO events (event_id, room_nid, type, state_key, sender, depth, origin_ts, stream_pos,
			json, unsigned, replaces, rejected, soft_failed, relates_to, rel_type, rel_key, state_snapshot)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
			COALESCE($17, (SELECT b.state_snapshot FROM events b WHERE b.event_id = $18)))
		ON CONFLICT (event_id) DO NOTHING RETURNING event_nid, state_snapshot`,
		string(p.EventID()), roomNID, p.Type(), p.StateKey(), string(p.Sender()), p.Depth(), p.OriginServerTS(), pos,
		p.JSON(), ne.Added, nullString(string(ne.Replaces)), ne.Rejected, ne.SoftFailed,
		nullString(relTo), nullString(relType), nullString(relKey), snap, baseSnap).Scan(&nid, &snap)
	// ON CONFLICT, not a caught unique violation: on PostgreSQL that would
	// abort the transaction, and callers go on after ErrConflict.
	if errors.Is(err, sql.ErrNoRows) || isUniqueViolation(err) {
		return 0, ErrConflict
	}
	if err != nil {
		return 0, fmt.Errorf("insert event %s: %w", p.EventID(), err)
	}
	if !ne.Outlier {
		if err := tx.noteUnindexed(ctx); err != nil {
			return 0, err
		}
	}
	if reuseBase && !snap.Valid {
		// The caller rolls back: the row written above goes with it.
		return 0, fmt.Errorf("state after %s: base %s is unknown or an outlier", p.EventID(), ne.StateBase)
	}
	if !ne.Outlier && selfInState {
		if snap, err = tx.writeSnapshot(ctx, roomNID, ne.StateBase, ne.StateChanges); err != nil {
			return 0, fmt.Errorf("state after %s: %w", p.EventID(), err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE events SET state_snapshot = $2 WHERE event_nid = $1`, nid, snap); err != nil {
			return 0, err
		}
	}
	if !ne.Outlier {
		// max_depth and bump_pos in one statement (0 never bumps).
		var bump int64
		if !ne.Backfilled && !ne.Rejected && !ne.SoftFailed && slices.Contains(SlidingBumpTypes, p.Type()) {
			bump = pos.Int64
		}
		if _, err := tx.ExecContext(ctx, `UPDATE rooms SET max_depth = CASE WHEN max_depth < $2 THEN $2 ELSE max_depth END,
				bump_pos = CASE WHEN bump_pos < $3 THEN $3 ELSE bump_pos END
			WHERE room_nid = $1 AND (max_depth < $2 OR bump_pos < $3)`, roomNID, p.Depth(), bump); err != nil {
			return 0, err
		}
	}
	if ne.Extremities != nil {
		if err := tx.setExtremities(ctx, roomNID, ne.Extremities, p.EventID(), nid); err != nil {
			return 0, err
		}
	}
	if err := tx.applyCurrent(ctx, roomNID, ne.CurrentChanges, pos.Int64); err != nil {
		return 0, err
	}
	return pos.Int64, nil
}

// setExtremities makes xs the room's forward extremities. self and
// selfNID name the event being persisted, whose row number is known. The
// common case, a linear room whose one extremity gives way to the new
// event, is one UPDATE of that one row (fewer statements and dirty pages
// than emptying the room's rows and inserting again).
func (tx *Tx) setExtremities(ctx context.Context, roomNID int64, xs []id.EventID, self id.EventID, selfNID int64) error {
	if len(xs) == 1 && xs[0] == self {
		res, err := tx.ExecContext(ctx, `UPDATE room_extremities SET event_nid = $2
			WHERE room_nid = $1 AND (SELECT COUNT(*) FROM room_extremities c WHERE c.room_nid = $1) = 1`, roomNID, selfNID)
		if err != nil {
			return fmt.Errorf("extremity %s: %w", self, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			return nil
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM room_extremities WHERE room_nid = $1`, roomNID); err != nil {
		return err
	}
	for _, x := range xs {
		var err error
		if x == self {
			_, err = tx.ExecContext(ctx, `INSERT INTO room_extremities (room_nid, event_nid) VALUES ($1, $2)`, roomNID, selfNID)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO room_extremities (room_nid, event_nid)
				SELECT $1, event_nid FROM events WHERE event_id = $2`, roomNID, string(x))
		}
		if err != nil {
			return fmt.Errorf("extremity %s: %w", x, err)
		}
	}
	return nil
}

// applyCurrent changes the room's current state and its memberships.
func (tx *Tx) applyCurrent(ctx context.Context, roomNID int64, changes stateres.StateMap, pos int64) error {
	if len(changes) >= bulkMin {
		return tx.applyCurrentBulk(ctx, roomNID, changes, pos)
	}
	for k, eid := range changes {
		if eid == "" {
			if _, err := tx.ExecContext(ctx, `DELETE FROM current_state WHERE room_nid = $1 AND type = $2 AND state_key = $3`,
				roomNID, k.Type, k.StateKey); err != nil {
				return fmt.Errorf("current state: %w", err)
			}
			if k.Type == event.TypeMember {
				if _, err := tx.ExecContext(ctx, `DELETE FROM memberships WHERE room_nid = $1 AND user_id = $2`, roomNID, k.StateKey); err != nil {
					return fmt.Errorf("membership: %w", err)
				}
			}
			continue
		}
		var nid int64
		var content []byte
		var sender string
		if err := tx.QueryRowContext(ctx, `SELECT event_nid, json, sender FROM events WHERE event_id = $1`, string(eid)).Scan(&nid, &content, &sender); err != nil {
			return fmt.Errorf("current state event %s: %w", eid, notFound(err))
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO current_state (room_nid, type, state_key, event_nid) VALUES ($1, $2, $3, $4)
			ON CONFLICT (room_nid, type, state_key) DO UPDATE SET event_nid = excluded.event_nid`,
			roomNID, k.Type, k.StateKey, nid); err != nil {
			return fmt.Errorf("current state: %w", err)
		}
		if k.Type != event.TypeMember {
			continue
		}
		c, _ := cjson.Get(content, "content")
		m, _ := getString(c, "membership")
		if _, err := tx.ExecContext(ctx, `INSERT INTO memberships (room_nid, user_id, membership, event_nid, stream_pos, sender, forgotten, joined_pos)
			VALUES ($1, $2, $3, $4, $5, $6, FALSE, $7)
			ON CONFLICT (room_nid, user_id) DO UPDATE SET membership = excluded.membership, event_nid = excluded.event_nid,
				stream_pos = excluded.stream_pos, sender = excluded.sender,
				forgotten = CASE WHEN excluded.membership IN ('join', 'invite', 'knock') THEN FALSE ELSE memberships.forgotten END,
				`+joinedPosUpdate,
			roomNID, k.StateKey, m, nid, pos, sender, joinedPos(m, pos)); err != nil {
			return fmt.Errorf("membership: %w", err)
		}
	}
	return nil
}

// joinedPos is the joined_pos of a new membership row (migration 0019):
// the position for a join, NULL for anything else.
func joinedPos(membership string, pos int64) sql.NullInt64 {
	return sql.NullInt64{Int64: pos, Valid: membership == "join"}
}

// joinedPosUpdate keeps joined_pos over a join that follows a join (a
// profile change) and takes the new row's otherwise.
const joinedPosUpdate = `joined_pos = CASE WHEN excluded.membership = 'join' AND memberships.membership = 'join' AND memberships.joined_pos IS NOT NULL
	THEN memberships.joined_pos ELSE excluded.joined_pos END`

// getString reads a string member of a JSON object.
func getString(obj []byte, key string) (string, bool) {
	v, ok := cjson.Get(obj, key)
	if !ok {
		return "", false
	}
	s, err := cjson.Unquote(v)
	return s, err == nil
}

// relation reads content["m.relates_to"]: the event it relates to, the
// relation type and, for annotations, the key.
func relation(content []byte) (to, relType, key string) {
	rel, ok := cjson.Get(content, "m.relates_to")
	if !ok || len(rel) == 0 || rel[0] != '{' {
		return "", "", ""
	}
	relType, _ = getString(rel, "rel_type")
	if relType == "" {
		return "", "", ""
	}
	to, _ = getString(rel, "event_id")
	if to == "" {
		return "", "", ""
	}
	key, _ = getString(rel, "key")
	return to, relType, key
}

// RedactEvent replaces a stored event with its redacted form and records
// the redaction that applied. Its relation is dropped.
func (tx *Tx) RedactEvent(ctx context.Context, target id.EventID, redacted []byte, by id.EventID) error {
	_, err := tx.ExecContext(ctx, `UPDATE events SET json = $2, redacted_by = $3, relates_to = NULL, rel_type = NULL, rel_key = NULL
		WHERE event_id = $1`, string(target), redacted, string(by))
	return err
}

// TxnEvent returns the event a client transaction ID names, or ErrNotFound.
func (db *DB) TxnEvent(ctx context.Context, t Txn) (id.EventID, error) {
	var eid id.EventID
	err := db.read(ctx, "txn_event", func(q querier) error {
		return notFound(q.QueryRowContext(ctx, `SELECT event_id FROM txn_ids WHERE user_id = $1 AND device_id = $2 AND txn_id = $3`,
			string(t.UserID), string(t.DeviceID), t.TxnID).Scan(&eid))
	})
	return eid, err
}

// eventCols are the columns scanEvent reads; the query must join rooms r
// and LEFT JOIN txn_ids t.
const eventCols = `e.event_id, r.version, e.json, e.unsigned, e.stream_pos, e.replaces, e.rejected, e.soft_failed, e.redacted_by, t.device_id, t.txn_id`

const eventFrom = ` FROM events e JOIN rooms r ON r.room_nid = e.room_nid LEFT JOIN txn_ids t ON t.event_id = e.event_id `

func scanEvents(rows *sql.Rows) ([]*Event, error) {
	defer rows.Close()
	var out []*Event
	for rows.Next() {
		var r storedRow
		if err := rows.Scan(r.dest()...); err != nil {
			return nil, err
		}
		p, err := event.ParseStored(id.RoomVersion(r.version), r.raw)
		if err != nil {
			return nil, fmt.Errorf("stored event %s: %w", r.eid, err)
		}
		out = append(out, r.event(p))
	}
	return out, rows.Err()
}

// storedRow is a row of eventCols as scanned; extra columns after them go
// to dest's arguments.
type storedRow struct {
	eid, version              string
	raw, added                []byte
	pos                       sql.NullInt64
	replaces, redBy, dev, txn sql.NullString
	rejected, softFailed      bool
}

func (r *storedRow) dest(extra ...any) []any {
	return append([]any{&r.eid, &r.version, &r.raw, &r.added, &r.pos, &r.replaces, &r.rejected, &r.softFailed, &r.redBy, &r.dev, &r.txn}, extra...)
}

// event is the row's event, with p its parsed PDU.
func (r *storedRow) event(p *event.PDU) *Event {
	return &Event{PDU: p, Added: r.added, StreamPos: r.pos.Int64, Replaces: id.EventID(r.replaces.String),
		IsRejected: r.rejected, SoftFailed: r.softFailed, RedactedBy: id.EventID(r.redBy.String),
		TxnDevice: id.DeviceID(r.dev.String), TxnID: r.txn.String}
}

// Event returns one stored event, or ErrNotFound.
func (db *DB) Event(ctx context.Context, eventID id.EventID) (*Event, error) {
	evs, err := db.Events(ctx, []id.EventID{eventID})
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, ErrNotFound
	}
	return evs[0], nil
}

// Events returns the stored events among ids, in no particular order;
// unknown IDs are left out.
func (db *DB) Events(ctx context.Context, ids []id.EventID) ([]*Event, error) {
	var out []*Event
	err := db.read(ctx, "events", func(q querier) error {
		for chunk := range chunks(ids, 200) {
			args := make([]any, len(chunk))
			for i, e := range chunk {
				args[i] = string(e)
			}
			rows, err := q.QueryContext(ctx, `SELECT `+eventCols+eventFrom+`WHERE e.event_id IN (`+placeholders(1, len(chunk))+`)`, args...)
			if err != nil {
				return err
			}
			evs, err := scanEvents(rows)
			if err != nil {
				return err
			}
			out = append(out, evs...)
		}
		return nil
	})
	return out, err
}

// RoomEventsByStream returns a room's timeline events (not outliers,
// rejected or soft-failed) with stream positions in (from, to], the newest
// limit of them, in stream order.
func (db *DB) RoomEventsByStream(ctx context.Context, roomID id.RoomID, from, to int64, limit int) ([]*Event, error) {
	var out []*Event
	err := db.read(ctx, "room_events_stream", func(q querier) error {
		nid, err := roomNID(ctx, q, roomID)
		if err != nil {
			return err
		}
		rows, err := q.QueryContext(ctx, `SELECT `+eventCols+eventFrom+`WHERE e.room_nid = $1 AND e.stream_pos > $2 AND e.stream_pos <= $3
			AND NOT e.rejected AND NOT e.soft_failed ORDER BY e.stream_pos DESC LIMIT $4`, nid, from, to, limit)
		if err != nil {
			return err
		}
		out, err = scanEvents(rows)
		return err
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// TopoPos is a position in a room's topological order: depth, then stream
// position.
type TopoPos struct {
	Depth, Stream int64
}

// RoomEventsByTopo returns up to limit timeline events of a room in
// topological order strictly after from (forwards) or strictly before it
// (backwards, newest first), for /messages. Events past stream position
// maxStream are left out (0: no bound).
func (db *DB) RoomEventsByTopo(ctx context.Context, roomID id.RoomID, from TopoPos, backwards bool, maxStream int64, limit int) ([]*Event, error) {
	var out []*Event
	err := db.read(ctx, "room_events_topo", func(q querier) error {
		nid, err := roomNID(ctx, q, roomID)
		if err != nil {
			return err
		}
		cmp, order := ">", "ASC"
		if backwards {
			cmp, order = "<", "DESC"
		}
		if maxStream <= 0 {
			maxStream = 1 << 62
		}
		rows, err := q.QueryContext(ctx, `SELECT `+eventCols+eventFrom+`WHERE e.room_nid = $1 AND e.stream_pos IS NOT NULL
			AND (e.depth, e.stream_pos) `+cmp+` ($2, $3) AND e.stream_pos <= $4
			AND NOT e.rejected AND NOT e.soft_failed ORDER BY e.depth `+order+`, e.stream_pos `+order+` LIMIT $5`,
			nid, from.Depth, from.Stream, maxStream, limit)
		if err != nil {
			return err
		}
		out, err = scanEvents(rows)
		return err
	})
	return out, err
}

// RoomEventsByTime returns the timeline event of a room closest to ts in
// the given direction: the first at or after ts (forwards) or the last at
// or before it. ErrNotFound if none.
func (db *DB) RoomEventByTime(ctx context.Context, roomID id.RoomID, ts int64, backwards bool) (*Event, error) {
	var out []*Event
	err := db.read(ctx, "room_event_by_time", func(q querier) error {
		nid, err := roomNID(ctx, q, roomID)
		if err != nil {
			return err
		}
		cond, order := "e.origin_ts >= $2", "ASC"
		if backwards {
			cond, order = "e.origin_ts <= $2", "DESC"
		}
		rows, err := q.QueryContext(ctx, `SELECT `+eventCols+eventFrom+`WHERE e.room_nid = $1 AND e.stream_pos IS NOT NULL AND `+cond+`
			AND NOT e.rejected AND NOT e.soft_failed ORDER BY e.origin_ts `+order+`, e.stream_pos `+order+` LIMIT 1`, nid, ts)
		if err != nil {
			return err
		}
		out, err = scanEvents(rows)
		return err
	})
	if err == nil && len(out) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// Relation is a filter on the events that relate to one event.
type Relation struct {
	To      id.EventID
	RelType string // "" for any
	Type    string // event type, "" for any
}

// RelatedEvents returns the timeline events that relate to r.To, newest
// first by stream position, those before stream position before (0: no
// bound), at most limit.
func (db *DB) RelatedEvents(ctx context.Context, r Relation, before int64, forwards bool, limit int) ([]*Event, error) {
	var out []*Event
	err := db.read(ctx, "related_events", func(q querier) error {
		where := []string{"e.relates_to = $1", "NOT e.rejected", "NOT e.soft_failed", "e.stream_pos IS NOT NULL"}
		args := []any{string(r.To)}
		if r.RelType != "" {
			args = append(args, r.RelType)
			where = append(where, fmt.Sprintf("e.rel_type = $%d", len(args)))
		}
		if r.Type != "" {
			args = append(args, r.Type)
			where = append(where, fmt.Sprintf("e.type = $%d", len(args)))
		}
		order := "DESC"
		if forwards {
			order = "ASC"
		}
		if before > 0 {
			args = append(args, before)
			if forwards {
				where = append(where, fmt.Sprintf("e.stream_pos > $%d", len(args)))
			} else {
				where = append(where, fmt.Sprintf("e.stream_pos < $%d", len(args)))
			}
		}
		args = append(args, limit)
		rows, err := q.QueryContext(ctx, `SELECT `+eventCols+eventFrom+`WHERE `+strings.Join(where, " AND ")+
			` ORDER BY e.stream_pos `+order+fmt.Sprintf(" LIMIT $%d", len(args)), args...)
		if err != nil {
			return err
		}
		out, err = scanEvents(rows)
		return err
	})
	return out, err
}

// CurrentStateEvents returns the events of a room's current state, or
// only those of the given types.
func (db *DB) CurrentStateEvents(ctx context.Context, roomID id.RoomID, types ...string) ([]*Event, error) {
	var out []*Event
	err := db.read(ctx, "current_state_events", func(q querier) error {
		nid, err := roomNID(ctx, q, roomID)
		if err != nil {
			return err
		}
		query := `SELECT ` + eventCols + eventFrom + `JOIN current_state c ON c.event_nid = e.event_nid WHERE c.room_nid = $1`
		args := []any{nid}
		if len(types) > 0 {
			query += ` AND c.type IN (` + placeholders(2, len(types)) + `)`
			for _, t := range types {
				args = append(args, t)
			}
		}
		rows, err := q.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		out, err = scanEvents(rows)
		return err
	})
	return out, err
}

// CurrentStateEvent returns one event of a room's current state, or
// ErrNotFound.
func (db *DB) CurrentStateEvent(ctx context.Context, roomID id.RoomID, typ, stateKey string) (*Event, error) {
	var out []*Event
	err := db.read(ctx, "current_state_event", func(q querier) error {
		nid, err := roomNID(ctx, q, roomID)
		if err != nil {
			return err
		}
		rows, err := q.QueryContext(ctx, `SELECT `+eventCols+eventFrom+`JOIN current_state c ON c.event_nid = e.event_nid
			WHERE c.room_nid = $1 AND c.type = $2 AND c.state_key = $3`, nid, typ, stateKey)
		if err != nil {
			return err
		}
		out, err = scanEvents(rows)
		return err
	})
	if err == nil && len(out) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// CurrentState returns a room's current state as a map.
func (db *DB) CurrentState(ctx context.Context, roomID id.RoomID) (stateres.StateMap, error) {
	var out stateres.StateMap
	err := db.read(ctx, "current_state", func(q querier) error {
		var err error
		out, err = currentState(ctx, q, roomID)
		return err
	})
	return out, err
}

// CurrentState is DB.CurrentState in the transaction.
func (tx *Tx) CurrentState(ctx context.Context, roomID id.RoomID) (stateres.StateMap, error) {
	return currentState(ctx, tx, roomID)
}

func currentState(ctx context.Context, q querier, roomID id.RoomID) (stateres.StateMap, error) {
	out := stateres.StateMap{}
	err := func() error {
		rows, err := q.QueryContext(ctx, `SELECT c.type, c.state_key, e.event_id FROM current_state c
			JOIN rooms r ON r.room_nid = c.room_nid JOIN events e ON e.event_nid = c.event_nid WHERE r.room_id = $1`, string(roomID))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k stateres.StateKey
			var eid id.EventID
			if err := rows.Scan(&k.Type, &k.StateKey, &eid); err != nil {
				return err
			}
			out[k] = eid
		}
		return rows.Err()
	}()
	return out, err
}

func chunks[T any](s []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}

// placeholders returns "$from, $from+1, …" for n parameters.
func placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", from+i)
	}
	return b.String()
}

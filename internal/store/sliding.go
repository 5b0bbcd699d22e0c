package store

// Simplified sliding sync (MSC4186): the room list of a user sorted by
// bump stamp, the filters' inputs (room types, encryption, space
// children) for many rooms at once, and the per-connection state that
// makes pos tokens survive a restart (migration 0018_sliding_sync.sql).
//
// A connection is (user, device, conn_id). Each response gets a new
// position of its connection; the pos token handed to the client is made
// and parsed here ("<conn>_<pos>"), and a token is only found for the user
// and device it was issued to (MSC4186 "Servers MUST reject a pos that was
// not issued to the requesting user and device").

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"
)

// SlidingBumpTypes are the event types that bump a room (MSC4186
// "bump_stamp": "Proper activity").
var SlidingBumpTypes = []string{
	"m.room.create", "m.room.message", "m.room.encrypted", "m.sticker",
	"m.call.invite", "m.poll.start", "m.beacon_info",
}

// SlidingConnExpiry is how long a connection unused is kept: a pos of a
// connection idle for longer is unknown (M_UNKNOWN_POS).
const SlidingConnExpiry = 7 * 24 * time.Hour

// slidingConnsPerDevice bounds the connections kept per device (MSC4186
// "Security considerations"); the least recently used go first.
const slidingConnsPerDevice = 20

// SlidingRoomEntry is a room of a user's sliding sync room list.
type SlidingRoomEntry struct {
	RoomID     id.RoomID
	Membership string
	Sender     id.UserID // of the member event
	MemberPos  int64     // stream position of the member event
	// Bump is the stream position of the room's newest accepted event of
	// a bump type when the user is joined (rooms.bump_pos), else
	// MemberPos (also when a joined room has no bump event in its
	// timeline: one joined over federation whose create event is an
	// outlier).
	Bump int64
}

// SlidingListQuery is one list of a sliding sync request: the user's
// rooms of the server's list (MSC4186 "Lists") that pass the filters, most
// recent first, and the part of them to return.
type SlidingListQuery struct {
	User id.UserID
	// After is the pos token the request came with ("" for a new
	// connection): rooms the user left itself (or invites it rejected) are
	// listed only when the connection sent them up to that position.
	After string
	// Ignored are the users whose invites are not listed.
	Ignored []id.UserID
	// IsInvite, IsEncrypted: nil for either.
	IsInvite, IsEncrypted *bool
	// RoomTypes, when HasRoomTypes, keeps the rooms of these types; a nil
	// element stands for rooms without a type. NotRoomTypes leaves out
	// rooms of these types.
	RoomTypes    []*string
	HasRoomTypes bool
	NotRoomTypes []*string
	// In keeps the rooms that are in every set; NotIn leaves out the
	// rooms in any of its sets (m.direct's rooms, a space's children, the
	// rooms with a tag: sets the caller reads from account data or from
	// a few rooms' state).
	In, NotIn [][]id.RoomID
	// Offset and Limit give the part of the list to return; Limit < 0
	// returns all of it (and Offset is not read).
	Offset, Limit int
}

const slidingEntryCols = `r.room_id, m.membership, m.sender, m.stream_pos,
	CASE WHEN m.membership = 'join' AND r.bump_pos > 0 THEN r.bump_pos ELSE m.stream_pos END AS bump`

// SlidingList returns the rooms of a list in the order of the list (bump
// position descending, then room ID) from q.Offset, at most q.Limit of
// them, and the number of rooms in the whole list, in two statements
// whatever the number of the user's rooms: the filters are conditions on
// the user's membership rows, rooms.bump_pos (migration 0020) and
// room_stats (room type and encryption, kept by triggers: migration
// 0004); the rooms of the range come out of a sort bounded by the LIMIT,
// and the count reads the covering index memberships_user_list
// (migration 0025) alone unless a filter needs room_stats. No room
// outside the range leaves the database. (A COUNT(*) OVER () window in
// the first statement costs more on SQLite: it writes every row to a
// temporary b-tree.)
func (db *DB) SlidingList(ctx context.Context, q SlidingListQuery) ([]SlidingRoomEntry, int, error) {
	args := []any{string(q.User)}
	var where []string
	stats := false
	if len(q.Ignored) > 0 {
		where = append(where, `NOT (m.membership = 'invite' AND m.sender IN (`+db.dialect.jsonValues(len(args)+1)+`))`)
		args = append(args, jsonStrings(q.Ignored))
	}
	selfLeft := `(m.membership <> 'leave' OR m.sender <> $1`
	if conn, pos, ok := parseSlidingToken(q.After); ok {
		selfLeft += ` OR EXISTS (SELECT 1 FROM sliding_rooms sr WHERE sr.conn_nid = ` + param(&args, conn) +
			` AND sr.room_id = (SELECT room_id FROM rooms WHERE room_nid = m.room_nid) AND sr.pos <= ` + param(&args, pos) + `)`
	}
	where = append(where, selfLeft+`)`)
	if q.IsInvite != nil {
		where = append(where, map[bool]string{true: `m.membership = 'invite'`, false: `m.membership <> 'invite'`}[*q.IsInvite])
	}
	if q.IsEncrypted != nil {
		stats = true
		where = append(where, map[bool]string{true: `COALESCE(s.encrypted, FALSE)`, false: `NOT COALESCE(s.encrypted, FALSE)`}[*q.IsEncrypted])
	}
	if q.HasRoomTypes {
		stats = true
		where = append(where, db.roomTypeCond(&args, q.RoomTypes))
	}
	if len(q.NotRoomTypes) > 0 {
		stats = true
		where = append(where, `NOT `+db.roomTypeCond(&args, q.NotRoomTypes))
	}
	for _, set := range q.In {
		where = append(where, `m.room_nid IN (SELECT room_nid FROM rooms WHERE room_id IN (`+db.dialect.jsonValues(len(args)+1)+`))`)
		args = append(args, jsonStrings(set))
	}
	for _, set := range q.NotIn {
		where = append(where, `m.room_nid NOT IN (SELECT room_nid FROM rooms WHERE room_id IN (`+db.dialect.jsonValues(len(args)+1)+`))`)
		args = append(args, jsonStrings(set))
	}
	stat := ``
	if stats {
		stat = ` LEFT JOIN room_stats s ON s.room_nid = m.room_nid`
	}
	cond := ` WHERE m.user_id = $1 AND NOT m.forgotten AND ` + strings.Join(where, ` AND `)
	countQuery := `SELECT COUNT(*) FROM memberships m` + stat + cond
	countArgs := len(args)
	query := `SELECT ` + slidingEntryCols + ` FROM memberships m JOIN rooms r ON r.room_nid = m.room_nid` + stat + cond +
		` ORDER BY bump DESC, r.room_id`
	if q.Limit >= 0 {
		query += ` LIMIT ` + param(&args, q.Limit) + ` OFFSET ` + param(&args, q.Offset)
	}
	var out []SlidingRoomEntry
	count := 0
	err := db.read(ctx, "sliding_list", func(qr querier) error {
		rows, err := qr.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e SlidingRoomEntry
			if err := rows.Scan(&e.RoomID, &e.Membership, &e.Sender, &e.MemberPos, &e.Bump); err != nil {
				return err
			}
			out = append(out, e)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if q.Limit < 0 {
			count = len(out)
			return nil
		}
		return qr.QueryRowContext(ctx, countQuery, args[:countArgs]...).Scan(&count)
	})
	return out, count, err
}

// roomTypeCond is a condition (never NULL) that a room's type (room_stats
// s, joined) is one of types, a nil element standing for no type.
func (db *DB) roomTypeCond(args *[]any, types []*string) string {
	var named []string
	null := false
	for _, t := range types {
		if t == nil {
			null = true
		} else {
			named = append(named, *t)
		}
	}
	conds := []string{`FALSE`}
	if len(named) > 0 {
		*args = append(*args, jsonStrings(named))
		conds = append(conds, `(s.room_type IS NOT NULL AND s.room_type IN (`+db.dialect.jsonValues(len(*args))+`))`)
	}
	if null {
		conds = append(conds, `s.room_type IS NULL`)
	}
	return `(` + strings.Join(conds, ` OR `) + `)`
}

// jsonStrings is a JSON array of the strings of ss (for jsonValues).
func jsonStrings[S ~string](ss []S) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// SlidingRoomEntries returns the user's (not forgotten) memberships of
// the given rooms, as list entries, in one statement: the rooms of room
// subscriptions and the spaces of a spaces filter. Rooms the user has no
// membership of are left out.
func (db *DB) SlidingRoomEntries(ctx context.Context, user id.UserID, rooms []id.RoomID) ([]SlidingRoomEntry, error) {
	var out []SlidingRoomEntry
	if len(rooms) == 0 {
		return out, nil
	}
	err := db.read(ctx, "sliding_room_entries", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT `+slidingEntryCols+` FROM memberships m JOIN rooms r ON r.room_nid = m.room_nid
			WHERE m.user_id = $1 AND NOT m.forgotten AND r.room_id IN (`+db.dialect.jsonValues(2)+`)`, string(user), jsonStrings(rooms))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e SlidingRoomEntry
			if err := rows.Scan(&e.RoomID, &e.Membership, &e.Sender, &e.MemberPos, &e.Bump); err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, err
}

// SlidingAccountData returns the user's account data up to stream
// position to: the global entries when global is set, and the entries of
// the given rooms; typ, when not empty, keeps that type only (of rooms
// too, then all of the user's rooms when rooms is nil: the m.tag entries
// for a tags filter). In stream order, in one statement.
func (db *DB) SlidingAccountData(ctx context.Context, user id.UserID, global bool, rooms []id.RoomID, typ string, to int64) ([]AccountData, error) {
	args := []any{string(user), to}
	var which []string
	if global {
		which = append(which, `room_id = ''`)
	}
	switch {
	case rooms != nil:
		if len(rooms) > 0 {
			which = append(which, `room_id IN (`+db.dialect.jsonValues(3)+`)`)
			args = append(args, jsonStrings(rooms))
		}
	case typ != "":
		which = append(which, `room_id <> ''`)
	}
	var out []AccountData
	if len(which) == 0 {
		return out, nil
	}
	query := `SELECT room_id, type, content, stream_pos FROM account_data WHERE user_id = $1 AND stream_pos <= $2 AND (` +
		strings.Join(which, ` OR `) + `)`
	if typ != "" {
		query += ` AND type = ` + param(&args, typ)
	}
	err := db.read(ctx, "sliding_account_data", func(q querier) error {
		rows, err := q.QueryContext(ctx, query+` ORDER BY stream_pos`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var a AccountData
			if err := rows.Scan(&a.RoomID, &a.Type, &a.Content, &a.StreamPos); err != nil {
				return err
			}
			out = append(out, a)
		}
		return rows.Err()
	})
	return out, err
}

// CurrentStateOfTypes returns, for each room, the events of its current
// state of the given types (all of them for the rooms given), in one
// statement: the m.space.child events of a spaces filter's spaces.
func (db *DB) CurrentStateOfTypes(ctx context.Context, rooms []id.RoomID, types []string) (map[id.RoomID][]*Event, error) {
	out := make(map[id.RoomID][]*Event, len(rooms))
	if len(rooms) == 0 || len(types) == 0 {
		return out, nil
	}
	err := db.read(ctx, "current_state_of_types", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT `+eventCols+eventFrom+`JOIN current_state c ON c.event_nid = e.event_nid
			WHERE c.type IN (`+db.dialect.jsonValues(1)+`) AND c.room_nid IN (SELECT room_nid FROM rooms WHERE room_id IN (`+
			db.dialect.jsonValues(2)+`))`, jsonStrings(types), jsonStrings(rooms))
		if err != nil {
			return err
		}
		evs, err := scanEvents(rows)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			out[ev.RoomID()] = append(out[ev.RoomID()], ev)
		}
		return nil
	})
	return out, err
}

// SlidingSent is what a connection sent of a room.
type SlidingSent struct {
	RoomID id.RoomID
	// SentTo is the stream position up to which the room was sent.
	SentTo        int64
	TimelineLimit int
	// RequiredState is a canonical key of the required_state config it
	// was sent with.
	RequiredState string
}

// SlidingPosition is what a pos token stands for.
type SlidingPosition struct {
	Token          string
	Stream, Typing int64
	// Subscriptions are the room subscriptions in force (JSON object).
	Subscriptions json.RawMessage
}

// parseSlidingToken splits a pos token into its connection and position.
func parseSlidingToken(tok string) (conn, pos int64, ok bool) {
	a, b, found := strings.Cut(tok, "_")
	if !found {
		return 0, 0, false
	}
	c, err1 := strconv.ParseInt(a, 10, 64)
	p, err2 := strconv.ParseInt(b, 10, 64)
	return c, p, err1 == nil && err2 == nil && c > 0 && p > 0
}

// SlidingPos returns what token stands for on the connection (user,
// device, connID). What the connection sent of each room is read apart,
// for the rooms a response may send (SlidingSentRooms): the connection's
// state read per request does not grow with the rooms it ever sent.
// Errors: ErrNotFound for a token that is malformed, of another user,
// device or connection, of a position no longer kept (an older
// response's, or one never acknowledged and dropped by a retry) or of an
// expired connection.
func (db *DB) SlidingPos(ctx context.Context, user id.UserID, device id.DeviceID, connID, token string) (*SlidingPosition, error) {
	conn, pos, ok := parseSlidingToken(token)
	if !ok {
		return nil, ErrNotFound
	}
	p := &SlidingPosition{Token: token}
	err := db.read(ctx, "sliding_pos", func(q querier) error {
		var used int64
		err := q.QueryRowContext(ctx, `SELECT c.used_ts, p.stream_pos, p.typing_pos, p.subscriptions
			FROM sliding_conns c JOIN sliding_positions p ON p.conn_nid = c.conn_nid
			WHERE c.conn_nid = $1 AND c.user_id = $2 AND c.device_id = $3 AND c.conn_id = $4 AND p.pos = $5`,
			conn, string(user), string(device), connID, pos).Scan(&used, &p.Stream, &p.Typing, &p.Subscriptions)
		if err != nil {
			return notFound(err)
		}
		if nowMS()-used > SlidingConnExpiry.Milliseconds() {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// SlidingSentRooms returns what the connection of token (a token that
// SlidingPos found) sent of the given rooms up to token's position: one
// primary key seek per room. Rooms it never sent are left out.
func (db *DB) SlidingSentRooms(ctx context.Context, token string, rooms []id.RoomID) (map[id.RoomID]SlidingSent, error) {
	out := make(map[id.RoomID]SlidingSent, len(rooms))
	conn, pos, ok := parseSlidingToken(token)
	if !ok || len(rooms) == 0 {
		return out, nil
	}
	err := db.read(ctx, "sliding_sent_rooms", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT room_id, pos, sent_to, timeline_limit, required_state FROM sliding_rooms
			WHERE conn_nid = $1 AND pos <= $2 AND room_id IN (`+db.dialect.jsonValues(3)+`) ORDER BY pos`, conn, pos, jsonStrings(rooms))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s SlidingSent
			var at int64
			if err := rows.Scan(&s.RoomID, &at, &s.SentTo, &s.TimelineLimit, &s.RequiredState); err != nil {
				return err
			}
			out[s.RoomID] = s // in pos order: the newest row wins
		}
		return rows.Err()
	})
	return out, err
}

// SlidingSave records a response on the connection (user, device,
// connID): the position it was read up to, the subscriptions in force
// and the rooms it sent, and returns its pos token. after is the token
// the request came with ("" for a new connection, which replaces any
// connection of the same conn_id): the client acknowledged it, so the
// positions before it and the responses after it that the client did not
// take are forgotten. Errors: ErrNotFound when after is no longer known.
func (db *DB) SlidingSave(ctx context.Context, user id.UserID, device id.DeviceID, connID, after string, stream, typing int64, subs json.RawMessage, sent []SlidingSent) (string, error) {
	if subs == nil {
		subs = json.RawMessage("{}")
	}
	var token string
	err := db.WithTx(ctx, "sliding_save", func(tx *Tx) error {
		now := nowMS()
		var conn, base int64
		if after == "" {
			if _, err := tx.ExecContext(ctx, `DELETE FROM sliding_conns WHERE user_id = $1 AND device_id = $2 AND conn_id = $3`,
				string(user), string(device), connID); err != nil {
				return err
			}
			if err := tx.QueryRowContext(ctx, `INSERT INTO sliding_conns (user_id, device_id, conn_id, created_ts, used_ts, next_pos)
				VALUES ($1, $2, $3, $4, $4, 1) RETURNING conn_nid`, string(user), string(device), connID, now).Scan(&conn); err != nil {
				return err
			}
			// Bound the connections of the device.
			if _, err := tx.ExecContext(ctx, `DELETE FROM sliding_conns WHERE user_id = $1 AND device_id = $2 AND conn_nid NOT IN
				(SELECT conn_nid FROM sliding_conns WHERE user_id = $1 AND device_id = $2 ORDER BY used_ts DESC, conn_nid DESC LIMIT $3)`,
				string(user), string(device), slidingConnsPerDevice); err != nil {
				return err
			}
		} else {
			var ok bool
			if conn, base, ok = parseSlidingToken(after); !ok {
				return ErrNotFound
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM sliding_conns c JOIN sliding_positions p ON p.conn_nid = c.conn_nid
				WHERE c.conn_nid = $1 AND c.user_id = $2 AND c.device_id = $3 AND c.conn_id = $4 AND p.pos = $5`,
				conn, string(user), string(device), connID, base).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return ErrNotFound
			}
			// The client took base: older positions are not needed, nor
			// rows superseded at or before it; later ones it never took.
			// Only the rooms sent at base can have superseded rows: the
			// rows before base were cleaned when base's own base was
			// taken, and those after a base are dropped when it is taken
			// again. With the index sliding_rooms_pos (migration 0025)
			// these read the rows of base and after, not every room the
			// connection ever sent.
			for _, q := range []string{
				`DELETE FROM sliding_positions WHERE conn_nid = $1 AND pos <> $2`,
				`DELETE FROM sliding_rooms WHERE conn_nid = $1 AND pos > $2`,
				`DELETE FROM sliding_rooms WHERE conn_nid = $1 AND pos < $2 AND room_id IN (SELECT n.room_id FROM sliding_rooms n
					WHERE n.conn_nid = $1 AND n.pos = $2)`,
			} {
				if _, err := tx.ExecContext(ctx, q, conn, base); err != nil {
					return err
				}
			}
		}
		var pos int64
		if err := tx.QueryRowContext(ctx, `UPDATE sliding_conns SET next_pos = next_pos + 1, used_ts = $2 WHERE conn_nid = $1 RETURNING next_pos - 1`,
			conn, now).Scan(&pos); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sliding_positions (conn_nid, pos, stream_pos, typing_pos, subscriptions) VALUES ($1, $2, $3, $4, $5)`,
			conn, pos, stream, typing, []byte(subs)); err != nil {
			return err
		}
		for chunk := range chunks(sent, 100) {
			args := []any{conn, pos}
			var vals []string
			for _, s := range chunk {
				vals = append(vals, fmt.Sprintf("($1, $2, %s, %s, %s, %s)", param(&args, string(s.RoomID)), param(&args, s.SentTo),
					param(&args, s.TimelineLimit), param(&args, s.RequiredState)))
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO sliding_rooms (conn_nid, pos, room_id, sent_to, timeline_limit, required_state) VALUES `+
				strings.Join(vals, ", "), args...); err != nil {
				return err
			}
		}
		token = strconv.FormatInt(conn, 10) + "_" + strconv.FormatInt(pos, 10)
		return nil
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return token, err
}

// LatestStreamPositions returns, for each room, the stream position of
// its newest timeline event at or before to (rooms without one are left
// out): one seek at the end of events_room_stream per room.
func (db *DB) LatestStreamPositions(ctx context.Context, rooms []id.RoomID, to int64) (map[id.RoomID]int64, error) {
	out := make(map[id.RoomID]int64, len(rooms))
	err := db.read(ctx, "latest_stream_positions", func(q querier) error {
		for chunk := range chunks(rooms, 300) {
			args := []any{to}
			for _, r := range chunk {
				args = append(args, string(r))
			}
			rows, err := q.QueryContext(ctx, `SELECT r.room_id, (SELECT MAX(e.stream_pos) FROM events e
				WHERE e.room_nid = r.room_nid AND e.stream_pos <= $1) FROM rooms r WHERE r.room_id IN (`+placeholders(2, len(chunk))+`)`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var r id.RoomID
				var p sql.NullInt64
				if err := rows.Scan(&r, &p); err != nil {
					rows.Close()
					return err
				}
				if p.Valid {
					out[r] = p.Int64
				}
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

package store

import (
	"context"
	"database/sql"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// Room is a room this server takes part in.
type Room struct {
	RoomID    id.RoomID
	Version   id.RoomVersion
	CreatedTS int64
	// Visibility in the public room directory: "public" or "private".
	Visibility string
	// MaxDepth is the greatest depth of the room's events.
	MaxDepth int64
}

// CreateRoom records a new room. Returns ErrConflict if it exists.
func (tx *Tx) CreateRoom(ctx context.Context, r Room) error {
	if r.CreatedTS == 0 {
		r.CreatedTS = nowMS()
	}
	if r.Visibility == "" {
		r.Visibility = "private"
	}
	// ON CONFLICT rather than catching the unique violation: on PostgreSQL
	// a failed statement aborts the whole transaction, and callers go on
	// after ErrConflict (a remote join into a room an invite created).
	res, err := tx.ExecContext(ctx, `INSERT INTO rooms (room_id, version, created_ts, visibility) VALUES ($1, $2, $3, $4)
		ON CONFLICT (room_id) DO NOTHING`,
		string(r.RoomID), string(r.Version), r.CreatedTS, r.Visibility)
	if err != nil {
		return fmt.Errorf("insert room: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("insert room: %w", err)
	} else if n == 0 {
		return ErrConflict
	}
	return nil
}

// Room returns a room, or ErrNotFound.
func (db *DB) Room(ctx context.Context, roomID id.RoomID) (Room, error) {
	var r Room
	err := db.read(ctx, "room", func(q querier) error {
		var v string
		err := q.QueryRowContext(ctx, `SELECT room_id, version, created_ts, visibility, max_depth FROM rooms WHERE room_id = $1`, string(roomID)).
			Scan(&r.RoomID, &v, &r.CreatedTS, &r.Visibility, &r.MaxDepth)
		r.Version = id.RoomVersion(v)
		return notFound(err)
	})
	return r, err
}

// SetRoomVisibility sets a room's visibility in the public room directory.
// Returns ErrNotFound for an unknown room.
func (db *DB) SetRoomVisibility(ctx context.Context, roomID id.RoomID, visibility string) error {
	return db.WithTx(ctx, "set_room_visibility", func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE rooms SET visibility = $2 WHERE room_id = $1`, string(roomID), visibility)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// PublicRoomIDs lists the rooms whose directory visibility is public.
func (db *DB) PublicRoomIDs(ctx context.Context) ([]id.RoomID, error) {
	var out []id.RoomID
	err := db.read(ctx, "public_rooms", func(q querier) error {
		var err error
		out, err = column[id.RoomID](q.QueryContext(ctx, `SELECT room_id FROM rooms WHERE visibility = 'public' ORDER BY room_nid`))
		return err
	})
	return out, err
}

// Extremities returns a room's forward extremities.
func (db *DB) Extremities(ctx context.Context, roomID id.RoomID) ([]id.EventID, error) {
	var out []id.EventID
	err := db.read(ctx, "extremities", func(q querier) error {
		var err error
		out, err = column[id.EventID](q.QueryContext(ctx, `SELECT e.event_id FROM room_extremities x
			JOIN rooms r ON r.room_nid = x.room_nid JOIN events e ON e.event_nid = x.event_nid
			WHERE r.room_id = $1 ORDER BY e.event_nid`, string(roomID)))
		return err
	})
	return out, err
}

// roomNID returns the numeric ID of a room in the transaction, or
// ErrNotFound. Rooms are never renumbered nor deleted, so a number read in
// a transaction that commits is good for the life of the DB, in every
// process sharing the database: it is kept in db.roomNIDs once the
// transaction has committed (WithTx), and read from there first.
func (tx *Tx) roomNID(ctx context.Context, roomID id.RoomID) (int64, error) {
	if v, ok := tx.db.roomNIDs.Load(roomID); ok {
		return v.(int64), nil
	}
	nid, err := roomNID(ctx, tx, roomID)
	if err != nil {
		return 0, err
	}
	if tx.newNIDs == nil {
		tx.newNIDs = make(map[id.RoomID]int64, 1)
	}
	tx.newNIDs[roomID] = nid
	return nid, nil
}

// roomNID returns the numeric ID of a room, or ErrNotFound.
func roomNID(ctx context.Context, q querier, roomID id.RoomID) (int64, error) {
	var nid int64
	err := q.QueryRowContext(ctx, `SELECT room_nid FROM rooms WHERE room_id = $1`, string(roomID)).Scan(&nid)
	return nid, notFound(err)
}

// Membership is a user's current membership of a room.
type Membership struct {
	RoomID     id.RoomID
	UserID     id.UserID
	Membership string // join, invite, leave, ban, knock
	EventID    id.EventID
	Sender     id.UserID
	StreamPos  int64
	Forgotten  bool
}

const membershipCols = `r.room_id, m.user_id, m.membership, e.event_id, m.sender, m.stream_pos, m.forgotten`

func scanMemberships(rows *sql.Rows) ([]Membership, error) {
	defer rows.Close()
	var out []Membership
	for rows.Next() {
		var m Membership
		if err := rows.Scan(&m.RoomID, &m.UserID, &m.Membership, &m.EventID, &m.Sender, &m.StreamPos, &m.Forgotten); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// UserMemberships returns a user's memberships of every room, or only of
// the given kinds (join, invite, …). Forgotten rooms are left out.
func (db *DB) UserMemberships(ctx context.Context, user id.UserID, kinds ...string) ([]Membership, error) {
	var out []Membership
	err := db.read(ctx, "user_memberships", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT `+membershipCols+` FROM memberships m
			JOIN rooms r ON r.room_nid = m.room_nid JOIN events e ON e.event_nid = m.event_nid
			WHERE m.user_id = $1 AND NOT m.forgotten ORDER BY m.stream_pos`, string(user))
		if err != nil {
			return err
		}
		all, err := scanMemberships(rows)
		out = filterKinds(all, kinds)
		return err
	})
	return out, err
}

// MembershipChanges returns the user's memberships whose latest change has
// a stream position in (from, to], forgotten ones included.
func (db *DB) MembershipChanges(ctx context.Context, user id.UserID, from, to int64) ([]Membership, error) {
	var out []Membership
	err := db.read(ctx, "membership_changes", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT `+membershipCols+` FROM memberships m
			JOIN rooms r ON r.room_nid = m.room_nid JOIN events e ON e.event_nid = m.event_nid
			WHERE m.user_id = $1 AND m.stream_pos > $2 AND m.stream_pos <= $3 ORDER BY m.stream_pos`, string(user), from, to)
		if err != nil {
			return err
		}
		out, err = scanMemberships(rows)
		return err
	})
	return out, err
}

// RoomMemberships returns the current memberships of a room, or only those
// of the given kinds.
func (db *DB) RoomMemberships(ctx context.Context, roomID id.RoomID, kinds ...string) ([]Membership, error) {
	var out []Membership
	err := db.read(ctx, "room_memberships", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT `+membershipCols+` FROM memberships m
			JOIN rooms r ON r.room_nid = m.room_nid JOIN events e ON e.event_nid = m.event_nid
			WHERE r.room_id = $1 ORDER BY m.user_id`, string(roomID))
		if err != nil {
			return err
		}
		all, err := scanMemberships(rows)
		out = filterKinds(all, kinds)
		return err
	})
	return out, err
}

// UserMembership returns a user's current membership of a room, or
// ErrNotFound if it has never had one.
func (db *DB) UserMembership(ctx context.Context, roomID id.RoomID, user id.UserID) (Membership, error) {
	var out Membership
	err := db.read(ctx, "user_membership", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT `+membershipCols+` FROM memberships m
			JOIN rooms r ON r.room_nid = m.room_nid JOIN events e ON e.event_nid = m.event_nid
			WHERE r.room_id = $1 AND m.user_id = $2`, string(roomID), string(user))
		if err != nil {
			return err
		}
		ms, err := scanMemberships(rows)
		if err != nil {
			return err
		}
		if len(ms) == 0 {
			return ErrNotFound
		}
		out = ms[0]
		return nil
	})
	return out, err
}

// ForgetRoom marks a room forgotten by a user. The membership must not be
// join or invite; the caller checks.
func (db *DB) ForgetRoom(ctx context.Context, roomID id.RoomID, user id.UserID) error {
	return db.WithTx(ctx, "forget_room", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE memberships SET forgotten = TRUE
			WHERE user_id = $2 AND room_nid = (SELECT room_nid FROM rooms WHERE room_id = $1)`, string(roomID), string(user))
		return err
	})
}

// SharedRoomUsers returns the users who are joined to at least one room
// that user is joined to (the user included).
func (db *DB) SharedRoomUsers(ctx context.Context, user id.UserID) ([]id.UserID, error) {
	var out []id.UserID
	err := db.read(ctx, "shared_room_users", func(q querier) error {
		var err error
		out, err = column[id.UserID](q.QueryContext(ctx, `SELECT DISTINCT o.user_id FROM memberships m
			JOIN memberships o ON o.room_nid = m.room_nid AND o.membership = 'join'
			WHERE m.user_id = $1 AND m.membership = 'join'`, string(user)))
		return err
	})
	return out, err
}

func filterKinds(all []Membership, kinds []string) []Membership {
	if len(kinds) == 0 {
		return all
	}
	out := all[:0]
	for _, m := range all {
		for _, k := range kinds {
			if m.Membership == k {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// RoomServersJoined returns, for each server with a member joined to a
// room, the earliest stream position from which one of its members has
// been joined without a break (migration 0019): the servers an event at a
// position was sent to are those joined at or before it.
func (db *DB) RoomServersJoined(ctx context.Context, roomID id.RoomID) (map[string]int64, error) {
	out := map[string]int64{}
	err := db.read(ctx, "room_servers_joined", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT m.user_id, m.joined_pos FROM memberships m JOIN rooms r ON r.room_nid = m.room_nid
			WHERE r.room_id = $1 AND m.membership = 'join'`, string(roomID))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var user string
			var pos sql.NullInt64
			if err := rows.Scan(&user, &pos); err != nil {
				return err
			}
			srv := id.UserID(user).Homeserver()
			if old, ok := out[srv]; !ok || pos.Int64 < old {
				out[srv] = pos.Int64 // NULL (0): joined from the start
			}
		}
		return rows.Err()
	})
	return out, err
}

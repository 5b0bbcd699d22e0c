package store

import (
	"context"
	"database/sql"
	"errors"

	"maunium.net/go/mautrix/id"
)

// ServerHasMember reports whether a user of server has the given current
// membership of a room (join: the server is in the room; invite: one of
// its users is invited). The space hierarchy asks it for this server
// (can it describe a room from its own state?) and for the server asking
// over federation (may it see the room?). An unknown room has no members.
func (db *DB) ServerHasMember(ctx context.Context, roomID id.RoomID, server, membership string) (bool, error) {
	var found bool
	err := db.read(ctx, "server_has_member", func(q querier) error {
		// The user ID ends with ":" + server: compared with substr rather
		// than LIKE, whose _ and % server names could hold.
		suffix := ":" + server
		var one int
		err := q.QueryRowContext(ctx, `SELECT 1 FROM memberships m JOIN rooms r ON r.room_nid = m.room_nid
			WHERE r.room_id = $1 AND m.membership = $2
			AND substr(m.user_id, length(m.user_id) - $4 + 1) = $3 LIMIT 1`,
			string(roomID), membership, suffix, len(suffix)).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	return found, err
}

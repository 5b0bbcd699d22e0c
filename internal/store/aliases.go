package store

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// CreateAlias maps a local alias to a room. Returns ErrConflict if the
// alias is taken.
func (tx *Tx) CreateAlias(ctx context.Context, alias id.RoomAlias, roomID id.RoomID, creator id.UserID) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)`,
		string(alias), string(roomID), string(creator), nowMS())
	if isUniqueViolation(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("insert alias: %w", err)
	}
	return nil
}

// CreateAlias is CreateAlias in its own transaction.
func (db *DB) CreateAlias(ctx context.Context, alias id.RoomAlias, roomID id.RoomID, creator id.UserID) error {
	return db.WithTx(ctx, "create_alias", func(tx *Tx) error { return tx.CreateAlias(ctx, alias, roomID, creator) })
}

// Alias is a local room alias.
type Alias struct {
	Alias   id.RoomAlias
	RoomID  id.RoomID
	Creator id.UserID
}

// ResolveAlias returns the room a local alias names, or ErrNotFound.
func (db *DB) ResolveAlias(ctx context.Context, alias id.RoomAlias) (Alias, error) {
	a := Alias{Alias: alias}
	err := db.read(ctx, "resolve_alias", func(q querier) error {
		return notFound(q.QueryRowContext(ctx, `SELECT room_id, creator FROM room_aliases WHERE alias = $1`, string(alias)).Scan(&a.RoomID, &a.Creator))
	})
	return a, err
}

// DeleteAlias removes a local alias. Returns ErrNotFound if absent.
func (db *DB) DeleteAlias(ctx context.Context, alias id.RoomAlias) error {
	return db.WithTx(ctx, "delete_alias", func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM room_aliases WHERE alias = $1`, string(alias))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// RoomAliases lists the local aliases of a room.
func (db *DB) RoomAliases(ctx context.Context, roomID id.RoomID) ([]id.RoomAlias, error) {
	var out []id.RoomAlias
	err := db.read(ctx, "room_aliases", func(q querier) error {
		var err error
		out, err = column[id.RoomAlias](q.QueryContext(ctx, `SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias`, string(roomID)))
		return err
	})
	return out, err
}

// MoveAliases points every local alias of one room to another (room
// upgrades).
func (db *DB) MoveAliases(ctx context.Context, from, to id.RoomID) error {
	return db.WithTx(ctx, "move_aliases", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE room_aliases SET room_id = $2 WHERE room_id = $1`, string(from), string(to))
		return err
	})
}

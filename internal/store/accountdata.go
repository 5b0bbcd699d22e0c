package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// AccountData is one account data entry of a user (client-server API
// "Client Config"): global when RoomID is "", else scoped to the room.
type AccountData struct {
	RoomID    id.RoomID
	Type      string
	Content   []byte // a JSON object
	StreamPos int64  // the position of its latest change
}

// lockStream takes the stream counter's row lock without advancing it.
// A read-modify-write that may take a stream position calls it first, so
// that the read sees every change committed before it and no other writer
// changes the row before it commits. On SQLite the single writer
// connection serialises write transactions already.
func (tx *Tx) lockStream(ctx context.Context) error {
	if tx.dialect != Postgres {
		return nil
	}
	var pos int64
	if err := tx.QueryRowContext(ctx, `SELECT pos FROM stream_counter WHERE id = 1 FOR UPDATE`).Scan(&pos); err != nil {
		return fmt.Errorf("lock stream counter: %w", err)
	}
	return nil
}

// SetAccountData writes one account data entry at a new stream position,
// which it returns. room "" is global account data.
func (db *DB) SetAccountData(ctx context.Context, user id.UserID, room id.RoomID, typ string, content []byte) (int64, error) {
	var pos int64
	err := db.WithTx(ctx, "set_account_data", func(tx *Tx) error {
		var err error
		pos, err = tx.SetAccountData(ctx, user, room, typ, content)
		return err
	})
	return pos, err
}

// SetAccountData is SetAccountData in tx.
func (tx *Tx) SetAccountData(ctx context.Context, user id.UserID, room id.RoomID, typ string, content []byte) (int64, error) {
	pos, err := tx.NextStreamPos(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO account_data (user_id, room_id, type, content, stream_pos) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos`,
		string(user), string(room), typ, content, pos); err != nil {
		return 0, fmt.Errorf("write account data %s: %w", typ, err)
	}
	return pos, nil
}

// UpdateAccountData changes one account data entry in a single
// transaction: fn gets its current content (nil if there is none) and
// returns the new one. When fn returns nil or the content it was given,
// nothing is written and the position returned is 0; an error from fn is
// returned as is and writes nothing.
func (db *DB) UpdateAccountData(ctx context.Context, user id.UserID, room id.RoomID, typ string, fn func(old []byte) ([]byte, error)) (int64, error) {
	var pos int64
	err := db.WithTx(ctx, "update_account_data", func(tx *Tx) error {
		if err := tx.lockStream(ctx); err != nil {
			return err
		}
		var old []byte
		err := tx.QueryRowContext(ctx, `SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3`,
			string(user), string(room), typ).Scan(&old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read account data %s: %w", typ, err)
		}
		content, err := fn(old)
		if err != nil {
			return err
		}
		if content == nil || (old != nil && bytes.Equal(content, old)) {
			return nil
		}
		pos, err = tx.SetAccountData(ctx, user, room, typ, content)
		return err
	})
	return pos, err
}

// AccountData returns the content of one account data entry, or
// ErrNotFound.
func (db *DB) AccountData(ctx context.Context, user id.UserID, room id.RoomID, typ string) ([]byte, error) {
	var content []byte
	err := db.read(ctx, "account_data", func(q querier) error {
		return notFound(q.QueryRowContext(ctx, `SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3`,
			string(user), string(room), typ).Scan(&content))
	})
	return content, err
}

// AccountDataSince returns the user's account data entries whose latest
// change has a stream position in (from, to], global and per room, in
// stream order. from 0 returns every entry up to to.
func (db *DB) AccountDataSince(ctx context.Context, user id.UserID, from, to int64) ([]AccountData, error) {
	var out []AccountData
	err := db.read(ctx, "account_data_since", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT room_id, type, content, stream_pos FROM account_data
			WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos`, string(user), from, to)
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

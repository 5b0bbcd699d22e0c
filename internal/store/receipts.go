package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// Receipt is a user's latest receipt of one type in one room and thread
// (client-server API "Receipts").
type Receipt struct {
	RoomID id.RoomID
	UserID id.UserID
	Type   string // m.read or m.read.private
	// ThreadID is "" for an unthreaded receipt, "main" for the main
	// timeline or the thread root's event ID.
	ThreadID  string
	EventID   id.EventID
	TS        int64 // ms, when it was sent
	StreamPos int64 // the position of its latest change
}

// PutReceipt records r, stamped with a new stream position, as the latest
// receipt of its (room, user, type, thread). eventPos is the stream
// position of the receipted event: a receipt never moves back, so when the
// stored receipt is at or after eventPos nothing changes and PutReceipt
// returns 0. Otherwise it returns the new stream position.
func (db *DB) PutReceipt(ctx context.Context, r Receipt, eventPos int64) (int64, error) {
	var pos int64
	err := db.WithTx(ctx, "put_receipt", func(tx *Tx) error {
		if err := tx.lockStream(ctx); err != nil {
			return err
		}
		var cur int64
		err := tx.QueryRowContext(ctx, `SELECT event_pos FROM receipts WHERE room_id = $1 AND user_id = $2 AND receipt_type = $3 AND thread_id = $4`,
			string(r.RoomID), string(r.UserID), r.Type, r.ThreadID).Scan(&cur)
		switch {
		case err == nil:
			if cur >= eventPos {
				return nil
			}
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("read receipt: %w", err)
		}
		if pos, err = tx.NextStreamPos(ctx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, event_pos, ts, stream_pos)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET
				event_id = excluded.event_id, event_pos = excluded.event_pos, ts = excluded.ts, stream_pos = excluded.stream_pos`,
			string(r.RoomID), string(r.UserID), r.Type, r.ThreadID, string(r.EventID), eventPos, r.TS, pos); err != nil {
			return fmt.Errorf("write receipt: %w", err)
		}
		return nil
	})
	return pos, err
}

// ReceiptsSince returns the receipts in rooms whose latest change has a
// stream position in (from, to] (from 0: every receipt up to to), in
// stream order. m.read.private receipts are left out except forUser's own.
func (db *DB) ReceiptsSince(ctx context.Context, forUser id.UserID, rooms []id.RoomID, from, to int64) ([]Receipt, error) {
	var out []Receipt
	err := db.read(ctx, "receipts_since", func(q querier) error {
		for chunk := range chunks(rooms, 200) {
			args := []any{string(forUser), from, to}
			for _, r := range chunk {
				args = append(args, string(r))
			}
			rows, err := q.QueryContext(ctx, `SELECT room_id, user_id, receipt_type, thread_id, event_id, ts, stream_pos FROM receipts
				WHERE room_id IN (`+placeholders(4, len(chunk))+`) AND stream_pos > $2 AND stream_pos <= $3
				AND (receipt_type <> 'm.read.private' OR user_id = $1) ORDER BY stream_pos`, args...)
			if err != nil {
				return err
			}
			rs, err := scanReceipts(rows)
			if err != nil {
				return err
			}
			out = append(out, rs...)
		}
		return nil
	})
	return out, err
}

// UserReceipts returns a user's receipts in a room, of every type and
// thread.
func (db *DB) UserReceipts(ctx context.Context, user id.UserID, room id.RoomID) ([]Receipt, error) {
	var out []Receipt
	err := db.read(ctx, "user_receipts", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT room_id, user_id, receipt_type, thread_id, event_id, ts, stream_pos FROM receipts
			WHERE room_id = $1 AND user_id = $2 ORDER BY stream_pos`, string(room), string(user))
		if err != nil {
			return err
		}
		out, err = scanReceipts(rows)
		return err
	})
	return out, err
}

// LastRead returns the event of the user's furthest m.read or
// m.read.private receipt in the room that is unthreaded or for the main
// timeline, or ErrNotFound if there is none.
func (db *DB) LastRead(ctx context.Context, user id.UserID, room id.RoomID) (id.EventID, error) {
	var ev id.EventID
	err := db.read(ctx, "last_read", func(q querier) error {
		return notFound(q.QueryRowContext(ctx, `SELECT event_id FROM receipts
			WHERE room_id = $1 AND user_id = $2 AND receipt_type IN ('m.read', 'm.read.private') AND thread_id IN ('', 'main')
			ORDER BY event_pos DESC LIMIT 1`, string(room), string(user)).Scan(&ev))
	})
	return ev, err
}

func scanReceipts(rows *sql.Rows) ([]Receipt, error) {
	defer rows.Close()
	var out []Receipt
	for rows.Next() {
		var r Receipt
		if err := rows.Scan(&r.RoomID, &r.UserID, &r.Type, &r.ThreadID, &r.EventID, &r.TS, &r.StreamPos); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

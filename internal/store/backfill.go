package store

import (
	"context"
	"database/sql"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// NextBackfillPos takes the next stream position of a backfilled event:
// -1, -2, … (see migration 0010).
func (tx *Tx) NextBackfillPos(ctx context.Context) (int64, error) {
	var pos int64
	err := tx.QueryRowContext(ctx, `UPDATE backfill_counter SET pos = pos - 1 WHERE id = 1 RETURNING pos`).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("next backfill position: %w", err)
	}
	return pos, nil
}

// PromoteOutlier makes a stored outlier a timeline event, with the state
// after it as PersistEvent would have given it. A backfilled one
// (ne.Backfilled) gets a backfill stream position; any other one, an event
// that reached us live after we had fetched it as an outlier (for the
// state at a gap, or in an auth chain), gets the next stream position, so
// that sync delivers it late rather than never (as Synapse does when it
// de-outliers an event). ne.SoftFailed is kept. It returns the position,
// or ErrNotFound if the event is not an outlier. It moves neither the
// forward extremities nor the current state: an outlier is in the past of
// the events that made us fetch it.
func (tx *Tx) PromoteOutlier(ctx context.Context, ne NewEvent) (int64, error) {
	p := ne.PDU
	nid, err := roomNID(ctx, tx, p.RoomID())
	if err != nil {
		return 0, err
	}
	snap, err := tx.writeSnapshot(ctx, nid, ne.StateBase, ne.StateChanges)
	if err != nil {
		return 0, fmt.Errorf("state after %s: %w", p.EventID(), err)
	}
	next := tx.NextStreamPos
	if ne.Backfilled {
		next = tx.NextBackfillPos
	}
	pos, err := next(ctx)
	if err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, `UPDATE events SET stream_pos = $2, state_snapshot = $3, unsigned = $4, replaces = $5, soft_failed = $6
		WHERE event_id = $1 AND stream_pos IS NULL AND NOT rejected`,
		string(p.EventID()), pos, snap, ne.Added, nullString(string(ne.Replaces)), ne.SoftFailed)
	if err != nil {
		return 0, fmt.Errorf("promote %s: %w", p.EventID(), err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return 0, ErrNotFound
	}
	return pos, nil
}

// OldestEvents returns a room's n oldest timeline events (by depth), for
// backfill to start from their prev events.
func (db *DB) OldestEvents(ctx context.Context, roomID id.RoomID, n int) ([]*Event, error) {
	var out []*Event
	err := db.read(ctx, "oldest_events", func(q querier) error {
		nid, err := roomNID(ctx, q, roomID)
		if err != nil {
			return err
		}
		var rows *sql.Rows
		rows, err = q.QueryContext(ctx, `SELECT `+eventCols+eventFrom+`WHERE e.room_nid = $1 AND e.stream_pos IS NOT NULL
			AND NOT e.rejected ORDER BY e.depth, e.stream_pos LIMIT $2`, nid, n)
		if err != nil {
			return err
		}
		out, err = scanEvents(rows)
		return err
	})
	return out, err
}

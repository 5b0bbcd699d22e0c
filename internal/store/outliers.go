package store

import (
	"context"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// Outliers in bulk: a join of a big room stores its whole state and auth
// chain as outliers in one transaction. PersistEvent spends two statements
// on each (the room's number, then the row); on PostgreSQL each is a round
// trip. PersistOutliers writes many rows per statement instead.

const (
	outlierHead = `INSERT INTO events (event_id, room_nid, type, state_key, sender, depth, origin_ts, json, unsigned,
		replaces, rejected, soft_failed, relates_to, rel_type, rel_key) VALUES `
	outlierTail = ` ON CONFLICT (event_id) DO NOTHING`
	outlierCols = 15
)

// PersistOutliers writes events as outliers: what PersistEvent writes for
// NewEvent{Outlier: true} (no stream position, no state snapshot, no
// change of extremities or current state), many rows per statement. Of
// each NewEvent only PDU, Added, Replaces, Rejected and SoftFailed are
// used, and Outlier must be set. Events already stored, and repeats
// within evs, are skipped without error (where PersistEvent returns
// ErrConflict). The events may be of several rooms; each room must exist
// (ErrNotFound otherwise).
func (tx *Tx) PersistOutliers(ctx context.Context, evs []NewEvent) error {
	rooms := map[id.RoomID]int64{}
	seen := make(map[id.EventID]bool, len(evs))
	const batch = 1024 // rows of args held at once
	args := make([]any, 0, min(len(evs), batch)*outlierCols)
	for i := range evs {
		ne := &evs[i]
		if !ne.Outlier {
			return errors.New("PersistOutliers: an event that is not an outlier")
		}
		p := ne.PDU
		if seen[p.EventID()] {
			continue
		}
		seen[p.EventID()] = true
		nid, ok := rooms[p.RoomID()]
		if !ok {
			var err error
			if nid, err = roomNID(ctx, tx, p.RoomID()); err != nil {
				return fmt.Errorf("room of %s: %w", p.EventID(), err)
			}
			rooms[p.RoomID()] = nid
		}
		relTo, relType, relKey := relation(p.Content())
		args = append(args, string(p.EventID()), nid, p.Type(), p.StateKey(), string(p.Sender()), p.Depth(), p.OriginServerTS(),
			p.JSON(), ne.Added, nullString(string(ne.Replaces)), ne.Rejected, ne.SoftFailed,
			nullString(relTo), nullString(relType), nullString(relKey))
		if len(args) == batch*outlierCols {
			if err := tx.insertRows(ctx, outlierHead, outlierTail, outlierCols, args); err != nil {
				return fmt.Errorf("insert outliers: %w", err)
			}
			args = args[:0]
		}
	}
	if err := tx.insertRows(ctx, outlierHead, outlierTail, outlierCols, args); err != nil {
		return fmt.Errorf("insert outliers: %w", err)
	}
	return nil
}

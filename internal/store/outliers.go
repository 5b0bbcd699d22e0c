package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"
)

// Outliers in bulk: a join of a big room stores its whole state and auth
// chain as outliers in one transaction. PersistEvent spends two statements
// on each (the room's number, then the row); on PostgreSQL each is a round
// trip. PersistOutliers writes many rows per statement instead.

// outlierCols are the columns PersistOutliers writes, in order.
const outlierCols = `event_id, room_nid, type, state_key, sender, depth, origin_ts, json, unsigned, replaces, rejected, soft_failed, relates_to, rel_type, rel_key`

const outlierColCount = 15

// outlierChunks are the row counts of the INSERT statements, largest
// first: a batch is written in as many of the largest as fit, then the
// smaller ones, so that only these few statement texts exist (each
// prepared once) whatever the batch's size. 256 rows are 3,840
// parameters, under SQLite's 32,766 and PostgreSQL's 65,535.
var outlierChunks = [...]int{256, 64, 16, 4, 1}

// outlierInsert holds the INSERT statement of each chunk size.
var outlierInsert = func() map[int]string {
	m := make(map[int]string, len(outlierChunks))
	for _, n := range outlierChunks {
		var b strings.Builder
		b.WriteString(`INSERT INTO events (` + outlierCols + `) VALUES `)
		for r := range n {
			if r > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('(')
			for c := range outlierColCount {
				if c > 0 {
					b.WriteByte(',')
				}
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(r*outlierColCount + c + 1))
			}
			b.WriteByte(')')
		}
		b.WriteString(` ON CONFLICT (event_id) DO NOTHING`)
		m[n] = b.String()
	}
	return m
}()

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
	args := make([]any, 0, outlierChunks[0]*outlierColCount)
	rows := 0
	flush := func(n int) error {
		if _, err := tx.ExecContext(ctx, outlierInsert[n], args[:n*outlierColCount]...); err != nil {
			return fmt.Errorf("insert %d outliers: %w", n, err)
		}
		args = append(args[:0], args[n*outlierColCount:]...)
		rows -= n
		return nil
	}
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
		rows++
		if rows == outlierChunks[0] {
			if err := flush(rows); err != nil {
				return err
			}
		}
	}
	for _, n := range outlierChunks[1:] {
		for rows >= n {
			if err := flush(n); err != nil {
				return err
			}
		}
	}
	return nil
}

package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/stateres"
)

// maxChain bounds the length of a snapshot's delta chain: reading a state
// reads at most maxChain+1 sets of entries.
const maxChain = 16

// snapshotCache keeps recently read snapshots. Snapshots never change, so
// entries need no invalidation. It is bounded by the state entries it
// holds (a snapshot of a room of 10,000 members weighs 10,000, one of a
// small room a dozen), not by the number of snapshots: an initial sync of
// a user in 500 rooms reads about 1,000 small snapshots, which a cap of
// 512 snapshots kept evicting.
type snapshotCache struct {
	mu      sync.Mutex
	m       map[int64]stateres.StateMap
	fifo    []int64
	entries int // the sum of len over m
}

const (
	// snapshotCacheEntries bounds the state entries held: about 100
	// bytes each (two strings and an event ID), 20 MB at most.
	snapshotCacheEntries = 200_000
	// snapshotCacheSnapshots bounds the snapshots held.
	snapshotCacheSnapshots = 16_384
)

func (c *snapshotCache) get(nid int64) (stateres.StateMap, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[nid]
	return s, ok
}

func (c *snapshotCache) put(nid int64, s stateres.StateMap) {
	if c == nil || len(s) > snapshotCacheEntries/4 {
		return // a giant room's snapshot would push out everything else
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[int64]stateres.StateMap)
	}
	if _, ok := c.m[nid]; ok {
		return
	}
	for len(c.fifo) > 0 && (len(c.fifo) >= snapshotCacheSnapshots || c.entries+len(s) > snapshotCacheEntries) {
		c.entries -= len(c.m[c.fifo[0]])
		delete(c.m, c.fifo[0])
		c.fifo = c.fifo[1:]
	}
	c.m[nid] = s
	c.entries += len(s)
	c.fifo = append(c.fifo, nid)
}

// writeSnapshot stores the state after an event: the state after base with
// changes applied. Without changes it reuses base's snapshot.
func (tx *Tx) writeSnapshot(ctx context.Context, roomNID int64, base id.EventID, changes stateres.StateMap) (sql.NullInt64, error) {
	var parent sql.NullInt64
	chain := 0
	if base != "" {
		if err := tx.QueryRowContext(ctx, `SELECT e.state_snapshot, COALESCE(s.chain_len, 0) FROM events e
			LEFT JOIN state_snapshots s ON s.snapshot_nid = e.state_snapshot WHERE e.event_id = $1`, string(base)).Scan(&parent, &chain); err != nil {
			return parent, fmt.Errorf("base %s: %w", base, notFound(err))
		}
		if !parent.Valid {
			return parent, fmt.Errorf("base %s is an outlier", base)
		}
	}
	if len(changes) == 0 && parent.Valid {
		return parent, nil
	}
	entries := changes
	if parent.Valid && chain+1 > maxChain {
		// Start a new full snapshot so that chains stay short.
		// No cache inside a transaction: a rolled back snapshot's number may be reused.
		full, err := readSnapshot(ctx, tx, nil, parent.Int64)
		if err != nil {
			return parent, err
		}
		entries = make(stateres.StateMap, len(full)+len(changes))
		for k, v := range full {
			entries[k] = v
		}
		for k, v := range changes {
			if v == "" {
				delete(entries, k)
			} else {
				entries[k] = v
			}
		}
		parent, chain = sql.NullInt64{}, -1
	} else if !parent.Valid {
		chain = -1
	}
	var nid int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO state_snapshots (room_nid, parent, chain_len) VALUES ($1, $2, $3) RETURNING snapshot_nid`,
		roomNID, parent, chain+1).Scan(&nid); err != nil {
		return parent, fmt.Errorf("insert snapshot: %w", err)
	}
	if len(entries) >= bulkMin {
		if err := tx.writeEntriesBulk(ctx, nid, entries, parent.Valid); err != nil {
			return parent, err
		}
		return sql.NullInt64{Int64: nid, Valid: true}, nil
	}
	for k, eid := range entries {
		if eid == "" && !parent.Valid {
			continue
		}
		var err error
		if eid == "" {
			_, err = tx.ExecContext(ctx, `INSERT INTO state_entries (snapshot_nid, type, state_key, event_nid) VALUES ($1, $2, $3, NULL)`,
				nid, k.Type, k.StateKey)
		} else {
			var res sql.Result
			res, err = tx.ExecContext(ctx, `INSERT INTO state_entries (snapshot_nid, type, state_key, event_nid)
				SELECT $1, $2, $3, event_nid FROM events WHERE event_id = $4`, nid, k.Type, k.StateKey, string(eid))
			if err == nil {
				if n, _ := res.RowsAffected(); n == 0 {
					err = fmt.Errorf("state event %s is not stored", eid)
				}
			}
		}
		if err != nil {
			return parent, fmt.Errorf("insert state entry: %w", err)
		}
	}
	return sql.NullInt64{Int64: nid, Valid: true}, nil
}

// readSnapshot loads a snapshot by walking its delta chain. The result is
// shared with the cache: callers must not modify it.
func readSnapshot(ctx context.Context, q querier, snapshots *snapshotCache, nid int64) (stateres.StateMap, error) {
	if s, ok := snapshots.get(nid); ok {
		return s, nil
	}
	// The chain from nid up to its full root.
	var chain []int64
	var base stateres.StateMap
	cur := sql.NullInt64{Int64: nid, Valid: true}
	for cur.Valid {
		if s, ok := snapshots.get(cur.Int64); ok {
			base = s
			break
		}
		chain = append(chain, cur.Int64)
		var parent sql.NullInt64
		if err := q.QueryRowContext(ctx, `SELECT parent FROM state_snapshots WHERE snapshot_nid = $1`, cur.Int64).Scan(&parent); err != nil {
			return nil, fmt.Errorf("snapshot %d: %w", cur.Int64, notFound(err))
		}
		cur = parent
	}
	out := make(stateres.StateMap, len(base)+8)
	for k, v := range base {
		out[k] = v
	}
	for i := len(chain) - 1; i >= 0; i-- {
		rows, err := q.QueryContext(ctx, `SELECT s.type, s.state_key, e.event_id FROM state_entries s
			LEFT JOIN events e ON e.event_nid = s.event_nid WHERE s.snapshot_nid = $1`, chain[i])
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var k stateres.StateKey
			var eid sql.NullString
			if err := rows.Scan(&k.Type, &k.StateKey, &eid); err != nil {
				rows.Close()
				return nil, err
			}
			if eid.Valid {
				out[k] = id.EventID(eid.String)
			} else {
				delete(out, k)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	snapshots.put(nid, out)
	return out, nil
}

// StateAfter returns the state after an event (for a rejected event, the
// state before it). The map is shared: the caller must not modify it.
// Returns ErrNotFound for an unknown event or an outlier.
func (db *DB) StateAfter(ctx context.Context, eventID id.EventID) (stateres.StateMap, error) {
	var out stateres.StateMap
	err := db.read(ctx, "state_after", func(q querier) error {
		var nid sql.NullInt64
		if err := q.QueryRowContext(ctx, `SELECT state_snapshot FROM events WHERE event_id = $1`, string(eventID)).Scan(&nid); err != nil {
			return notFound(err)
		}
		if !nid.Valid {
			return ErrNotFound
		}
		var err error
		out, err = readSnapshot(ctx, q, db.snapshots, nid.Int64)
		return err
	})
	return out, err
}

// StateBefore returns the state before an event: its state after, with
// the state key it set swapped back to the event it replaced. The result
// is the caller's own.
func (db *DB) StateBefore(ctx context.Context, ev *Event) (stateres.StateMap, error) {
	after, err := db.StateAfter(ctx, ev.EventID())
	if err != nil {
		return nil, err
	}
	out := make(stateres.StateMap, len(after))
	for k, v := range after {
		out[k] = v
	}
	if sk := ev.StateKey(); sk != nil && !ev.IsRejected {
		k := stateres.StateKey{Type: ev.Type(), StateKey: *sk}
		if out[k] == ev.EventID() {
			if ev.Replaces != "" {
				out[k] = ev.Replaces
			} else {
				delete(out, k)
			}
		}
	}
	return out, nil
}

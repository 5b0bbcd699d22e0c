package store

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/stateres"
)

// Current state and snapshots in bulk: a join of a big room changes the
// whole current state at once (10,000 members: 30,000 statements in
// applyCurrent and 10,000 in writeSnapshot, one at a time). These write
// them with a few multi-row statements (insertRows). applyCurrent and
// writeSnapshot are to call them from bulkMin changes on
// (docs/benchmarks.md, "Federation").

// bulkMin is the number of state changes from which applyCurrent and
// writeSnapshot write them with multi-row statements.
const bulkMin = 16

// eventRow is what applyCurrent needs of a stored event.
type eventRow struct {
	nid    int64
	json   []byte
	sender string
}

// eventRows looks events up by ID, many a statement. withJSON also reads
// their JSON and sender.
func (tx *Tx) eventRows(ctx context.Context, ids []id.EventID, withJSON bool) (map[id.EventID]eventRow, error) {
	out := make(map[id.EventID]eventRow, len(ids))
	head := `SELECT event_id, event_nid FROM events WHERE event_id IN (`
	if withJSON {
		head = `SELECT event_id, event_nid, json, sender FROM events WHERE event_id IN (`
	}
	args := make([]any, len(ids))
	for i, eid := range ids {
		args[i] = string(eid)
	}
	for len(args) > 0 {
		n := 1
		for _, c := range bulkChunks {
			if len(args) >= c {
				n = c
				break
			}
		}
		rows, err := tx.QueryContext(ctx, bulkStatement(tx.dialect, head, `)`, 1, n), args[:n]...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var eid string
			var r eventRow
			if withJSON {
				err = rows.Scan(&eid, &r.nid, &r.json, &r.sender)
			} else {
				err = rows.Scan(&eid, &r.nid)
			}
			if err != nil {
				rows.Close()
				return nil, err
			}
			out[id.EventID(eid)] = r
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		args = args[n:]
	}
	return out, nil
}

// applyCurrentBulk is applyCurrent with multi-row statements.
func (tx *Tx) applyCurrentBulk(ctx context.Context, roomNID int64, changes stateres.StateMap, pos int64) error {
	var ids []id.EventID
	for k, eid := range changes {
		if eid == "" {
			if err := tx.applyCurrent(ctx, roomNID, stateres.StateMap{k: ""}, pos); err != nil {
				return err
			}
			continue
		}
		ids = append(ids, eid)
	}
	evs, err := tx.eventRows(ctx, ids, true)
	if err != nil {
		return fmt.Errorf("current state events: %w", err)
	}
	var cur, mem []any
	for k, eid := range changes {
		if eid == "" {
			continue
		}
		ev, ok := evs[eid]
		if !ok {
			return fmt.Errorf("current state event %s: %w", eid, ErrNotFound)
		}
		cur = append(cur, roomNID, k.Type, k.StateKey, ev.nid)
		if k.Type != event.TypeMember {
			continue
		}
		c, _ := cjson.Get(ev.json, "content")
		m, _ := getString(c, "membership")
		mem = append(mem, roomNID, k.StateKey, m, ev.nid, pos, ev.sender, false, joinedPos(m, pos))
	}
	if err := tx.insertRows(ctx, `INSERT INTO current_state (room_nid, type, state_key, event_nid) VALUES `,
		` ON CONFLICT (room_nid, type, state_key) DO UPDATE SET event_nid = excluded.event_nid`, 4, cur); err != nil {
		return fmt.Errorf("current state: %w", err)
	}
	if err := tx.insertRows(ctx, `INSERT INTO memberships (room_nid, user_id, membership, event_nid, stream_pos, sender, forgotten, joined_pos) VALUES `,
		` ON CONFLICT (room_nid, user_id) DO UPDATE SET membership = excluded.membership, event_nid = excluded.event_nid,
			stream_pos = excluded.stream_pos, sender = excluded.sender,
			forgotten = CASE WHEN excluded.membership IN ('join', 'invite', 'knock') THEN FALSE ELSE memberships.forgotten END,
			`+joinedPosUpdate, 8, mem); err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	return nil
}

// writeEntriesBulk writes the entries of snapshot nid with multi-row
// statements. parent says whether it is a delta ("" entries are
// removals) or a full snapshot ("" entries are skipped).
func (tx *Tx) writeEntriesBulk(ctx context.Context, nid int64, entries stateres.StateMap, parent bool) error {
	var ids []id.EventID
	for _, eid := range entries {
		if eid != "" {
			ids = append(ids, eid)
		}
	}
	evs, err := tx.eventRows(ctx, ids, false)
	if err != nil {
		return fmt.Errorf("state entry events: %w", err)
	}
	args := make([]any, 0, 4*len(entries))
	for k, eid := range entries {
		if eid == "" {
			if parent {
				args = append(args, nid, k.Type, k.StateKey, nil)
			}
			continue
		}
		ev, ok := evs[eid]
		if !ok {
			return fmt.Errorf("insert state entry: state event %s is not stored", eid)
		}
		args = append(args, nid, k.Type, k.StateKey, ev.nid)
	}
	if err := tx.insertRows(ctx, `INSERT INTO state_entries (snapshot_nid, type, state_key, event_nid) VALUES `, ``, 4, args); err != nil {
		return fmt.Errorf("insert state entry: %w", err)
	}
	return nil
}

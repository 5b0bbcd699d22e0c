package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// Relation types the server aggregates or checks (client-server API,
// "Forming relationships between events").
const (
	RelThread     = "m.thread"
	RelReplace    = "m.replace"
	RelReference  = "m.reference"
	RelAnnotation = "m.annotation"
)

// childConds are the conditions on a child event e of a parent p: a
// timeline event of the parent's room.
const childConds = `e.room_nid = p.room_nid AND e.stream_pos IS NOT NULL AND NOT e.rejected AND NOT e.soft_failed`

// HasAnnotation reports whether sender already annotated the event to with
// an event of type typ and the key (client-server API, "Avoiding duplicate
// annotations"). Redacted annotations do not count: a redaction clears
// the relation.
func (db *DB) HasAnnotation(ctx context.Context, to id.EventID, sender id.UserID, typ, key string) (bool, error) {
	var one int
	err := db.read(ctx, "has_annotation", func(q querier) error {
		return q.QueryRowContext(ctx, `SELECT 1 FROM events e WHERE e.relates_to = $1 AND e.rel_type = $2 AND e.rel_key = $3
			AND e.sender = $4 AND e.type = $5 AND NOT e.rejected AND NOT e.soft_failed LIMIT 1`,
			string(to), RelAnnotation, key, string(sender), typ).Scan(&one)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// IsRelationTarget reports whether some stored event relates to eventID.
func (db *DB) IsRelationTarget(ctx context.Context, eventID id.EventID) (bool, error) {
	var one int
	err := db.read(ctx, "is_relation_target", func(q querier) error {
		return q.QueryRowContext(ctx, `SELECT 1 FROM events WHERE relates_to = $1 LIMIT 1`, string(eventID)).Scan(&one)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// AggregationQuery asks for the bundled aggregations of a page of events.
type AggregationQuery struct {
	Parents []id.EventID
	// User is who the aggregations are for (current_user_participated).
	User id.UserID
	// Ignored senders' children are left out.
	Ignored []id.UserID
	// MaxStream leaves out children past this stream position (0: none).
	MaxStream int64
	// NoThreads skips thread summaries (for the latest event of a thread).
	NoThreads bool
	// MaxEdits is how many of the most recent edits of each parent to
	// return (default 5): the caller picks the first valid one.
	MaxEdits int
}

// ThreadSummary is what the server knows of a thread (client-server API,
// "Server-side aggregation of m.thread relationships").
type ThreadSummary struct {
	Count        int
	Participated bool // the user sent an event of the thread
	Latest       *Event
}

// Aggregations are the child events of a page of events that bundled
// aggregations are built from, by parent.
type Aggregations struct {
	Threads map[id.EventID]*ThreadSummary
	// Edits are the most recent m.replace children from the parent's
	// sender with the parent's type, newest first (origin_server_ts, then
	// event ID), of parents that are neither state events, edits nor
	// redacted.
	Edits map[id.EventID][]*Event
	// References are the m.reference children, oldest first.
	References map[id.EventID][]id.EventID
}

// Aggregations loads the children that the bundled aggregations of
// q.Parents are made of, with at most four queries whatever the number of
// parents (one when none has children).
func (db *DB) Aggregations(ctx context.Context, q AggregationQuery) (*Aggregations, error) {
	out := &Aggregations{
		Threads:    map[id.EventID]*ThreadSummary{},
		Edits:      map[id.EventID][]*Event{},
		References: map[id.EventID][]id.EventID{},
	}
	if len(q.Parents) == 0 {
		return out, nil
	}
	if q.MaxEdits <= 0 {
		q.MaxEdits = 5
	}
	err := db.read(ctx, "aggregations", func(qr querier) error {
		var withThreads, withEdits, withRefs []id.EventID
		for chunk := range chunks(q.Parents, 200) {
			w := &where{}
			w.add("e.relates_to IN ("+w.in(eventStrings(chunk))+")", childConds,
				"e.rel_type IN ("+w.in([]string{RelThread, RelReplace, RelReference})+")")
			q.childFilter(w)
			user := w.arg(string(q.User))
			rows, err := qr.QueryContext(ctx, `SELECT e.relates_to, e.rel_type, COUNT(*), SUM(CASE WHEN e.sender = `+user+` THEN 1 ELSE 0 END)
				FROM events e JOIN events p ON p.event_id = e.relates_to WHERE `+w.String()+` GROUP BY e.relates_to, e.rel_type`, w.args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var parent id.EventID
				var rel string
				var n, mine int
				if err := rows.Scan(&parent, &rel, &n, &mine); err != nil {
					rows.Close()
					return err
				}
				switch rel {
				case RelThread:
					if !q.NoThreads {
						out.Threads[parent] = &ThreadSummary{Count: n, Participated: mine > 0}
						withThreads = append(withThreads, parent)
					}
				case RelReplace:
					withEdits = append(withEdits, parent)
				case RelReference:
					withRefs = append(withRefs, parent)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		if len(withThreads) > 0 {
			latest, err := q.ranked(ctx, qr, withThreads, RelThread, "", "e.depth DESC, e.stream_pos DESC", 1)
			if err != nil {
				return fmt.Errorf("thread latest events: %w", err)
			}
			for _, ev := range latest {
				if to, _, _ := relation(ev.Content()); out.Threads[id.EventID(to)] != nil {
					out.Threads[id.EventID(to)].Latest = ev
				}
			}
		}
		if len(withEdits) > 0 {
			// Validity of replacement events (client-server API, "Event
			// replacements"): same sender and type, no state key on
			// either, the original not itself an edit. A redacted
			// original gets no m.replace aggregation.
			edits, err := q.ranked(ctx, qr, withEdits, RelReplace,
				`e.sender = p.sender AND e.type = p.type AND p.state_key IS NULL AND e.state_key IS NULL
				AND (p.rel_type IS NULL OR p.rel_type <> 'm.replace') AND p.redacted_by IS NULL`,
				"e.origin_ts DESC, e.event_id DESC", q.MaxEdits)
			if err != nil {
				return fmt.Errorf("edits: %w", err)
			}
			for _, ev := range edits { // in rank order within each parent
				to, _, _ := relation(ev.Content())
				out.Edits[id.EventID(to)] = append(out.Edits[id.EventID(to)], ev)
			}
		}
		for chunk := range chunks(withRefs, 200) {
			w := &where{}
			w.add("e.relates_to IN ("+w.in(eventStrings(chunk))+")", childConds, "e.rel_type = "+w.arg(RelReference))
			q.childFilter(w)
			rows, err := qr.QueryContext(ctx, `SELECT e.relates_to, e.event_id FROM events e JOIN events p ON p.event_id = e.relates_to
				WHERE `+w.String()+` ORDER BY e.depth, e.stream_pos`, w.args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var parent, child id.EventID
				if err := rows.Scan(&parent, &child); err != nil {
					rows.Close()
					return err
				}
				out.References[parent] = append(out.References[parent], child)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// childFilter adds the query's sender and stream bounds on children e.
func (q AggregationQuery) childFilter(w *where) {
	if q.MaxStream > 0 {
		w.add("e.stream_pos <= " + w.arg(q.MaxStream))
	}
	if len(q.Ignored) > 0 {
		w.add("e.sender NOT IN (" + w.in(userStrings(q.Ignored)) + ")")
	}
}

// ranked returns, for each parent, its first n children of relation type
// rel in the order given, in parent then rank order.
func (q AggregationQuery) ranked(ctx context.Context, qr querier, parents []id.EventID, rel, extra, order string, n int) ([]*Event, error) {
	var out []*Event
	for chunk := range chunks(parents, 200) {
		w := &where{}
		w.add("e.relates_to IN ("+w.in(eventStrings(chunk))+")", childConds, "e.rel_type = "+w.arg(rel))
		if extra != "" {
			w.add(extra)
		}
		q.childFilter(w)
		rows, err := qr.QueryContext(ctx, `SELECT `+eventCols+` FROM (
				SELECT e.event_nid AS nid, e.relates_to AS parent, ROW_NUMBER() OVER (PARTITION BY e.relates_to ORDER BY `+order+`) AS rn
				FROM events e JOIN events p ON p.event_id = e.relates_to WHERE `+w.String()+`
			) x JOIN events e ON e.event_nid = x.nid JOIN rooms r ON r.room_nid = e.room_nid LEFT JOIN txn_ids t ON t.event_id = e.event_id
			WHERE x.rn <= `+w.arg(n)+` ORDER BY x.parent, x.rn`, w.args...)
		if err != nil {
			return nil, err
		}
		evs, err := scanEvents(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	return out, nil
}

func eventStrings(ids []id.EventID) []string {
	out := make([]string, len(ids))
	for i, e := range ids {
		out[i] = string(e)
	}
	return out
}

// RelationsQuery is a page of the events that relate to one event, for
// GET /relations (client-server API, "Relationships API").
type RelationsQuery struct {
	Room   id.RoomID
	Parent id.EventID
	// RelType and Type, if set, must match every event returned and every
	// event between it and the parent.
	RelType, Type string
	// Levels is how deep relations are followed: 1 for direct children
	// only (the default), 3 for recurse=true.
	Levels int
	// From, Backwards and To page as in TimelineQuery; a nil From starts
	// at the newest (backwards) or oldest (forwards) child.
	From      *TopoPos
	Backwards bool
	To        *TopoPos
	MaxStream int64
	Ignored   []id.UserID
	Limit     int
}

// RelatedPage returns a page of the events relating to q.Parent in its
// room, directly or (with Levels > 1) through other relations, in
// topological order: newest first backwards, oldest first forwards.
func (db *DB) RelatedPage(ctx context.Context, q RelationsQuery) ([]*Event, error) {
	if q.Levels < 1 {
		q.Levels = 1
	}
	var out []*Event
	err := db.read(ctx, "related_page", func(qr querier) error {
		nid, err := roomNID(ctx, qr, q.Room)
		if err != nil {
			return err
		}
		w := &where{}
		step := func(parentCond string) string {
			conds := []string{parentCond, "e.room_nid = " + w.arg(nid), "e.stream_pos IS NOT NULL", "NOT e.rejected", "NOT e.soft_failed"}
			if q.RelType != "" {
				conds = append(conds, "e.rel_type = "+w.arg(q.RelType))
			}
			if q.Type != "" {
				conds = append(conds, "e.type = "+w.arg(q.Type))
			}
			return joinAnd(conds)
		}
		anchor := step("e.relates_to = " + w.arg(string(q.Parent)))
		recursive := step("rel.lvl < "+w.arg(q.Levels)) + " AND e.relates_to = rel.eid"
		cte := `WITH RECURSIVE rel (nid, eid, lvl) AS (
				SELECT e.event_nid, e.event_id, 1 FROM events e WHERE ` + anchor + `
				UNION ALL
				SELECT e.event_nid, e.event_id, rel.lvl + 1 FROM events e JOIN rel ON e.relates_to = rel.eid WHERE ` + recursive + `
			) `
		cmp, order := ">=", "ASC"
		if q.Backwards {
			cmp, order = "<", "DESC"
		}
		if q.From != nil {
			w.add(fmt.Sprintf("(e.depth, e.stream_pos) %s (%s, %s)", cmp, w.arg(q.From.Depth), w.arg(q.From.Stream)))
		}
		if q.To != nil {
			toCmp := "<"
			if q.Backwards {
				toCmp = ">="
			}
			w.add(fmt.Sprintf("(e.depth, e.stream_pos) %s (%s, %s)", toCmp, w.arg(q.To.Depth), w.arg(q.To.Stream)))
		}
		if q.MaxStream > 0 {
			w.add("e.stream_pos <= " + w.arg(q.MaxStream))
		}
		if len(q.Ignored) > 0 {
			w.add("e.sender NOT IN (" + w.in(userStrings(q.Ignored)) + ")")
		}
		cond := "TRUE"
		if len(w.conds) > 0 {
			cond = w.String()
		}
		rows, err := qr.QueryContext(ctx, cte+`SELECT `+eventCols+` FROM rel JOIN events e ON e.event_nid = rel.nid
			JOIN rooms r ON r.room_nid = e.room_nid LEFT JOIN txn_ids t ON t.event_id = e.event_id
			WHERE `+cond+` ORDER BY e.depth `+order+`, e.stream_pos `+order+` LIMIT `+w.arg(q.Limit), w.args...)
		if err != nil {
			return err
		}
		out, err = scanEvents(rows)
		return err
	})
	return out, err
}

func joinAnd(conds []string) string {
	w := where{conds: conds}
	return w.String()
}

// ThreadsQuery is a page of a room's threads, for GET /threads.
type ThreadsQuery struct {
	Room id.RoomID
	// Participant, if set, keeps the threads whose root or one of whose
	// events it sent.
	Participant id.UserID
	// MaxLatest keeps threads whose latest event has a stream position at
	// or below it (0: no bound): the pagination token.
	MaxLatest int64
	// MaxStream leaves out thread events past it (0: none).
	MaxStream int64
	Ignored   []id.UserID
	Limit     int
}

// ThreadRoot is a thread of a room and the stream position of its latest
// event.
type ThreadRoot struct {
	RootID id.EventID
	Latest int64
}

// Threads returns the roots of a room's threads, the thread with the most
// recent event first.
func (db *DB) Threads(ctx context.Context, q ThreadsQuery) ([]ThreadRoot, error) {
	var out []ThreadRoot
	err := db.read(ctx, "threads", func(qr querier) error {
		nid, err := roomNID(ctx, qr, q.Room)
		if err != nil {
			return err
		}
		w := &where{}
		w.add("e.room_nid = "+w.arg(nid), "e.rel_type = "+w.arg(RelThread), childConds,
			"p.stream_pos IS NOT NULL", "NOT p.rejected", "NOT p.soft_failed")
		if q.MaxStream > 0 {
			w.add("e.stream_pos <= " + w.arg(q.MaxStream))
		}
		if len(q.Ignored) > 0 {
			w.add("e.sender NOT IN (" + w.in(userStrings(q.Ignored)) + ")")
		}
		var having []string
		if q.MaxLatest > 0 {
			having = append(having, "MAX(e.stream_pos) <= "+w.arg(q.MaxLatest))
		}
		if q.Participant != "" {
			u1, u2 := w.arg(string(q.Participant)), w.arg(string(q.Participant))
			having = append(having, "(MAX(p.sender) = "+u1+" OR SUM(CASE WHEN e.sender = "+u2+" THEN 1 ELSE 0 END) > 0)")
		}
		query := `SELECT e.relates_to, MAX(e.stream_pos) AS latest FROM events e JOIN events p ON p.event_id = e.relates_to
			WHERE ` + w.String() + ` GROUP BY e.relates_to`
		if len(having) > 0 {
			query += ` HAVING ` + joinAnd(having)
		}
		rows, err := qr.QueryContext(ctx, query+` ORDER BY latest DESC LIMIT `+w.arg(q.Limit), w.args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var t ThreadRoot
			if err := rows.Scan(&t.RootID, &t.Latest); err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, err
}

// WithChildren returns which of the events have at least one event
// relating to them (of any kind, in any state): one query for a page of
// events of many rooms, so that aggregations are looked up only where
// there are some.
func (db *DB) WithChildren(ctx context.Context, parents []id.EventID) (map[id.EventID]bool, error) {
	out := map[id.EventID]bool{}
	err := db.read(ctx, "with_children", func(q querier) error {
		for chunk := range chunks(parents, 200) {
			args := make([]any, len(chunk))
			for i, e := range chunk {
				args[i] = string(e)
			}
			rows, err := q.QueryContext(ctx, `SELECT DISTINCT relates_to FROM events WHERE relates_to IN (`+placeholders(1, len(chunk))+`)`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var e id.EventID
				if err := rows.Scan(&e); err != nil {
					rows.Close()
					return err
				}
				out[e] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

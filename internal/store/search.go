package store

import (
	"context"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"
)

// Full-text search of events (client-server API, "Server Side Search").
// The index (table event_search, migration 0004) is an FTS5 table on SQLite
// and a tsvector column with a GIN index on PostgreSQL; triggers keep it in
// step with events, redactions included. Neither stems: stemming is
// language-specific, and a stemmed index defeats prefix queries (English
// stems "every" to "everi", which no longer begins "everyone"). Words match
// by prefix instead, on both engines alike.

// SearchTerm is one term of a full-text query: a word, or a phrase of
// words that must follow each other. Words hold only letters and digits.
type SearchTerm struct {
	Words []string
	// Prefix makes the last word match any word it begins.
	Prefix bool
	// Negated terms exclude the events that match them.
	Negated bool
}

// SearchRoom is a room to search, up to a stream position.
type SearchRoom struct {
	RoomID id.RoomID
	// MaxStream bounds the events searched (for a room the user left);
	// 0 means no bound.
	MaxStream int64
}

// SearchQuery is a full-text search of events.
type SearchQuery struct {
	// Match is a disjunction of conjunctions of terms. A conjunction
	// needs at least one term that is not negated; others are ignored.
	Match [][]SearchTerm
	Rooms []SearchRoom
	// Types are the event types searched (the indexed ones are
	// m.room.message, m.room.name and m.room.topic).
	Types      []string
	Senders    []id.UserID // if not empty, only these
	NotSenders []id.UserID
	// Recent orders by stream position, newest first, instead of by rank.
	Recent bool
	// Offset skips that many results (rank order); Before keeps only the
	// events below that stream position (recent order; 0: no bound).
	Offset int
	Before int64
	Limit  int
}

// SearchHit is an event that matched, with its rank (higher is closer).
type SearchHit struct {
	Event *Event
	Rank  float64
}

// SearchEvents runs a full-text search and returns up to q.Limit hits in
// the query's order. The events are timeline events, neither rejected nor
// soft-failed nor redacted, of rooms without end-to-end encryption (spec:
// "The search will not include rooms that are end to end encrypted");
// visibility to the searcher is the caller's business.
func (db *DB) SearchEvents(ctx context.Context, q SearchQuery) ([]SearchHit, error) {
	if err := db.indexPending(ctx); err != nil { // searchindex.go
		return nil, err
	}
	sqlText, args, ok := db.searchSQL(q, false)
	if !ok {
		return nil, nil
	}
	type hit struct {
		eid  id.EventID
		rank float64
	}
	var hits []hit
	err := db.read(ctx, "search_events", func(qr querier) error {
		rows, err := qr.QueryContext(ctx, sqlText, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var h hit
			if err := rows.Scan(&h.eid, &h.rank); err != nil {
				return err
			}
			hits = append(hits, h)
		}
		return rows.Err()
	})
	if err != nil || len(hits) == 0 {
		return nil, err
	}
	ids := make([]id.EventID, len(hits))
	for i, h := range hits {
		ids[i] = h.eid
	}
	evs, err := db.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[id.EventID]*Event, len(evs))
	for _, ev := range evs {
		byID[ev.EventID()] = ev
	}
	out := make([]SearchHit, 0, len(hits))
	for _, h := range hits {
		if ev := byID[h.eid]; ev != nil {
			out = append(out, SearchHit{Event: ev, Rank: h.rank})
		}
	}
	return out, nil
}

// CountSearch counts the events a search matches (ignoring order, offset
// and limit).
func (db *DB) CountSearch(ctx context.Context, q SearchQuery) (int, error) {
	if err := db.indexPending(ctx); err != nil { // searchindex.go
		return 0, err
	}
	sqlText, args, ok := db.searchSQL(q, true)
	if !ok {
		return 0, nil
	}
	var n int
	err := db.read(ctx, "count_search", func(qr querier) error {
		return qr.QueryRowContext(ctx, sqlText, args...).Scan(&n)
	})
	return n, err
}

// searchSQL builds the query of a search, or reports that it can match
// nothing. On PostgreSQL event_search holds copies of the columns searches
// filter and order by, so that only the page returned is joined to events;
// on SQLite the contentless FTS5 table holds tokens only, and each match is
// joined to events (a rowid lookup in the same process).
func (db *DB) searchSQL(q SearchQuery, count bool) (string, []any, bool) {
	if len(q.Rooms) == 0 || len(q.Types) == 0 {
		return "", nil, false
	}
	pg := db.dialect == Postgres
	var match string
	if pg {
		match = tsquery(q.Match)
	} else {
		match = fts5Query(q.Match)
	}
	if match == "" {
		return "", nil, false
	}
	args := []any{match}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	list := func(vs []string) string {
		ps := make([]string, len(vs))
		for i, v := range vs {
			ps[i] = arg(v)
		}
		return strings.Join(ps, ", ")
	}
	// c is the table the event's columns are read from.
	var c, from, rank string
	var where []string
	if pg {
		c = "s"
		from = ` FROM event_search s CROSS JOIN to_tsquery('simple', $1) AS tq (query)`
		rank = "ts_rank_cd(s.vector, tq.query)"
		where = []string{"s.vector @@ tq.query"}
	} else {
		c = "e"
		from = ` FROM event_search JOIN events e ON e.event_nid = event_search.rowid`
		rank = "-bm25(event_search)"
		// The triggers index only timeline events that are neither
		// rejected nor soft-failed; checking again costs nothing here.
		where = []string{"event_search MATCH $1", "e.stream_pos IS NOT NULL", "NOT e.rejected", "NOT e.soft_failed", "e.redacted_by IS NULL"}
	}
	// Rooms, with their bounds. "The search will not include rooms that
	// are end to end encrypted."
	const searchable = `SELECT r.room_nid FROM rooms r JOIN room_stats rs ON rs.room_nid = r.room_nid WHERE NOT rs.encrypted AND r.room_id`
	var free, rooms []string
	for _, r := range q.Rooms {
		if r.MaxStream <= 0 {
			free = append(free, string(r.RoomID))
			continue
		}
		rooms = append(rooms, fmt.Sprintf("(%s.room_nid IN (%s = %s) AND %s.stream_pos <= %s)",
			c, searchable, arg(string(r.RoomID)), c, arg(r.MaxStream)))
	}
	if len(free) > 0 {
		rooms = append(rooms, c+".room_nid IN ("+searchable+" IN ("+list(free)+"))")
	}
	where = append(where, "("+strings.Join(rooms, " OR ")+")")
	where = append(where, c+".type IN ("+list(q.Types)+")")
	if len(q.Senders) > 0 {
		where = append(where, c+".sender IN ("+list(senderStrings(q.Senders))+")")
	}
	if len(q.NotSenders) > 0 {
		where = append(where, c+".sender NOT IN ("+list(senderStrings(q.NotSenders))+")")
	}
	if q.Recent && q.Before > 0 {
		where = append(where, c+".stream_pos < "+arg(q.Before))
	}
	cond := " WHERE " + strings.Join(where, " AND ")
	if count {
		return "SELECT COUNT(*)" + from + cond, args, true
	}
	order := " ORDER BY score DESC, pos DESC"
	if q.Recent {
		order = " ORDER BY pos DESC"
	}
	limit := " LIMIT " + arg(max(q.Limit, 0))
	if !q.Recent && q.Offset > 0 {
		limit += " OFFSET " + arg(q.Offset)
	}
	page := "SELECT " + c + ".event_nid AS nid, " + c + ".stream_pos AS pos, " + rank + " AS score" + from + cond + order + limit
	return "SELECT p.event_id, x.score FROM (" + page + ") x JOIN events p ON p.event_nid = x.nid" + order, args, true
}

func senderStrings(us []id.UserID) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = string(u)
	}
	return out
}

// usable returns the conjunctions that have a positive term.
func usable(match [][]SearchTerm) [][]SearchTerm {
	var out [][]SearchTerm
	for _, and := range match {
		pos := false
		for _, t := range and {
			if !t.Negated && len(t.Words) > 0 {
				pos = true
			}
		}
		if pos {
			out = append(out, and)
		}
	}
	return out
}

// fts5Query writes a query in FTS5's syntax: phrases in double quotes, a
// trailing * for a prefix, AND, NOT and OR.
func fts5Query(match [][]SearchTerm) string {
	var ors []string
	for _, and := range usable(match) {
		var pos, neg []string
		for _, t := range and {
			if len(t.Words) == 0 {
				continue
			}
			p := `"` + strings.ReplaceAll(strings.Join(t.Words, " "), `"`, `""`) + `"`
			if t.Prefix {
				p += "*"
			}
			if t.Negated {
				neg = append(neg, p)
			} else {
				pos = append(pos, p)
			}
		}
		s := strings.Join(pos, " AND ")
		for _, n := range neg {
			s += " NOT " + n
		}
		ors = append(ors, "("+s+")")
	}
	return strings.Join(ors, " OR ")
}

// tsquery writes a query in PostgreSQL's tsquery syntax: <-> between the
// words of a phrase, :* for a prefix, &, ! and |. Words are letters and
// digits only, so none needs quoting.
func tsquery(match [][]SearchTerm) string {
	var ors []string
	for _, and := range usable(match) {
		var parts []string
		for _, t := range and {
			if len(t.Words) == 0 {
				continue
			}
			ws := make([]string, len(t.Words))
			for i, w := range t.Words {
				ws[i] = "'" + strings.ReplaceAll(w, "'", "''") + "'"
			}
			p := strings.Join(ws, " <-> ")
			if t.Prefix {
				p += ":*"
			}
			if len(ws) > 1 || t.Negated {
				p = "(" + p + ")"
			}
			if t.Negated {
				p = "!" + p
			}
			parts = append(parts, p)
		}
		ors = append(ors, "("+strings.Join(parts, " & ")+")")
	}
	return strings.Join(ors, " | ")
}

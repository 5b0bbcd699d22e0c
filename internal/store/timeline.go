package store

import (
	"context"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"
)

// EventFilter narrows the events a timeline query returns, in SQL. Types
// may hold '*' wildcards; because LIKE differs between the engines (it
// ignores ASCII case on SQLite), a wildcard type is only a pre-filter here
// and callers match types exactly afterwards. The other lists are exact.
type EventFilter struct {
	Types      []string
	NotTypes   []string // exact types only; wildcards are the caller's
	Senders    []id.UserID
	NotSenders []id.UserID
	// RelTypes keeps only events that relate to another with one of these
	// relation types; NotRelTypes leaves out events that do.
	RelTypes    []string
	NotRelTypes []string
	// Ignored senders: their message events are left out, their state
	// events kept (as the client-server API's "Ignoring users" asks).
	Ignored []id.UserID
}

// TimelineQuery is a page of a room's timeline in topological order.
//
// Positions are gaps between events: a TopoPos p stands for the point just
// before the event at p. Backwards returns the events before From (newest
// first); forwards the events at or after it (oldest first). To, if set,
// stops the page: backwards at the events before To, forwards at the
// events at or after To.
type TimelineQuery struct {
	Room      id.RoomID
	From      TopoPos
	Backwards bool
	To        *TopoPos
	// MaxStream leaves out events with a greater stream position (0: no
	// bound): what a former member may see, or a stream token's limit.
	MaxStream int64
	Filter    EventFilter
	Limit     int
}

// RoomTimeline returns a page of a room's timeline events (not outliers,
// rejected or soft-failed ones) for /messages and /context. ErrNotFound
// for an unknown room.
func (db *DB) RoomTimeline(ctx context.Context, q TimelineQuery) ([]*Event, error) {
	var out []*Event
	err := db.read(ctx, "room_timeline", func(qr querier) error {
		nid, err := roomNID(ctx, qr, q.Room)
		if err != nil {
			return err
		}
		w := &where{}
		w.add("e.room_nid = "+w.arg(nid), "e.stream_pos IS NOT NULL", "NOT e.rejected", "NOT e.soft_failed")
		cmp, order := ">=", "ASC"
		if q.Backwards {
			cmp, order = "<", "DESC"
		}
		w.add(fmt.Sprintf("(e.depth, e.stream_pos) %s (%s, %s)", cmp, w.arg(q.From.Depth), w.arg(q.From.Stream)))
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
		w.filter(q.Filter)
		rows, err := qr.QueryContext(ctx, `SELECT `+eventCols+eventFrom+`WHERE `+w.String()+
			` ORDER BY e.depth `+order+`, e.stream_pos `+order+` LIMIT `+w.arg(q.Limit), w.args...)
		if err != nil {
			return err
		}
		out, err = scanEvents(rows)
		return err
	})
	return out, err
}

// RoomTopoPosAt returns the topological position of a room's last event
// (in topological order) among those with a stream position at or below
// maxStream (0: no bound). ErrNotFound if there is none or the room is
// unknown.
func (db *DB) RoomTopoPosAt(ctx context.Context, roomID id.RoomID, maxStream int64) (TopoPos, error) {
	var p TopoPos
	err := db.read(ctx, "room_topo_pos", func(q querier) error {
		nid, err := roomNID(ctx, q, roomID)
		if err != nil {
			return err
		}
		if maxStream <= 0 {
			maxStream = 1 << 62
		}
		return notFound(q.QueryRowContext(ctx, `SELECT e.depth, e.stream_pos FROM events e
			WHERE e.room_nid = $1 AND e.stream_pos IS NOT NULL AND e.stream_pos <= $2 AND NOT e.rejected AND NOT e.soft_failed
			ORDER BY e.depth DESC, e.stream_pos DESC LIMIT 1`, nid, maxStream).Scan(&p.Depth, &p.Stream))
	})
	return p, err
}

// where builds a WHERE clause with numbered parameters.
type where struct {
	conds []string
	args  []any
}

func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return fmt.Sprintf("$%d", len(w.args))
}

func (w *where) add(conds ...string) { w.conds = append(w.conds, conds...) }

func (w *where) in(vals []string) string {
	ps := make([]string, len(vals))
	for i, v := range vals {
		ps[i] = w.arg(v)
	}
	return strings.Join(ps, ", ")
}

func (w *where) String() string { return strings.Join(w.conds, " AND ") }

func userStrings(us []id.UserID) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = string(u)
	}
	return out
}

// filter adds the conditions of an EventFilter on events e.
func (w *where) filter(f EventFilter) {
	if len(f.Types) > 0 {
		var exact, ors []string
		for _, t := range f.Types {
			if strings.Contains(t, "*") {
				ors = append(ors, "e.type LIKE "+w.arg(likePattern(t))+` ESCAPE '\'`)
			} else {
				exact = append(exact, t)
			}
		}
		if len(exact) > 0 {
			ors = append(ors, "e.type IN ("+w.in(exact)+")")
		}
		w.add("(" + strings.Join(ors, " OR ") + ")")
	}
	if len(f.NotTypes) > 0 {
		w.add("e.type NOT IN (" + w.in(f.NotTypes) + ")")
	}
	if len(f.Senders) > 0 {
		w.add("e.sender IN (" + w.in(userStrings(f.Senders)) + ")")
	}
	if len(f.NotSenders) > 0 {
		w.add("e.sender NOT IN (" + w.in(userStrings(f.NotSenders)) + ")")
	}
	if len(f.Ignored) > 0 {
		w.add("(e.state_key IS NOT NULL OR e.sender NOT IN (" + w.in(userStrings(f.Ignored)) + "))")
	}
	if len(f.RelTypes) > 0 {
		w.add("e.rel_type IN (" + w.in(f.RelTypes) + ")")
	}
	if len(f.NotRelTypes) > 0 {
		w.add("(e.rel_type IS NULL OR e.rel_type NOT IN (" + w.in(f.NotRelTypes) + "))")
	}
}

// likePattern turns a type with '*' wildcards into a LIKE pattern.
func likePattern(t string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`, `*`, `%`)
	return r.Replace(t)
}

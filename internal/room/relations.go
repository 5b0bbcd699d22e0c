package room

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// maxAnnotationKey bounds an annotation's key (Synapse's limit).
const maxAnnotationKey = 500

// checkRelation refuses, before a local event is sent, relations the
// server must not accept (Synapse's rules, which the spec's follow):
//   - a relation to an event of another room, or to an event the server
//     has never heard of (nothing relates to it either): 400 M_UNKNOWN;
//   - an annotation without a key or with a key over 500 bytes: 400
//     M_UNKNOWN; a second annotation by the same sender with the same
//     type and key on the same event: 400 M_DUPLICATE_ANNOTATION
//     ("Avoiding duplicate annotations");
//   - a thread off an event that itself has a relation: 400 M_UNKNOWN
//     ("Validation of m.thread relationships").
//
// Edits of edits and annotations of annotations are only ignored by the
// aggregation rules, not refused. The caller holds the room's send lock,
// so two identical annotations cannot both pass.
func (s *Service) checkRelation(ctx context.Context, pdu *event.PDU) error {
	to, rel, key := relatesTo(pdu.Content())
	if rel == "" {
		return nil
	}
	bad := func(msg string) error {
		return mxerr.Unknown("%s", msg).WithStatus(http.StatusBadRequest)
	}
	parent, err := s.db.Event(ctx, to)
	switch {
	case errors.Is(err, store.ErrNotFound):
		known, err := s.db.IsRelationTarget(ctx, to)
		if err != nil {
			return err
		}
		if !known {
			return bad("Can't send relation to unknown event")
		}
	case err != nil:
		return err
	case parent.RoomID() != pdu.RoomID():
		return bad("Relations must be in the same room")
	}
	switch rel {
	case store.RelAnnotation:
		if key == "" {
			return bad("Missing aggregation key")
		}
		if len(key) > maxAnnotationKey {
			return bad("Aggregation key is too long")
		}
		dup, err := s.db.HasAnnotation(ctx, to, pdu.Sender(), pdu.Type(), key)
		if err != nil {
			return err
		}
		if dup {
			return &mxerr.Error{Code: "M_DUPLICATE_ANNOTATION", Msg: "Can't send same reaction twice", Status: http.StatusBadRequest}
		}
	case store.RelThread:
		if parent != nil {
			if _, prel, _ := relatesTo(parent.Content()); prel != "" {
				return bad("Cannot start threads from an event with a relation")
			}
		}
	}
	return nil
}

// bundled returns the bundled aggregations (unsigned m.relations) of
// events: thread summaries, the latest edit and references (client-server
// API, "Aggregations of child events"). State events get none. Children
// from users the viewer ignores are left out, and a former member of the
// room sees none sent after it left.
func (s *Service) bundled(ctx context.Context, evs []*store.Event, v Viewer, o FormatOptions) (map[id.EventID][]byte, error) {
	return s.aggregate(ctx, evs, v, true, o)
}

// aggregate builds the bundled aggregations of evs, thread summaries only
// if threads (a thread's latest event gets its edits and references but
// no thread of its own, which also bounds the recursion).
func (s *Service) aggregate(ctx context.Context, evs []*store.Event, v Viewer, threads bool, o FormatOptions) (map[id.EventID][]byte, error) {
	byRoom := map[id.RoomID][]id.EventID{}
	senders := map[id.EventID]id.UserID{}
	var rooms []id.RoomID
	for _, ev := range evs {
		if ev.StateKey() != nil || ev.StreamPos == 0 {
			continue
		}
		if _, ok := byRoom[ev.RoomID()]; !ok {
			rooms = append(rooms, ev.RoomID())
		}
		byRoom[ev.RoomID()] = append(byRoom[ev.RoomID()], ev.EventID())
		senders[ev.EventID()] = ev.Sender()
	}
	if len(rooms) == 0 {
		return nil, nil
	}
	// Most events have no children: find those that do with one query for
	// the whole page, and look up aggregations only in their rooms.
	all := make([]id.EventID, 0, len(senders))
	for eid := range senders {
		all = append(all, eid)
	}
	has, err := s.db.WithChildren(ctx, all)
	if err != nil {
		return nil, err
	}
	kept := rooms[:0]
	for _, roomID := range rooms {
		var ps []id.EventID
		for _, eid := range byRoom[roomID] {
			if has[eid] {
				ps = append(ps, eid)
			}
		}
		if len(ps) > 0 {
			byRoom[roomID] = ps
			kept = append(kept, roomID)
		}
	}
	rooms = kept
	if len(rooms) == 0 {
		return nil, nil
	}
	ignored, err := s.IgnoredUsers(ctx, v.UserID)
	if err != nil {
		return nil, err
	}
	out := map[id.EventID][]byte{}
	for _, roomID := range rooms {
		if err := s.aggregateRoom(ctx, roomID, byRoom[roomID], senders, v, ignored, threads, o, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Service) aggregateRoom(ctx context.Context, roomID id.RoomID, parents []id.EventID, senders map[id.EventID]id.UserID, v Viewer, ignored map[id.UserID]bool, threads bool, o FormatOptions, out map[id.EventID][]byte) error {
	r := reader{user: v.UserID}
	if v.UserID != "" {
		m, err := s.db.UserMembership(ctx, roomID, v.UserID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		r.membership = m.Membership
		r.joined = m.Membership == Join
		if m.Membership == Leave || m.Membership == Ban {
			r.departed, r.bound = true, m.StreamPos
		}
	}
	agg, err := s.db.Aggregations(ctx, store.AggregationQuery{
		Parents: parents, User: v.UserID, Ignored: userList(ignored), MaxStream: r.bound, NoThreads: !threads,
	})
	if err != nil {
		return err
	}
	if len(agg.Threads) == 0 && len(agg.Edits) == 0 && len(agg.References) == 0 {
		return nil
	}
	now := time.Now().UnixMilli()
	// The latest event of each thread, if the viewer may see it, formatted
	// with its own aggregations.
	var latest []*store.Event
	for _, t := range agg.Threads {
		if t.Latest != nil {
			latest = append(latest, t.Latest)
		}
	}
	seen := map[id.EventID]bool{}
	if len(latest) > 0 {
		vis, err := s.visible(ctx, r, ignored, latest)
		if err != nil {
			return err
		}
		for _, ev := range vis {
			seen[ev.EventID()] = true
		}
		latest = vis
	}
	var latestAgg map[id.EventID][]byte
	if len(latest) > 0 {
		if latestAgg, err = s.aggregate(ctx, latest, v, false, o); err != nil {
			return err
		}
	}
	for _, parent := range parents {
		rel := []byte("{}")
		n := 0
		if t := agg.Threads[parent]; t != nil && t.Latest != nil && seen[t.Latest.EventID()] {
			th := []byte("{}")
			th = cjson.Set(nil, th, "count", strconv.AppendInt(nil, int64(t.Count), 10))
			// The user took part if it sent the root or an event of the
			// thread.
			mine := t.Participated || (v.UserID != "" && senders[parent] == v.UserID)
			th = cjson.Set(nil, th, "current_user_participated", []byte(strconv.FormatBool(mine)))
			th = cjson.Set(nil, th, "latest_event", s.formatOne(t.Latest, v, nil, latestAgg[t.Latest.EventID()], now, FormatOptions{NoRoomID: o.NoRoomID, Federation: o.Federation}))
			rel = cjson.Set(nil, rel, "m.thread", th)
			n++
		}
		for _, edit := range agg.Edits[parent] {
			if !validEdit(edit) {
				continue
			}
			rel = cjson.Set(nil, rel, "m.replace", s.formatOne(edit, v, nil, nil, now, FormatOptions{NoRoomID: o.NoRoomID, Federation: o.Federation}))
			n++
			break
		}
		if refs := agg.References[parent]; len(refs) > 0 {
			chunk := []byte{'['}
			for i, eid := range refs {
				if i > 0 {
					chunk = append(chunk, ',')
				}
				chunk = append(chunk, `{"event_id":`...)
				chunk = cjson.AppendString(chunk, string(eid))
				chunk = append(chunk, '}')
			}
			chunk = append(chunk, ']')
			rel = cjson.Set(nil, rel, "m.reference", cjson.Set(nil, []byte("{}"), "chunk", chunk))
			n++
		}
		if n > 0 {
			out[parent] = rel
		}
	}
	return nil
}

// validEdit checks what SQL could not of an edit's validity: it carries
// m.new_content (inside the ciphertext for encrypted events, which the
// server cannot see).
func validEdit(ev *store.Event) bool {
	if ev.Type() == "m.room.encrypted" {
		return true
	}
	nc, ok := cjson.Get(ev.Content(), "m.new_content")
	return ok && len(nc) > 0 && nc[0] == '{'
}

// RelationsRequest is GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
type RelationsRequest struct {
	EventID            id.EventID
	RelType, EventType string
	// From and To are pagination tokens (ours, or /messages' and /sync's).
	From, To  string
	Backwards bool
	Limit     int
	// Recurse follows relations of relations, RecurseLevels deep.
	Recurse bool
}

// RecurseLevels is how deep recurse=true follows relations (the spec asks
// for at least 3).
const RecurseLevels = 3

// RelationsPage is a page of child events.
type RelationsPage struct {
	Chunk []*store.Event
	// NextBatch is "" when there is nothing more; PrevBatch echoes From.
	NextBatch, PrevBatch string
}

// Relations is GET /relations (client-server API, "Relationships API"):
// the events that relate to an event the user may see, newest first
// (backwards, the default) or oldest first. M_FORBIDDEN if the user may
// not read the room, M_NOT_FOUND if it may not see the parent,
// M_INVALID_PARAM for a bad token.
func (s *Service) Relations(ctx context.Context, user id.UserID, roomID id.RoomID, req RelationsRequest) (*RelationsPage, error) {
	r, err := s.reader(ctx, user, roomID)
	if err != nil {
		return nil, err
	}
	if _, err := s.readableEvent(ctx, r, roomID, req.EventID); err != nil {
		return nil, err
	}
	ignored, err := s.IgnoredUsers(ctx, user)
	if err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 5
	}
	limit = min(limit, MaxLimit)
	q := store.RelationsQuery{
		Room: roomID, Parent: req.EventID, RelType: req.RelType, Type: req.EventType, Levels: 1,
		Backwards: req.Backwards, Ignored: userList(ignored), Limit: limit + 1,
	}
	if req.Recurse {
		q.Levels = RecurseLevels
	}
	if r.departed {
		q.MaxStream = r.bound
	}
	if req.From != "" {
		from, ms, err := s.parseGap(ctx, roomID, req.From)
		if err != nil {
			return nil, err
		}
		q.From = &from
		if req.Backwards && ms > 0 && (q.MaxStream == 0 || ms < q.MaxStream) {
			q.MaxStream = ms
		}
	}
	if req.To != "" {
		to, _, err := s.parseGap(ctx, roomID, req.To)
		if err != nil {
			return nil, err
		}
		q.To = &to
	}
	evs, err := s.db.RelatedPage(ctx, q)
	if err != nil {
		return nil, err
	}
	out := &RelationsPage{PrevBatch: req.From}
	if len(evs) > limit {
		evs = evs[:limit]
		last := evs[len(evs)-1]
		if req.Backwards {
			out.NextBatch = posToken(gapBefore(last))
		} else {
			out.NextBatch = posToken(gapAfter(last))
		}
	}
	if out.Chunk, err = s.visible(ctx, r, ignored, evs); err != nil {
		return nil, err
	}
	return out, nil
}

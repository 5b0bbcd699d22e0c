package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

// This file reads a room's events for clients: single events, /messages
// pagination, /context, members, state and timestamp lookups. Every event
// returned passes history visibility (Visible) and the reader's ignore
// list, and a former member reads nothing after its leave (or ban).
//
// Pagination tokens are gaps between events in topological order (see
// Token): the gap before the event at (depth, stream) is "t{depth}_{stream}"
// and the gap after it "t{depth}_{stream+1}". Backwards pagination returns
// the events before the gap, forwards the events after it, so the end of a
// page in one direction is a valid start in either.

// MaxLimit caps the number of events a page returns.
const MaxLimit = 1000

// RoomEventFilter is the RoomEventFilter of the client-server API
// ("Filtering"), as far as the endpoints that read a room's timeline use
// it. Absent lists do not filter; an empty types or senders list matches
// nothing.
//
// It is kept here rather than in the sync package's filters so that room
// does not depend on sync; the two must agree on the matching rules.
type RoomEventFilter struct {
	Limit                   *int         `json:"limit,omitempty"`
	Types                   *[]string    `json:"types,omitempty"`
	NotTypes                []string     `json:"not_types,omitempty"`
	Senders                 *[]id.UserID `json:"senders,omitempty"`
	NotSenders              []id.UserID  `json:"not_senders,omitempty"`
	Rooms                   *[]id.RoomID `json:"rooms,omitempty"`
	NotRooms                []id.RoomID  `json:"not_rooms,omitempty"`
	ContainsURL             *bool        `json:"contains_url,omitempty"`
	LazyLoadMembers         bool         `json:"lazy_load_members,omitempty"`
	IncludeRedundantMembers bool         `json:"include_redundant_members,omitempty"`
	// RelTypes and NotRelTypes filter on the relation type (MSC3874,
	// accepted under its unstable names too).
	RelTypes    []string `json:"rel_types,omitempty"`
	NotRelTypes []string `json:"not_rel_types,omitempty"`
}

// ParseRoomEventFilter parses the JSON filter query parameter of
// /messages and /context. M_INVALID_PARAM if it is not a valid filter.
func ParseRoomEventFilter(raw string) (*RoomEventFilter, error) {
	f := &RoomEventFilter{}
	if raw == "" {
		return f, nil
	}
	if err := json.Unmarshal([]byte(raw), f); err != nil {
		return nil, mxerr.InvalidParam("Invalid filter: %v", err)
	}
	var unstable struct {
		RelTypes    []string `json:"org.matrix.msc3874.rel_types"`
		NotRelTypes []string `json:"org.matrix.msc3874.not_rel_types"`
	}
	_ = json.Unmarshal([]byte(raw), &unstable)
	f.RelTypes = append(f.RelTypes, unstable.RelTypes...)
	f.NotRelTypes = append(f.NotRelTypes, unstable.NotRelTypes...)
	if f.Limit != nil && *f.Limit < 1 {
		return nil, mxerr.InvalidParam("Invalid filter: limit must be greater than 0")
	}
	return f, nil
}

// matchesNothing reports whether the filter excludes every event of a
// room.
func (f *RoomEventFilter) matchesNothing(roomID id.RoomID) bool {
	if f == nil {
		return false
	}
	if (f.Types != nil && len(*f.Types) == 0) || (f.Senders != nil && len(*f.Senders) == 0) {
		return true
	}
	if f.Rooms != nil && !slices.Contains(*f.Rooms, roomID) {
		return true
	}
	return slices.Contains(f.NotRooms, roomID)
}

// Match reports whether an event passes the filter.
func (f *RoomEventFilter) Match(ev *store.Event) bool {
	if f == nil {
		return true
	}
	if f.Types != nil && !slices.ContainsFunc(*f.Types, func(p string) bool { return typeMatch(p, ev.Type()) }) {
		return false
	}
	if slices.ContainsFunc(f.NotTypes, func(p string) bool { return typeMatch(p, ev.Type()) }) {
		return false
	}
	if f.Senders != nil && !slices.Contains(*f.Senders, ev.Sender()) {
		return false
	}
	if slices.Contains(f.NotSenders, ev.Sender()) {
		return false
	}
	if f.ContainsURL != nil {
		_, has := getString(ev.Content(), "url")
		if has != *f.ContainsURL {
			return false
		}
	}
	if len(f.RelTypes) > 0 || len(f.NotRelTypes) > 0 {
		_, rel, _ := relatesTo(ev.Content())
		if len(f.RelTypes) > 0 && !slices.Contains(f.RelTypes, rel) {
			return false
		}
		if rel != "" && slices.Contains(f.NotRelTypes, rel) {
			return false
		}
	}
	return true
}

// typeMatch matches an event type against a filter pattern, in which '*'
// stands for any sequence of characters.
func typeMatch(pattern, typ string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == typ
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(typ, parts[0]) {
		return false
	}
	typ = typ[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(typ, p)
		if i < 0 {
			return false
		}
		typ = typ[i+len(p):]
	}
	return strings.HasSuffix(typ, last)
}

// storeFilter is the part of the filter SQL applies (Match re-checks).
func (f *RoomEventFilter) storeFilter(ignored []id.UserID) store.EventFilter {
	out := store.EventFilter{Ignored: ignored}
	if f == nil {
		return out
	}
	if f.Types != nil {
		out.Types = *f.Types
	}
	for _, t := range f.NotTypes {
		if !strings.Contains(t, "*") {
			out.NotTypes = append(out.NotTypes, t)
		}
	}
	if f.Senders != nil {
		out.Senders = *f.Senders
	}
	out.NotSenders = f.NotSenders
	out.RelTypes, out.NotRelTypes = f.RelTypes, f.NotRelTypes
	return out
}

// reader is what a user may read of a room.
type reader struct {
	user       id.UserID
	membership string // current membership, "" if none
	joined     bool
	// departed: a former member (leave or ban) reads up to its membership
	// event, at stream position bound.
	departed bool
	leaveID  id.EventID
	bound    int64
	// worldReadable: the room's current history visibility.
	worldReadable bool
}

// reader decides whether user may read a room (client-server API, "Room
// history visibility"; Synapse's "in room or world readable, departed
// users allowed"): joined members may, former members may read up to
// their leave, and anyone may read a world_readable room. M_FORBIDDEN
// otherwise, and for rooms this server does not know.
func (s *Service) reader(ctx context.Context, user id.UserID, roomID id.RoomID) (reader, error) {
	r := reader{user: user}
	m, err := s.db.UserMembership(ctx, roomID, user)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return r, err
	default:
		r.membership = m.Membership
	}
	c, err := s.StateContent(ctx, roomID, event.TypeHistoryVisibility, "")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return r, err
	}
	v, _ := getString(c, "history_visibility")
	r.worldReadable = v == WorldReadable
	switch r.membership {
	case Join:
		r.joined = true
		return r, nil
	case Leave, Ban:
		if !m.Forgotten { // a forgotten room is as one never joined
			r.departed, r.leaveID, r.bound = true, m.EventID, m.StreamPos
			return r, nil
		}
		r.membership = ""
	}
	if r.worldReadable {
		return r, nil
	}
	return r, mxerr.Forbidden("You are not allowed to read room %s", roomID)
}

// visible filters events by history visibility, the reader's bound and
// its ignore list (message events of ignored users are hidden).
func (s *Service) visible(ctx context.Context, r reader, ignored map[id.UserID]bool, evs []*store.Event) ([]*store.Event, error) {
	kept := make([]*store.Event, 0, len(evs))
	for _, ev := range evs {
		if r.departed && ev.StreamPos > r.bound {
			continue
		}
		if ignored[ev.Sender()] && ev.StateKey() == nil {
			continue
		}
		kept = append(kept, ev)
	}
	if len(kept) == 0 {
		return kept, nil
	}
	return s.visibleBatch(ctx, r.user, r.joined, kept)
}

// visibleBatch is Visible (one batched read of states for a page).
func (s *Service) visibleBatch(ctx context.Context, user id.UserID, currentlyJoined bool, evs []*store.Event) ([]*store.Event, error) {
	return s.Visible(ctx, user, currentlyJoined, evs)
}

// IgnoredUsers returns the users a user ignores (its m.ignored_user_list
// account data; client-server API, "Ignoring users").
func (s *Service) IgnoredUsers(ctx context.Context, user id.UserID) (map[id.UserID]bool, error) {
	out := map[id.UserID]bool{}
	if user == "" {
		return out, nil
	}
	c, err := s.db.AccountData(ctx, user, "", "m.ignored_user_list")
	if errors.Is(err, store.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	list, _ := cjson.Get(c, "ignored_users")
	for k := range cjson.Members(list) {
		out[id.UserID(unescapeKey(k))] = true
	}
	return out, nil
}

// unescapeKey turns a member name as cjson.Members gives it into a string.
func unescapeKey(k []byte) string {
	if len(k) > 0 && k[0] == '"' {
		s, _ := cjson.Unquote(k)
		return s
	}
	s, err := cjson.Unquote(append(append([]byte{'"'}, k...), '"'))
	if err != nil {
		return string(k)
	}
	return s
}

func userList(m map[id.UserID]bool) []id.UserID {
	out := make([]id.UserID, 0, len(m))
	for u := range m {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Event is GET /rooms/{roomId}/event/{eventId}: one event of a room the
// user may see. M_NOT_FOUND if the event is unknown, of another room, or
// hidden from it, or if the user may not read the room.
func (s *Service) Event(ctx context.Context, user id.UserID, roomID id.RoomID, eventID id.EventID) (*store.Event, error) {
	r, err := s.reader(ctx, user, roomID)
	if mx, ok := mxerr.As(err); ok && mx.Code == "M_FORBIDDEN" {
		// The spec's 404: "not found or you do not have permission to
		// read this event" (Complement TestFetchEventNonWorldReadable).
		return nil, mxerr.NotFound("Event not found")
	}
	if err != nil {
		return nil, err
	}
	return s.readableEvent(ctx, r, roomID, eventID)
}

// readableEvent loads an event of the room that r may see, or returns
// M_NOT_FOUND.
func (s *Service) readableEvent(ctx context.Context, r reader, roomID id.RoomID, eventID id.EventID) (*store.Event, error) {
	notFound := mxerr.NotFound("Event not found")
	ev, err := s.db.Event(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	if ev.RoomID() != roomID || ev.StreamPos == 0 || ev.IsRejected || ev.SoftFailed {
		return nil, notFound
	}
	ignored, err := s.IgnoredUsers(ctx, r.user)
	if err != nil {
		return nil, err
	}
	vis, err := s.visible(ctx, r, ignored, []*store.Event{ev})
	if err != nil {
		return nil, err
	}
	if len(vis) == 0 {
		return nil, notFound
	}
	return ev, nil
}

// gapBefore and gapAfter are the tokens of the gaps around an event.
func gapBefore(ev *store.Event) store.TopoPos {
	return store.TopoPos{Depth: ev.Depth(), Stream: ev.StreamPos}
}

func gapAfter(ev *store.Event) store.TopoPos {
	return store.TopoPos{Depth: ev.Depth(), Stream: ev.StreamPos + 1}
}

func posToken(p store.TopoPos) string { return TopoToken(p.Depth, p.Stream).String() }

// parseGap parses a pagination token into a gap of a room. A stream token
// (from /sync) stands for the gap after the room's last event at or below
// its stream position, and also bounds the stream positions a backwards
// page may return (maxStream). M_INVALID_PARAM for a malformed token.
func (s *Service) parseGap(ctx context.Context, roomID id.RoomID, tok string) (gap store.TopoPos, maxStream int64, err error) {
	t, err := ParseToken(tok)
	if err != nil {
		return gap, 0, mxerr.InvalidParam("Invalid pagination token %q", tok)
	}
	if t.Topological {
		return store.TopoPos{Depth: t.Depth, Stream: t.Stream}, 0, nil
	}
	if t.Stream == 0 {
		// Before the server's first event (a sync timeline starting at
		// stream position 1): nothing, and no stream bound (0 is none).
		return store.TopoPos{}, 0, nil
	}
	p, err := s.db.RoomTopoPosAt(ctx, roomID, t.Stream)
	if errors.Is(err, store.ErrNotFound) {
		return store.TopoPos{}, t.Stream, nil
	}
	if err != nil {
		return gap, 0, err
	}
	return store.TopoPos{Depth: p.Depth, Stream: p.Stream + 1}, t.Stream, nil
}

// endGap is the gap after the last event r may see.
func (s *Service) endGap(ctx context.Context, r reader, roomID id.RoomID) (store.TopoPos, error) {
	var bound int64
	if r.departed {
		bound = r.bound
	}
	p, err := s.db.RoomTopoPosAt(ctx, roomID, bound)
	if errors.Is(err, store.ErrNotFound) {
		return store.TopoPos{}, nil
	}
	if err != nil {
		return store.TopoPos{}, err
	}
	return store.TopoPos{Depth: p.Depth, Stream: p.Stream + 1}, nil
}

// pageQuery is one direction of timeline pagination.
type pageQuery struct {
	r         reader
	room      id.RoomID
	from      store.TopoPos
	to        *store.TopoPos
	backwards bool
	maxStream int64
	filter    *RoomEventFilter
	ignored   map[id.UserID]bool
	limit     int
}

// page reads up to q.limit events the reader may see, starting at q.from.
// Events the filter, the ignore list or history visibility drop are
// skipped; it reads at most scanBudget events, so a page may come back
// short (even empty) with more to read. It returns the events, the gap
// after the last event it read, and whether the timeline is exhausted in
// that direction.
func (s *Service) page(ctx context.Context, q pageQuery) ([]*store.Event, store.TopoPos, bool, error) {
	pos := q.from
	if q.limit <= 0 {
		return nil, pos, false, nil
	}
	if q.filter.matchesNothing(q.room) {
		return nil, pos, true, nil
	}
	maxStream := q.maxStream
	if q.r.departed && (maxStream == 0 || q.r.bound < maxStream) {
		maxStream = q.r.bound
	}
	sf := q.filter.storeFilter(userList(q.ignored))
	budget := max(q.limit*10, 500)
	var out []*store.Event
	scanned := 0
	after := func(ev *store.Event) store.TopoPos {
		if q.backwards {
			return gapBefore(ev)
		}
		return gapAfter(ev)
	}
	for len(out) < q.limit {
		// Read at least a few events at a time, so that a small page of a
		// sparse history does not cost a statement per event.
		fetch := min(max(q.limit-len(out), 20), MaxLimit)
		batch, err := s.db.RoomTimeline(ctx, store.TimelineQuery{
			Room: q.room, From: pos, Backwards: q.backwards, To: q.to, MaxStream: maxStream, Filter: sf, Limit: fetch,
		})
		if err != nil {
			return nil, pos, false, err
		}
		scanned += len(batch)
		matched := batch[:0:0]
		for _, ev := range batch {
			if q.filter.Match(ev) {
				matched = append(matched, ev)
			}
		}
		vis, err := s.visible(ctx, q.r, q.ignored, matched)
		if err != nil {
			return nil, pos, false, err
		}
		keep := make(map[id.EventID]bool, len(vis))
		for _, ev := range vis {
			keep[ev.EventID()] = true
		}
		short := len(batch) < fetch
		for i, ev := range batch {
			pos = after(ev)
			if !keep[ev.EventID()] {
				continue
			}
			out = append(out, ev)
			if len(out) == q.limit {
				return out, pos, short && i == len(batch)-1, nil
			}
		}
		if short {
			return out, pos, true, nil
		}
		if scanned >= budget {
			break
		}
	}
	return out, pos, false, nil
}

// MessagesRequest is GET /rooms/{roomId}/messages.
type MessagesRequest struct {
	// From and To are pagination tokens; From "" starts at the newest
	// (backwards) or oldest (forwards) event the user may see.
	From, To  string
	Backwards bool
	// Limit of events (default 10, at most MaxLimit).
	Limit  int
	Filter *RoomEventFilter
}

// Messages is a page of a room's timeline.
type Messages struct {
	Chunk []*store.Event
	Start string
	// End is "" when there is nothing more in that direction.
	End string
	// State holds the member events of the chunk's senders when the filter
	// lazy-loads members.
	State []*store.Event
}

// Messages is GET /rooms/{roomId}/messages (client-server API, "Getting
// events for a room"). M_FORBIDDEN if the user may not read the room,
// M_INVALID_PARAM for a malformed token.
func (s *Service) Messages(ctx context.Context, user id.UserID, roomID id.RoomID, req MessagesRequest) (*Messages, error) {
	r, err := s.reader(ctx, user, roomID)
	if err != nil {
		return nil, err
	}
	q := pageQuery{r: r, room: roomID, backwards: req.Backwards, filter: req.Filter, limit: req.Limit}
	if q.limit == 0 {
		q.limit = 10
		if req.Filter != nil && req.Filter.Limit != nil {
			q.limit = *req.Filter.Limit
		}
	}
	q.limit = min(q.limit, MaxLimit)
	out := &Messages{Start: req.From}
	if req.From != "" {
		var ms int64
		if q.from, ms, err = s.parseGap(ctx, roomID, req.From); err != nil {
			return nil, err
		}
		if req.Backwards {
			q.maxStream = ms
		}
	} else if req.Backwards {
		if q.from, err = s.endGap(ctx, r, roomID); err != nil {
			return nil, err
		}
		out.Start = posToken(q.from)
	} else {
		out.Start = posToken(q.from)
	}
	if req.To != "" {
		to, _, err := s.parseGap(ctx, roomID, req.To)
		if err != nil {
			return nil, err
		}
		q.to = &to
	}
	if q.ignored, err = s.IgnoredUsers(ctx, user); err != nil {
		return nil, err
	}
	evs, end, exhausted, err := s.page(ctx, q)
	if err != nil {
		return nil, err
	}
	if req.Backwards && exhausted && len(evs) < q.limit && req.To == "" {
		// Past the oldest event we hold: ask the room's other servers.
		if ok, err := s.backfill(ctx, roomID, q.limit-len(evs)); err != nil {
			s.log.Warn("backfill", "room_id", roomID, "err", err)
		} else if ok {
			q.from, q.limit = end, q.limit-len(evs)
			more, end2, _, err := s.page(ctx, q)
			if err != nil {
				return nil, err
			}
			// More may be there: the client asks again and we backfill on.
			evs, end, exhausted = append(evs, more...), end2, false
		}
	}
	out.Chunk = evs
	if !exhausted {
		out.End = posToken(end)
	}
	if req.Filter != nil && req.Filter.LazyLoadMembers {
		if out.State, err = s.senderMembers(ctx, evs); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// senderMembers returns the member events of the senders of evs, each as
// of the sender's first event among them (lazy-loading members).
func (s *Service) senderMembers(ctx context.Context, evs []*store.Event) ([]*store.Event, error) {
	seen := map[id.UserID]bool{}
	var ids []id.EventID
	for _, ev := range evs {
		if seen[ev.Sender()] {
			continue
		}
		seen[ev.Sender()] = true
		state, err := s.db.StateAfter(ctx, ev.EventID())
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if eid, ok := state[stateres.StateKey{Type: event.TypeMember, StateKey: string(ev.Sender())}]; ok && !slices.Contains(ids, eid) {
			ids = append(ids, eid)
		}
	}
	return s.eventsInOrder(ctx, ids)
}

// eventsInOrder loads events, in the order of ids; missing ones are left
// out.
func (s *Service) eventsInOrder(ctx context.Context, ids []id.EventID) ([]*store.Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	evs, err := s.db.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[id.EventID]*store.Event, len(evs))
	for _, ev := range evs {
		byID[ev.EventID()] = ev
	}
	out := make([]*store.Event, 0, len(ids))
	for _, eid := range ids {
		if ev := byID[eid]; ev != nil {
			out = append(out, ev)
		}
	}
	return out, nil
}

// ContextResult is GET /rooms/{roomId}/context/{eventId}.
type ContextResult struct {
	Event  *store.Event
	Before []*store.Event // newest first
	After  []*store.Event // oldest first
	// Start and End are tokens to paginate further backwards and forwards.
	Start, End string
	// State is the room's state after the last event returned.
	State []*store.Event
}

// Context is GET /rooms/{roomId}/context/{eventId} (client-server API,
// "Event context"): the event, up to limit events around it (half before,
// half after) that pass the filter, and the state. The filter does not
// apply to the event itself. M_FORBIDDEN if the user may not read the
// room, M_NOT_FOUND if it may not see the event.
func (s *Service) Context(ctx context.Context, user id.UserID, roomID id.RoomID, eventID id.EventID, limit int, f *RoomEventFilter) (*ContextResult, error) {
	r, err := s.reader(ctx, user, roomID)
	if err != nil {
		return nil, err
	}
	ev, err := s.readableEvent(ctx, r, roomID, eventID)
	if err != nil {
		return nil, err
	}
	ignored, err := s.IgnoredUsers(ctx, user)
	if err != nil {
		return nil, err
	}
	limit = min(limit, MaxLimit)
	before, start, _, err := s.page(ctx, pageQuery{r: r, room: roomID, from: gapBefore(ev), backwards: true, filter: f, ignored: ignored, limit: limit / 2})
	if err != nil {
		return nil, err
	}
	after, end, _, err := s.page(ctx, pageQuery{r: r, room: roomID, from: gapAfter(ev), filter: f, ignored: ignored, limit: limit - limit/2})
	if err != nil {
		return nil, err
	}
	out := &ContextResult{Event: ev, Before: before, After: after, Start: posToken(start), End: posToken(end)}
	last := ev
	if len(after) > 0 {
		last = after[len(after)-1]
	}
	state, err := s.db.StateAfter(ctx, last.EventID())
	if err != nil {
		return nil, err
	}
	var senders map[id.UserID]bool
	if f != nil && f.LazyLoadMembers {
		senders = map[id.UserID]bool{ev.Sender(): true}
		for _, e := range append(slices.Clone(before), after...) {
			senders[e.Sender()] = true
		}
	}
	var ids []id.EventID
	for k, eid := range state {
		if senders != nil && k.Type == event.TypeMember && !senders[id.UserID(k.StateKey)] {
			continue
		}
		ids = append(ids, eid)
	}
	evs, err := s.eventsInOrder(ctx, sortedIDs(state, ids))
	if err != nil {
		return nil, err
	}
	for _, e := range evs {
		if f.Match(e) {
			out.State = append(out.State, e)
		}
	}
	return out, nil
}

// sortedIDs orders the event IDs of a state by type and state key, so
// that responses are stable.
func sortedIDs(state stateres.StateMap, ids []id.EventID) []id.EventID {
	keys := make(map[id.EventID]stateres.StateKey, len(state))
	for k, eid := range state {
		keys[eid] = k
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := keys[ids[i]], keys[ids[j]]
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		return a.StateKey < b.StateKey
	})
	return ids
}

// stateOf returns the state r reads: the current state for members and
// readers of a world readable room, the state at its leave for a former
// member.
func (s *Service) stateOf(ctx context.Context, r reader, roomID id.RoomID, types ...string) ([]*store.Event, error) {
	if !r.departed {
		evs, err := s.db.CurrentStateEvents(ctx, roomID, types...)
		if err != nil {
			return nil, err
		}
		sort.Slice(evs, func(i, j int) bool {
			if evs[i].Type() != evs[j].Type() {
				return evs[i].Type() < evs[j].Type()
			}
			return *evs[i].StateKey() < *evs[j].StateKey()
		})
		return evs, nil
	}
	state, err := s.db.StateAfter(ctx, r.leaveID)
	if err != nil {
		return nil, err
	}
	return s.stateEvents(ctx, state, types...)
}

// stateEvents loads the events of a state (or of the given types only),
// in type and state key order.
func (s *Service) stateEvents(ctx context.Context, state stateres.StateMap, types ...string) ([]*store.Event, error) {
	var ids []id.EventID
	for k, eid := range state {
		if len(types) == 0 || slices.Contains(types, k.Type) {
			ids = append(ids, eid)
		}
	}
	return s.eventsInOrder(ctx, sortedIDs(state, ids))
}

// State is GET /rooms/{roomId}/state: the current state for members (and
// anyone, of a world readable room), the state at its leave for a former
// member. M_FORBIDDEN otherwise.
func (s *Service) State(ctx context.Context, user id.UserID, roomID id.RoomID) ([]*store.Event, error) {
	r, err := s.reader(ctx, user, roomID)
	if err != nil {
		return nil, err
	}
	return s.stateOf(ctx, r, roomID)
}

// MembersRequest is GET /rooms/{roomId}/members.
type MembersRequest struct {
	// At is a pagination token: the members as of that point.
	At string
	// Membership keeps, NotMembership drops, members with that
	// membership. Both apply when both are given (as Synapse and
	// Dendrite do; the spec's wording says "or").
	Membership, NotMembership string
}

// Members is GET /rooms/{roomId}/members: the room's member events, now
// or as of a token (a former member sees them as of its leave at the
// latest). M_FORBIDDEN if the user may not read the room, M_INVALID_PARAM
// for a bad token.
func (s *Service) Members(ctx context.Context, user id.UserID, roomID id.RoomID, req MembersRequest) ([]*store.Event, error) {
	r, err := s.reader(ctx, user, roomID)
	if err != nil {
		return nil, err
	}
	var evs []*store.Event
	if req.At != "" {
		gap, maxStream, err := s.parseGap(ctx, roomID, req.At)
		if err != nil {
			return nil, err
		}
		if r.departed && (maxStream == 0 || r.bound < maxStream) {
			maxStream = r.bound
		}
		last, err := s.db.RoomTimeline(ctx, store.TimelineQuery{Room: roomID, From: gap, Backwards: true, MaxStream: maxStream, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(last) > 0 {
			state, err := s.db.StateAfter(ctx, last[0].EventID())
			if err != nil {
				return nil, err
			}
			if evs, err = s.stateEvents(ctx, state, event.TypeMember); err != nil {
				return nil, err
			}
		}
	} else if evs, err = s.stateOf(ctx, r, roomID, event.TypeMember); err != nil {
		return nil, err
	}
	out := evs[:0:0]
	for _, ev := range evs {
		m, _ := getString(ev.Content(), "membership")
		if req.Membership != "" && m != req.Membership {
			continue
		}
		if req.NotMembership != "" && m == req.NotMembership {
			continue
		}
		out = append(out, ev)
	}
	return out, nil
}

// Member is a joined member's profile in the room.
type Member struct {
	DisplayName string `json:"display_name,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// JoinedMembers is GET /rooms/{roomId}/joined_members: the room's joined
// members with their profiles. Only members (and anyone, of a world
// readable room) may ask: M_FORBIDDEN otherwise.
func (s *Service) JoinedMembers(ctx context.Context, user id.UserID, roomID id.RoomID) (map[id.UserID]Member, error) {
	r, err := s.reader(ctx, user, roomID)
	if err != nil {
		return nil, err
	}
	if !r.joined && !r.worldReadable {
		return nil, mxerr.Forbidden("You aren't a member of room %s", roomID)
	}
	evs, err := s.db.CurrentStateEvents(ctx, roomID, event.TypeMember)
	if err != nil {
		return nil, err
	}
	out := map[id.UserID]Member{}
	for _, ev := range evs {
		if m, _ := getString(ev.Content(), "membership"); m != Join {
			continue
		}
		var p Member
		p.DisplayName, _ = getString(ev.Content(), "displayname")
		p.AvatarURL, _ = getString(ev.Content(), "avatar_url")
		out[id.UserID(*ev.StateKey())] = p
	}
	return out, nil
}

// TimestampToEvent is GET /rooms/{roomId}/timestamp_to_event: the event
// closest to ts in the direction given that the user may see.
// M_FORBIDDEN if it may not read the room, M_NOT_FOUND if there is none.
func (s *Service) TimestampToEvent(ctx context.Context, user id.UserID, roomID id.RoomID, ts int64, backwards bool) (*store.Event, error) {
	r, err := s.reader(ctx, user, roomID)
	if err != nil {
		return nil, err
	}
	dir := "forward"
	if backwards {
		dir = "backward"
	}
	notFound := mxerr.NotFound("Unable to find event from %d in %s direction", ts, dir)
	ev, err := s.db.RoomEventByTime(ctx, roomID, ts, backwards)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if errors.Is(err, store.ErrNotFound) || (!backwards && !s.holdsRoomStart(ctx, roomID)) {
		// History we do not hold (before we joined, or not yet
		// backfilled) may have a closer event: other servers of the
		// room are asked (client-server API, timestamp_to_event: "the
		// server will ask other homeservers").
		if rev := s.remoteEventByTime(ctx, roomID, ts, backwards); rev != nil && (ev == nil || rev.OriginServerTS() < ev.OriginServerTS()) {
			return rev, nil
		}
	}
	if ev == nil {
		return nil, notFound
	}
	ignored, err := s.IgnoredUsers(ctx, user)
	if err != nil {
		return nil, err
	}
	vis, err := s.visible(ctx, r, ignored, []*store.Event{ev})
	if err != nil {
		return nil, err
	}
	if len(vis) == 0 {
		return nil, notFound
	}
	return ev, nil
}

// holdsRoomStart reports whether the room's m.room.create event is in our
// timeline: we have the room's history from its start (a room we joined
// holds the create event only as an outlier until backfill reaches it).
func (s *Service) holdsRoomStart(ctx context.Context, roomID id.RoomID) bool {
	create, err := s.db.CurrentStateEvent(ctx, roomID, event.TypeCreate, "")
	if err != nil {
		return true // nothing better to offer
	}
	ev, err := s.db.Event(ctx, create.EventID())
	return err != nil || ev.StreamPos != 0
}

// remoteEventByTime asks the room's other servers, one after the other,
// for the event closest to ts (federation timestamp_to_event) and fetches
// the one the first answering server names (GET /event, its signatures
// checked), then backfills the room once to hold it. It returns nil if
// none answers.
func (s *Service) remoteEventByTime(ctx context.Context, roomID id.RoomID, ts int64, backwards bool) *store.Event {
	if s.cfg.Federation == nil {
		return nil
	}
	servers, err := s.JoinedServers(ctx, roomID)
	if err != nil {
		return nil
	}
	version, err := s.Version(ctx, roomID)
	if err != nil {
		return nil
	}
	for _, srv := range servers {
		if srv == s.cfg.ServerName {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		p, err := s.remoteEventByTimeFrom(cctx, srv, version, roomID, ts, backwards)
		cancel()
		if err != nil {
			s.log.Debug("timestamp_to_event", "destination", srv, "room_id", roomID, "err", err)
			continue
		}
		if held, err := s.db.Event(ctx, p.EventID()); err == nil && held.StreamPos != 0 {
			return held
		}
		// "The server should try to backfill this event" (server-server
		// API, timestamp_to_event), so that the client can read around it
		// with /context (Complement TestJumpToDateEndpoint, "can paginate
		// after getting remote event").
		if _, err := s.backfill(ctx, roomID, 100); err == nil {
			if held, err := s.db.Event(ctx, p.EventID()); err == nil && held.StreamPos != 0 {
				return held
			}
		}
		return &store.Event{PDU: p}
	}
	return nil
}

func (s *Service) remoteEventByTimeFrom(ctx context.Context, srv string, version id.RoomVersion, roomID id.RoomID, ts int64, backwards bool) (*event.PDU, error) {
	resp, err := s.cfg.Federation.TimestampToEvent(ctx, srv, roomID, ts, backwards)
	if err != nil {
		return nil, err
	}
	if held, err := s.db.Event(ctx, resp.EventID); err == nil {
		return held.PDU, nil
	}
	raw, err := s.cfg.Federation.Event(ctx, srv, resp.EventID)
	if err != nil {
		return nil, err
	}
	p, err := event.Parse(version, raw)
	if err != nil {
		return nil, err
	}
	if p.EventID() != resp.EventID || p.RoomID() != roomID {
		return nil, fmt.Errorf("event %s from %s is not the one named", p.EventID(), srv)
	}
	if verified, _ := s.verifyAll(ctx, []*event.PDU{p}); len(verified) != 1 {
		return nil, fmt.Errorf("event %s from %s does not verify", p.EventID(), srv)
	}
	return p, nil
}

// relatesTo reads content["m.relates_to"]: the parent, the relation type
// and the annotation key (all "" without a well-formed relation).
func relatesTo(content []byte) (to id.EventID, relType, key string) {
	rel, ok := cjson.Get(content, "m.relates_to")
	if !ok || len(rel) == 0 || rel[0] != '{' {
		return "", "", ""
	}
	relType, _ = getString(rel, "rel_type")
	eid, _ := getString(rel, "event_id")
	if relType == "" || eid == "" {
		return "", "", ""
	}
	key, _ = getString(rel, "key")
	return id.EventID(eid), relType, key
}

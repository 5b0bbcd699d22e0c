package directory

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/user"
)

// Search limits.
const (
	defaultSearchLimit  = 10
	maxSearchLimit      = 100
	defaultContextLimit = 5
	maxContextLimit     = 100
)

// searchKeys maps the keys a search may name to the event type whose
// content holds them (client-server API, "Server Side Search": the
// supported keys).
var searchKeys = map[string]string{
	"content.body":  "m.room.message",
	"content.name":  "m.room.name",
	"content.topic": "m.room.topic",
}

// SearchRequest is the body of POST /search.
type SearchRequest struct {
	SearchCategories *struct {
		RoomEvents *RoomEventsCriteria `json:"room_events"`
	} `json:"search_categories"`
}

// RoomEventsCriteria is the room_events search category.
type RoomEventsCriteria struct {
	SearchTerm   *string          `json:"search_term"`
	Keys         []string         `json:"keys"`
	Filter       *RoomEventFilter `json:"filter"`
	OrderBy      string           `json:"order_by"`
	EventContext *EventContext    `json:"event_context"`
	IncludeState bool             `json:"include_state"`
	Groupings    *struct {
		GroupBy []struct {
			Key string `json:"key"`
		} `json:"group_by"`
	} `json:"groupings"`
}

// RoomEventFilter is the filter of a search (client-server API,
// "Filtering": RoomEventFilter). A nil list means no restriction; an empty
// one matches nothing. Types may use * as a wildcard.
type RoomEventFilter struct {
	Limit       *int        `json:"limit"`
	Types       []string    `json:"types"`
	NotTypes    []string    `json:"not_types"`
	Rooms       []id.RoomID `json:"rooms"`
	NotRooms    []id.RoomID `json:"not_rooms"`
	Senders     []id.UserID `json:"senders"`
	NotSenders  []id.UserID `json:"not_senders"`
	ContainsURL *bool       `json:"contains_url"`
}

// EventContext asks for the events around each result.
type EventContext struct {
	BeforeLimit    *int `json:"before_limit"`
	AfterLimit     *int `json:"after_limit"`
	IncludeProfile bool `json:"include_profile"`
}

// SearchResponse is the answer of POST /search.
type SearchResponse struct {
	SearchCategories struct {
		RoomEvents *RoomEventsResult `json:"room_events,omitempty"`
	} `json:"search_categories"`
}

// RoomEventsResult is the room_events category of a search's answer.
type RoomEventsResult struct {
	Count      int                                `json:"count"`
	Highlights []string                           `json:"highlights"`
	Results    []SearchResult                     `json:"results"`
	State      map[id.RoomID][]json.RawMessage    `json:"state,omitempty"`
	Groups     map[string]map[string]*SearchGroup `json:"groups,omitempty"`
	NextBatch  string                             `json:"next_batch,omitempty"`
}

// SearchResult is one event that matched.
type SearchResult struct {
	Rank    float64         `json:"rank"`
	Result  json.RawMessage `json:"result"`
	Context *ResultContext  `json:"context,omitempty"`
}

// ResultContext is the events around a result.
type ResultContext struct {
	Start        string                    `json:"start"`
	End          string                    `json:"end"`
	ProfileInfo  map[id.UserID]ProfileInfo `json:"profile_info,omitempty"`
	EventsBefore []json.RawMessage         `json:"events_before"`
	EventsAfter  []json.RawMessage         `json:"events_after"`
}

// ProfileInfo is a sender's profile as of a result (its member event).
type ProfileInfo struct {
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// SearchGroup is the results of one room or sender.
type SearchGroup struct {
	NextBatch string       `json:"next_batch,omitempty"`
	Order     int          `json:"order"`
	Results   []id.EventID `json:"results"`
}

// searchRoom is a room the searcher may search.
type searchRoom struct {
	store.SearchRoom
	membership store.Membership
}

// Search runs a server-side search (client-server API, "Server Side
// Search") for who over the rooms it is joined to and those it has left
// (up to its leave), returning only the events history visibility lets it
// see (room.Visible). Rooms with end-to-end encryption are not searched
// (the spec: "The search will not include rooms that are end to end
// encrypted"). nextBatch continues a previous answer.
//
// Ranks: SQLite's bm25, negated so that higher is closer; PostgreSQL's
// ts_rank_cd. count is the number of matches before the visibility check,
// an estimate as the spec allows. Errors: M_MISSING_PARAM, M_INVALID_PARAM,
// M_BAD_JSON.
func (s *Service) Search(ctx context.Context, who user.Identity, req SearchRequest, nextBatch string) (*SearchResponse, error) {
	if req.SearchCategories == nil {
		return nil, mxerr.MissingParam("search_categories is required")
	}
	out := &SearchResponse{}
	crit := req.SearchCategories.RoomEvents
	if crit == nil {
		return out, nil
	}
	res, err := s.searchRoomEvents(ctx, who, crit, nextBatch)
	if err != nil {
		return nil, err
	}
	out.SearchCategories.RoomEvents = res
	return out, nil
}

func (s *Service) searchRoomEvents(ctx context.Context, who user.Identity, c *RoomEventsCriteria, nextBatch string) (*RoomEventsResult, error) {
	if c.SearchTerm == nil {
		return nil, mxerr.MissingParam("room_events.search_term is required")
	}
	recent := false
	switch c.OrderBy {
	case "", "rank":
	case "recent":
		recent = true
	default:
		return nil, mxerr.InvalidParam("order_by must be rank or recent")
	}
	keys := c.Keys
	if keys == nil {
		keys = []string{"content.body", "content.name", "content.topic"}
	}
	var types []string
	for _, k := range keys {
		t, ok := searchKeys[k]
		if !ok {
			return nil, mxerr.InvalidParam("Unknown search key %q: want content.body, content.name or content.topic", k)
		}
		if !contains(types, t) {
			types = append(types, t)
		}
	}
	f := RoomEventFilter{}
	if c.Filter != nil {
		f = *c.Filter
	}
	limit := defaultSearchLimit
	if f.Limit != nil {
		if *f.Limit < 0 {
			return nil, mxerr.InvalidParam("filter.limit must not be negative")
		}
		limit = min(*f.Limit, maxSearchLimit)
	}
	types = filterTypes(types, f.Types, f.NotTypes)
	var groupBy []string
	if c.Groupings != nil {
		for _, g := range c.Groupings.GroupBy {
			if g.Key != "room_id" && g.Key != "sender" {
				return nil, mxerr.InvalidParam("Unknown group key %q: want room_id or sender", g.Key)
			}
			if !contains(groupBy, g.Key) {
				groupBy = append(groupBy, g.Key)
			}
		}
	}
	before, after := 0, 0
	if ec := c.EventContext; ec != nil {
		before, after = defaultContextLimit, defaultContextLimit
		if ec.BeforeLimit != nil {
			before = *ec.BeforeLimit
		}
		if ec.AfterLimit != nil {
			after = *ec.AfterLimit
		}
		if before < 0 || after < 0 {
			return nil, mxerr.InvalidParam("event_context limits must not be negative")
		}
		before, after = min(before, maxContextLimit), min(after, maxContextLimit)
	}
	tok := searchToken{}
	if nextBatch != "" {
		var err error
		if tok, err = parseSearchToken(nextBatch, recent); err != nil {
			return nil, err
		}
	}
	match, highlights := parseQuery(*c.SearchTerm)
	if highlights == nil {
		highlights = []string{}
	}
	res := &RoomEventsResult{Highlights: highlights, Results: []SearchResult{}}

	// The rooms the searcher may search.
	rooms, err := s.searchRooms(ctx, who.UserID, f, tok)
	if err != nil {
		return nil, err
	}
	// Events of the users who.UserID ignores are hidden, as in every
	// timeline (client-server API, "Ignoring Users").
	ignored, err := s.rooms.IgnoredUsers(ctx, who.UserID)
	if err != nil {
		return nil, err
	}
	notSenders := slices.Clone(f.NotSenders)
	for u := range ignored {
		notSenders = append(notSenders, u)
	}
	q := store.SearchQuery{Match: match, Types: types, Senders: f.Senders, NotSenders: notSenders, Recent: recent}
	if f.Senders != nil && len(f.Senders) == 0 {
		return res, nil
	}
	if tok.Group == "sender" {
		if f.Senders != nil && !containsUser(f.Senders, id.UserID(tok.Value)) {
			return res, nil
		}
		q.Senders = []id.UserID{id.UserID(tok.Value)}
	}
	byRoom := map[id.RoomID]searchRoom{}
	for _, r := range rooms {
		q.Rooms = append(q.Rooms, r.SearchRoom)
		byRoom[r.RoomID] = r
	}
	if len(match) == 0 || len(q.Rooms) == 0 || len(q.Types) == 0 {
		return res, nil
	}
	if res.Count, err = s.db.CountSearch(ctx, q); err != nil {
		return nil, err
	}

	// Read batches of matches until limit+1 of them are visible (or none
	// are left): the last one only says whether there is a next batch.
	type picked struct {
		hit  store.SearchHit
		next searchToken // where the results after this one start
	}
	var hits []picked
	offset, beforePos := tok.Offset, tok.Before
	fetch := max(2*limit, 20)
	for limit > 0 && len(hits) <= limit {
		q.Offset, q.Before, q.Limit = offset, beforePos, fetch
		batch, err := s.db.SearchEvents(ctx, q)
		if err != nil {
			return nil, err
		}
		visible, err := s.visible(ctx, who.UserID, byRoom, batch)
		if err != nil {
			return nil, err
		}
		for _, h := range batch {
			offset++
			beforePos = h.Event.StreamPos
			if !visible[h.Event.EventID()] || !matchesURL(h.Event, f.ContainsURL) {
				continue
			}
			hits = append(hits, picked{hit: h, next: searchToken{Recent: recent, Offset: offset, Before: beforePos}})
			if len(hits) > limit {
				break
			}
		}
		if len(batch) < fetch {
			break
		}
		// Many hidden matches: read further ahead each time.
		fetch = min(2*fetch, 1000)
	}
	if len(hits) > limit {
		next := hits[limit-1].next
		next.Group, next.Value = tok.Group, tok.Value
		res.NextBatch = next.String()
		hits = hits[:limit]
	}

	evs := make([]*store.Event, len(hits))
	for i, h := range hits {
		evs[i] = h.hit.Event
	}
	viewer := room.Viewer{UserID: who.UserID, DeviceID: who.DeviceID}
	formatted, err := s.rooms.Format(ctx, evs, viewer, room.FormatOptions{})
	if err != nil {
		return nil, err
	}
	for i, h := range hits {
		r := SearchResult{Rank: h.hit.Rank, Result: formatted[i]}
		if c.EventContext != nil {
			if r.Context, err = s.resultContext(ctx, who, byRoom[h.hit.Event.RoomID()], h.hit.Event, before, after, c.EventContext.IncludeProfile, ignored); err != nil {
				return nil, err
			}
		}
		res.Results = append(res.Results, r)
		res.Highlights = addHighlights(res.Highlights, h.hit.Event, highlights)
	}
	if c.IncludeState {
		if res.State, err = s.roomStates(ctx, viewer, byRoom, evs); err != nil {
			return nil, err
		}
	}
	if len(groupBy) > 0 {
		res.Groups = map[string]map[string]*SearchGroup{}
		for _, key := range groupBy {
			groups := map[string]*SearchGroup{}
			for _, ev := range evs {
				v := string(ev.RoomID())
				if key == "sender" {
					v = string(ev.Sender())
				}
				g := groups[v]
				if g == nil {
					g = &SearchGroup{Order: len(groups) + 1, Results: []id.EventID{}}
					groups[v] = g
					if res.NextBatch != "" {
						// More results may follow in this group: the same
						// position, restricted to it.
						t, _ := parseSearchToken(res.NextBatch, recent)
						t.Group, t.Value = key, v
						g.NextBatch = t.String()
					}
				}
				g.Results = append(g.Results, ev.EventID())
			}
			res.Groups[key] = groups
		}
	}
	return res, nil
}

// searchRooms returns the rooms who may search: joined ones in full, left
// (or banned from) ones up to the leave, narrowed by the filter and by a
// room group token. Forgotten rooms are left out.
func (s *Service) searchRooms(ctx context.Context, u id.UserID, f RoomEventFilter, tok searchToken) ([]searchRoom, error) {
	ms, err := s.db.UserMemberships(ctx, u, room.Join, room.Leave, room.Ban)
	if err != nil {
		return nil, err
	}
	var out []searchRoom
	for _, m := range ms {
		if f.Rooms != nil && !containsRoom(f.Rooms, m.RoomID) || containsRoom(f.NotRooms, m.RoomID) {
			continue
		}
		if tok.Group == "room_id" && string(m.RoomID) != tok.Value {
			continue
		}
		r := searchRoom{SearchRoom: store.SearchRoom{RoomID: m.RoomID}, membership: m}
		if m.Membership != room.Join {
			r.MaxStream = m.StreamPos
		}
		out = append(out, r)
	}
	return out, nil
}

// visible returns which hits who may see, deciding per room with
// room.Visible.
func (s *Service) visible(ctx context.Context, u id.UserID, rooms map[id.RoomID]searchRoom, hits []store.SearchHit) (map[id.EventID]bool, error) {
	perRoom := map[id.RoomID][]*store.Event{}
	for _, h := range hits {
		perRoom[h.Event.RoomID()] = append(perRoom[h.Event.RoomID()], h.Event)
	}
	out := map[id.EventID]bool{}
	for roomID, evs := range perRoom {
		vis, err := s.rooms.Visible(ctx, u, rooms[roomID].membership.Membership == room.Join, evs)
		if err != nil {
			return nil, err
		}
		for _, ev := range vis {
			out[ev.EventID()] = true
		}
	}
	return out, nil
}

// resultContext returns the events around a result that who may see, with
// pagination tokens for /messages and, if asked, the senders' profiles as
// of the result.
func (s *Service) resultContext(ctx context.Context, who user.Identity, r searchRoom, ev *store.Event, before, after int, profiles bool, ignored map[id.UserID]bool) (*ResultContext, error) {
	// Tokens name gaps between events, as /messages and /context give
	// them: the gap before an event is its own position, the gap after it
	// the next stream position at its depth.
	pos := store.TopoPos{Depth: ev.Depth(), Stream: ev.StreamPos}
	gapBefore := func(e *store.Event) string { return room.TopoToken(e.Depth(), e.StreamPos).String() }
	gapAfter := func(e *store.Event) string { return room.TopoToken(e.Depth(), e.StreamPos+1).String() }
	out := &ResultContext{
		Start:        gapBefore(ev),
		End:          gapAfter(ev),
		EventsBefore: []json.RawMessage{},
		EventsAfter:  []json.RawMessage{},
	}
	viewer := room.Viewer{UserID: who.UserID, DeviceID: who.DeviceID}
	joined := r.membership.Membership == room.Join
	senders := []id.UserID{ev.Sender()}
	var err error
	read := func(backwards bool, n int) ([]*store.Event, string, error) {
		if n == 0 {
			return nil, "", nil
		}
		evs, err := s.db.RoomEventsByTopo(ctx, ev.RoomID(), pos, backwards, r.MaxStream, n)
		if err != nil || len(evs) == 0 {
			return nil, "", err
		}
		// The token is past the last event read, seen or not, so that
		// paginating from it goes on beyond the hidden ones.
		last := evs[len(evs)-1]
		tok := gapAfter(last)
		if backwards {
			tok = gapBefore(last)
		}
		vis, err := s.rooms.Visible(ctx, who.UserID, joined, evs)
		kept := vis[:0]
		for _, e := range vis {
			if !ignored[e.Sender()] {
				kept = append(kept, e)
			}
		}
		return kept, tok, err
	}
	evsBefore, start, err := read(true, before)
	if err != nil {
		return nil, err
	}
	evsAfter, end, err := read(false, after)
	if err != nil {
		return nil, err
	}
	if start != "" {
		out.Start = start
	}
	if end != "" {
		out.End = end
	}
	if out.EventsBefore, err = s.rooms.Format(ctx, evsBefore, viewer, room.FormatOptions{}); err != nil {
		return nil, err
	}
	if out.EventsAfter, err = s.rooms.Format(ctx, evsAfter, viewer, room.FormatOptions{}); err != nil {
		return nil, err
	}
	if !profiles {
		return out, nil
	}
	for _, e := range append(evsBefore, evsAfter...) {
		if !containsUser(senders, e.Sender()) {
			senders = append(senders, e.Sender())
		}
	}
	state, err := s.db.StateAfter(ctx, ev.EventID())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	var memberIDs []id.EventID
	for _, u := range senders {
		if eid, ok := state[stateres.StateKey{Type: event.TypeMember, StateKey: string(u)}]; ok {
			memberIDs = append(memberIDs, eid)
		}
	}
	members, err := s.db.Events(ctx, memberIDs)
	if err != nil {
		return nil, err
	}
	out.ProfileInfo = map[id.UserID]ProfileInfo{}
	for _, m := range members {
		var p ProfileInfo
		if v, ok := cjson.Get(m.Content(), "displayname"); ok {
			p.DisplayName, _ = cjson.Unquote(v)
		}
		if v, ok := cjson.Get(m.Content(), "avatar_url"); ok {
			p.AvatarURL, _ = cjson.Unquote(v)
		}
		out.ProfileInfo[id.UserID(*m.StateKey())] = p
	}
	return out, nil
}

// roomStates returns, for each room of the results, its state as who may
// see it: the current state of rooms it is joined to, the state at its
// leave of the others.
func (s *Service) roomStates(ctx context.Context, v room.Viewer, rooms map[id.RoomID]searchRoom, evs []*store.Event) (map[id.RoomID][]json.RawMessage, error) {
	out := map[id.RoomID][]json.RawMessage{}
	for _, ev := range evs {
		roomID := ev.RoomID()
		if _, ok := out[roomID]; ok {
			continue
		}
		r := rooms[roomID]
		var state []*store.Event
		var err error
		if r.membership.Membership == room.Join {
			state, err = s.db.CurrentStateEvents(ctx, roomID)
		} else {
			var m stateres.StateMap
			if m, err = s.db.StateAfter(ctx, r.membership.EventID); err == nil {
				ids := make([]id.EventID, 0, len(m))
				for _, eid := range m {
					ids = append(ids, eid)
				}
				state, err = s.db.Events(ctx, ids)
			}
		}
		if err != nil {
			return nil, err
		}
		sort.Slice(state, func(i, j int) bool { return state[i].StreamPos < state[j].StreamPos })
		if out[roomID], err = s.rooms.Format(ctx, state, v, room.FormatOptions{NoAggregations: true}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// filterTypes keeps the types the filter's types and not_types allow.
func filterTypes(types, allow, deny []string) []string {
	var out []string
	for _, t := range types {
		if allow != nil && !globAny(allow, t) || globAny(deny, t) {
			continue
		}
		out = append(out, t)
	}
	return out
}

// globAny reports whether s matches one of the patterns, in which *
// stands for any run of characters (client-server API, "Filtering").
func globAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if glob(p, s) {
			return true
		}
	}
	return false
}

func glob(p, s string) bool {
	parts := strings.Split(p, "*")
	if len(parts) == 1 {
		return p == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// matchesURL applies the filter's contains_url.
func matchesURL(ev *store.Event, want *bool) bool {
	if want == nil {
		return true
	}
	_, has := cjson.Get(ev.Content(), "url")
	return has == *want
}

// addHighlights adds the words of ev's searchable text that begin with a
// searched word, as they are written, so that clients can highlight
// stemmed and prefix matches.
func addHighlights(out []string, ev *store.Event, words []string) []string {
	var text string
	for _, k := range []string{"body", "name", "topic"} {
		if v, ok := cjson.Get(ev.Content(), k); ok {
			if s, err := cjson.Unquote(v); err == nil {
				text += " " + s
			}
		}
	}
	for _, w := range strings.FieldsFunc(text, func(r rune) bool { return !isWordRune(r) }) {
		lw := strings.ToLower(w)
		for _, q := range words {
			if strings.HasPrefix(lw, q) && !contains(out, w) {
				out = append(out, w)
				break
			}
		}
	}
	return out
}

func containsUser(us []id.UserID, u id.UserID) bool {
	for _, x := range us {
		if x == u {
			return true
		}
	}
	return false
}

func containsRoom(rs []id.RoomID, r id.RoomID) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// searchToken is a search's next_batch: where the next results start (an
// offset into the rank order, or a stream position for the recent order),
// and, for a group's token, the group it is restricted to.
type searchToken struct {
	Recent bool   `json:"r,omitempty"`
	Offset int    `json:"o,omitempty"`
	Before int64  `json:"b,omitempty"`
	Group  string `json:"g,omitempty"`
	Value  string `json:"v,omitempty"`
}

func (t searchToken) String() string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseSearchToken(s string, recent bool) (searchToken, error) {
	var t searchToken
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(raw, &t) != nil || t.Offset < 0 || t.Before < 0 ||
		(t.Group != "" && t.Group != "room_id" && t.Group != "sender") {
		return t, mxerr.InvalidParam("Invalid next_batch token")
	}
	if t.Recent != recent {
		return t, mxerr.InvalidParam("The next_batch token is for the other order_by")
	}
	return t, nil
}

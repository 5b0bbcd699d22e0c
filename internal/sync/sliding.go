package sync

// Simplified sliding sync (MSC4186, POST
// /_matrix/client/unstable/org.matrix.simplified_msc3575/sync): the
// request and response types and the request's parsing. The other parts:
// sliding_conn.go (pos tokens, connections, long-polling),
// sliding_lists.go (the room list: sorting, filters, ranges),
// sliding_rooms.go (room results, built with the /sync v2 builder's steps
// so that both return the same events) and sliding_ext.go (extensions).
//
// The request is read in both the MSC's current form and the form that
// Synapse's implementation, matrix-js-sdk and matrix-rust-sdk (Element X)
// send: "range" or "ranges", required_state as {include, exclude,
// lazy_members} or as [type, state_key] pairs with "*", "$LAZY" and
// "$ME", is_invited or is_invite, pos and timeout in the body or the query
// string. The response carries both names where the MSC renamed a field
// (stripped_state and invite_state, expanded_timeline and
// unstable_expanded_timeline).

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/mxerr"
)

// Limits of a sliding sync request (MSC4186 "Request Body").
const (
	maxSlidingLists         = 100
	maxSlidingSubscriptions = 100
	// maxSlidingTimeline caps timeline_limit ("The server may cap this
	// number").
	maxSlidingTimeline = 100
)

// SlidingRequest is a sliding sync request.
type SlidingRequest struct {
	User   id.UserID
	Device id.DeviceID
	ConnID string
	// Pos is the pos token of the previous response; "" starts a
	// connection.
	Pos         string
	Timeout     time.Duration
	SetPresence string
	Lists       map[string]*SlidingList
	// Subscriptions are the room subscriptions of the request; they stay
	// in force on the connection until unsubscribed (MSC3575's
	// unsubscribe_rooms, which matrix-js-sdk relies on).
	Subscriptions map[id.RoomID]*RoomConfig
	Unsubscribe   []id.RoomID
	Extensions    Extensions
}

// SlidingList is a list of the request (SyncListConfig).
type SlidingList struct {
	RoomConfig
	// Start and End are the inclusive range; HasRange false means every
	// room of the filtered list.
	Start, End int
	HasRange   bool
	Filters    *SlidingFilters
}

// RoomConfig is a room config: what to return of a room.
type RoomConfig struct {
	TimelineLimit int
	RequiredState RequiredState
}

// RequiredState says which state events to return (RequiredStateRequest).
type RequiredState struct {
	Include, Exclude []StateMatch
	LazyMembers      bool
}

// StateMatch matches state events; an empty Type or StateKey (with its
// Any flag) matches all.
type StateMatch struct {
	Type, StateKey       string
	AnyType, AnyStateKey bool
	// Me: the state key is the requesting user ($ME).
	Me bool
}

// SlidingFilters are a list's filters (SlidingRoomFilter); nil fields
// are unset.
type SlidingFilters struct {
	IsDM         *bool
	IsEncrypted  *bool
	IsInvite     *bool
	RoomTypes    []*string // nil element: rooms without a type
	NotRoomTypes []*string
	HasRoomTypes bool
	Spaces       []id.RoomID
	Tags         []string
	NotTags      []string
}

// ExtScope is the lists and rooms an extension applies to (MSC3575
// extensions' "lists" and "rooms"; absent means all, "*" too).
type ExtScope struct {
	Enabled bool
	Lists   []string // nil: all lists
	Rooms   []string // nil: all rooms
}

// Extensions are the extensions asked for.
type Extensions struct {
	ToDevice struct {
		Enabled bool
		Since   string
		Limit   int
	}
	E2EE        struct{ Enabled bool }
	AccountData ExtScope
	Receipts    ExtScope
	Typing      ExtScope
}

// wire forms of the request.
type wireSlidingRequest struct {
	ConnID            string                     `json:"conn_id"`
	Pos               string                     `json:"pos"`
	Timeout           *int64                     `json:"timeout"`
	SetPresence       string                     `json:"set_presence"`
	Lists             map[string]wireSlidingList `json:"lists"`
	RoomSubscriptions map[string]wireRoomConfig  `json:"room_subscriptions"`
	UnsubscribeRooms  []string                   `json:"unsubscribe_rooms"`
	Extensions        map[string]json.RawMessage `json:"extensions"`
}

type wireRoomConfig struct {
	TimelineLimit *int            `json:"timeline_limit"`
	RequiredState json.RawMessage `json:"required_state"`
}

type wireSlidingList struct {
	wireRoomConfig
	Range   []int           `json:"range"`
	Ranges  [][]int         `json:"ranges"`
	Filters json.RawMessage `json:"filters"`
}

type wireFilters struct {
	IsDM         *bool      `json:"is_dm"`
	IsEncrypted  *bool      `json:"is_encrypted"`
	IsInvite     *bool      `json:"is_invite"`
	IsInvited    *bool      `json:"is_invited"`
	RoomTypes    *[]*string `json:"room_types"`
	NotRoomTypes []*string  `json:"not_room_types"`
	Spaces       []string   `json:"spaces"`
	Tags         []string   `json:"tags"`
	NotTags      []string   `json:"not_tags"`
}

type wireExtScope struct {
	Enabled *bool           `json:"enabled"`
	Lists   json.RawMessage `json:"lists"`
	Rooms   json.RawMessage `json:"rooms"`
}

// ParseSlidingRequest reads a request body. Errors: M_NOT_JSON, M_BAD_JSON
// for a malformed body, M_INVALID_PARAM for too many lists or
// subscriptions, a bad range or a bad room ID.
func ParseSlidingRequest(body []byte) (*SlidingRequest, error) {
	var w wireSlidingRequest
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, &w); err != nil {
		if _, ok := err.(*json.SyntaxError); ok {
			return nil, mxerr.NotJSON("Request body is not JSON")
		}
		return nil, mxerr.BadJSON("%s", jsonProblem(err))
	}
	req := &SlidingRequest{ConnID: w.ConnID, Pos: w.Pos, SetPresence: w.SetPresence,
		Lists: map[string]*SlidingList{}, Subscriptions: map[id.RoomID]*RoomConfig{}}
	if w.Timeout != nil {
		req.Timeout = time.Duration(max(*w.Timeout, 0)) * time.Millisecond
	}
	if len(w.Lists) > maxSlidingLists {
		return nil, mxerr.InvalidParam("At most %d lists", maxSlidingLists)
	}
	if len(w.RoomSubscriptions) > maxSlidingSubscriptions {
		return nil, mxerr.InvalidParam("At most %d room subscriptions", maxSlidingSubscriptions)
	}
	for name, wl := range w.Lists {
		l := &SlidingList{}
		var err error
		if l.RoomConfig, err = wl.wireRoomConfig.parse("lists." + name); err != nil {
			return nil, err
		}
		rng := wl.Range
		if rng == nil && len(wl.Ranges) > 0 {
			// MSC3575's ranges: the span of them all.
			rng = []int{wl.Ranges[0][0], wl.Ranges[0][len(wl.Ranges[0])-1]}
			for _, r := range wl.Ranges {
				if len(r) != 2 {
					return nil, mxerr.InvalidParam("lists.%s.ranges: each range is [start, end]", name)
				}
				rng[0], rng[1] = min(rng[0], r[0]), max(rng[1], r[1])
			}
		}
		if rng != nil {
			if len(rng) != 2 || rng[0] < 0 || rng[1] < rng[0] {
				return nil, mxerr.InvalidParam("lists.%s.range must be [start, end] with 0 <= start <= end", name)
			}
			l.Start, l.End, l.HasRange = rng[0], rng[1], true
		}
		if len(wl.Filters) > 0 && string(wl.Filters) != "null" {
			if l.Filters, err = parseSlidingFilters(wl.Filters, name); err != nil {
				return nil, err
			}
		}
		req.Lists[name] = l
	}
	for r, wc := range w.RoomSubscriptions {
		if !strings.HasPrefix(r, "!") {
			return nil, mxerr.InvalidParam("room_subscriptions: %q is not a room ID", r)
		}
		c, err := wc.parse("room_subscriptions." + r)
		if err != nil {
			return nil, err
		}
		req.Subscriptions[id.RoomID(r)] = &c
	}
	for _, r := range w.UnsubscribeRooms {
		req.Unsubscribe = append(req.Unsubscribe, id.RoomID(r))
	}
	if err := req.Extensions.parse(w.Extensions); err != nil {
		return nil, err
	}
	return req, nil
}

func (w *wireRoomConfig) parse(path string) (RoomConfig, error) {
	var c RoomConfig
	if w.TimelineLimit != nil {
		if *w.TimelineLimit < 0 {
			return c, mxerr.InvalidParam("%s.timeline_limit must not be negative", path)
		}
		c.TimelineLimit = min(*w.TimelineLimit, maxSlidingTimeline)
	}
	rs, err := parseRequiredState(w.RequiredState, path)
	c.RequiredState = rs
	return c, err
}

// parseRequiredState reads required_state in either form.
func parseRequiredState(raw json.RawMessage, path string) (RequiredState, error) {
	var rs RequiredState
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return rs, nil
	}
	bad := func() (RequiredState, error) {
		return RequiredState{}, mxerr.BadJSON("%s.required_state: %s", path, "expected [[type, state_key], ...] or {include, exclude, lazy_members}")
	}
	if s[0] == '[' {
		// MSC3575 / Synapse form: [type, state_key] pairs.
		var pairs [][]string
		if json.Unmarshal(raw, &pairs) != nil {
			return bad()
		}
		for _, p := range pairs {
			if len(p) != 2 {
				return bad()
			}
			if p[0] == event.TypeMember && p[1] == "$LAZY" {
				rs.LazyMembers = true
				continue
			}
			m := StateMatch{Type: p[0], StateKey: p[1], AnyType: p[0] == "*", AnyStateKey: p[1] == "*", Me: p[1] == "$ME"}
			rs.Include = append(rs.Include, m)
		}
		return rs, nil
	}
	var w struct {
		Include     []map[string]string `json:"include"`
		Exclude     []map[string]string `json:"exclude"`
		LazyMembers bool                `json:"lazy_members"`
	}
	if json.Unmarshal(raw, &w) != nil {
		return bad()
	}
	rs.LazyMembers = w.LazyMembers
	conv := func(es []map[string]string) []StateMatch {
		var out []StateMatch
		for _, e := range es {
			t, hasT := e["type"]
			k, hasK := e["state_key"]
			if t == event.TypeMember && k == "$LAZY" {
				rs.LazyMembers = true
				continue
			}
			out = append(out, StateMatch{Type: t, StateKey: k, AnyType: !hasT, AnyStateKey: !hasK, Me: k == "$ME"})
		}
		return out
	}
	rs.Include = conv(w.Include)
	rs.Exclude = conv(w.Exclude)
	return rs, nil
}

func parseSlidingFilters(raw json.RawMessage, list string) (*SlidingFilters, error) {
	var w wireFilters
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, mxerr.BadJSON("lists.%s.filters: %s", list, jsonProblem(err))
	}
	f := &SlidingFilters{IsDM: w.IsDM, IsEncrypted: w.IsEncrypted, IsInvite: w.IsInvited, NotRoomTypes: w.NotRoomTypes,
		Tags: w.Tags, NotTags: w.NotTags}
	if f.IsInvite == nil {
		f.IsInvite = w.IsInvite
	}
	if w.RoomTypes != nil {
		f.HasRoomTypes, f.RoomTypes = true, *w.RoomTypes
	}
	for _, s := range w.Spaces {
		f.Spaces = append(f.Spaces, id.RoomID(s))
	}
	return f, nil
}

func (e *Extensions) parse(raw map[string]json.RawMessage) error {
	enabled := func(p *bool) bool { return p != nil && *p }
	for name, v := range raw {
		switch name {
		case "to_device":
			var w struct {
				Enabled *bool  `json:"enabled"`
				Since   string `json:"since"`
				Limit   int    `json:"limit"`
			}
			if err := json.Unmarshal(v, &w); err != nil {
				return mxerr.BadJSON("extensions.to_device: %s", jsonProblem(err))
			}
			e.ToDevice.Enabled, e.ToDevice.Since, e.ToDevice.Limit = enabled(w.Enabled), w.Since, w.Limit
		case "e2ee":
			var w struct {
				Enabled *bool `json:"enabled"`
			}
			if err := json.Unmarshal(v, &w); err != nil {
				return mxerr.BadJSON("extensions.e2ee: %s", jsonProblem(err))
			}
			e.E2EE.Enabled = enabled(w.Enabled)
		case "account_data", "receipts", "typing":
			var w wireExtScope
			if err := json.Unmarshal(v, &w); err != nil {
				return mxerr.BadJSON("extensions.%s: %s", name, jsonProblem(err))
			}
			s := ExtScope{Enabled: enabled(w.Enabled)}
			var err error
			if s.Lists, err = scopeList(w.Lists); err == nil {
				s.Rooms, err = scopeList(w.Rooms)
			}
			if err != nil {
				return mxerr.BadJSON("extensions.%s: lists and rooms are arrays of strings", name)
			}
			switch name {
			case "account_data":
				e.AccountData = s
			case "receipts":
				e.Receipts = s
			default:
				e.Typing = s
			}
		}
	}
	return nil
}

// scopeList reads an extension's lists or rooms: nil (all) when absent or
// when it holds "*".
func scopeList(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var out []string
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	if slices.Contains(out, "*") {
		return nil, nil
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// combine merges another config into c (MSC4186 "Combining room
// configs"): the greatest timeline limit, the union of required state.
func (c *RoomConfig) combine(o *RoomConfig) {
	c.TimelineLimit = max(c.TimelineLimit, o.TimelineLimit)
	c.RequiredState.Include = append(slices.Clip(c.RequiredState.Include), o.RequiredState.Include...)
	// Exclusions apply only where every config excludes: a union keeps
	// what any config returns. Kept exactly only for one config.
	if len(c.RequiredState.Exclude) > 0 || len(o.RequiredState.Exclude) > 0 {
		c.RequiredState.Exclude = intersectMatches(c.RequiredState.Exclude, o.RequiredState.Exclude)
	}
	c.RequiredState.LazyMembers = c.RequiredState.LazyMembers || o.RequiredState.LazyMembers
}

func intersectMatches(a, b []StateMatch) []StateMatch {
	var out []StateMatch
	for _, m := range a {
		if slices.Contains(b, m) {
			out = append(out, m)
		}
	}
	return out
}

// key is a canonical string of the config's required state, to tell
// whether it changed since a room was sent.
func (rs *RequiredState) key() string {
	f := func(ms []StateMatch) []string {
		out := make([]string, len(ms))
		for i, m := range ms {
			out[i] = fmt.Sprintf("%t%q%t%q%t", m.AnyType, m.Type, m.AnyStateKey, m.StateKey, m.Me)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return fmt.Sprintf("%v|%v|%t", f(rs.Include), f(rs.Exclude), rs.LazyMembers)
}

// matches reports whether a state event (type, state key) is returned by
// the include and exclude rules for user.
func (rs *RequiredState) matches(typ, key string, user id.UserID) bool {
	in := func(ms []StateMatch) bool {
		for _, m := range ms {
			if !m.AnyType && m.Type != typ {
				continue
			}
			switch {
			case m.AnyStateKey, m.Me && key == string(user), !m.Me && m.StateKey == key:
				return true
			}
		}
		return false
	}
	return in(rs.Include) && !in(rs.Exclude)
}

// SlidingResponse is a sliding sync response.
type SlidingResponse struct {
	Pos        string                       `json:"pos"`
	Lists      map[string]SlidingListResult `json:"lists"`
	Rooms      map[id.RoomID]*SlidingRoom   `json:"rooms"`
	Extensions map[string]any               `json:"extensions"`
}

// SlidingListResult is a list's count (SyncListResult). Ops are
// MSC3575's: a SYNC of the range, for clients that still read them.
type SlidingListResult struct {
	Count int         `json:"count"`
	Ops   []SlidingOp `json:"ops,omitempty"`
}

// SlidingOp is an MSC3575 list operation.
type SlidingOp struct {
	Op      string      `json:"op"`
	Range   [2]int      `json:"range"`
	RoomIDs []id.RoomID `json:"room_ids"`
}

// Hero is a hero of a room (MSC4186 "Hero").
type Hero struct {
	UserID      id.UserID `json:"user_id"`
	DisplayName string    `json:"displayname,omitempty"`
	AvatarURL   string    `json:"avatar_url,omitempty"`
}

// SlidingRoom is a room result (RoomResult). Pointers and omitempty
// leave out what did not change.
type SlidingRoom struct {
	Name             json.RawMessage   `json:"name,omitempty"`
	Avatar           json.RawMessage   `json:"avatar,omitempty"`
	Heroes           []Hero            `json:"heroes,omitempty"`
	IsDM             bool              `json:"is_dm,omitempty"`
	Initial          bool              `json:"initial,omitempty"`
	ExpandedTimeline bool              `json:"expanded_timeline,omitempty"`
	UnstableExpanded bool              `json:"unstable_expanded_timeline,omitempty"`
	RequiredState    []json.RawMessage `json:"required_state,omitempty"`
	Timeline         []json.RawMessage `json:"timeline,omitempty"`
	PrevBatch        string            `json:"prev_batch,omitempty"`
	Limited          bool              `json:"limited,omitempty"`
	NumLive          *int              `json:"num_live,omitempty"`
	JoinedCount      *int              `json:"joined_count,omitempty"`
	InvitedCount     *int              `json:"invited_count,omitempty"`
	Notifications    *int              `json:"notification_count,omitempty"`
	Highlights       *int              `json:"highlight_count,omitempty"`
	StrippedState    []json.RawMessage `json:"stripped_state,omitempty"`
	InviteState      []json.RawMessage `json:"invite_state,omitempty"`
	BumpStamp        *int64            `json:"bump_stamp,omitempty"`
	Membership       string            `json:"membership,omitempty"`
	Lists            []string          `json:"lists,omitempty"`
}

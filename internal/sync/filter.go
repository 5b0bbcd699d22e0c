package sync

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
)

// Timeline limits: the default when a filter sets none, and the most a
// filter may ask for (as Synapse's filter_timeline_limit).
const (
	DefaultTimelineLimit = 10
	MaxTimelineLimit     = 100
)

// Filter is a parsed sync filter (client-server API, "Filtering"; schema
// definitions/sync_filter.yaml). The zero value filters nothing.
type Filter struct {
	// EventFields, if not nil, are the dot-separated paths of the event
	// fields to keep (appendices, "Dot-separated property paths").
	EventFields []string
	// Federation is event_format "federation": events as the federation
	// sees them instead of the client format.
	Federation  bool
	Presence    EventFilter
	AccountData EventFilter
	Room        RoomFilter
}

// RoomFilter is the room part of a Filter.
type RoomFilter struct {
	// Rooms and NotRooms select rooms; nil means absent.
	Rooms, NotRooms []id.RoomID
	IncludeLeave    bool
	Ephemeral       RoomEventFilter
	State           RoomEventFilter
	Timeline        RoomEventFilter
	AccountData     RoomEventFilter
}

// EventFilter selects events by type and sender. nil lists are absent.
type EventFilter struct {
	// Limit is 0 when the filter sets none.
	Limit      int
	Types      []string // '*' matches any sequence of characters
	NotTypes   []string
	Senders    []id.UserID
	NotSenders []id.UserID
}

// RoomEventFilter is an EventFilter for room events.
type RoomEventFilter struct {
	EventFilter
	Rooms, NotRooms []id.RoomID
	// ContainsURL, if set, keeps only events with (true) or without
	// (false) a url in their content.
	ContainsURL               *bool
	LazyLoadMembers           bool
	IncludeRedundantMembers   bool
	UnreadThreadNotifications bool
}

// wire forms: pointers tell absent members from empty ones, and numbers
// are read as float64 so that 10.0 is a valid limit.
type wireFilter struct {
	EventFields []string         `json:"event_fields"`
	EventFormat *string          `json:"event_format"`
	Presence    *wireEventFilter `json:"presence"`
	AccountData *wireEventFilter `json:"account_data"`
	Room        *wireRoomFilter  `json:"room"`
}

type wireRoomFilter struct {
	Rooms        []string             `json:"rooms"`
	NotRooms     []string             `json:"not_rooms"`
	IncludeLeave *bool                `json:"include_leave"`
	Ephemeral    *wireRoomEventFilter `json:"ephemeral"`
	State        *wireRoomEventFilter `json:"state"`
	Timeline     *wireRoomEventFilter `json:"timeline"`
	AccountData  *wireRoomEventFilter `json:"account_data"`
}

type wireEventFilter struct {
	Limit      *float64 `json:"limit"`
	Types      []string `json:"types"`
	NotTypes   []string `json:"not_types"`
	Senders    []string `json:"senders"`
	NotSenders []string `json:"not_senders"`
}

type wireRoomEventFilter struct {
	wireEventFilter
	Rooms                     []string `json:"rooms"`
	NotRooms                  []string `json:"not_rooms"`
	ContainsURL               *bool    `json:"contains_url"`
	LazyLoadMembers           *bool    `json:"lazy_load_members"`
	IncludeRedundantMembers   *bool    `json:"include_redundant_members"`
	UnreadThreadNotifications *bool    `json:"unread_thread_notifications"`
}

// ParseFilter parses and checks a filter. Errors: M_NOT_JSON for text that
// is not JSON, M_BAD_JSON for a member of the wrong type, M_INVALID_PARAM
// for a bad value (a limit below 1, an ID that is not a user or room ID, an
// unknown event_format). Unknown members are allowed, as the schema allows
// them.
func ParseFilter(raw []byte) (*Filter, error) {
	if !json.Valid(raw) {
		return nil, mxerr.NotJSON("Filter is not valid JSON")
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, mxerr.BadJSON("The filter must be a JSON object")
	}
	var w wireFilter
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, mxerr.BadJSON("Invalid filter: %s", jsonProblem(err))
	}
	f := &Filter{EventFields: w.EventFields}
	if w.EventFormat != nil {
		switch *w.EventFormat {
		case "client":
		case "federation":
			f.Federation = true
		default:
			return nil, mxerr.InvalidParam("event_format must be client or federation")
		}
	}
	var err error
	if f.Presence, err = w.Presence.parse("presence"); err != nil {
		return nil, err
	}
	if f.AccountData, err = w.AccountData.parse("account_data"); err != nil {
		return nil, err
	}
	if r := w.Room; r != nil {
		if f.Room.Rooms, err = roomIDs(r.Rooms, "room.rooms"); err != nil {
			return nil, err
		}
		if f.Room.NotRooms, err = roomIDs(r.NotRooms, "room.not_rooms"); err != nil {
			return nil, err
		}
		f.Room.IncludeLeave = r.IncludeLeave != nil && *r.IncludeLeave
		for _, p := range []struct {
			w    *wireRoomEventFilter
			into *RoomEventFilter
			name string
		}{
			{r.Ephemeral, &f.Room.Ephemeral, "room.ephemeral"},
			{r.State, &f.Room.State, "room.state"},
			{r.Timeline, &f.Room.Timeline, "room.timeline"},
			{r.AccountData, &f.Room.AccountData, "room.account_data"},
		} {
			if *p.into, err = p.w.parse(p.name); err != nil {
				return nil, err
			}
		}
	}
	return f, nil
}

// jsonProblem says which member had the wrong type, without echoing
// values.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return te.Field + " must be a " + te.Type.String()
	}
	return "wrong member types"
}

func (w *wireEventFilter) parse(path string) (EventFilter, error) {
	var f EventFilter
	if w == nil {
		return f, nil
	}
	if w.Limit != nil {
		l := *w.Limit
		if l != math.Trunc(l) || l < 1 || l > math.MaxInt32 {
			return f, mxerr.InvalidParam("%s.limit must be an integer greater than 0", path)
		}
		f.Limit = int(l)
	}
	f.Types, f.NotTypes = w.Types, w.NotTypes
	var err error
	if f.Senders, err = userIDs(w.Senders, path+".senders"); err != nil {
		return f, err
	}
	if f.NotSenders, err = userIDs(w.NotSenders, path+".not_senders"); err != nil {
		return f, err
	}
	return f, nil
}

func (w *wireRoomEventFilter) parse(path string) (RoomEventFilter, error) {
	var f RoomEventFilter
	if w == nil {
		return f, nil
	}
	var err error
	if f.EventFilter, err = w.wireEventFilter.parse(path); err != nil {
		return f, err
	}
	if f.Rooms, err = roomIDs(w.Rooms, path+".rooms"); err != nil {
		return f, err
	}
	if f.NotRooms, err = roomIDs(w.NotRooms, path+".not_rooms"); err != nil {
		return f, err
	}
	f.ContainsURL = w.ContainsURL
	f.LazyLoadMembers = w.LazyLoadMembers != nil && *w.LazyLoadMembers
	f.IncludeRedundantMembers = w.IncludeRedundantMembers != nil && *w.IncludeRedundantMembers
	f.UnreadThreadNotifications = w.UnreadThreadNotifications != nil && *w.UnreadThreadNotifications
	return f, nil
}

func userIDs(ss []string, path string) ([]id.UserID, error) {
	if ss == nil {
		return nil, nil
	}
	out := make([]id.UserID, len(ss))
	for i, s := range ss {
		lp, server, ok := strings.Cut(s, ":")
		if !ok || len(lp) < 2 || lp[0] != '@' || server == "" || len(s) > 255 {
			return nil, mxerr.InvalidParam("%s: %q is not a user ID", path, s)
		}
		out[i] = id.UserID(s)
	}
	return out, nil
}

func roomIDs(ss []string, path string) ([]id.RoomID, error) {
	if ss == nil {
		return nil, nil
	}
	out := make([]id.RoomID, len(ss))
	for i, s := range ss {
		if len(s) < 2 || s[0] != '!' || len(s) > 255 {
			return nil, mxerr.InvalidParam("%s: %q is not a room ID", path, s)
		}
		out[i] = id.RoomID(s)
	}
	return out, nil
}

// TimelineLimit is the number of timeline events per room the filter asks
// for, defaulted and capped.
func (f *Filter) TimelineLimit() int {
	l := f.Room.Timeline.Limit
	if l <= 0 {
		return DefaultTimelineLimit
	}
	return min(l, MaxTimelineLimit)
}

// IncludesRoom applies the room filter's rooms and not_rooms.
func (f *RoomFilter) IncludesRoom(r id.RoomID) bool {
	return matchRoom(f.Rooms, f.NotRooms, r)
}

func matchRoom(rooms, notRooms []id.RoomID, r id.RoomID) bool {
	for _, x := range notRooms {
		if x == r {
			return false
		}
	}
	if rooms == nil {
		return true
	}
	for _, x := range rooms {
		if x == r {
			return true
		}
	}
	return false
}

// MatchType applies types and not_types.
func (f *EventFilter) MatchType(typ string) bool {
	for _, p := range f.NotTypes {
		if glob(p, typ) {
			return false
		}
	}
	if f.Types == nil {
		return true
	}
	for _, p := range f.Types {
		if glob(p, typ) {
			return true
		}
	}
	return false
}

// MatchSender applies senders and not_senders. An event without a sender
// ("") passes.
func (f *EventFilter) MatchSender(sender id.UserID) bool {
	if sender == "" {
		return true
	}
	for _, x := range f.NotSenders {
		if x == sender {
			return false
		}
	}
	if f.Senders == nil {
		return true
	}
	for _, x := range f.Senders {
		if x == sender {
			return true
		}
	}
	return false
}

// Match applies the EventFilter to an event.
func (f *EventFilter) Match(typ string, sender id.UserID) bool {
	return f.MatchType(typ) && f.MatchSender(sender)
}

// Match applies the RoomEventFilter to a room event; content is its
// content (for contains_url).
func (f *RoomEventFilter) Match(room id.RoomID, typ string, sender id.UserID, content []byte) bool {
	if !f.EventFilter.Match(typ, sender) || !matchRoom(f.Rooms, f.NotRooms, room) {
		return false
	}
	if f.ContainsURL != nil {
		var c struct {
			URL any `json:"url"`
		}
		_ = json.Unmarshal(content, &c)
		_, has := c.URL.(string)
		if has != *f.ContainsURL {
			return false
		}
	}
	return true
}

// glob matches s against a pattern in which '*' stands for any sequence of
// characters and everything else for itself.
func glob(pattern, s string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == s
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, last)
}

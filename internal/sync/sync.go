// Package sync serves Sync v2 (client-server API, "Syncing": GET
// /_matrix/client/v3/sync): it parses since tokens and filters, decides
// which rooms changed since a token, and builds each section of the
// response from its source: rooms (timelines, state, summaries, unread
// counts) from the store and the room service, account data, presence,
// typing and receipts from their services, and to-device messages,
// device lists and one-time key counts from the E2EE sources.
//
// Tokens are stream tokens ("s{stream}_{typing}", room.Token): the
// position of the server's one stream counter and of the in-memory typing
// counter. Everything a response reports is read up to one position,
// chosen before reading, so that the next sync from its next_batch misses
// nothing and repeats nothing.
//
// Cost: a sync answers with a bounded number of store statements whatever
// the number of rooms (store/sync.go batches every per-room read), and an
// incremental sync reads only the rooms that changed: the user's
// membership changes and the rooms with events after the token, found with
// one query. It reads the other streams (account data, receipts,
// presence, device lists) only when one statement says they moved since
// the token (moved.go). An initial sync reads each room's top once and
// takes from the store's caches the rows of the rooms with nothing new
// (store.RoomTopsOf). Long-polling waits on the notifier and is woken by
// position.
//
// Imported by api/client and server.
package sync

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
)

// Users is what sync needs of the account service (user.Service).
type Users interface {
	// AccountDataSince returns the account data entries changed in
	// (from, to], global and per room.
	AccountDataSince(ctx context.Context, userID id.UserID, from, to int64) ([]store.AccountData, error)
	// IgnoredUsers returns the users userID ignores.
	IgnoredUsers(ctx context.Context, userID id.UserID) (map[id.UserID]bool, error)
	// Filter returns a stored filter, or store.ErrNotFound.
	Filter(ctx context.Context, userID id.UserID, filterID string) ([]byte, error)
}

// Typing tells who is typing in a room (typing.Service).
type Typing interface {
	// Typing returns the users typing in room and the notifier typing
	// position of the room's latest change.
	Typing(room id.RoomID) (users []id.UserID, changed int64)
}

// Receipts gives the read receipts of rooms (receipt.Service).
type Receipts interface {
	// Since returns, per room, the m.receipt content of the receipts
	// changed in (from, to] that forUser may see.
	Since(ctx context.Context, forUser id.UserID, rooms []id.RoomID, from, to int64) (map[id.RoomID]json.RawMessage, error)
}

// Presence records that users sync and gives presence changes
// (presence.Service).
type Presence interface {
	// Touch says that user is syncing with set_presence state.
	Touch(ctx context.Context, user id.UserID, state string) error
	// Syncing marks a sync of user in flight until done is called: the
	// user does not go offline while it long-polls.
	Syncing(user id.UserID) (done func())
	// Since returns the m.presence events of users changed in (from, to].
	Since(ctx context.Context, users []id.UserID, from, to int64) ([]json.RawMessage, error)
}

// ToDevice gives the send-to-device messages of a device.
type ToDevice interface {
	// ToDevice returns the messages for the device up to stream position
	// to, in order. since is the position the client acknowledged: the
	// messages up to it were delivered and may be deleted.
	ToDevice(ctx context.Context, user id.UserID, device id.DeviceID, since, to int64) ([]json.RawMessage, error)
}

// DeviceLists gives the users whose device lists changed.
type DeviceLists interface {
	// DeviceListChanges returns the users sharing a room with user whose
	// devices changed in (from, to], and those who no longer share one.
	DeviceListChanges(ctx context.Context, user id.UserID, from, to int64) (changed, left []id.UserID, err error)
}

// OneTimeKeys gives a device's key counts.
type OneTimeKeys interface {
	// KeyCounts returns the device's unclaimed one-time keys per
	// algorithm and the algorithms of its unused fallback keys.
	KeyCounts(ctx context.Context, user id.UserID, device id.DeviceID) (counts map[string]int, unusedFallback []string, err error)
}

// Sources are the services sync reads besides rooms. A nil source reports
// nothing.
type Sources struct {
	Users       Users
	Typing      Typing
	Receipts    Receipts
	Presence    Presence
	ToDevice    ToDevice
	DeviceLists DeviceLists
	OneTimeKeys OneTimeKeys
}

// Service builds /sync responses.
type Service struct {
	db    *store.DB
	rooms *room.Service
	n     *notify.Notifier
	src   Sources
	log   *slog.Logger
	lazy  *lazyCache
	// unread keeps unread counts between syncs (unread.go), members the
	// users' memberships (members.go).
	unread  unreadCache
	members memberCache
	// ignored and receipts keep what incremental syncs skip reading
	// while it does not change (moved.go).
	ignored  keptCache[map[id.UserID]bool]
	receipts keptCache[map[id.RoomID]map[string]int64]
	// roomStates keep each room's state at the end of its last timeline.
	roomStates roomStateCache

	// life ends when the server shuts down: long-polls return then.
	life context.Context
	stop context.CancelFunc
}

// New returns the sync service.
func New(db *store.DB, rooms *room.Service, n *notify.Notifier, src Sources, log *slog.Logger) *Service {
	if src.Users == nil {
		src.Users = noUsers{}
	}
	if src.Typing == nil {
		src.Typing = noTyping{}
	}
	if src.Receipts == nil {
		src.Receipts = noReceipts{}
	}
	if src.Presence == nil {
		src.Presence = noPresence{}
	}
	if src.ToDevice == nil {
		src.ToDevice = noToDevice{}
	}
	if src.DeviceLists == nil {
		src.DeviceLists = noDeviceLists{}
	}
	if src.OneTimeKeys == nil {
		src.OneTimeKeys = noKeys{}
	}
	life, stop := context.WithCancel(context.Background())
	return &Service{db: db, rooms: rooms, n: n, src: src, log: log, lazy: newLazyCache(), life: life, stop: stop}
}

// Run returns when ctx ends, ending every long-poll in flight (they answer
// as if their timeout had passed) so that the server shuts down at once.
func (s *Service) Run(ctx context.Context) error {
	<-ctx.Done()
	s.stop()
	return nil
}

// Presence states of set_presence.
const (
	Online      = "online"
	Offline     = "offline"
	Unavailable = "unavailable"
)

// Request is a /sync request.
type Request struct {
	User   id.UserID
	Device id.DeviceID
	// Since is the since token; "" for an initial sync.
	Since string
	// Filter is a filter ID or, starting with '{', a filter's JSON.
	Filter    string
	FullState bool
	// SetPresence is online (the default when ""), unavailable or offline
	// (do not touch presence).
	SetPresence string
	Timeout     time.Duration
	// UseStateAfter asks for state_after instead of state (MSC4222).
	UseStateAfter bool
}

// Sync answers a /sync request: at once for an initial sync, full_state or
// a zero timeout, otherwise when something new is there for the user or
// the timeout passes. Errors: M_INVALID_PARAM for a malformed since token,
// an unknown filter ID (as Synapse) or a bad set_presence; M_NOT_JSON and
// M_BAD_JSON for a bad inline filter.
func (s *Service) Sync(ctx context.Context, req Request) (*Response, error) {
	f, err := s.filter(ctx, req.User, req.Filter)
	if err != nil {
		return nil, err
	}
	var since *notify.Position
	if req.Since != "" {
		tok, err := room.ParseToken(req.Since)
		if err != nil || tok.Topological {
			return nil, mxerr.InvalidParam("Invalid since token")
		}
		p := tok.Position()
		since = &p
	}
	switch req.SetPresence {
	case "":
		req.SetPresence = Online
	case Online, Unavailable, Offline:
	default:
		return nil, mxerr.InvalidParam("set_presence must be online, unavailable or offline")
	}
	if req.SetPresence != Offline {
		if err := s.src.Presence.Touch(ctx, req.User, req.SetPresence); err != nil {
			return nil, err
		}
		defer s.src.Presence.Syncing(req.User)()
	}
	cur := s.n.Current()
	if since != nil && since.Typing > cur.Typing {
		// The typing counter lives in memory and restarted with the
		// process: every typing state now is news to this client.
		since.Typing = 0
	}
	if since == nil || req.FullState || req.Timeout <= 0 {
		resp, _, err := s.build(ctx, req, f, since, cur)
		return resp, err
	}

	wctx, cancel := context.WithTimeout(ctx, req.Timeout)
	defer cancel()
	defer context.AfterFunc(s.life, cancel)()
	waitFrom := *since
	for {
		for !cur.After(waitFrom) {
			if wctx.Err() != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return s.empty(ctx, req, since, waitFrom)
			}
			rooms, err := s.wakeRoomsFrom(ctx, req.User, waitFrom.Stream)
			if err != nil {
				return nil, err
			}
			cur = s.n.Wait(wctx, req.User, rooms, waitFrom)
		}
		resp, to, err := s.build(ctx, req, f, since, cur)
		if err != nil || !resp.empty() || wctx.Err() != nil {
			return resp, err
		}
		// Nothing for this user in (waitFrom, to]: wait for more.
		waitFrom = to
		cur = s.n.Current()
	}
}

// wakeRooms are the rooms whose events wake a long-polling user: those it
// is joined to. Its own membership changes wake it as a user.
func (s *Service) wakeRooms(ctx context.Context, user id.UserID) ([]id.RoomID, error) {
	return s.db.JoinedRoomIDs(ctx, user)
}

// wakeRoomsFrom is wakeRooms for a wait from stream position from. The
// rooms come from the user's cached memberships (members.go) when those are as of
// from or later, as they are after the sync that gave the client its
// token: a membership change after them wakes the user by itself, so the
// list cannot miss a room the user joined since. Otherwise (another
// process answered that sync) they are read.
func (s *Service) wakeRoomsFrom(ctx context.Context, user id.UserID, from int64) ([]id.RoomID, error) {
	s.members.mu.Lock()
	c := s.members.m[user]
	s.members.mu.Unlock()
	if c == nil || c.at < from {
		return s.db.JoinedRoomIDs(ctx, user)
	}
	rooms := make([]id.RoomID, 0, len(c.rooms))
	for r, m := range c.rooms {
		if m.Membership == room.Join {
			rooms = append(rooms, r)
		}
	}
	return rooms, nil
}

// filter loads the request's filter: inline JSON or a stored filter's ID.
func (s *Service) filter(ctx context.Context, user id.UserID, param string) (*Filter, error) {
	if param == "" {
		return &Filter{}, nil
	}
	if param[0] == '{' {
		return ParseFilter([]byte(param))
	}
	raw, err := s.src.Users.Filter(ctx, user, param)
	if errors.Is(err, store.ErrNotFound) {
		// Synapse answers 400 M_INVALID_PARAM for an unknown filter ID.
		return nil, mxerr.InvalidParam("No such filter")
	}
	if err != nil {
		return nil, err
	}
	return ParseFilter(raw)
}

// empty is the answer to a long-poll that found nothing: no rooms, and
// next_batch at pos (where nothing for the user happened since since).
func (s *Service) empty(ctx context.Context, req Request, since *notify.Position, pos notify.Position) (*Response, error) {
	resp := newResponse(pos)
	if err := s.e2ee(ctx, req, since, pos, nil, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// Response is a /sync response.
type Response struct {
	NextBatch   string     `json:"next_batch"`
	Rooms       *Rooms     `json:"rooms,omitempty"`
	Presence    *EventList `json:"presence,omitempty"`
	AccountData *EventList `json:"account_data,omitempty"`
	ToDevice    EventList  `json:"to_device"`
	DeviceLists struct {
		Changed []id.UserID `json:"changed"`
		Left    []id.UserID `json:"left"`
	} `json:"device_lists"`
	OneTimeKeysCount map[string]int `json:"device_one_time_keys_count"`
	UnusedFallback   []string       `json:"device_unused_fallback_key_types"`
}

func newResponse(pos notify.Position) *Response {
	r := &Response{NextBatch: room.StreamToken(pos).String()}
	r.DeviceLists.Changed = []id.UserID{}
	r.DeviceLists.Left = []id.UserID{}
	r.OneTimeKeysCount = map[string]int{"signed_curve25519": 0}
	r.UnusedFallback = []string{}
	return r
}

// empty reports whether the response has nothing new for the client
// beyond the key counts it always carries.
func (r *Response) empty() bool {
	return r.Rooms == nil && r.Presence == nil && r.AccountData == nil && len(r.ToDevice.Events) == 0 &&
		len(r.DeviceLists.Changed) == 0 && len(r.DeviceLists.Left) == 0
}

// EventList is {"events": [...]}; a nil list is written as [].
type EventList struct {
	Events []json.RawMessage `json:"events"`
}

// MarshalJSON writes the list, [] when empty.
func (l EventList) MarshalJSON() ([]byte, error) {
	if l.Events == nil {
		return []byte(`{"events":[]}`), nil
	}
	type plain EventList
	return json.Marshal(plain(l))
}

// Rooms are the room sections; empty ones are left out.
type Rooms struct {
	Join   map[id.RoomID]*JoinedRoom  `json:"join,omitempty"`
	Invite map[id.RoomID]*InvitedRoom `json:"invite,omitempty"`
	Knock  map[id.RoomID]*KnockedRoom `json:"knock,omitempty"`
	Leave  map[id.RoomID]*LeftRoom    `json:"leave,omitempty"`
}

// JoinedRoom is a room of rooms.join.
type JoinedRoom struct {
	Summary *Summary `json:"summary,omitempty"`
	// State is set unless use_state_after was asked for; StateAfter then.
	State       *EventList `json:"state,omitempty"`
	StateAfter  *EventList `json:"state_after,omitempty"`
	Timeline    Timeline   `json:"timeline"`
	Ephemeral   EventList  `json:"ephemeral"`
	AccountData EventList  `json:"account_data"`
	Unread      Counts     `json:"unread_notifications"`
	// UnreadThreads is set when the filter asks for per-thread counts.
	UnreadThreads map[id.EventID]Counts `json:"unread_thread_notifications,omitempty"`
}

// LeftRoom is a room of rooms.leave.
type LeftRoom struct {
	State       *EventList `json:"state,omitempty"`
	StateAfter  *EventList `json:"state_after,omitempty"`
	Timeline    Timeline   `json:"timeline"`
	AccountData EventList  `json:"account_data"`
}

// InvitedRoom is a room of rooms.invite.
type InvitedRoom struct {
	InviteState EventList `json:"invite_state"`
}

// KnockedRoom is a room of rooms.knock.
type KnockedRoom struct {
	KnockState EventList `json:"knock_state"`
}

// Timeline is a room's timeline batch.
type Timeline struct {
	Events    []json.RawMessage `json:"events"`
	Limited   bool              `json:"limited"`
	PrevBatch string            `json:"prev_batch,omitempty"`
}

// Summary is a joined room's summary.
type Summary struct {
	Heroes             []id.UserID `json:"m.heroes,omitempty"`
	JoinedMemberCount  int         `json:"m.joined_member_count"`
	InvitedMemberCount int         `json:"m.invited_member_count"`
}

// Counts are unread notification counts.
type Counts struct {
	Highlights    int `json:"highlight_count"`
	Notifications int `json:"notification_count"`
}

// The sources that report nothing.
type (
	noUsers       struct{}
	noTyping      struct{}
	noReceipts    struct{}
	noPresence    struct{}
	noToDevice    struct{}
	noDeviceLists struct{}
	noKeys        struct{}
)

func (noUsers) AccountDataSince(context.Context, id.UserID, int64, int64) ([]store.AccountData, error) {
	return nil, nil
}
func (noUsers) IgnoredUsers(context.Context, id.UserID) (map[id.UserID]bool, error) {
	return map[id.UserID]bool{}, nil
}
func (noUsers) Filter(context.Context, id.UserID, string) ([]byte, error) {
	return nil, store.ErrNotFound
}
func (noTyping) Typing(id.RoomID) ([]id.UserID, int64) { return nil, 0 }
func (noReceipts) Since(context.Context, id.UserID, []id.RoomID, int64, int64) (map[id.RoomID]json.RawMessage, error) {
	return nil, nil
}
func (noPresence) Touch(context.Context, id.UserID, string) error { return nil }
func (noPresence) Syncing(id.UserID) func()                       { return func() {} }
func (noPresence) Since(context.Context, []id.UserID, int64, int64) ([]json.RawMessage, error) {
	return nil, nil
}
func (noToDevice) ToDevice(context.Context, id.UserID, id.DeviceID, int64, int64) ([]json.RawMessage, error) {
	return nil, nil
}
func (noDeviceLists) DeviceListChanges(context.Context, id.UserID, int64, int64) ([]id.UserID, []id.UserID, error) {
	return nil, nil, nil
}
func (noKeys) KeyCounts(context.Context, id.UserID, id.DeviceID) (map[string]int, []string, error) {
	return nil, nil, nil
}

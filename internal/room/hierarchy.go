package room

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// Spaces and room summaries (client-server API, "Spaces" and GET
// /room_summary; server-server API, "Spaces"): the space tree walked
// through m.space.child state events, the rooms of it a user or a server
// may see, and the short description of one room.
//
// Who may see a room (the client API's list under GET /hierarchy, and for
// a server Synapse's reading of it): anyone when its history is
// world_readable or it can be joined or knocked on without an invite
// (join rule public, knock from room version 7, knock_restricted from 10);
// a user who is joined or invited, or who is joined to a room its
// restricted (8+) or knock_restricted (10+) join rules allow; a server with
// a user joined or invited, or joined to an allowed room. A banned user
// sees only world_readable rooms.
//
// A room this server is in is described from its own current state; one
// it is not in is asked of the servers the m.space.child event names (its
// via) with GET /_matrix/federation/v1/hierarchy, whose answers are kept a
// few minutes. The spec says local data wins over a remote's: a child the
// remote describes is described locally when this server is in it.
//
// Pagination tokens carry the request (root, suggested_only, max_depth)
// and the number of rooms already returned, so that any process of the
// server can go on from one by walking the tree again up to that point;
// the process that made a token keeps the walk's state a few minutes
// and goes on from there without walking again.

// Limits of the walk. Synapse returns 50 rooms a page and asks at most 3
// servers about a room.
const (
	defaultHierarchyLimit = 50
	maxHierarchyLimit     = 100
	// maxTreeDepth bounds max_depth, and is the depth without one.
	maxTreeDepth = 50
	// maxPageWork bounds the rooms one page looks at (rooms the user may
	// not see cost work without filling the page): a page that reaches it
	// ends early, with a next_batch.
	maxPageWork = 500
	// maxServersPerRoom bounds the servers asked about one room.
	maxServersPerRoom = 3
	// maxFederationChildren bounds the child summaries of a federation
	// answer (Synapse: 50).
	maxFederationChildren = 50
	// remoteAskTimeout bounds one server's answer while a client waits.
	remoteAskTimeout = 10 * time.Second
	// answerTTL keeps a remote answer; failureTTL remembers that no server
	// answered about a room.
	answerTTL  = 5 * time.Minute
	failureTTL = time.Minute
	maxAnswers = 1000
	// sessionTTL keeps a walk's state after a page; Synapse keeps its
	// pagination sessions 5 minutes.
	sessionTTL  = 5 * time.Minute
	maxSessions = 1000
)

// Event types and the room type of spaces.
const (
	TypeSpaceChild = "m.space.child"
	typeEncryption = "m.room.encryption"
	RoomTypeSpace  = "m.space"
)

// HierarchyRemote asks other servers about spaces: *federation.Client.
type HierarchyRemote interface {
	Hierarchy(ctx context.Context, dest string, roomID id.RoomID, suggestedOnly bool) (*federation.HierarchyResponse, error)
}

var _ HierarchyRemote = (*federation.Client)(nil)

// Spaces serves the space hierarchy and room summaries. It reads rooms
// through the room service and keeps other servers' answers and
// pagination state in memory.
type Spaces struct {
	rooms  *Service
	db     *store.DB
	remote HierarchyRemote
	log    *slog.Logger

	mu       sync.Mutex
	answers  map[answerKey]answer
	sessions map[string]session
}

// NewSpaces returns the spaces service. remote may be nil (federation
// off): rooms this server is not in are then left out.
func NewSpaces(rooms *Service, remote HierarchyRemote, log *slog.Logger) *Spaces {
	return &Spaces{
		rooms: rooms, db: rooms.db, remote: remote, log: log,
		answers: map[answerKey]answer{}, sessions: map[string]session{},
	}
}

// HierarchyRequest is a client's GET /hierarchy.
type HierarchyRequest struct {
	SuggestedOnly bool
	// Limit of rooms in the page; 0 for the default (50), at most 100.
	Limit int
	// MaxDepth below the space, nil for no limit (the server's, 50).
	MaxDepth *int
	// From is the next_batch of the previous page.
	From string
}

// HierarchyPage is a page of the space tree.
type HierarchyPage struct {
	Rooms     []federation.HierarchyRoom `json:"rooms"`
	NextBatch string                     `json:"next_batch,omitempty"`
}

// viewer is who asks: a user (local request, "" when anonymous) or a
// server (federation request).
type viewer struct {
	user   id.UserID
	server string
}

// Hierarchy walks the space roomID depth first for user (client-server
// API, GET /rooms/{roomId}/hierarchy): the space itself, then each child
// in the spec's order ("Ordering of children within a space"), a child
// space's children before its next sibling, each room once (loops are
// cut), leaving out the rooms user may not see and not going below them.
//
// Errors: M_FORBIDDEN when user may not see the space or it is unknown
// (here and to the servers asked), M_INVALID_PARAM for a bad limit or
// max_depth, a token this server did not make or a request that differs
// from the first page's in suggested_only or max_depth.
func (sp *Spaces) Hierarchy(ctx context.Context, user id.UserID, roomID id.RoomID, req HierarchyRequest) (*HierarchyPage, error) {
	limit := req.Limit
	switch {
	case limit < 0:
		return nil, mxerr.InvalidParam("limit must be greater than zero")
	case limit == 0:
		limit = defaultHierarchyLimit
	case limit > maxHierarchyLimit:
		limit = maxHierarchyLimit
	}
	maxDepth, askedDepth := maxTreeDepth, -1
	if req.MaxDepth != nil {
		if *req.MaxDepth < 0 {
			return nil, mxerr.InvalidParam("max_depth must not be negative")
		}
		askedDepth = *req.MaxDepth
		maxDepth = min(*req.MaxDepth, maxTreeDepth)
	}
	var from *pageToken
	if req.From != "" {
		t, err := parsePageToken(req.From)
		if err != nil {
			return nil, err
		}
		if t.Root != roomID || t.Suggested != req.SuggestedOnly || t.MaxDepth != askedDepth {
			return nil, mxerr.InvalidParam("suggested_only and max_depth cannot change on paginated requests")
		}
		from = &t
	}
	v := viewer{user: user}
	if err := sp.checkRoot(ctx, v, roomID, req.SuggestedOnly); err != nil {
		return nil, err
	}

	var w *walk
	if from != nil {
		w = sp.takeSession(req.From, user)
		if w == nil {
			// Another process made the token, or it has expired here:
			// walk again up to where the previous page ended.
			w = newWalk(roomID)
			if _, err := sp.walkPage(ctx, v, w, req.SuggestedOnly, maxDepth, from.N, false); err != nil {
				return nil, err
			}
		}
	} else {
		w = newWalk(roomID)
	}
	rooms, err := sp.walkPage(ctx, v, w, req.SuggestedOnly, maxDepth, limit, true)
	if err != nil {
		return nil, err
	}
	out := &HierarchyPage{Rooms: rooms}
	if len(w.queue) > 0 {
		t := pageToken{Root: roomID, Suggested: req.SuggestedOnly, MaxDepth: askedDepth, N: w.emitted, Nonce: nonce()}
		out.NextBatch = t.String()
		sp.putSession(out.NextBatch, user, w)
	}
	return out, nil
}

// checkRoot returns M_FORBIDDEN unless v may see the space: from local
// state when this server is in it, else from the answer of a server that
// is (the room ID's, the inviter's, those of members once known).
func (sp *Spaces) checkRoot(ctx context.Context, v viewer, roomID id.RoomID, suggestedOnly bool) error {
	forbidden := mxerr.Forbidden("You are not allowed to view room %s", roomID)
	resident, err := sp.resident(ctx, roomID)
	if err != nil {
		return err
	}
	if resident {
		info, err := sp.localRoom(ctx, roomID, false, false)
		if err != nil {
			return err
		}
		if ok, err := sp.maySee(ctx, v, &info.RoomSummary, true); err != nil || !ok {
			return orErr(err, forbidden)
		}
		return nil
	}
	ans, err := sp.ask(ctx, roomID, sp.rooms.candidateServers(ctx, roomID, v.user, nil), suggestedOnly)
	if err != nil {
		return err
	}
	if ans == nil {
		return forbidden
	}
	if ok, err := sp.maySee(ctx, v, &ans.Room.RoomSummary, false); err != nil || !ok {
		return orErr(err, forbidden)
	}
	return nil
}

// orErr returns err if not nil, else alt.
func orErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

// walk is the state of a hierarchy walk between pages.
type walk struct {
	// queue is a stack: the next room to look at is last.
	queue []queued
	done  map[id.RoomID]bool
	// emitted counts the rooms returned so far.
	emitted int
}

// queued is a room to look at.
type queued struct {
	roomID id.RoomID
	via    []string
	depth  int
	// remote is the room as the answer about its parent described it,
	// nil when there is none.
	remote *federation.RoomSummary
}

func newWalk(root id.RoomID) *walk {
	return &walk{queue: []queued{{roomID: root}}, done: map[id.RoomID]bool{}}
}

// walkPage goes on with w until it has n rooms or the queue is empty (or,
// with bounded, it has looked at maxPageWork rooms), and returns the
// rooms.
func (sp *Spaces) walkPage(ctx context.Context, v viewer, w *walk, suggestedOnly bool, maxDepth, n int, bounded bool) ([]federation.HierarchyRoom, error) {
	out := []federation.HierarchyRoom{}
	work := 0
	for len(w.queue) > 0 && len(out) < n && (!bounded || work < maxPageWork) {
		e := w.queue[len(w.queue)-1]
		w.queue = w.queue[:len(w.queue)-1]
		if w.done[e.roomID] {
			continue
		}
		w.done[e.roomID] = true
		work++
		room, children, err := sp.entry(ctx, v, e, suggestedOnly, maxDepth)
		if err != nil {
			return nil, err
		}
		if room == nil {
			continue
		}
		out = append(out, *room)
		w.emitted++
		if e.depth >= maxDepth {
			continue
		}
		// Pushed last first, so that the first child is looked at next.
		for i := len(children) - 1; i >= 0; i-- {
			c := children[i]
			if !w.done[c.roomID] {
				w.queue = append(w.queue, queued{roomID: c.roomID, via: c.via, depth: e.depth + 1, remote: c.remote})
			}
		}
	}
	return out, nil
}

// entry describes the room of e for v, with its children to walk into;
// nil when v may not see it or nobody could describe it.
func (sp *Spaces) entry(ctx context.Context, v viewer, e queued, suggestedOnly bool, maxDepth int) (*federation.HierarchyRoom, []child, error) {
	resident, err := sp.resident(ctx, e.roomID)
	if err != nil {
		return nil, nil, err
	}
	if resident {
		info, err := sp.localRoom(ctx, e.roomID, true, suggestedOnly)
		if err != nil {
			return nil, nil, err
		}
		if ok, err := sp.maySee(ctx, v, &info.RoomSummary, true); err != nil || !ok {
			return nil, nil, err
		}
		return &info.HierarchyRoom, info.children, nil
	}
	// The parent's answer described this room: enough unless its
	// children are wanted.
	if e.remote != nil && (e.remote.RoomType != RoomTypeSpace || e.depth >= maxDepth) {
		if ok, err := sp.maySee(ctx, v, e.remote, false); err != nil || !ok {
			return nil, nil, err
		}
		return &federation.HierarchyRoom{RoomSummary: *e.remote, ChildrenState: []json.RawMessage{}}, nil, nil
	}
	ans, err := sp.ask(ctx, e.roomID, e.via, suggestedOnly)
	if err != nil || ans == nil {
		return nil, nil, err
	}
	if ok, err := sp.maySee(ctx, v, &ans.Room.RoomSummary, false); err != nil || !ok {
		return nil, nil, err
	}
	room := federation.HierarchyRoom{RoomSummary: ans.Room.RoomSummary, ChildrenState: []json.RawMessage{}}
	if room.RoomType != RoomTypeSpace {
		return &room, nil, nil
	}
	summaries := map[id.RoomID]*federation.RoomSummary{}
	for i := range ans.Children {
		summaries[ans.Children[i].RoomID] = &ans.Children[i]
	}
	var children []child
	for _, raw := range ans.Room.ChildrenState {
		c, ok := parseStrippedChild(raw)
		if !ok || (suggestedOnly && !c.suggested) {
			continue
		}
		c.remote = summaries[c.roomID]
		children = append(children, c)
	}
	sortChildren(children)
	// children_state lists every child; the walk skips those the remote
	// said we may not see ("should not be re-requested").
	walkInto := children[:0:0]
	for _, c := range children {
		room.ChildrenState = append(room.ChildrenState, c.stripped)
		if !slices.Contains(ans.InaccessibleChildren, c.roomID) {
			walkInto = append(walkInto, c)
		}
	}
	return &room, walkInto, nil
}

// FederationHierarchy answers origin's GET
// /_matrix/federation/v1/hierarchy/{roomId} (server-server API, "Spaces"):
// the space with its children events, the summaries of the children this
// server is in and origin may see (at most 50), and those it may not see.
// Children this server is not in are left out. M_NOT_FOUND when this
// server is not in the room or origin may not see it.
func (sp *Spaces) FederationHierarchy(ctx context.Context, origin string, roomID id.RoomID, suggestedOnly bool) (*federation.HierarchyResponse, error) {
	notFound := mxerr.NotFound("Room %s is unknown or not visible to your server", roomID)
	v := viewer{server: origin}
	resident, err := sp.resident(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if !resident {
		return nil, notFound
	}
	info, err := sp.localRoom(ctx, roomID, true, suggestedOnly)
	if err != nil {
		return nil, err
	}
	if ok, err := sp.maySee(ctx, v, &info.RoomSummary, true); err != nil || !ok {
		return nil, orErr(err, notFound)
	}
	out := &federation.HierarchyResponse{Room: info.HierarchyRoom, Children: []federation.RoomSummary{}, InaccessibleChildren: []id.RoomID{}}
	for _, c := range info.children {
		if len(out.Children)+len(out.InaccessibleChildren) >= maxFederationChildren {
			break
		}
		resident, err := sp.resident(ctx, c.roomID)
		if err != nil {
			return nil, err
		}
		if !resident {
			continue
		}
		ci, err := sp.localRoom(ctx, c.roomID, false, false)
		if err != nil {
			return nil, err
		}
		ok, err := sp.maySee(ctx, v, &ci.RoomSummary, true)
		if err != nil {
			return nil, err
		}
		if ok {
			out.Children = append(out.Children, ci.RoomSummary)
		} else {
			out.InaccessibleChildren = append(out.InaccessibleChildren, c.roomID)
		}
	}
	return out, nil
}

// Summary is a room's summary for a client (GET /room_summary): with the
// user's membership ("leave" when none), none when anonymous.
type Summary struct {
	federation.RoomSummary
	Membership string `json:"membership,omitempty"`
}

// Summary describes roomID for user ("" when anonymous; client-server API,
// GET /room_summary/{roomIdOrAlias}): from local state when this server is
// in the room, else from the hierarchy answer of one of via. Anonymous
// requests see only rooms anyone may see (world_readable, or joinable or
// knockable without an invite), as the spec allows. M_NOT_FOUND when the
// room is unknown or user may not see it.
func (sp *Spaces) Summary(ctx context.Context, user id.UserID, roomID id.RoomID, via []string) (*Summary, error) {
	notFound := mxerr.NotFound("Room %s not found or not accessible", roomID)
	v := viewer{user: user}
	resident, err := sp.resident(ctx, roomID)
	if err != nil {
		return nil, err
	}
	var out Summary
	if resident {
		info, err := sp.localRoom(ctx, roomID, false, false)
		if err != nil {
			return nil, err
		}
		if ok, err := sp.maySee(ctx, v, &info.RoomSummary, true); err != nil || !ok {
			return nil, orErr(err, notFound)
		}
		out.RoomSummary = info.RoomSummary
	} else {
		// suggested_only: the children do not matter here, and the
		// answer is smaller.
		ans, err := sp.ask(ctx, roomID, via, true)
		if err != nil {
			return nil, err
		}
		if ans == nil {
			return nil, notFound
		}
		if ok, err := sp.maySee(ctx, v, &ans.Room.RoomSummary, false); err != nil || !ok {
			return nil, orErr(err, notFound)
		}
		out.RoomSummary = ans.Room.RoomSummary
	}
	if user != "" {
		m, err := sp.rooms.Membership(ctx, roomID, user)
		if err != nil {
			return nil, err
		}
		if m == "" {
			m = Leave
		}
		out.Membership = m
	}
	return &out, nil
}

// resident reports whether a local user is joined to the room: its state
// here is current.
func (sp *Spaces) resident(ctx context.Context, roomID id.RoomID) (bool, error) {
	return sp.db.ServerHasMember(ctx, roomID, sp.rooms.cfg.ServerName, Join)
}

// roomInfo is a room described from local state.
type roomInfo struct {
	federation.HierarchyRoom
	// children are the valid m.space.child events of a space, in order.
	children []child
}

// localRoom describes a room this server is in from its current state;
// with withChildren, a space's children too (only suggested ones with
// suggestedOnly).
func (sp *Spaces) localRoom(ctx context.Context, roomID id.RoomID, withChildren, suggestedOnly bool) (*roomInfo, error) {
	r, err := sp.db.Room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	st, err := sp.db.RoomStats(ctx, roomID)
	if err != nil {
		return nil, err
	}
	s := federation.RoomSummary{
		RoomID:           roomID,
		Name:             st.Name,
		Topic:            st.Topic,
		CanonicalAlias:   st.CanonicalAlias,
		AvatarURL:        st.AvatarURL,
		NumJoinedMembers: st.JoinedMembers,
		WorldReadable:    st.HistoryVisibility == WorldReadable,
		GuestCanJoin:     st.GuestAccess == "can_join",
		JoinRule:         st.JoinRule,
		RoomType:         st.RoomType,
		RoomVersion:      string(r.Version),
	}
	if s.JoinRule == "" {
		// Without join rules only invited users may join (the
		// authorization rules); an absent join_rule would read "public".
		s.JoinRule = Invite
	}
	if s.JoinRule == "restricted" || s.JoinRule == "knock_restricted" {
		c, err := sp.rooms.StateContent(ctx, roomID, event.TypeJoinRules, "")
		if err != nil {
			return nil, err
		}
		s.AllowedRoomIDs = allowedRooms(c)
	}
	if st.Encrypted {
		c, err := sp.rooms.StateContent(ctx, roomID, typeEncryption, "")
		if err != nil {
			return nil, err
		}
		s.Encryption, _ = getString(c, "algorithm")
	}
	info := &roomInfo{HierarchyRoom: federation.HierarchyRoom{RoomSummary: s, ChildrenState: []json.RawMessage{}}}
	if !withChildren || s.RoomType != RoomTypeSpace {
		return info, nil
	}
	evs, err := sp.db.CurrentStateEvents(ctx, roomID, TypeSpaceChild)
	if err != nil {
		return nil, err
	}
	for _, ev := range evs {
		c, ok := childOf(*ev.StateKey(), ev.Content(), ev.Sender(), ev.OriginServerTS())
		if !ok || (suggestedOnly && !c.suggested) {
			continue
		}
		info.children = append(info.children, c)
	}
	sortChildren(info.children)
	for _, c := range info.children {
		info.ChildrenState = append(info.ChildrenState, c.stripped)
	}
	return info, nil
}

// allowedRooms reads the rooms of the m.room_membership entries of
// restricted join rules.
func allowedRooms(joinRules []byte) []id.RoomID {
	var c struct {
		Allow []json.RawMessage `json:"allow"`
	}
	_ = json.Unmarshal(joinRules, &c)
	var out []id.RoomID
	for _, raw := range c.Allow {
		var a struct {
			Type   string `json:"type"`
			RoomID string `json:"room_id"`
		}
		if json.Unmarshal(raw, &a) == nil && a.Type == "m.room_membership" && len(a.RoomID) > 1 && a.RoomID[0] == '!' {
			out = append(out, id.RoomID(a.RoomID))
		}
	}
	return out
}

// maySee decides whether v may see the room s describes (see the top of
// this file). local says s comes from this server's state, whose room
// version is known; a remote's summary may lack it, and its knock rules
// are then taken as valid, as Synapse does.
func (sp *Spaces) maySee(ctx context.Context, v viewer, s *federation.RoomSummary, local bool) (bool, error) {
	n := 1 << 30 // unknown version of a remote room: every rule is valid
	if local || s.RoomVersion != "" {
		n, _ = strconv.Atoi(s.RoomVersion)
	}
	if v.server != "" {
		ok, err := sp.rooms.ServerAllowed(ctx, s.RoomID, v.server)
		if err != nil || !ok {
			return false, err
		}
	}
	if s.WorldReadable {
		return true, nil
	}
	if v.user != "" {
		m, err := sp.rooms.Membership(ctx, s.RoomID, v.user)
		if err != nil {
			return false, err
		}
		if m == Ban {
			return false, nil
		}
		if m == Join || m == Invite {
			return true, nil
		}
	}
	rule := s.JoinRule
	if rule == "" && !local {
		rule = "public" // the spec's reading of an absent join_rule
	}
	switch {
	case rule == "public", rule == "knock" && n >= 7, rule == "knock_restricted" && n >= 10:
		return true, nil
	}
	restricted := (rule == "restricted" && n >= 8) || (rule == "knock_restricted" && n >= 10)
	switch {
	case v.server != "":
		for _, m := range []string{Join, Invite} {
			ok, err := sp.db.ServerHasMember(ctx, s.RoomID, v.server, m)
			if err != nil || ok {
				return ok, err
			}
		}
		if restricted {
			for _, a := range s.AllowedRoomIDs {
				ok, err := sp.db.ServerHasMember(ctx, a, v.server, Join)
				if err != nil || ok {
					return ok, err
				}
			}
		}
	case v.user != "" && restricted:
		for _, a := range s.AllowedRoomIDs {
			m, err := sp.rooms.Membership(ctx, a, v.user)
			if err != nil {
				return false, err
			}
			if m == Join {
				return true, nil
			}
		}
	}
	return false, nil
}

// child is a valid m.space.child event (content.via a non-empty list of
// server names).
type child struct {
	roomID    id.RoomID
	via       []string
	order     string // "" when absent or invalid
	ts        int64
	suggested bool
	// stripped is the event as children_state carries it.
	stripped json.RawMessage
	// remote is the child as a remote's answer described it, if it did.
	remote *federation.RoomSummary
}

// childOf reads an m.space.child event; false when it does not make the
// room a child ("When not present or invalid, the child room is not
// considered to be part of the space").
func childOf(stateKey string, content []byte, sender id.UserID, ts int64) (child, bool) {
	if len(stateKey) < 2 || stateKey[0] != '!' {
		return child{}, false
	}
	var c struct {
		Via       []json.RawMessage `json:"via"`
		Order     json.RawMessage   `json:"order"`
		Suggested json.RawMessage   `json:"suggested"`
	}
	if json.Unmarshal(content, &c) != nil || len(c.Via) == 0 {
		return child{}, false
	}
	out := child{roomID: id.RoomID(stateKey), ts: ts}
	for _, raw := range c.Via {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return child{}, false
		}
		if event.ValidServerName(s) && !slices.Contains(out.via, s) {
			out.via = append(out.via, s)
		}
	}
	var order string
	if json.Unmarshal(c.Order, &order) == nil && validOrder(order) {
		out.order = order
	}
	out.suggested = bytes.Equal(bytes.TrimSpace(c.Suggested), []byte("true"))
	out.stripped, _ = json.Marshal(struct {
		Type           string          `json:"type"`
		StateKey       string          `json:"state_key"`
		Content        json.RawMessage `json:"content"`
		Sender         id.UserID       `json:"sender"`
		OriginServerTS int64           `json:"origin_server_ts"`
	}{TypeSpaceChild, stateKey, content, sender, ts})
	return out, true
}

// parseStrippedChild reads an entry of a remote's children_state.
func parseStrippedChild(raw json.RawMessage) (child, bool) {
	var e struct {
		Type           string          `json:"type"`
		StateKey       string          `json:"state_key"`
		Content        json.RawMessage `json:"content"`
		Sender         id.UserID       `json:"sender"`
		OriginServerTS int64           `json:"origin_server_ts"`
	}
	if json.Unmarshal(raw, &e) != nil || e.Type != TypeSpaceChild || !json.Valid(e.Content) || e.Content[0] != '{' {
		return child{}, false
	}
	return childOf(e.StateKey, e.Content, e.Sender, e.OriginServerTS)
}

// validOrder: at most 50 characters, each from \x20 to \x7E, at least one.
func validOrder(s string) bool {
	if s == "" || len(s) > 50 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// sortChildren orders children as the spec says ("Ordering of children
// within a space"): those with a valid order first, by order (code
// points; all ASCII, so bytes), then by the event's origin_server_ts,
// then by room ID.
func sortChildren(cs []child) {
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if (a.order != "") != (b.order != "") {
			return a.order != ""
		}
		if a.order != b.order {
			return a.order < b.order
		}
		if a.ts != b.ts {
			return a.ts < b.ts
		}
		return a.roomID < b.roomID
	})
}

// answerKey names a remote answer in the cache.
type answerKey struct {
	roomID        id.RoomID
	suggestedOnly bool
}

// answer is a cached remote answer; resp nil: no server answered.
type answer struct {
	resp  *federation.HierarchyResponse
	until time.Time
}

// ask returns a remote server's answer about roomID: cached, or from the
// first of servers (at most 3, this one left out) that answers. nil when
// none does (or federation is off); the error is only the context's.
func (sp *Spaces) ask(ctx context.Context, roomID id.RoomID, servers []string, suggestedOnly bool) (*federation.HierarchyResponse, error) {
	if sp.remote == nil {
		return nil, nil
	}
	key := answerKey{roomID, suggestedOnly}
	now := time.Now()
	sp.mu.Lock()
	a, ok := sp.answers[key]
	sp.mu.Unlock()
	if ok && now.Before(a.until) {
		return a.resp, nil
	}
	asked := 0
	refused := false
	var resp *federation.HierarchyResponse
	for _, srv := range servers {
		if srv == sp.rooms.cfg.ServerName || !event.ValidServerName(srv) {
			continue
		}
		if asked == maxServersPerRoom {
			break
		}
		asked++
		actx, cancel := context.WithTimeout(ctx, remoteAskTimeout)
		r, err := sp.remote.Hierarchy(actx, srv, roomID, suggestedOnly)
		cancel()
		if err == nil {
			resp = r
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var re *federation.RemoteError
		if errors.As(err, &re) && re.Status < 500 {
			refused = true
		}
		sp.log.Debug("space hierarchy not answered", "room_id", roomID, "destination", srv, "err", err)
	}
	if asked == 0 {
		return nil, nil // nobody to ask: nothing learnt to remember
	}
	if resp == nil && refused {
		// A server that refused (404: it does not know that we may see
		// the room) may answer once it learns that a user of ours is in
		// a room the join rules allow: the refusal is not remembered
		// (Complement TestRestrictedRoomsSpacesSummaryFederation).
		return nil, nil
	}
	ttl := answerTTL
	if resp == nil {
		ttl = failureTTL
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if len(sp.answers) >= maxAnswers {
		for k, a := range sp.answers {
			if !now.Before(a.until) {
				delete(sp.answers, k)
			}
		}
		for k := range sp.answers {
			if len(sp.answers) < maxAnswers {
				break
			}
			delete(sp.answers, k)
		}
	}
	sp.answers[key] = answer{resp: resp, until: now.Add(ttl)}
	return resp, nil
}

// pageToken is a hierarchy pagination token (next_batch).
type pageToken struct {
	Root      id.RoomID `json:"r"`
	Suggested bool      `json:"s"`
	// MaxDepth is the request's max_depth, -1 when it had none.
	MaxDepth int `json:"d"`
	// N is the number of rooms the previous pages returned.
	N int `json:"n"`
	// Nonce tells apart tokens of walks at the same place.
	Nonce string `json:"k"`
}

func (t pageToken) String() string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parsePageToken(s string) (pageToken, error) {
	bad := mxerr.InvalidParam("Unknown pagination token")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return pageToken{}, bad
	}
	var t pageToken
	if json.Unmarshal(raw, &t) != nil || t.N < 0 || t.MaxDepth < -1 || t.Root == "" {
		return pageToken{}, bad
	}
	return t, nil
}

func nonce() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// session is a walk kept between pages.
type session struct {
	user  id.UserID
	w     *walk
	until time.Time
}

// takeSession returns (and forgets) the walk a token of user's ended, nil
// if this process does not have it.
func (sp *Spaces) takeSession(token string, user id.UserID) *walk {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	s, ok := sp.sessions[token]
	if !ok || s.user != user || !time.Now().Before(s.until) {
		return nil
	}
	delete(sp.sessions, token)
	return s.w
}

func (sp *Spaces) putSession(token string, user id.UserID, w *walk) {
	now := time.Now()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if len(sp.sessions) >= maxSessions {
		for k, s := range sp.sessions {
			if !now.Before(s.until) {
				delete(sp.sessions, k)
			}
		}
		for k := range sp.sessions {
			if len(sp.sessions) < maxSessions {
				break
			}
			delete(sp.sessions, k)
		}
	}
	sp.sessions[token] = session{user: user, w: w, until: now.Add(sessionTTL)}
}

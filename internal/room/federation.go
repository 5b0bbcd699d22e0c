package room

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"sort"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/eventauth"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

// The federation side of the room service: what the inbound federation API
// (internal/api/federation) calls. Every method takes the requesting
// server's name (origin), already authenticated by X-Matrix; these methods
// check the room's server ACL (m.room.server_acl) and whether origin may
// see what it asks for.
//
// Errors the remote server must see are *mxerr.Error: M_FORBIDDEN (ACL,
// not allowed, auth refusal), M_NOT_FOUND (unknown room or event),
// M_INCOMPATIBLE_ROOM_VERSION, M_BAD_JSON.

// residentRoom locks a room this server is joined to, for serving another
// server. Errors: M_NOT_FOUND if we are not in it, M_FORBIDDEN if its ACL
// bans origin. The caller must unlock rs.mu.
func (s *Service) residentRoom(ctx context.Context, origin string, roomID id.RoomID) (*roomState, error) {
	rs, err := s.lock(ctx, roomID)
	if errors.Is(err, ErrUnknownRoom) {
		return nil, mxerr.NotFound("Unknown room %s", roomID)
	}
	if err != nil {
		return nil, err
	}
	if !s.resident(rs) {
		rs.mu.Unlock()
		return nil, mxerr.NotFound("This server is not in room %s", roomID)
	}
	if !aclAllows(rs.lookup(event.TypeServerACL, ""), origin) {
		rs.mu.Unlock()
		return nil, mxerr.Forbidden("Server %s is banned from room %s by its server ACL", origin, roomID)
	}
	return rs, nil
}

// MakeMembership answers make_join, make_leave and make_knock (membership
// "join", "leave" or "knock") for userID, whose server is origin, with an
// event template. versions are the room versions origin supports (join and
// knock only; nil for leave).
func (s *Service) MakeMembership(ctx context.Context, origin string, roomID id.RoomID, userID id.UserID, membership string, versions []id.RoomVersion) (*federation.MakeResponse, error) {
	if userID.Homeserver() != origin {
		return nil, mxerr.Forbidden("User %s is not of server %s", userID, origin)
	}
	rs, err := s.residentRoom(ctx, origin, roomID)
	if err != nil {
		return nil, err
	}
	defer rs.mu.Unlock()
	if membership != Leave && !slices.Contains(versions, rs.version) {
		return nil, mxerr.New("M_INCOMPATIBLE_ROOM_VERSION", "Your server does not support room version %s", rs.version).
			With("room_version", string(rs.version))
	}
	content := map[string]any{"membership": membership}
	if membership == Join {
		if err := s.authoriseRestrictedJoin(ctx, rs, roomID, userID, content); err != nil {
			if errors.Is(err, errNoLocalAuthoriser) {
				return nil, mxerr.New("M_UNABLE_TO_GRANT_JOIN", "No user of this server may authorise the join")
			}
			return nil, err
		}
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	sk := string(userID)
	pdu, err := s.build(rs, userID, roomID, Draft{Type: event.TypeMember, StateKey: &sk, Content: raw})
	if err != nil {
		return nil, err
	}
	if err := eventauth.Check(rs.version, pdu, rs.lookup); err != nil {
		return nil, forbidden(err)
	}
	var tmpl map[string]json.RawMessage
	if err := json.Unmarshal(pdu.JSON(), &tmpl); err != nil {
		return nil, err
	}
	delete(tmpl, "hashes")
	delete(tmpl, "signatures")
	delete(tmpl, "unsigned")
	if rs.version != "1" && rs.version != "2" {
		delete(tmpl, "event_id")
	}
	out, err := json.Marshal(tmpl)
	if err != nil {
		return nil, err
	}
	return &federation.MakeResponse{RoomVersion: rs.version, Event: out}, nil
}

// acceptMembership checks a member event another server sends through
// send_join, send_leave or send_knock and persists it. It returns the
// stored event and whether we added our signature (restricted joins).
func (s *Service) acceptMembership(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage, membership string) (*store.Event, bool, error) {
	rs, err := s.residentRoom(ctx, origin, roomID)
	if err != nil {
		return nil, false, err
	}
	defer rs.mu.Unlock()
	p, err := event.Parse(rs.version, raw)
	if err != nil {
		return nil, false, mxerr.BadJSON("Invalid event: %v", err)
	}
	if p.EventID() != eventID || p.RoomID() != roomID {
		return nil, false, mxerr.BadJSON("The event's ID or room is not the one of the request path")
	}
	m, _ := getString(p.Content(), "membership")
	if p.Type() != event.TypeMember || p.StateKey() == nil || *p.StateKey() != string(p.Sender()) || m != membership {
		return nil, false, mxerr.BadJSON("Not a %s event of its sender", membership)
	}
	if p.Sender().Homeserver() != origin {
		return nil, false, mxerr.Forbidden("The event's sender is not of server %s", origin)
	}
	signed := false
	if membership == Join {
		if via, ok := getString(p.Content(), "join_authorised_via_users_server"); ok && id.UserID(via).Homeserver() == s.cfg.ServerName {
			if p, err = p.Sign(s.cfg.ServerName, s.cfg.Key); err != nil {
				return nil, false, err
			}
			signed = true
		}
	}
	verified, bad := s.verifyAll(ctx, []*event.PDU{p})
	if len(verified) == 0 {
		return nil, false, mxerr.Forbidden("Signature check failed: %v", bad[p.EventID()])
	}
	p = verified[0]
	if err := eventauth.Check(rs.version, p, rs.lookup); err != nil {
		return nil, false, forbidden(err)
	}
	if err := s.ingest(ctx, rs, origin, p, false); err != nil {
		var rej *rejection
		if errors.As(err, &rej) {
			return nil, false, mxerr.Forbidden("%v", rej.err)
		}
		return nil, false, err
	}
	ev, err := s.db.Event(ctx, p.EventID())
	if err != nil {
		return nil, false, err
	}
	if ev.IsRejected || ev.SoftFailed {
		return nil, false, mxerr.Forbidden("The event is not allowed by the room's current state")
	}
	if s.OnRelay != nil {
		s.OnRelay(ev, origin)
	}
	return ev, signed, nil
}

// SendJoin accepts a join event signed by origin (send_join v2), persists
// it, and returns the state before it and its auth chain. omitMembers
// (MSC3706 partial state) is not honoured: the full state is returned, as
// the spec allows.
func (s *Service) SendJoin(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage, omitMembers bool) (*federation.SendJoinResponse, error) {
	ev, signed, err := s.acceptMembership(ctx, origin, roomID, eventID, raw, Join)
	if err != nil {
		return nil, err
	}
	before, err := s.db.StateBefore(ctx, ev)
	if err != nil {
		return nil, err
	}
	state, chain, err := s.stateAndChain(ctx, roomID, before, ev.AuthEventIDs())
	if err != nil {
		return nil, err
	}
	servers, _ := s.JoinedServers(ctx, roomID)
	resp := &federation.SendJoinResponse{Origin: s.cfg.ServerName, State: state, AuthChain: chain, ServersInRoom: servers}
	if signed {
		resp.Event = ev.JSON()
	}
	return resp, nil
}

// stateAndChain loads the events of a state and the auth chain of the
// state and of extra events.
func (s *Service) stateAndChain(ctx context.Context, roomID id.RoomID, state stateres.StateMap, extra []id.EventID) ([]json.RawMessage, []json.RawMessage, error) {
	ids := make([]id.EventID, 0, len(state)+len(extra))
	for _, eid := range state {
		ids = append(ids, eid)
	}
	chainIDs, err := s.res.AuthChain(ctx, append(slices.Clone(ids), extra...)...)
	if err != nil {
		return nil, nil, err
	}
	chainIDs = withCreate(roomID, chainIDs)
	load := func(ids []id.EventID) ([]json.RawMessage, error) {
		evs, err := s.db.Events(ctx, ids)
		if err != nil {
			return nil, err
		}
		sort.Slice(evs, func(i, j int) bool { return evs[i].Depth() < evs[j].Depth() })
		out := make([]json.RawMessage, len(evs))
		for i, ev := range evs {
			out[i] = ev.JSON()
		}
		return out, nil
	}
	st, err := load(ids)
	if err != nil {
		return nil, nil, err
	}
	ch, err := load(chainIDs)
	return st, ch, err
}

// SendLeave accepts a leave event signed by origin (send_leave v2).
func (s *Service) SendLeave(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage) error {
	_, _, err := s.acceptMembership(ctx, origin, roomID, eventID, raw, Leave)
	return err
}

// SendKnock accepts a knock event signed by origin (send_knock v1).
func (s *Service) SendKnock(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage) (*federation.SendKnockResponse, error) {
	ev, _, err := s.acceptMembership(ctx, origin, roomID, eventID, raw, Knock)
	if err != nil {
		return nil, err
	}
	st, err := s.db.StateAfter(ctx, ev.EventID())
	if err != nil {
		return nil, err
	}
	var ids []id.EventID
	for _, t := range event.StrippedStateTypes {
		if eid, ok := st[stateres.StateKey{Type: t}]; ok {
			ids = append(ids, eid)
		}
	}
	evs, err := s.db.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	// Full PDUs, as the server-server API asks since v1.16.
	list := make([]json.RawMessage, len(evs))
	for i, e := range evs {
		list[i] = e.JSON()
	}
	return &federation.SendKnockResponse{KnockRoomState: list}, nil
}

// ReceiveInvite handles an invite of a local user by another server
// (invite v2): it checks and signs the event, records the invite with its
// stripped state, and returns the event with our signature.
func (s *Service) ReceiveInvite(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, req federation.InviteRequest) (json.RawMessage, error) {
	if !event.Supported(req.RoomVersion) {
		return nil, mxerr.New("M_INCOMPATIBLE_ROOM_VERSION", "Room version %s is not supported by this server", req.RoomVersion).
			With("room_version", string(req.RoomVersion))
	}
	p, err := event.Parse(req.RoomVersion, req.Event)
	if err != nil {
		return nil, mxerr.BadJSON("Invalid event: %v", err)
	}
	if p.EventID() != eventID || p.RoomID() != roomID {
		return nil, mxerr.BadJSON("The event's ID or room is not the one of the request path")
	}
	m, _ := getString(p.Content(), "membership")
	if p.Type() != event.TypeMember || p.StateKey() == nil || m != Invite {
		return nil, mxerr.BadJSON("Not an invite")
	}
	target := id.UserID(*p.StateKey())
	if target.Homeserver() != s.cfg.ServerName {
		return nil, mxerr.Forbidden("The invitee is not a user of this server")
	}
	if p.Sender().Homeserver() != origin {
		return nil, mxerr.Forbidden("The inviter is not of server %s", origin)
	}
	if ok, err := s.ServerAllowed(ctx, roomID, origin); err == nil && !ok {
		return nil, mxerr.Forbidden("Server %s is banned from room %s by its server ACL", origin, roomID)
	}
	if verified, bad := s.verifyAll(ctx, []*event.PDU{p}); len(verified) == 0 {
		return nil, mxerr.Forbidden("Signature check failed: %v", bad[p.EventID()])
	} else {
		p = verified[0]
	}
	signed, err := p.Sign(s.cfg.ServerName, s.cfg.Key)
	if err != nil {
		return nil, err
	}
	// If we are in the room, the invite also arrives in a transaction;
	// storing it here as well is harmless (the second copy is known).
	if rs, err := s.lock(ctx, roomID); err == nil {
		res := s.resident(rs)
		if res {
			err = s.ingest(ctx, rs, origin, signed, true)
		}
		rs.mu.Unlock()
		if res {
			if err != nil {
				return nil, mxerr.Forbidden("The invite is not allowed: %v", err)
			}
			return signed.JSON(), nil
		}
	}
	if _, err := s.persistOutOfRoom(ctx, req.RoomVersion, signed, "invite_room_state", req.InviteRoomState); err != nil {
		return nil, err
	}
	return signed.JSON(), nil
}

// serverCanSee reports whether a server may see an event (server-server
// API, "Visibility of events for servers", after the client-server
// history visibility rules): world_readable events to anyone, shared
// ones to a server with a member in the room, invited and joined ones to
// a server with a member invited or joined at the event.
func (s *Service) serverCanSee(ctx context.Context, origin string, ev *store.Event) (bool, error) {
	st, err := s.db.StateAfter(ctx, ev.EventID())
	if errors.Is(err, store.ErrNotFound) {
		return s.ServerInRoom(ctx, ev.RoomID(), origin)
	}
	if err != nil {
		return false, err
	}
	vis := "shared"
	if eid, ok := st[stateres.StateKey{Type: event.TypeHistoryVisibility}]; ok {
		if hv, err := s.db.Event(ctx, eid); err == nil {
			if v, ok := getString(hv.Content(), "history_visibility"); ok {
				vis = v
			}
		}
	}
	if vis == "world_readable" {
		return true, nil
	}
	var members []id.EventID
	for k, eid := range st {
		if k.Type == event.TypeMember && id.UserID(k.StateKey).Homeserver() == origin {
			members = append(members, eid)
		}
	}
	evs, err := s.db.Events(ctx, members)
	if err != nil {
		return false, err
	}
	for _, m := range evs {
		ms, _ := getString(m.Content(), "membership")
		if ms == Join || (ms == Invite && vis != "joined") {
			return true, nil
		}
	}
	if vis == "shared" {
		return s.ServerInRoom(ctx, ev.RoomID(), origin)
	}
	return false, nil
}

// visibleEvent loads an event of a room for origin. M_NOT_FOUND if it is
// unknown or in another room, M_FORBIDDEN if origin may not see it.
func (s *Service) visibleEvent(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (*store.Event, error) {
	ev, err := s.db.Event(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && roomID != "" && ev.RoomID() != roomID) {
		return nil, mxerr.NotFound("Unknown event %s", eventID)
	}
	if err != nil {
		return nil, err
	}
	if ok, err := s.ServerAllowed(ctx, ev.RoomID(), origin); err != nil {
		return nil, err
	} else if !ok {
		return nil, mxerr.Forbidden("Server %s is banned from the room by its server ACL", origin)
	}
	ok, err := s.serverCanSee(ctx, origin, ev)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mxerr.Forbidden("Server %s may not see event %s", origin, eventID)
	}
	return ev, nil
}

// withCreate adds a room version 12 room's create event to an auth chain:
// its events do not name it in auth_events, but every one of them depends
// on it (MSC4291), and the servers that ask expect it there.
func withCreate(roomID id.RoomID, chain []id.EventID) []id.EventID {
	if cid := createEventID(roomID); cid != "" && !slices.Contains(chain, cid) {
		return append(chain, cid)
	}
	return chain
}

// FederationEvent returns an event for GET /event, if origin may see it.
func (s *Service) FederationEvent(ctx context.Context, origin string, eventID id.EventID) (json.RawMessage, error) {
	ev, err := s.visibleEvent(ctx, origin, "", eventID)
	if err != nil {
		return nil, err
	}
	return ev.JSON(), nil
}

// FederationState returns the state before eventID and its auth chain.
func (s *Service) FederationState(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (*federation.StateResponse, error) {
	before, err := s.stateBeforeFor(ctx, origin, roomID, eventID)
	if err != nil {
		return nil, err
	}
	st, ch, err := s.stateAndChain(ctx, roomID, before, nil)
	if err != nil {
		return nil, err
	}
	return &federation.StateResponse{PDUs: st, AuthChain: ch}, nil
}

func (s *Service) stateBeforeFor(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (stateres.StateMap, error) {
	ev, err := s.visibleEvent(ctx, origin, roomID, eventID)
	if err != nil {
		return nil, err
	}
	before, err := s.db.StateBefore(ctx, ev)
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.NotFound("No state is known at event %s", eventID)
	}
	return before, err
}

// FederationStateIDs is FederationState with event IDs only.
func (s *Service) FederationStateIDs(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (*federation.StateIDsResponse, error) {
	before, err := s.stateBeforeFor(ctx, origin, roomID, eventID)
	if err != nil {
		return nil, err
	}
	ids := make([]id.EventID, 0, len(before))
	for _, eid := range before {
		ids = append(ids, eid)
	}
	chain, err := s.res.AuthChain(ctx, ids...)
	if err != nil {
		return nil, err
	}
	return &federation.StateIDsResponse{PDUIDs: ids, AuthChainIDs: withCreate(roomID, chain)}, nil
}

// FederationEventAuth returns the auth chain of eventID.
func (s *Service) FederationEventAuth(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (*federation.EventAuthResponse, error) {
	ev, err := s.visibleEvent(ctx, origin, roomID, eventID)
	if err != nil {
		return nil, err
	}
	// The auth chain of an event holds its auth events themselves
	// (AuthChain leaves out the events it starts from).
	ids, err := s.res.AuthChain(ctx, ev.AuthEventIDs()...)
	if err != nil {
		return nil, err
	}
	ids = withCreate(ev.RoomID(), ids)
	for _, a := range ev.AuthEventIDs() {
		if !slices.Contains(ids, a) {
			ids = append(ids, a)
		}
	}
	evs, err := s.db.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Depth() < evs[j].Depth() })
	out := make([]json.RawMessage, len(evs))
	for i, e := range evs {
		out[i] = e.JSON()
	}
	return &federation.EventAuthResponse{AuthChain: out}, nil
}

// walkBack visits the events before from through prev_events, newest
// (greatest depth) first, stopping at stop and below minDepth, and
// returns up to limit of them that origin may see.
func (s *Service) walkBack(ctx context.Context, origin string, roomID id.RoomID, from []id.EventID, stop []id.EventID, includeFrom bool, minDepth int64, limit int) ([]*store.Event, error) {
	seen := map[id.EventID]bool{}
	for _, e := range stop {
		seen[e] = true
	}
	var out []*store.Event
	frontier := []id.EventID{}
	if includeFrom {
		frontier = append(frontier, from...)
	} else {
		evs, err := s.db.Events(ctx, from)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			if ev.RoomID() == roomID {
				frontier = append(frontier, ev.PrevEventIDs()...)
			}
		}
	}
	for len(frontier) > 0 && len(out) < limit {
		var next []id.EventID
		var want []id.EventID
		for _, e := range frontier {
			if !seen[e] {
				seen[e] = true
				want = append(want, e)
			}
		}
		evs, err := s.db.Events(ctx, want)
		if err != nil {
			return nil, err
		}
		sort.Slice(evs, func(i, j int) bool { return evs[i].Depth() > evs[j].Depth() })
		for _, ev := range evs {
			if ev.RoomID() != roomID || ev.Depth() < minDepth {
				continue
			}
			if len(out) < limit {
				if ok, err := s.serverCanSee(ctx, origin, ev); err == nil && ok {
					out = append(out, ev)
				} else {
					s.log.Debug("event withheld from a server", "event_id", ev.EventID(), "destination", origin, "err", err)
				}
			}
			next = append(next, ev.PrevEventIDs()...)
		}
		frontier = next
	}
	return out, nil
}

// FederationBackfill returns up to limit events preceding (and including)
// from, newest first, that origin may see.
func (s *Service) FederationBackfill(ctx context.Context, origin string, roomID id.RoomID, from []id.EventID, limit int) ([]json.RawMessage, error) {
	if ok, err := s.ServerAllowed(ctx, roomID, origin); err != nil {
		return nil, err
	} else if !ok {
		return nil, mxerr.Forbidden("Server %s is banned from room %s by its server ACL", origin, roomID)
	}
	evs, err := s.walkBack(ctx, origin, roomID, from, nil, true, 0, limit)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(evs))
	for i, ev := range evs {
		out[i] = ev.JSON()
	}
	return out, nil
}

// FederationMissingEvents answers get_missing_events: the events before
// latest_events and after earliest_events, oldest first.
func (s *Service) FederationMissingEvents(ctx context.Context, origin string, roomID id.RoomID, req federation.MissingEventsRequest) ([]json.RawMessage, error) {
	if ok, err := s.ServerAllowed(ctx, roomID, origin); err != nil {
		return nil, err
	} else if !ok {
		return nil, mxerr.Forbidden("Server %s is banned from room %s by its server ACL", origin, roomID)
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 10
	}
	evs, err := s.walkBack(ctx, origin, roomID, req.LatestEvents, req.EarliestEvents, false, req.MinDepth, limit)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(evs))
	for i, ev := range evs {
		out[len(evs)-1-i] = ev.JSON()
	}
	return out, nil
}

// ServerAllowed reports whether the room's server ACL lets server take
// part (server-server API, "Server Access Control Lists"). Unknown rooms
// allow everyone.
func (s *Service) ServerAllowed(ctx context.Context, roomID id.RoomID, server string) (bool, error) {
	ev, err := s.db.CurrentStateEvent(ctx, roomID, event.TypeServerACL, "")
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return aclAllows(ev, server), nil
}

// aclAllows evaluates an m.room.server_acl event (nil allows all): IP
// literals unless allow_ip_literals, then deny globs, then allow globs.
func aclAllows(acl eventauth.Event, server string) bool {
	if acl == nil {
		return true
	}
	var c struct {
		AllowIPLiterals *bool    `json:"allow_ip_literals"`
		Allow           []string `json:"allow"`
		Deny            []string `json:"deny"`
	}
	if json.Unmarshal(acl.Content(), &c) != nil {
		return true
	}
	host := server
	if h, _, err := net.SplitHostPort(server); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if c.AllowIPLiterals != nil && !*c.AllowIPLiterals && net.ParseIP(host) != nil {
		return false
	}
	for _, g := range c.Deny {
		if globMatch(g, host) {
			return false
		}
	}
	for _, g := range c.Allow {
		if globMatch(g, host) {
			return true
		}
	}
	return false
}

// globMatch matches s against a glob of * and ? (case-insensitively, as
// server names are).
func globMatch(glob, s string) bool {
	glob, s = strings.ToLower(glob), strings.ToLower(s)
	px, sx := 0, 0
	nextPx, nextSx := -1, -1
	for px < len(glob) || sx < len(s) {
		if px < len(glob) {
			switch c := glob[px]; c {
			case '*':
				nextPx, nextSx = px, sx+1
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if nextSx > 0 && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}

// ServerInRoom reports whether server has a joined member in the room.
func (s *Service) ServerInRoom(ctx context.Context, roomID id.RoomID, server string) (bool, error) {
	servers, err := s.JoinedServers(ctx, roomID)
	if err != nil {
		return false, err
	}
	return slices.Contains(servers, server), nil
}

// ServersJoined returns each server with joined members in the room
// (ourselves included when we have one) and the stream position from
// which it has been in the room without a break.
func (s *Service) ServersJoined(ctx context.Context, roomID id.RoomID) (map[string]int64, error) {
	return s.db.RoomServersJoined(ctx, roomID)
}

// JoinedServers returns the servers with joined members in the room,
// ourselves included when we have one, sorted.
func (s *Service) JoinedServers(ctx context.Context, roomID id.RoomID) ([]string, error) {
	ms, err := s.db.RoomMemberships(ctx, roomID, Join)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if h := m.UserID.Homeserver(); !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	sort.Strings(out)
	return out, nil
}

package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/eventauth"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

// The client side of membership over federation: a local user joins,
// knocks on or leaves a room this server is not in, or invites a user of
// another server (server-server API, "Joining Rooms", "Knocking upon a
// room", "Leaving Rooms (Rejecting Invites)", "Inviting to a room").

// resident reports whether a local user is joined to the room in rs.
func (s *Service) resident(rs *roomState) bool {
	for k, eid := range rs.state {
		if k.Type != event.TypeMember || id.UserID(k.StateKey).Homeserver() != s.cfg.ServerName {
			continue
		}
		if p := rs.events[eid]; p != nil {
			if m, _ := getString(p.Content(), "membership"); m == Join {
				return true
			}
		}
	}
	return false
}

// candidateServers orders the servers to try for a remote membership
// handshake: the client's (via, server_name, the alias's servers) only,
// when it named any, as Synapse does; else the server of the user's
// invite, the room ID's server (room versions up to 11) and those of
// members we know.
func (s *Service) candidateServers(ctx context.Context, roomID id.RoomID, user id.UserID, via []string) []string {
	var out []string
	add := func(srv string) {
		if srv != "" && srv != s.cfg.ServerName && !slices.Contains(out, srv) {
			out = append(out, srv)
		}
	}
	for _, v := range via {
		add(v)
	}
	if len(out) > 0 {
		return out
	}
	if m, err := s.db.UserMembership(ctx, roomID, user); err == nil {
		add(m.Sender.Homeserver())
	}
	if _, srv, ok := cutRoomServer(roomID); ok {
		add(srv)
	}
	if ms, err := s.db.RoomMemberships(ctx, roomID, Join); err == nil {
		for _, m := range ms {
			add(m.UserID.Homeserver())
		}
	}
	return out
}

func cutRoomServer(roomID id.RoomID) (string, string, bool) {
	for i := 0; i < len(roomID); i++ {
		if roomID[i] == ':' {
			return string(roomID[:i]), string(roomID[i+1:]), true
		}
	}
	return "", "", false
}

// relayable turns a remote failure into what the client may see.
func relayable(server string, err error) error {
	var re *federation.RemoteError
	if errors.As(err, &re) {
		switch re.ErrCode {
		case "M_FORBIDDEN", "M_NOT_FOUND", "M_INCOMPATIBLE_ROOM_VERSION", "M_UNABLE_TO_AUTHORISE_JOIN", "M_UNABLE_TO_GRANT_JOIN":
			return &mxerr.Error{Code: re.ErrCode, Msg: fmt.Sprintf("%s: %s", server, re.Message)}
		}
		return mxerr.Unknown("%s refused the request (%d)", server, re.Status).WithStatus(502)
	}
	if errors.Is(err, federation.ErrUnreachable) || errors.Is(err, context.DeadlineExceeded) {
		return mxerr.Unknown("%s could not be reached", server).WithStatus(502)
	}
	return err
}

// fromTemplate turns a make_join/make_leave/make_knock template into our
// signed event: our origin and timestamp, the content we want merged over
// the template's, hashed and signed.
func (s *Service) fromTemplate(version id.RoomVersion, tmpl json.RawMessage, user id.UserID, membership string, content map[string]any) (*event.PDU, error) {
	if !event.Supported(version) {
		return nil, mxerr.New("M_INCOMPATIBLE_ROOM_VERSION", "Room version %s is not supported by this server", version)
	}
	if len(tmpl) == 0 || tmpl[0] != '{' {
		return nil, fmt.Errorf("template is not an object")
	}
	var t struct {
		Type     string          `json:"type"`
		Sender   id.UserID       `json:"sender"`
		StateKey *string         `json:"state_key"`
		Content  json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(tmpl, &t); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	if t.Type != event.TypeMember || t.Sender != user || t.StateKey == nil || *t.StateKey != string(user) {
		return nil, fmt.Errorf("template is not a member event of %s", user)
	}
	merged := map[string]any{}
	_ = json.Unmarshal(t.Content, &merged)
	for k, v := range content {
		merged[k] = v
	}
	merged["membership"] = membership
	cb, err := cjson.Marshal(merged)
	if err != nil {
		return nil, err
	}
	raw := cjson.Without(nil, tmpl, "event_id", "hashes", "signatures", "unsigned", "content", "origin_server_ts", "origin")
	raw = cjson.Set(nil, raw, "content", cb)
	raw = cjson.Set(nil, raw, "origin_server_ts", []byte(fmt.Sprint(time.Now().UnixMilli())))
	raw = cjson.Set(nil, raw, "origin", cjson.AppendString(nil, s.cfg.ServerName))
	if version == "1" || version == "2" {
		raw = cjson.Set(nil, raw, "event_id", cjson.AppendString(nil, "$"+randomString(18)+":"+s.cfg.ServerName))
	}
	signed, err := event.HashAndSign(version, raw, s.cfg.ServerName, s.cfg.Key)
	if err != nil {
		return nil, err
	}
	return event.Parse(version, signed)
}

// joinRemote joins user to a room through another server.
func (s *Service) joinRemote(ctx context.Context, user id.UserID, roomID id.RoomID, content map[string]any, via []string) (*store.Event, error) {
	if s.cfg.Federation == nil {
		return nil, mxerr.NotFound("No known servers for room %s", roomID)
	}
	servers := s.candidateServers(ctx, roomID, user, via)
	if len(servers) == 0 {
		return nil, mxerr.NotFound("No known servers for room %s", roomID)
	}
	delete(content, "join_authorised_via_users_server")
	var lastErr error
	for _, srv := range servers {
		ev, err := s.joinVia(ctx, srv, user, roomID, content)
		if err == nil {
			return ev, nil
		}
		s.log.Info("remote join failed", "room_id", roomID, "destination", srv, "err", err)
		lastErr = relayable(srv, err)
		var me *mxerr.Error
		if errors.As(lastErr, &me) && me.Code == "M_FORBIDDEN" {
			break // the room said no; another server will say the same
		}
	}
	return nil, lastErr
}

func (s *Service) joinVia(ctx context.Context, srv string, user id.UserID, roomID id.RoomID, content map[string]any) (*store.Event, error) {
	fed := s.cfg.Federation
	mk, err := fed.MakeJoin(ctx, srv, roomID, user, event.SupportedVersions())
	if err != nil {
		return nil, err
	}
	pdu, err := s.fromTemplate(mk.RoomVersion, mk.Event, user, Join, content)
	if err != nil {
		return nil, err
	}
	resp, err := fed.SendJoin(ctx, srv, roomID, pdu.EventID(), pdu.JSON())
	if err != nil {
		return nil, err
	}
	if len(resp.Event) > 0 {
		// A restricted join: the resident server added its signature.
		if signed, err := event.Parse(mk.RoomVersion, resp.Event); err == nil && signed.EventID() == pdu.EventID() {
			pdu = signed
		}
	}
	if rs, err := s.lock(ctx, roomID); err == nil {
		if s.resident(rs) {
			// We are in the room (a restricted join another server
			// authorised): the join is one more event of it.
			defer rs.mu.Unlock()
			if err := s.ingest(ctx, rs, srv, pdu, true); err != nil {
				return nil, err
			}
			return s.db.Event(ctx, pdu.EventID())
		}
		rs.mu.Unlock()
	}
	return s.persistJoin(ctx, srv, mk.RoomVersion, pdu, resp)
}

// persistJoin verifies the state and auth chain a resident server sent
// with our join and stores them with the join, which becomes the room's
// only forward extremity.
func (s *Service) persistJoin(ctx context.Context, srv string, version id.RoomVersion, join *event.PDU, resp *federation.SendJoinResponse) (*store.Event, error) {
	roomID := join.RoomID()
	raws := make([][]byte, 0, len(resp.State)+len(resp.AuthChain))
	for _, r := range resp.State {
		raws = append(raws, r)
	}
	statePDUs, _ := parseAll(version, roomID, raws)
	stateIDs := make(map[id.EventID]bool, len(statePDUs))
	for _, p := range statePDUs {
		stateIDs[p.EventID()] = true
	}
	raws = raws[:0]
	for _, r := range resp.AuthChain {
		raws = append(raws, r)
	}
	pdus, _ := parseAll(version, roomID, raws)
	pdus = append(pdus, statePDUs...)
	seen := make(map[id.EventID]bool, len(pdus))
	uniq := pdus[:0]
	for _, p := range pdus {
		if !seen[p.EventID()] {
			seen[p.EventID()] = true
			uniq = append(uniq, p)
		}
	}
	verified, bad := s.verifyAll(ctx, uniq)
	if len(bad) > 0 {
		s.log.Warn("events of a send_join response failed verification", "room_id", roomID, "origin", srv, "count", len(bad))
	}
	// Which are already stored (an invite, an earlier membership).
	ids := make([]id.EventID, len(verified))
	for i, p := range verified {
		ids[i] = p.EventID()
	}
	stored, err := s.db.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	known := make(map[id.EventID]eventauth.Event, len(verified))
	have := make(map[id.EventID]bool, len(stored))
	for _, ev := range stored {
		known[ev.EventID()] = ev
		have[ev.EventID()] = true
	}
	// Check each event against its own auth events, auth events first.
	rejected := map[id.EventID]bool{}
	get := func(eid id.EventID) eventauth.Event {
		if ev, ok := known[eid]; ok {
			return ev
		}
		return nil
	}
	ordered := authOrder(verified)
	for _, p := range ordered {
		if have[p.EventID()] {
			continue
		}
		if err := authAgainstOwn(version, p, get); err != nil {
			rejected[p.EventID()] = true
			s.log.Debug("send_join event rejected", "event_id", p.EventID(), "err", err)
		}
		known[p.EventID()] = p
	}
	// The state before the join.
	state := stateres.StateMap{}
	for _, p := range ordered {
		if stateIDs[p.EventID()] && p.StateKey() != nil && !rejected[p.EventID()] {
			state[stateres.StateKey{Type: p.Type(), StateKey: *p.StateKey()}] = p.EventID()
		}
	}
	if _, ok := state[stateres.StateKey{Type: event.TypeCreate}]; !ok {
		return nil, fmt.Errorf("send_join state from %s has no valid m.room.create", srv)
	}
	if err := eventauth.Check(version, join, lookupIn(state, get)); err != nil {
		return nil, fmt.Errorf("our join does not pass the room's rules: %w", err)
	}

	rs := s.lockAny(roomID)
	defer rs.mu.Unlock()
	after := maps(state)
	jk := stateres.StateKey{Type: event.TypeMember, StateKey: *join.StateKey()}
	after[jk] = join.EventID()
	var out *store.Event
	pn := s.preparePush(ctx, &store.Event{PDU: join, Handshake: true})
	err = s.db.WithTx(ctx, "persist_join", func(tx *store.Tx) error {
		if err := tx.CreateRoom(ctx, store.Room{RoomID: roomID, Version: version}); err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
		outliers := make([]store.NewEvent, 0, len(ordered))
		for _, p := range ordered {
			if have[p.EventID()] || p.EventID() == join.EventID() {
				continue
			}
			outliers = append(outliers, store.NewEvent{PDU: p, Outlier: true, Rejected: rejected[p.EventID()]})
		}
		if err := tx.PersistOutliers(ctx, outliers); err != nil {
			return fmt.Errorf("persist state events: %w", err)
		}
		cur, err := tx.CurrentState(ctx, roomID)
		if err != nil {
			return err
		}
		ne := store.NewEvent{PDU: join, StateChanges: after, Extremities: []id.EventID{join.EventID()}, CurrentChanges: diff(cur, after)}
		if old, ok := state[jk]; ok {
			ne.Replaces = old
			if p, ok := known[old]; ok {
				u := cjson.Set(nil, []byte("{}"), "prev_content", p.Content())
				u = cjson.Set(nil, u, "prev_sender", cjson.AppendString(nil, string(p.Sender())))
				u = cjson.Set(nil, u, "replaces_state", cjson.AppendString(nil, string(old)))
				ne.Added = u
			}
		}
		pos, err := tx.PersistEvent(ctx, ne)
		if err != nil {
			return err
		}
		if err := pn.writeAt(ctx, tx, 0, pos); err != nil {
			return err
		}
		out = &store.Event{PDU: join, StreamPos: pos, Added: ne.Added, Replaces: ne.Replaces, Handshake: true}
		return nil
	})
	pn.finish(err, out)
	if err != nil {
		return nil, err
	}
	rs.loaded = false // reload from the store on next use
	s.announce(out)
	s.log.Info("joined remote room", "room_id", roomID, "origin", srv, "state_events", len(state), "auth_chain", len(resp.AuthChain))
	return out, nil
}

// announce wakes the syncers of a persisted event and calls OnEvent.
func (s *Service) announce(ev *store.Event) {
	if ev.StreamPos == 0 || ev.IsRejected || ev.SoftFailed {
		return
	}
	c := notifyChange(ev)
	s.n.Wake(ev.StreamPos, c)
	if s.OnEvent != nil {
		s.OnEvent(ev)
	}
}

// needsRemote reports whether a local user's own join, knock or leave of
// a room must go through another server: we have no joined member there
// (or do not know the room, for joins and knocks).
func (s *Service) needsRemote(ctx context.Context, roomID id.RoomID, membership string) (bool, error) {
	if s.cfg.Federation == nil {
		return false, nil
	}
	if _, err := s.db.Room(ctx, roomID); errors.Is(err, store.ErrNotFound) {
		return membership != Leave, nil
	} else if err != nil {
		return false, err
	}
	rs, err := s.lock(ctx, roomID)
	if errors.Is(err, ErrUnknownRoom) {
		return membership != Leave, nil
	}
	if err != nil {
		return false, err
	}
	defer rs.mu.Unlock()
	return !s.resident(rs), nil
}

// membershipRemote does a local user's join, knock or leave through
// another server.
func (s *Service) membershipRemote(ctx context.Context, c MemberChange) (*store.Event, error) {
	content, err := s.memberContent(ctx, c.Target, c.Membership, c.Reason, c.Extra)
	if err != nil {
		return nil, err
	}
	switch c.Membership {
	case Join:
		return s.joinRemote(ctx, c.Target, c.RoomID, content, c.Via)
	case Knock:
		return s.knockRemote(ctx, c.Target, c.RoomID, content, c.Via)
	default:
		return s.leaveRemote(ctx, c.Target, c.RoomID, content, c.Via)
	}
}

// knockRemote knocks on a room through another server and records the
// knock with the stripped state the server answered.
func (s *Service) knockRemote(ctx context.Context, user id.UserID, roomID id.RoomID, content map[string]any, via []string) (*store.Event, error) {
	servers := s.candidateServers(ctx, roomID, user, via)
	if len(servers) == 0 {
		return nil, mxerr.NotFound("No known servers for room %s", roomID)
	}
	var lastErr error
	for _, srv := range servers {
		mk, err := s.cfg.Federation.MakeKnock(ctx, srv, roomID, user, event.SupportedVersions())
		if err == nil {
			var pdu *event.PDU
			if pdu, err = s.fromTemplate(mk.RoomVersion, mk.Event, user, Knock, content); err == nil {
				var resp *federation.SendKnockResponse
				if resp, err = s.cfg.Federation.SendKnock(ctx, srv, roomID, pdu.EventID(), pdu.JSON()); err == nil {
					return s.persistOutOfRoom(ctx, mk.RoomVersion, pdu, "knock_room_state", resp.KnockRoomState)
				}
			}
		}
		s.log.Info("remote knock failed", "room_id", roomID, "destination", srv, "err", err)
		lastErr = relayable(srv, err)
		var me *mxerr.Error
		if errors.As(lastErr, &me) && me.Code == "M_FORBIDDEN" {
			break // the room said no; another server will say the same
		}
	}
	return nil, lastErr
}

// leaveRemote rejects an invite or rescinds a knock through another
// server. If no server takes the leave, it is recorded locally only, so
// that the user is rid of the invite (as Synapse does).
func (s *Service) leaveRemote(ctx context.Context, user id.UserID, roomID id.RoomID, content map[string]any, via []string) (*store.Event, error) {
	r, err := s.db.Room(ctx, roomID)
	if err != nil {
		return nil, mxerr.Forbidden("You are not in room %s", roomID)
	}
	for _, srv := range s.candidateServers(ctx, roomID, user, via) {
		mk, err := s.cfg.Federation.MakeLeave(ctx, srv, roomID, user)
		if err == nil {
			var pdu *event.PDU
			if pdu, err = s.fromTemplate(mk.RoomVersion, mk.Event, user, Leave, content); err == nil {
				if err = s.cfg.Federation.SendLeave(ctx, srv, roomID, pdu.EventID(), pdu.JSON()); err == nil {
					return s.persistOutOfRoom(ctx, mk.RoomVersion, pdu, "", nil)
				}
			}
		}
		s.log.Info("remote leave failed", "room_id", roomID, "destination", srv, "err", err)
	}
	// Nobody took it: a leave only we know of, after our membership event.
	m, err := s.db.UserMembership(ctx, roomID, user)
	if err != nil {
		return nil, mxerr.Forbidden("You are not in room %s", roomID)
	}
	cb, _ := cjson.Marshal(content)
	sk := string(user)
	pdu, err := event.New(r.Version, event.Proto{
		Type: event.TypeMember, StateKey: &sk, Sender: user, RoomID: roomID, Content: cb,
		PrevEvents: []id.EventID{m.EventID}, AuthEvents: []id.EventID{m.EventID}, Depth: 1,
	}, s.cfg.ServerName, s.cfg.Key)
	if err != nil {
		return nil, err
	}
	return s.persistOutOfRoom(ctx, r.Version, pdu, "", nil)
}

// persistOutOfRoom records a member event of a local user in a room this
// server is not in (an invite received, a knock, a leave of either): the
// event gets a stream position and becomes the user's membership, with
// the stripped state given (under unsigned.<stateKey>) for sync's invite
// and knock sections. The room is recorded if new.
func (s *Service) persistOutOfRoom(ctx context.Context, version id.RoomVersion, pdu *event.PDU, stateKey string, stripped []json.RawMessage) (*store.Event, error) {
	roomID := pdu.RoomID()
	rs := s.lockAny(roomID)
	defer rs.mu.Unlock()
	var added []byte
	if stateKey != "" {
		list := []byte("[]")
		if len(stripped) > 0 {
			if b, err := json.Marshal(stripEntries(stripped)); err == nil {
				list = b
			}
		}
		added = cjson.Set(nil, []byte("{}"), stateKey, list)
	}
	k := stateres.StateKey{Type: event.TypeMember, StateKey: *pdu.StateKey()}
	// The membership it replaces (the invite a leave rejects), so that
	// clients get prev_content and the user sees its own leave.
	var replaces id.EventID
	if m, err := s.db.UserMembership(ctx, roomID, id.UserID(*pdu.StateKey())); err == nil && m.EventID != pdu.EventID() {
		if old, err := s.db.Event(ctx, m.EventID); err == nil {
			replaces = old.EventID()
			if added == nil {
				added = []byte("{}")
			}
			added = cjson.Set(nil, added, "prev_content", old.Content())
			added = cjson.Set(nil, added, "prev_sender", cjson.AppendString(nil, string(old.Sender())))
			added = cjson.Set(nil, added, "replaces_state", cjson.AppendString(nil, string(old.EventID())))
		}
	}
	var out *store.Event
	pn := s.preparePush(ctx, &store.Event{PDU: pdu})
	err := s.db.WithTx(ctx, "persist_out_of_room", func(tx *store.Tx) error {
		if err := tx.CreateRoom(ctx, store.Room{RoomID: roomID, Version: version}); err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
		ne := store.NewEvent{PDU: pdu, Added: added, Replaces: replaces,
			StateChanges: stateres.StateMap{k: pdu.EventID()}, CurrentChanges: stateres.StateMap{k: pdu.EventID()}}
		pos, err := tx.PersistEvent(ctx, ne)
		if err != nil {
			return err
		}
		if err := pn.writeAt(ctx, tx, 0, pos); err != nil {
			return err
		}
		out = &store.Event{PDU: pdu, StreamPos: pos, Added: added, Replaces: replaces}
		return nil
	})
	pn.finish(err, out)
	if errors.Is(err, store.ErrConflict) {
		return s.db.Event(ctx, pdu.EventID())
	}
	if err != nil {
		return nil, err
	}
	rs.loaded = false
	s.n.Wake(out.StreamPos, notifyChange(out))
	return out, nil
}

// stripEntries turns the room state sent with an invite or a knock (full
// PDUs since v1.16, stripped events before) into stripped events for
// clients: content, sender, state_key and type, and for the create event
// also event_id, origin_server_ts and room_id (MSC4311).
func stripEntries(raws []json.RawMessage) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(raws))
	for _, raw := range raws {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			continue
		}
		keep := []string{"content", "sender", "state_key", "type"}
		if string(m["type"]) == `"`+event.TypeCreate+`"` {
			keep = append(keep, "event_id", "origin_server_ts", "room_id")
		}
		s := make(map[string]json.RawMessage, len(keep))
		for _, k := range keep {
			if v, ok := m[k]; ok {
				s[k] = v
			}
		}
		if b, err := json.Marshal(s); err == nil {
			out = append(out, b)
		}
	}
	return out
}

// sendInvite asks the invitee's server to sign an invite (invite v2) and
// returns the event with its signature. rs must be locked.
func (s *Service) sendInvite(ctx context.Context, rs *roomState, pdu *event.PDU) (*event.PDU, error) {
	return s.askInvite(ctx, pdu, s.inviteRequest(rs, pdu))
}

// inviteRequest is the invite v2 request for pdu, with the room's
// stripped state. rs must be locked.
func (s *Service) inviteRequest(rs *roomState, pdu *event.PDU) federation.InviteRequest {
	// Full PDUs, as the server-server API asks since v1.16.
	var state []json.RawMessage
	for _, t := range event.StrippedStateTypes {
		if p := rs.lookup(t, ""); p != nil {
			state = append(state, p.(*event.PDU).JSON())
		}
	}
	return federation.InviteRequest{Event: pdu.JSON(), RoomVersion: rs.version, InviteRoomState: state}
}

// askInvite sends an invite request to the invitee's server and returns
// the event with its signature. It needs no lock.
func (s *Service) askInvite(ctx context.Context, pdu *event.PDU, req federation.InviteRequest) (*event.PDU, error) {
	if s.cfg.Federation == nil {
		return nil, mxerr.Forbidden("This server does not federate; users of other servers cannot be invited")
	}
	srv := id.UserID(*pdu.StateKey()).Homeserver()
	raw, err := s.cfg.Federation.Invite(ctx, srv, pdu.RoomID(), pdu.EventID(), req)
	if err != nil {
		return nil, relayable(srv, err)
	}
	signed, err := event.Parse(req.RoomVersion, raw)
	if err != nil || signed.EventID() != pdu.EventID() {
		return nil, mxerr.Unknown("%s answered the invite with another event", srv).WithStatus(502)
	}
	if err := signed.VerifySignatures(s.keyFunc(ctx)); err != nil {
		return nil, mxerr.Unknown("%s's signature on the invite does not verify", srv).WithStatus(502)
	}
	return signed, nil
}

package client

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
)

// roomRoutes registers room creation, membership, sending and state routes.
func (a *API) roomRoutes(rt *api.Router) {
	const c = "/_matrix/client"
	rt.Handle("POST "+c+"/v3/createRoom", a.authed(a.createRoom))
	rt.Handle("GET "+c+"/v3/joined_rooms", a.guestOK(a.joinedRooms))

	// Membership.
	rt.Handle("POST "+c+"/v3/join/{roomIdOrAlias}", a.guestOK(a.joinByIDOrAlias))
	rt.Handle("POST "+c+"/v3/rooms/{roomId}/join", a.guestOK(a.joinRoom))
	rt.Handle("POST "+c+"/v3/knock/{roomIdOrAlias}", a.authed(a.knock))
	rt.Handle("POST "+c+"/v3/rooms/{roomId}/leave", a.guestOK(a.leave))
	rt.Handle("POST "+c+"/v3/rooms/{roomId}/forget", a.guestOK(a.forget))
	rt.Handle("POST "+c+"/v3/rooms/{roomId}/invite", a.authed(a.invite))
	rt.Handle("POST "+c+"/v3/rooms/{roomId}/kick", a.authed(a.kick))
	rt.Handle("POST "+c+"/v3/rooms/{roomId}/ban", a.authed(a.ban))
	rt.Handle("POST "+c+"/v3/rooms/{roomId}/unban", a.authed(a.unban))

	// Sending.
	rt.Handle("PUT "+c+"/v3/rooms/{roomId}/send/{eventType}/{txnId}", a.guestOK(a.sendMessage))
	rt.Handle("PUT "+c+"/v3/rooms/{roomId}/state/{eventType}", a.authed(a.putState))
	rt.Handle("PUT "+c+"/v3/rooms/{roomId}/state/{eventType}/{stateKey...}", a.authed(a.putState))
	rt.Handle("GET "+c+"/v3/rooms/{roomId}/state/{eventType}", a.guestOK(a.getState))
	rt.Handle("GET "+c+"/v3/rooms/{roomId}/state/{eventType}/{stateKey...}", a.guestOK(a.getState))
	rt.Handle("PUT "+c+"/v3/rooms/{roomId}/redact/{eventId}/{txnId}", a.guestOK(a.redact))
	rt.Handle("POST "+c+"/v3/rooms/{roomId}/upgrade", a.authed(a.upgrade))
}

// roomIDParam parses the {roomId} path parameter.
func roomIDParam(r *http.Request) (id.RoomID, error) {
	s := r.PathValue("roomId")
	if !strings.HasPrefix(s, "!") || len(s) > 255 {
		return "", mxerr.InvalidParam("Invalid room ID %q", s)
	}
	return id.RoomID(s), nil
}

// POST /_matrix/client/v3/createRoom
func (a *API) createRoom(w http.ResponseWriter, r *http.Request) error {
	var req room.CreateRequest
	if err := api.DecodeOptionalJSON(r, &req); err != nil {
		return err
	}
	roomID, err := a.svc.Rooms.Create(r.Context(), Who(r).UserID, req)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"room_id": roomID})
}

// GET /_matrix/client/v3/joined_rooms
func (a *API) joinedRooms(w http.ResponseWriter, r *http.Request) error {
	ms, err := a.svc.Rooms.DB().UserMemberships(r.Context(), Who(r).UserID, room.Join)
	if err != nil {
		return err
	}
	ids := make([]id.RoomID, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.RoomID)
	}
	return api.OK(w, map[string]any{"joined_rooms": ids})
}

// membershipBody is the body of the membership endpoints.
type membershipBody struct {
	UserID id.UserID `json:"user_id"`
	Reason string    `json:"reason"`
}

// joinExtra is what the body of a join request adds to the member event's
// content: its members other than those the spec or the server gives a
// meaning (as Synapse, which writes the body into the content; Complement
// TestRoomMembers "can join a room with custom content").
func joinExtra(body map[string]json.RawMessage) map[string]any {
	var out map[string]any
	for k, v := range body {
		switch k {
		case "reason", "third_party_signed", "membership", "displayname", "avatar_url", "join_authorised_via_users_server":
			continue
		}
		if out == nil {
			out = map[string]any{}
		}
		out[k] = v
	}
	return out
}

// resolveRoom turns a room ID or an alias into a room ID and the servers
// the alias's directory names (none for a room ID). An alias of another
// server is asked of that server (directory.ResolveAlias).
func (a *API) resolveRoom(r *http.Request, s string) (id.RoomID, []string, error) {
	switch {
	case strings.HasPrefix(s, "!"):
		return id.RoomID(s), nil, nil
	case strings.HasPrefix(s, "#"):
		return a.svc.Directory.ResolveAlias(r.Context(), s)
	}
	return "", nil, mxerr.InvalidParam("%q is neither a room ID nor a room alias", s)
}

// joinVia lists the servers to ask for a join or knock of a room this
// server may not be in: the alias's servers first, then the client's via
// query parameters, then the deprecated server_name ones (both
// repeatable; client-server API, "POST /join/{roomIdOrAlias}"), and last
// the room ID's domain, which room IDs of versions before 12 carry and
// whose server created the room. Invalid server names and this server are
// left out; each server comes once.
func joinVia(q url.Values, aliasServers []string, roomID id.RoomID, local string) []string {
	var via []string
	add := func(s string) {
		if s != local && event.ValidServerName(s) && !slices.Contains(via, s) {
			via = append(via, s)
		}
	}
	for _, s := range aliasServers {
		add(s)
	}
	for _, s := range q["via"] {
		add(s)
	}
	for _, s := range q["server_name"] {
		add(s)
	}
	// The room ID's server only when the client named none: a client
	// that names servers means those (Synapse does the same).
	if _, domain, ok := strings.Cut(string(roomID), ":"); ok && len(via) == 0 {
		add(domain)
	}
	return via
}

// POST /_matrix/client/v3/join/{roomIdOrAlias}
func (a *API) joinByIDOrAlias(w http.ResponseWriter, r *http.Request) error {
	roomID, servers, err := a.resolveRoom(r, r.PathValue("roomIdOrAlias"))
	if err != nil {
		return err
	}
	return a.doJoin(w, r, roomID, servers)
}

// POST /_matrix/client/v3/rooms/{roomId}/join
func (a *API) joinRoom(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	return a.doJoin(w, r, roomID, nil)
}

func (a *API) doJoin(w http.ResponseWriter, r *http.Request, roomID id.RoomID, aliasServers []string) error {
	var all map[string]json.RawMessage
	if err := api.DecodeOptionalJSON(r, &all); err != nil {
		return err
	}
	var body membershipBody
	if raw, ok := all["reason"]; ok {
		if err := json.Unmarshal(raw, &body.Reason); err != nil {
			return mxerr.BadJSON("reason must be a string")
		}
	}
	who := Who(r)
	// A room a server admin blocked (admin_rooms.go).
	if err := a.svc.Rooms.CheckNotBlocked(r.Context(), roomID); err != nil {
		return err
	}
	if who.IsGuest {
		// Guests may join only rooms that allow them (client-server API,
		// "Guest access").
		c, err := a.svc.Rooms.StateContent(r.Context(), roomID, "m.room.guest_access", "")
		if err != nil {
			return err
		}
		var ga struct {
			GuestAccess string `json:"guest_access"`
		}
		_ = json.Unmarshal(c, &ga)
		if ga.GuestAccess != "can_join" {
			return mxerr.Forbidden("Guest access is not allowed in this room")
		}
	}
	_, err := a.svc.Rooms.SetMembership(r.Context(), room.MemberChange{
		RoomID: roomID, Sender: who.UserID, Target: who.UserID, Membership: room.Join, Reason: body.Reason,
		Via: joinVia(r.URL.Query(), aliasServers, roomID, a.cfg.ServerName), Extra: joinExtra(all),
	})
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"room_id": roomID})
}

// POST /_matrix/client/v3/knock/{roomIdOrAlias}
func (a *API) knock(w http.ResponseWriter, r *http.Request) error {
	roomID, servers, err := a.resolveRoom(r, r.PathValue("roomIdOrAlias"))
	if err != nil {
		return err
	}
	var body membershipBody
	if err := api.DecodeOptionalJSON(r, &body); err != nil {
		return err
	}
	who := Who(r)
	if _, err := a.svc.Rooms.SetMembership(r.Context(), room.MemberChange{
		RoomID: roomID, Sender: who.UserID, Target: who.UserID, Membership: room.Knock, Reason: body.Reason,
		Via: joinVia(r.URL.Query(), servers, roomID, a.cfg.ServerName),
	}); err != nil {
		return err
	}
	return api.OK(w, map[string]any{"room_id": roomID})
}

// POST /_matrix/client/v3/rooms/{roomId}/leave
func (a *API) leave(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	var body membershipBody
	if err := api.DecodeOptionalJSON(r, &body); err != nil {
		return err
	}
	who := Who(r)
	m, err := a.svc.Rooms.Membership(r.Context(), roomID, who.UserID)
	if err != nil {
		return err
	}
	if m == "" || m == room.Leave {
		// Nothing to leave. Synapse answers 200 for a room left already
		// and 403 (not 404) for a room the user never was in.
		if m == room.Leave {
			return api.OK(w, map[string]any{})
		}
		return mxerr.Forbidden("You are not in room %s", roomID)
	}
	if _, err := a.svc.Rooms.SetMembership(r.Context(), room.MemberChange{
		RoomID: roomID, Sender: who.UserID, Target: who.UserID, Membership: room.Leave, Reason: body.Reason,
	}); err != nil {
		return err
	}
	return api.OK(w, map[string]any{})
}

// POST /_matrix/client/v3/rooms/{roomId}/forget
func (a *API) forget(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	if err := a.svc.Rooms.Forget(r.Context(), Who(r).UserID, roomID); err != nil {
		return err
	}
	return api.OK(w, map[string]any{})
}

// otherMember does invite, kick, ban and unban: a membership change of
// body.user_id by the requester.
func (a *API) otherMember(w http.ResponseWriter, r *http.Request, membership string) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	var body membershipBody
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.UserID == "" {
		return mxerr.MissingParam("user_id is required")
	}
	if _, _, err := body.UserID.Parse(); err != nil {
		return mxerr.InvalidParam("Invalid user_id %q", body.UserID)
	}
	ctx := r.Context()
	who := Who(r)
	if membership == "unban" {
		m, err := a.svc.Rooms.Membership(ctx, roomID, body.UserID)
		if err != nil {
			return err
		}
		if m != room.Ban {
			return mxerr.Forbidden("%s is not banned", body.UserID)
		}
		membership = room.Leave
	}
	if membership == "kick" {
		m, err := a.svc.Rooms.Membership(ctx, roomID, body.UserID)
		if err != nil {
			return err
		}
		if m != room.Join && m != room.Invite && m != room.Knock {
			return mxerr.Forbidden("%s is not in the room", body.UserID)
		}
		membership = room.Leave
	}
	if membership == room.Invite {
		m, err := a.svc.Rooms.Membership(ctx, roomID, body.UserID)
		if err != nil {
			return err
		}
		if m == room.Join {
			return mxerr.Forbidden("%s is already in the room", body.UserID)
		}
		if m == room.Ban {
			return mxerr.Forbidden("%s is banned from the room", body.UserID)
		}
	}
	if _, err := a.svc.Rooms.SetMembership(ctx, room.MemberChange{
		RoomID: roomID, Sender: who.UserID, Target: body.UserID, Membership: membership, Reason: body.Reason,
	}); err != nil {
		return err
	}
	return api.OK(w, map[string]any{})
}

// POST /_matrix/client/v3/rooms/{roomId}/invite
func (a *API) invite(w http.ResponseWriter, r *http.Request) error {
	if body, ok, err := thirdPartyInvite(r); err != nil {
		return err
	} else if ok {
		return a.invite3PID(w, r, body) // rooms_3pid.go
	}
	return a.otherMember(w, r, room.Invite)
}

// POST /_matrix/client/v3/rooms/{roomId}/kick
func (a *API) kick(w http.ResponseWriter, r *http.Request) error { return a.otherMember(w, r, "kick") }

// POST /_matrix/client/v3/rooms/{roomId}/ban
func (a *API) ban(w http.ResponseWriter, r *http.Request) error { return a.otherMember(w, r, room.Ban) }

// POST /_matrix/client/v3/rooms/{roomId}/unban
func (a *API) unban(w http.ResponseWriter, r *http.Request) error {
	return a.otherMember(w, r, "unban")
}

// readContent reads a request body that must be a JSON object: event
// content.
func readContent(r *http.Request) ([]byte, error) {
	var raw json.RawMessage
	if err := api.DecodeJSON(r, &raw); err != nil {
		return nil, err
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, mxerr.BadJSON("Event content must be a JSON object")
	}
	return raw, nil
}

func (a *API) txn(r *http.Request) (*store.Txn, error) {
	t := r.PathValue("txnId")
	if t == "" || len(t) > 255 {
		return nil, mxerr.InvalidParam("Invalid transaction ID")
	}
	who := Who(r)
	return &store.Txn{UserID: who.UserID, DeviceID: who.DeviceID, TxnID: t}, nil
}

// PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}
func (a *API) sendMessage(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	typ := r.PathValue("eventType")
	if typ == "" || len(typ) > 255 {
		return mxerr.InvalidParam("Invalid event type")
	}
	who := Who(r)
	if who.IsGuest && typ != "m.room.message" && typ != "m.reaction" && typ != "m.room.encrypted" {
		return mxerr.GuestAccessForbidden("Guests may only send messages")
	}
	if typ == event.TypeRedaction {
		// Redactions go through /redact, which checks the target.
		return mxerr.InvalidParam("Send redactions with /redact")
	}
	content, err := readContent(r)
	if err != nil {
		return err
	}
	txn, err := a.txn(r)
	if err != nil {
		return err
	}
	ev, err := a.svc.Rooms.Send(r.Context(), who.UserID, roomID, room.Draft{Type: typ, Content: content, Txn: txn})
	if err != nil {
		return err
	}
	// Sending counts as activity for presence, as in Synapse.
	if a.svc.Presence != nil {
		if err := a.svc.Presence.Active(r.Context(), who.UserID); err != nil {
			a.log.Warn("presence update after send", "user_id", who.UserID, "err", err)
		}
	}
	return api.OK(w, map[string]any{"event_id": ev.EventID()})
}

// PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}
func (a *API) putState(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	typ := r.PathValue("eventType")
	if typ == "" || len(typ) > 255 {
		return mxerr.InvalidParam("Invalid event type")
	}
	sk := r.PathValue("stateKey")
	content, err := readContent(r)
	if err != nil {
		return err
	}
	who := Who(r)
	if typ == event.TypeMember {
		return a.putMember(w, r, roomID, sk, content)
	}
	if typ == event.TypeCreate {
		// A room has one create event, its first; the authorization rules
		// would refuse another (403), but it is the request that is wrong
		// (Complement TestMSC4291RoomIDAsHashOfCreateEvent_CannotSendCreateEvent).
		return mxerr.BadJSON("A room's m.room.create event cannot be replaced")
	}
	if typ == "m.room.canonical_alias" {
		if err := a.checkCanonicalAlias(r, roomID, content); err != nil {
			return err
		}
	}
	ev, err := a.svc.Rooms.Send(r.Context(), who.UserID, roomID, room.Draft{Type: typ, StateKey: &sk, Content: content})
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"event_id": ev.EventID()})
}

// putMember is PUT /state/m.room.member/{userId}: a membership change sent
// as a state event, as clients may (client-server API, "Room membership":
// the membership endpoints are the usual way, not the only one; Synapse
// and Complement's TestBannedUserCannotSendJoin ban this way).
// content.membership picks the change (join, invite, leave, which is also
// a kick or an unban, ban or knock); the authorization rules decide as for
// the membership endpoints, and the rest of the content is kept, so a
// per-room displayname works.
func (a *API) putMember(w http.ResponseWriter, r *http.Request, roomID id.RoomID, stateKey string, content []byte) error {
	target := id.UserID(stateKey)
	if _, _, err := target.Parse(); err != nil || !strings.HasPrefix(stateKey, "@") {
		return mxerr.InvalidParam("The state key of m.room.member must be a user ID")
	}
	var c map[string]any
	if err := json.Unmarshal(content, &c); err != nil {
		return mxerr.BadJSON("Invalid m.room.member content")
	}
	membership, _ := c["membership"].(string)
	switch membership {
	case room.Join, room.Invite, room.Leave, room.Ban, room.Knock:
	default:
		return mxerr.BadJSON("content.membership must be join, invite, leave, ban or knock")
	}
	reason, _ := c["reason"].(string)
	extra := map[string]any{}
	for k, v := range c {
		// join_authorised_via_users_server is the server's to fill, for a
		// restricted join it vouches for; a client's value is ignored, as
		// in Synapse (Complement TestRestrictedRoomsLocalJoin sends one on
		// a join -> join change).
		if k != "membership" && k != "reason" && k != "join_authorised_via_users_server" {
			extra[k] = v
		}
	}
	ev, err := a.svc.Rooms.SetMembership(r.Context(), room.MemberChange{
		RoomID: roomID, Sender: Who(r).UserID, Target: target, Membership: membership, Reason: reason, Extra: extra,
	})
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"event_id": ev.EventID()})
}

// checkCanonicalAlias refuses an m.room.canonical_alias naming local
// aliases that do not point to the room (client-server API: M_BAD_ALIAS).
func (a *API) checkCanonicalAlias(r *http.Request, roomID id.RoomID, content []byte) error {
	var c struct {
		Alias      *id.RoomAlias  `json:"alias"`
		AltAliases []id.RoomAlias `json:"alt_aliases"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return mxerr.InvalidParam("Invalid m.room.canonical_alias content")
	}
	all := c.AltAliases
	if c.Alias != nil {
		all = append(all, *c.Alias)
	}
	for _, al := range all {
		if !strings.HasPrefix(string(al), "#") || !strings.Contains(string(al), ":") {
			return mxerr.InvalidParam("Invalid alias %q", al)
		}
		if !strings.HasSuffix(string(al), ":"+a.cfg.ServerName) {
			continue
		}
		got, err := a.svc.Rooms.DB().ResolveAlias(r.Context(), al)
		if errors.Is(err, store.ErrNotFound) || (err == nil && got.RoomID != roomID) {
			return &mxerr.Error{Code: "M_BAD_ALIAS", Msg: "Alias " + string(al) + " does not point to this room"}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}
func (a *API) getState(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	who := Who(r)
	m, err := a.svc.Rooms.CanRead(ctx, who.UserID, roomID)
	if err != nil {
		return err
	}
	typ, sk := r.PathValue("eventType"), r.PathValue("stateKey")
	var ev *store.Event
	if m == room.Join || m == "" {
		// Joined members, and readers of world readable rooms, see the
		// current state.
		ev, err = a.svc.Rooms.StateEvent(ctx, roomID, typ, sk)
	} else {
		// Former members see the state as of when they left.
		ev, err = a.svc.Rooms.StateAtLeave(ctx, roomID, who.UserID, typ, sk)
	}
	if errors.Is(err, store.ErrNotFound) {
		return mxerr.NotFound("No %s event with state key %q in room", typ, sk)
	}
	if err != nil {
		return err
	}
	if r.URL.Query().Get("format") == "event" {
		out, err := a.svc.Rooms.FormatOne(ctx, ev, room.Viewer{UserID: who.UserID, DeviceID: who.DeviceID}, room.FormatOptions{NoAggregations: true})
		if err != nil {
			return err
		}
		return api.OK(w, out)
	}
	return api.OK(w, json.RawMessage(ev.Content()))
}

// PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}
func (a *API) redact(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	target := id.EventID(r.PathValue("eventId"))
	if !strings.HasPrefix(string(target), "$") {
		return mxerr.InvalidParam("Invalid event ID")
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if err := api.DecodeOptionalJSON(r, &body); err != nil {
		return err
	}
	txn, err := a.txn(r)
	if err != nil {
		return err
	}
	content := map[string]any{}
	if body.Reason != "" {
		content["reason"] = body.Reason
	}
	ver, err := a.svc.Rooms.Version(r.Context(), roomID)
	if errors.Is(err, room.ErrUnknownRoom) {
		return mxerr.Forbidden("You are not in room %s", roomID)
	}
	if err != nil {
		return err
	}
	if ver.RedactsInContent() {
		content["redacts"] = target
	}
	raw, _ := json.Marshal(content)
	ev, err := a.svc.Rooms.Send(r.Context(), Who(r).UserID, roomID, room.Draft{Type: event.TypeRedaction, Content: raw, Redacts: target, Txn: txn})
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"event_id": ev.EventID()})
}

// POST /_matrix/client/v3/rooms/{roomId}/upgrade
func (a *API) upgrade(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	var body struct {
		NewVersion         id.RoomVersion `json:"new_version"`
		AdditionalCreators []id.UserID    `json:"additional_creators"`
	}
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.NewVersion == "" {
		return mxerr.MissingParam("new_version is required")
	}
	newID, err := a.svc.Rooms.Upgrade(r.Context(), Who(r).UserID, roomID, body.NewVersion, body.AdditionalCreators)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"replacement_room": newID})
}

package room

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/eventauth"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

// Presets of createRoom (client-server API, "Creation").
const (
	PresetPrivate        = "private_chat"
	PresetTrustedPrivate = "trusted_private_chat"
	PresetPublic         = "public_chat"
)

// StateEvent is a state event of createRoom's initial_state.
type StateEvent struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// CreateRequest is a createRoom request.
type CreateRequest struct {
	Visibility                string          `json:"visibility"`
	RoomAliasName             string          `json:"room_alias_name"`
	Name                      *string         `json:"name"`
	Topic                     *string         `json:"topic"`
	Invite                    []id.UserID     `json:"invite"`
	RoomVersion               id.RoomVersion  `json:"room_version"`
	CreationContent           json.RawMessage `json:"creation_content"`
	InitialState              []StateEvent    `json:"initial_state"`
	Preset                    string          `json:"preset"`
	IsDirect                  bool            `json:"is_direct"`
	PowerLevelContentOverride json.RawMessage `json:"power_level_content_override"`

	// Predecessor and extra state are set by room upgrades, not clients.
	predecessor *predecessor
	extraUsers  map[id.UserID]int64
}

type predecessor struct {
	RoomID  id.RoomID  `json:"room_id"`
	EventID id.EventID `json:"event_id,omitempty"`
}

// Create creates a room as createRoom does and returns its ID. Errors the
// client must see: M_UNSUPPORTED_ROOM_VERSION, M_ROOM_IN_USE (alias taken),
// M_INVALID_ROOM_STATE (bad initial_state or override), M_BAD_JSON,
// M_INVALID_PARAM.
func (s *Service) Create(ctx context.Context, creator id.UserID, req CreateRequest) (id.RoomID, error) {
	roomID, remoteInvites, err := s.create(ctx, creator, req)
	if err != nil {
		return "", err
	}
	for _, u := range remoteInvites {
		var extra map[string]any
		if req.IsDirect {
			extra = map[string]any{"is_direct": true}
		}
		// As Synapse does, a failed remote invite does not fail the
		// creation; the inviter sees the member list.
		if _, err := s.sendMember(ctx, creator, u, Invite, "", extra, nil, roomID); err != nil {
			s.log.Info("invite of a remote user at room creation failed", "room_id", roomID, "user_id", u, "err", err)
		}
	}
	return roomID, nil
}

// create is Create without the invites of remote users, which it returns:
// they are sent once the room exists and is unlocked.
func (s *Service) create(ctx context.Context, creator id.UserID, req CreateRequest) (id.RoomID, []id.UserID, error) {
	version := req.RoomVersion
	if version == "" {
		version = s.cfg.DefaultVersion
	}
	if !event.Supported(version) {
		return "", nil, mxerr.UnsupportedRoomVersion("Room version %q is not supported", version)
	}
	switch req.Visibility {
	case "", "private", "public":
	default:
		return "", nil, mxerr.InvalidParam("visibility must be public or private")
	}
	preset := req.Preset
	switch preset {
	case "":
		preset = PresetPrivate
		if req.Visibility == "public" {
			preset = PresetPublic
		}
	case PresetPrivate, PresetTrustedPrivate, PresetPublic:
	default:
		return "", nil, mxerr.InvalidParam("Unknown preset %q", req.Preset)
	}
	for _, u := range req.Invite {
		if _, _, err := id.UserID(u).Parse(); err != nil {
			return "", nil, mxerr.InvalidParam("Invalid user ID %q in invite", u)
		}
		if u.Homeserver() != s.cfg.ServerName && s.cfg.Federation == nil {
			return "", nil, mxerr.Forbidden("This server does not federate; users of other servers cannot be invited")
		}
	}
	var alias id.RoomAlias
	if req.RoomAliasName != "" {
		if strings.ContainsAny(req.RoomAliasName, ":# \t\n") {
			return "", nil, mxerr.InvalidParam("room_alias_name may not contain ':', '#' or whitespace")
		}
		alias = id.RoomAlias("#" + req.RoomAliasName + ":" + s.cfg.ServerName)
		if len(alias) > 255 {
			return "", nil, mxerr.InvalidParam("room_alias_name is too long")
		}
		if _, err := s.db.ResolveAlias(ctx, alias); err == nil {
			return "", nil, mxerr.RoomInUse("Room alias %s is already in use", alias)
		} else if !errors.Is(err, store.ErrNotFound) {
			return "", nil, err
		}
	}

	// The create event.
	createContent := map[string]any{}
	if len(req.CreationContent) > 0 && string(req.CreationContent) != "null" {
		if err := json.Unmarshal(req.CreationContent, &createContent); err != nil {
			return "", nil, mxerr.BadJSON("creation_content must be an object")
		}
	}
	createContent["room_version"] = string(version)
	delete(createContent, "creator")
	if version.CreatorInContent() { // removed in v11
		createContent["creator"] = string(creator)
	}
	if req.predecessor != nil {
		createContent["predecessor"] = req.predecessor
	}
	creators := []id.UserID{creator}
	if version.RoomIDIsCreateEventID() {
		// Room version 12 (MSC4289): creators hold infinite power and are
		// not listed in power levels. trusted_private_chat makes the
		// invitees creators too, as Synapse does.
		var extra []id.UserID
		if v, ok := createContent["additional_creators"]; ok {
			b, _ := json.Marshal(v)
			if err := json.Unmarshal(b, &extra); err != nil {
				return "", nil, mxerr.BadJSON("additional_creators must be a list of user IDs")
			}
		}
		if preset == PresetTrustedPrivate {
			extra = append(extra, req.Invite...)
		}
		for _, u := range extra {
			if _, _, err := u.Parse(); err != nil {
				return "", nil, mxerr.BadJSON("Invalid user ID %q in additional_creators", u)
			}
		}
		if len(extra) > 0 {
			createContent["additional_creators"] = dedupe(extra)
		}
		creators = append(creators, extra...)
	}
	var roomID id.RoomID
	if !version.RoomIDIsCreateEventID() {
		roomID = id.RoomID("!" + randomString(18) + ":" + s.cfg.ServerName)
	}

	rs := &roomState{version: version, state: stateres.StateMap{}, events: map[id.EventID]*event.PDU{}, loaded: true}
	var pdus []*event.PDU
	add := func(sender id.UserID, typ string, stateKey *string, content any) error {
		raw, err := marshalContent(content)
		if err != nil {
			return err
		}
		pdu, err := s.build(rs, sender, roomID, Draft{Type: typ, StateKey: stateKey, Content: raw})
		if err != nil {
			return err
		}
		if err := eventauth.Check(version, pdu, rs.lookup); err != nil {
			if e, ok := mxerr.As(forbidden(err)); ok {
				return mxerr.InvalidRoomState("%s", e.Msg)
			}
			return err
		}
		if roomID == "" {
			roomID = pdu.RoomID()
		}
		// Advance the in-memory room as persistBatch will.
		if sk := pdu.StateKey(); sk != nil {
			rs.state[stateres.StateKey{Type: typ, StateKey: *sk}] = pdu.EventID()
			rs.events[pdu.EventID()] = pdu
		}
		rs.extremities = []id.EventID{pdu.EventID()}
		rs.depth = pdu.Depth()
		pdus = append(pdus, pdu)
		return nil
	}
	empty := ""
	str := func(s string) *string { return &s }
	if err := addCreate(version, func() error { return add(creator, event.TypeCreate, &empty, createContent) }, func() int64 {
		return pdus[0].OriginServerTS()
	}); err != nil {
		return "", nil, err
	}
	member, err := s.memberContent(ctx, creator, "join", "", nil)
	if err != nil {
		return "", nil, err
	}
	if err := add(creator, event.TypeMember, str(string(creator)), member); err != nil {
		return "", nil, err
	}

	// Power levels, with the override merged over the defaults.
	users := map[string]any{}
	if !version.RoomIDIsCreateEventID() {
		users[string(creator)] = 100
		if preset == PresetTrustedPrivate {
			for _, u := range req.Invite {
				users[string(u)] = 100
			}
		}
	}
	for u, l := range req.extraUsers {
		if !containsUser(creators, u) {
			users[string(u)] = l
		}
	}
	pl := map[string]any{
		"users":          users,
		"users_default":  0,
		"events_default": 0,
		"state_default":  50,
		"ban":            50,
		"kick":           50,
		"redact":         50,
		"invite":         50,
		"events": map[string]any{
			"m.room.name":               50,
			"m.room.power_levels":       100,
			"m.room.history_visibility": 100,
			"m.room.canonical_alias":    50,
			"m.room.avatar":             50,
			"m.room.tombstone":          100,
			"m.room.server_acl":         100,
			"m.room.encryption":         100,
		},
		"notifications": map[string]any{"room": 50},
	}
	if preset != PresetPublic {
		pl["invite"] = 0
	}
	if version == "12" {
		// Room version 12 (MSC4289): upgrading is for the creators, who
		// outrank every level; 150 keeps it above the other admins.
		pl["events"].(map[string]any)["m.room.tombstone"] = 150
	}
	if len(req.PowerLevelContentOverride) > 0 && string(req.PowerLevelContentOverride) != "null" {
		var o map[string]any
		if err := json.Unmarshal(req.PowerLevelContentOverride, &o); err != nil {
			return "", nil, mxerr.BadJSON("power_level_content_override must be an object")
		}
		for k, v := range o {
			pl[k] = v
		}
	}
	if err := add(creator, event.TypePowerLevels, &empty, pl); err != nil {
		return "", nil, err
	}
	if alias != "" {
		if err := add(creator, "m.room.canonical_alias", &empty, map[string]any{"alias": alias}); err != nil {
			return "", nil, err
		}
	}

	// Preset events, unless initial_state sets them.
	initial := map[stateres.StateKey]bool{}
	for _, ev := range req.InitialState {
		if ev.Type == "" {
			return "", nil, mxerr.BadJSON("initial_state events need a type")
		}
		initial[stateres.StateKey{Type: ev.Type, StateKey: ev.StateKey}] = true
	}
	presetEvents := []StateEvent{
		{Type: event.TypeJoinRules, Content: json.RawMessage(`{"join_rule":"invite"}`)},
		{Type: event.TypeHistoryVisibility, Content: json.RawMessage(`{"history_visibility":"shared"}`)},
	}
	switch preset {
	case PresetPublic:
		presetEvents[0].Content = json.RawMessage(`{"join_rule":"public"}`)
	default:
		presetEvents = append(presetEvents, StateEvent{Type: "m.room.guest_access", Content: json.RawMessage(`{"guest_access":"can_join"}`)})
	}
	for _, ev := range presetEvents {
		if initial[stateres.StateKey{Type: ev.Type}] {
			continue
		}
		if err := add(creator, ev.Type, &empty, ev.Content); err != nil {
			return "", nil, err
		}
	}
	for _, ev := range req.InitialState {
		if ev.Type == event.TypeCreate || ev.Type == event.TypeMember {
			return "", nil, mxerr.InvalidRoomState("initial_state may not contain %s events", ev.Type)
		}
		if err := add(creator, ev.Type, str(ev.StateKey), ev.Content); err != nil {
			return "", nil, err
		}
	}
	if req.Name != nil {
		if err := add(creator, "m.room.name", &empty, map[string]any{"name": *req.Name}); err != nil {
			return "", nil, err
		}
	}
	if req.Topic != nil {
		// With the rich topic of spec v1.15 (m.topic, MSC3765): the plain
		// text as text/plain.
		topic := map[string]any{"topic": *req.Topic, "m.topic": map[string]any{
			"m.text": []map[string]any{{"body": *req.Topic, "mimetype": "text/plain"}},
		}}
		if err := add(creator, "m.room.topic", &empty, topic); err != nil {
			return "", nil, err
		}
	}
	var remoteInvites []id.UserID
	for _, u := range dedupe(req.Invite) {
		if u == creator {
			continue
		}
		if u.Homeserver() != s.cfg.ServerName {
			remoteInvites = append(remoteInvites, u) // after the room exists
			continue
		}
		c, err := s.memberContent(ctx, u, "invite", "", nil)
		if err != nil {
			return "", nil, err
		}
		if req.IsDirect {
			c["is_direct"] = true
		}
		if err := add(creator, event.TypeMember, str(string(u)), c); err != nil {
			return "", nil, err
		}
	}

	// Persist it all in one transaction, on a fresh in-memory room.
	live := &roomState{version: version, state: stateres.StateMap{}, events: map[id.EventID]*event.PDU{}, loaded: true}
	live.mu.Lock()
	defer live.mu.Unlock()
	visibility := "private"
	if req.Visibility == "public" {
		visibility = "public"
	}
	_, err = s.persistBatch(ctx, live, pdus, nil, func(tx *store.Tx) error {
		if err := tx.CreateRoom(ctx, store.Room{RoomID: roomID, Version: version, Visibility: visibility}); err != nil {
			return err
		}
		if alias != "" {
			if err := tx.CreateAlias(ctx, alias, roomID, creator); errors.Is(err, store.ErrConflict) {
				return mxerr.RoomInUse("Room alias %s is already in use", alias)
			} else if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	s.mu.Lock()
	s.rooms[roomID] = live
	s.mu.Unlock()
	s.log.Info("room created", "room_id", roomID, "room_version", version, "user_id", creator)
	return roomID, remoteInvites, nil
}

// createClock makes the create events of room version 12 built in this
// process differ in origin_server_ts. Such a room's ID is the create
// event's reference hash (MSC4291), so two createRoom requests by the same
// user with the same creation content in the same millisecond would
// otherwise name the same room, and the second would fail.
var createClock struct {
	sync.Mutex
	last int64 // origin_server_ts of the last create event built
}

// addCreate runs build, which builds the create event, in a millisecond
// after the last create event's in room versions whose room ID is derived
// from it; ts returns the built event's timestamp.
func addCreate(version id.RoomVersion, build func() error, ts func() int64) error {
	if !version.RoomIDIsCreateEventID() {
		return build()
	}
	createClock.Lock()
	defer createClock.Unlock()
	for time.Now().UnixMilli() <= createClock.last {
		time.Sleep(100 * time.Microsecond)
	}
	if err := build(); err != nil {
		return err
	}
	createClock.last = ts()
	return nil
}

// memberContent is the content of a member event: membership, the
// target's profile for local users (client-server API: the server fills
// displayname and avatar_url), a reason, and extra members.
func (s *Service) memberContent(ctx context.Context, user id.UserID, membership, reason string, extra map[string]any) (map[string]any, error) {
	c := map[string]any{"membership": membership}
	if user.Homeserver() == s.cfg.ServerName && membership != "leave" && membership != "ban" {
		p, err := s.db.Profile(ctx, user.Localpart())
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if p.DisplayName != "" {
			c["displayname"] = p.DisplayName
		}
		if p.AvatarURL != "" {
			c["avatar_url"] = p.AvatarURL
		}
	}
	for k, v := range extra {
		if k != "membership" {
			c[k] = v
		}
	}
	if reason != "" {
		c["reason"] = reason
	}
	return c, nil
}

func marshalContent(v any) ([]byte, error) {
	switch c := v.(type) {
	case json.RawMessage:
		if len(c) == 0 || c[0] != '{' {
			if len(c) == 0 {
				return []byte("{}"), nil
			}
			return nil, mxerr.BadJSON("Event content must be an object")
		}
		return c, nil
	case []byte:
		return c, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, mxerr.BadJSON("Invalid content: %v", err)
	}
	return b, nil
}

func dedupe(us []id.UserID) []id.UserID {
	seen := map[id.UserID]bool{}
	var out []id.UserID
	for _, u := range us {
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
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

const idAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}

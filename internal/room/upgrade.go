package room

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

// StateAtLeave returns an event of the state of a room as it was when the
// user left it (or was kicked or banned): what a former member may still
// read. store.ErrNotFound if there is none.
func (s *Service) StateAtLeave(ctx context.Context, roomID id.RoomID, user id.UserID, typ, stateKey string) (*store.Event, error) {
	m, err := s.db.UserMembership(ctx, roomID, user)
	if err != nil {
		return nil, err
	}
	state, err := s.db.StateAfter(ctx, m.EventID)
	if err != nil {
		return nil, err
	}
	eid, ok := state[stateres.StateKey{Type: typ, StateKey: stateKey}]
	if !ok {
		return nil, store.ErrNotFound
	}
	return s.db.Event(ctx, eid)
}

// upgradeCopied are the state events a room upgrade carries over
// (client-server API, "Room upgrades": "Server behaviour").
var upgradeCopied = []string{
	event.TypeJoinRules, event.TypeHistoryVisibility, "m.room.guest_access", "m.room.name", "m.room.topic",
	"m.room.avatar", "m.room.encryption", "m.room.server_acl", "m.room.canonical_alias", "m.room.related_groups",
	"m.room.pinned_events", "m.space.child", "m.space.parent",
}

// Upgrade replaces a room by a new one of another version: it creates the
// new room with the old one's state and a predecessor link, sends an
// m.room.tombstone in the old room, moves the local aliases and restricts
// the old room so that only moderators may speak or invite. It returns
// the new room's ID. M_FORBIDDEN if the user may not send a tombstone,
// M_UNSUPPORTED_ROOM_VERSION for an unknown version.
func (s *Service) Upgrade(ctx context.Context, user id.UserID, oldID id.RoomID, newVersion id.RoomVersion, additionalCreators []id.UserID) (id.RoomID, error) {
	if !event.Supported(newVersion) {
		return "", mxerr.UnsupportedRoomVersion("Room version %q is not supported", newVersion)
	}
	state, err := s.db.CurrentStateEvents(ctx, oldID)
	if err != nil {
		return "", err
	}
	if len(state) == 0 {
		return "", mxerr.Forbidden("You are not in room %s", oldID)
	}
	pl, err := s.PowerLevels(ctx, oldID)
	if err != nil {
		return "", err
	}
	if m, _ := s.Membership(ctx, oldID, user); m != Join {
		return "", mxerr.Forbidden("You are not in room %s", oldID)
	}
	if pl.UserLevel(user) < pl.EventLevel("m.room.tombstone", true) {
		return "", mxerr.Forbidden("You do not have the power to upgrade this room")
	}

	req := CreateRequest{RoomVersion: newVersion, predecessor: &predecessor{RoomID: oldID}}
	if !newVersion.RoomIDIsCreateEventID() {
		// From v12 the predecessor names only the room (MSC4291).
		var last id.EventID
		if x, err := s.db.Extremities(ctx, oldID); err == nil && len(x) > 0 {
			last = x[len(x)-1]
		}
		req.predecessor.EventID = last
	}
	var oldCreate map[string]any
	var plContent map[string]any
	for _, ev := range state {
		switch {
		case ev.Type() == event.TypeCreate:
			_ = json.Unmarshal(ev.Content(), &oldCreate)
		case ev.Type() == event.TypePowerLevels:
			_ = json.Unmarshal(ev.Content(), &plContent)
		case contains(upgradeCopied, ev.Type()):
			if len(ev.Content()) <= 2 { // {} : an emptied state event
				continue
			}
			req.InitialState = append(req.InitialState, StateEvent{Type: ev.Type(), StateKey: *ev.StateKey(), Content: ev.Content()})
		}
	}
	cc := map[string]any{}
	for _, k := range []string{"m.federate", "type"} {
		if v, ok := oldCreate[k]; ok {
			cc[k] = v
		}
	}
	if newVersion.RoomIDIsCreateEventID() && len(additionalCreators) > 0 {
		cc["additional_creators"] = additionalCreators
	}
	req.CreationContent, _ = json.Marshal(cc)
	if plContent == nil {
		plContent = map[string]any{}
	}
	// The new room keeps the old levels; the creators of a v12 room are
	// not listed (their power is implicit), and in older versions the
	// upgrader keeps at least the level it had.
	users, _ := plContent["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
	}
	newUsers := map[string]any{}
	for u, l := range users {
		newUsers[u] = l
	}
	if newVersion.RoomIDIsCreateEventID() {
		delete(newUsers, string(user))
		for _, c := range additionalCreators {
			delete(newUsers, string(c))
		}
	} else {
		lvl := pl.UserLevel(user)
		if pl.IsCreator(user) && oldVersionIsV12(state) {
			lvl = 100 // an infinite creator of a v12 room becomes a plain admin
		}
		newUsers[string(user)] = lvl
	}
	plContent["users"] = newUsers
	req.PowerLevelContentOverride, _ = json.Marshal(plContent)
	req.Preset = PresetPrivate
	if jr := findState(state, event.TypeJoinRules); jr != nil {
		if r, _ := getString(jr.Content(), "join_rule"); r == "public" {
			req.Preset = PresetPublic
		}
	}
	if r, err := s.db.Room(ctx, oldID); err == nil && r.Visibility == "public" {
		req.Visibility = "public"
	}

	newID, err := s.Create(ctx, user, req)
	if err != nil {
		return "", err
	}
	tomb, _ := json.Marshal(map[string]any{"body": "This room has been replaced", "replacement_room": newID})
	empty := ""
	if _, err := s.Send(ctx, user, oldID, Draft{Type: "m.room.tombstone", StateKey: &empty, Content: tomb}); err != nil {
		return "", err
	}
	if err := s.db.MoveAliases(ctx, oldID, newID); err != nil {
		return "", err
	}
	// The old room leaves the public directory; the new one took its place.
	if req.Visibility == "public" {
		if err := s.db.SetRoomVisibility(ctx, oldID, "private"); err != nil {
			return "", err
		}
	}
	// Restrict the old room: only moderators may speak and invite.
	restricted := map[string]any{}
	for k, v := range plContent {
		restricted[k] = v
	}
	restricted["users"] = users
	ud := int64(0)
	if v, ok := plContent["users_default"].(float64); ok {
		ud = int64(v)
	}
	need := max(50, ud+1)
	restricted["events_default"] = need
	restricted["invite"] = need
	raw, _ := json.Marshal(restricted)
	if _, err := s.Send(ctx, user, oldID, Draft{Type: event.TypePowerLevels, StateKey: &empty, Content: raw}); err != nil {
		var me *mxerr.Error
		if !errors.As(err, &me) {
			return "", err
		}
		s.log.Warn("could not restrict the upgraded room", "room_id", oldID, "err", err)
	}
	s.log.Info("room upgraded", "room_id", oldID, "replacement_room", newID, "room_version", newVersion)
	return newID, nil
}

func findState(state []*store.Event, typ string) *store.Event {
	for _, ev := range state {
		if ev.Type() == typ && ev.StateKey() != nil && *ev.StateKey() == "" {
			return ev
		}
	}
	return nil
}

func oldVersionIsV12(state []*store.Event) bool {
	c := findState(state, event.TypeCreate)
	return c != nil && strings.HasPrefix(string(c.RoomVersion()), "12")
}

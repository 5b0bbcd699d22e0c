package directory

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/user"
)

// maxAliasLen is the limit on a room alias, in bytes (appendices, "Room
// aliases": 255 bytes including the '#' sigil and the domain).
const maxAliasLen = 255

// ParseAlias checks the grammar of a room alias (appendices, "Room
// aliases"): '#', a non-empty localpart of valid non-surrogate code points
// other than ':' and NUL, ':' and a server name, at most 255 bytes.
// Whitespace in the localpart is refused too, as Synapse does. Returns
// M_INVALID_PARAM.
func ParseAlias(s string) (id.RoomAlias, error) {
	local, server, ok := strings.Cut(strings.TrimPrefix(s, "#"), ":")
	switch {
	case !strings.HasPrefix(s, "#") || !ok:
		return "", mxerr.InvalidParam("Invalid room alias %q: want #localpart:server", s)
	case len(s) > maxAliasLen:
		return "", mxerr.InvalidParam("Room alias is longer than %d bytes", maxAliasLen)
	case local == "":
		return "", mxerr.InvalidParam("Room alias %q has an empty localpart", s)
	case !utf8.ValidString(s):
		return "", mxerr.InvalidParam("Room alias is not valid UTF-8")
	case strings.ContainsFunc(local, func(r rune) bool { return r == 0 || unicode.IsSpace(r) }):
		return "", mxerr.InvalidParam("Room alias localparts may not contain whitespace or NUL")
	case !validServerName(server):
		return "", mxerr.InvalidParam("Invalid server name in room alias %q", s)
	}
	return id.RoomAlias(s), nil
}

// validServerName checks the characters of a server name (appendices,
// "Server name": a DNS name, an IPv4 address or a bracketed IPv6 address,
// with an optional port).
func validServerName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-:[]", c) >= 0) {
			return false
		}
	}
	return true
}

func (s *Service) isLocal(a id.RoomAlias) bool {
	_, server, _ := strings.Cut(string(a), ":")
	return server == s.cfg.ServerName
}

// CreateAlias maps a local alias to a room (PUT /directory/room/{alias}).
// The requester must be joined to the room, unless it is a server admin,
// as Synapse requires by default. Errors: M_INVALID_PARAM for a malformed
// or non-local alias or room ID, M_FORBIDDEN if not in the room,
// M_NOT_FOUND for an unknown room (admins), 409 M_UNKNOWN if the alias is
// taken.
func (s *Service) CreateAlias(ctx context.Context, who user.Identity, rawAlias string, roomID id.RoomID) error {
	alias, err := ParseAlias(rawAlias)
	if err != nil {
		return err
	}
	if !s.isLocal(alias) {
		return mxerr.InvalidParam("Room alias must be on this server (%s)", s.cfg.ServerName)
	}
	if !strings.HasPrefix(string(roomID), "!") || len(roomID) > 255 {
		return mxerr.InvalidParam("Invalid room ID %q", roomID)
	}
	if !who.IsAdmin {
		m, err := s.rooms.Membership(ctx, roomID, who.UserID)
		if err != nil {
			return err
		}
		if m != room.Join {
			return mxerr.Forbidden("You must be in the room to create an alias for it")
		}
	} else if ok, err := s.rooms.Exists(ctx, roomID); err != nil {
		return err
	} else if !ok {
		return mxerr.NotFound("Room %s not found", roomID)
	}
	err = s.db.CreateAlias(ctx, alias, roomID, who.UserID)
	if errors.Is(err, store.ErrConflict) {
		return (&mxerr.Error{Code: "M_UNKNOWN", Msg: "Room alias " + string(alias) + " already exists"}).WithStatus(409)
	}
	return err
}

// ResolveAlias returns the room an alias names and servers that know it
// (GET /directory/room/{alias}): this server first, then the servers of
// the room's other joined members. An alias of another server is asked of
// that server (remote.go). Errors: M_INVALID_PARAM, M_NOT_FOUND, and a 502
// when the alias's server cannot answer.
func (s *Service) ResolveAlias(ctx context.Context, rawAlias string) (id.RoomID, []string, error) {
	alias, err := ParseAlias(rawAlias)
	if err != nil {
		return "", nil, err
	}
	if !s.isLocal(alias) {
		return s.resolveRemoteAlias(ctx, alias)
	}
	a, err := s.db.ResolveAlias(ctx, alias)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil, mxerr.NotFound("Room alias %s not found", alias)
	}
	if err != nil {
		return "", nil, err
	}
	servers := []string{s.cfg.ServerName}
	ms, err := s.db.RoomMemberships(ctx, a.RoomID, room.Join)
	if err != nil {
		return "", nil, err
	}
	var others []string
	for _, m := range ms {
		if h := m.UserID.Homeserver(); h != s.cfg.ServerName && !slices.Contains(others, h) {
			others = append(others, h)
		}
	}
	sort.Strings(others)
	return a.RoomID, append(servers, others...), nil
}

// DeleteAlias removes a local alias (DELETE /directory/room/{alias}): its
// creator, a server admin, or a member with the power to send
// m.room.canonical_alias may. If the room's m.room.canonical_alias names
// the alias, a new one without it is sent as the requester, as Synapse
// does; a refusal of that event does not undo the deletion (the spec's
// note on this endpoint recommends succeeding). Errors: M_INVALID_PARAM,
// M_NOT_FOUND, M_FORBIDDEN.
func (s *Service) DeleteAlias(ctx context.Context, who user.Identity, rawAlias string) error {
	alias, err := ParseAlias(rawAlias)
	if err != nil {
		return err
	}
	if !s.isLocal(alias) {
		return mxerr.InvalidParam("Room alias must be on this server (%s)", s.cfg.ServerName)
	}
	a, err := s.db.ResolveAlias(ctx, alias)
	if errors.Is(err, store.ErrNotFound) {
		return mxerr.NotFound("Room alias %s not found", alias)
	}
	if err != nil {
		return err
	}
	if a.Creator != who.UserID {
		ok, err := s.canChangeRoomList(ctx, who, a.RoomID)
		if err != nil {
			return err
		}
		if !ok {
			return mxerr.Forbidden("You don't have permission to delete the alias")
		}
	}
	if err := s.db.DeleteAlias(ctx, alias); errors.Is(err, store.ErrNotFound) {
		return mxerr.NotFound("Room alias %s not found", alias)
	} else if err != nil {
		return err
	}
	if err := s.dropCanonicalAlias(ctx, who, a.RoomID, alias); err != nil {
		if _, ok := mxerr.As(err); ok {
			s.log.Info("alias deleted but m.room.canonical_alias not updated", "room_id", a.RoomID, "user_id", who.UserID, "err", err)
		} else {
			s.log.Warn("alias deleted but m.room.canonical_alias not updated", "room_id", a.RoomID, "user_id", who.UserID, "err", err)
		}
	}
	return nil
}

// dropCanonicalAlias sends a new m.room.canonical_alias without alias if
// the current one names it (as alias or among alt_aliases).
func (s *Service) dropCanonicalAlias(ctx context.Context, who user.Identity, roomID id.RoomID, alias id.RoomAlias) error {
	content, err := s.rooms.StateContent(ctx, roomID, typeCanonicalAlias, "")
	if err != nil || content == nil {
		return err
	}
	var c map[string]json.RawMessage
	if err := json.Unmarshal(content, &c); err != nil {
		return nil // not an object: nothing this server can edit
	}
	changed := false
	if v, ok := c["alias"]; ok {
		if a, err := cjson.Unquote(v); err == nil && a == string(alias) {
			delete(c, "alias")
			changed = true
		}
	}
	if v, ok := c["alt_aliases"]; ok {
		var alts []json.RawMessage
		if err := json.Unmarshal(v, &alts); err == nil {
			kept := alts[:0]
			for _, x := range alts {
				if a, err := cjson.Unquote(x); err == nil && a == string(alias) {
					changed = true
					continue
				}
				kept = append(kept, x)
			}
			if len(kept) == 0 {
				delete(c, "alt_aliases")
			} else {
				c["alt_aliases"], _ = json.Marshal(kept)
			}
		}
	}
	if !changed {
		return nil
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	empty := ""
	_, err = s.rooms.Send(ctx, who.UserID, roomID, room.Draft{Type: typeCanonicalAlias, StateKey: &empty, Content: raw})
	return err
}

// RoomAliases lists the local aliases of a room (GET
// /rooms/{roomId}/aliases) to its joined members, to anyone when its
// history is world_readable, and to server admins. M_FORBIDDEN otherwise,
// unknown rooms included.
func (s *Service) RoomAliases(ctx context.Context, who user.Identity, roomID id.RoomID) ([]id.RoomAlias, error) {
	if !who.IsAdmin {
		m, err := s.rooms.Membership(ctx, roomID, who.UserID)
		if err != nil {
			return nil, err
		}
		if m != room.Join {
			c, err := s.rooms.StateContent(ctx, roomID, event.TypeHistoryVisibility, "")
			if err != nil {
				return nil, err
			}
			if v, _ := cjson.Get(c, "history_visibility"); string(v) != `"`+room.WorldReadable+`"` {
				return nil, mxerr.Forbidden("You are not in room %s", roomID)
			}
		}
	}
	as, err := s.db.RoomAliases(ctx, roomID)
	if as == nil {
		as = []id.RoomAlias{}
	}
	return as, err
}

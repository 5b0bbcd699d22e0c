package user

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/store"
)

// Account data types with a meaning to the server.
const (
	TypeIgnoredUsers = "m.ignored_user_list"
	TypeTag          = "m.tag"
	TypeFullyRead    = "m.fully_read"
	TypePushRules    = "m.push_rules"
)

// serverManaged are the account data types the server manages: clients
// may read them but not set them through /account_data (spec "Client
// Config" § Server Behaviour: a 405; the errcode is M_BAD_JSON as in the
// OpenAPI and Synapse).
var serverManaged = map[string]string{
	TypeFullyRead: "Cannot set m.fully_read through this API. Use /rooms/{roomId}/read_markers",
	TypePushRules: "Cannot set m.push_rules through this API. Use /pushrules",
}

// maxTypeLen is the longest account data type accepted, in bytes: account
// data types are event types, which are at most 255 bytes (spec appendix
// "Event types" and the PDU size limits).
const maxTypeLen = 255

// maxTagLen is the longest tag name, in bytes (spec "Room Tagging").
const maxTagLen = 255

// jsonObject checks that content is a JSON object and returns it compacted.
// Errors are M_NOT_JSON and M_BAD_JSON.
func jsonObject(content []byte) ([]byte, error) {
	if !json.Valid(content) {
		return nil, mxerr.NotJSON("Content must be valid JSON")
	}
	var b bytes.Buffer
	if err := json.Compact(&b, content); err != nil {
		return nil, mxerr.NotJSON("Content must be valid JSON")
	}
	if b.Len() == 0 || b.Bytes()[0] != '{' {
		return nil, mxerr.BadJSON("Content must be a JSON object")
	}
	return b.Bytes(), nil
}

// validRoomID reports whether s looks like a room ID: "!" and an opaque
// part, with ":server" up to room version 11 and without from version 12
// (spec appendix "Room IDs").
func validRoomID(s id.RoomID) bool {
	return len(s) > 1 && len(s) <= 255 && s[0] == '!' && !strings.ContainsAny(string(s), "/ ")
}

// validUserID reports whether s looks like a user ID: "@localpart:server".
func validUserID(s string) bool {
	lp, server, ok := strings.Cut(s, ":")
	return ok && len(s) <= 255 && len(lp) > 1 && lp[0] == '@' && server != ""
}

func checkType(typ string) error {
	if typ == "" {
		return mxerr.InvalidParam("The account data type must not be empty")
	}
	if len(typ) > maxTypeLen {
		return mxerr.InvalidParam("The account data type is longer than %d bytes", maxTypeLen)
	}
	return nil
}

// wakeUser tells the user's waiting /sync requests about a change at pos.
func (s *Service) wakeUser(pos int64, user id.UserID) {
	if pos != 0 && s.notify != nil {
		s.notify.Wake(pos, notify.Change{Users: []id.UserID{user}})
	}
}

// SetAccountData stores account data of a user, global when roomID is ""
// (spec "Client Config"), and wakes the user's /sync. content must be a
// JSON object (M_NOT_JSON, M_BAD_JSON). It does not apply the rules of the
// client API (see PutAccountData): the server itself may set any type.
func (s *Service) SetAccountData(ctx context.Context, userID id.UserID, roomID id.RoomID, typ string, content []byte) error {
	if err := checkType(typ); err != nil {
		return err
	}
	content, err := jsonObject(content)
	if err != nil {
		return err
	}
	pos, err := s.db.SetAccountData(ctx, userID, roomID, typ, content)
	if err != nil {
		return fmt.Errorf("set account data %s of %s: %w", typ, userID, err)
	}
	s.wakeUser(pos, userID)
	return nil
}

// PutAccountData is PUT /user/{userId}/account_data/{type} and its room
// variant: who sets account data of userID. Errors: M_FORBIDDEN for another
// user's data, M_INVALID_PARAM for a malformed room ID or type, a 405
// M_BAD_JSON for a type the server manages, M_NOT_JSON or M_BAD_JSON for
// content that is not a JSON object or an m.ignored_user_list of the
// wrong shape.
func (s *Service) PutAccountData(ctx context.Context, who Identity, userID id.UserID, roomID id.RoomID, typ string, content []byte) error {
	if err := s.checkOwnData(who, userID, roomID, "add account data for"); err != nil {
		return err
	}
	if msg, ok := serverManaged[typ]; ok {
		return mxerr.BadJSON("%s", msg).WithStatus(405)
	}
	if typ == TypeIgnoredUsers && roomID == "" {
		if err := checkIgnoredUsers(content); err != nil {
			return err
		}
	}
	return s.SetAccountData(ctx, userID, roomID, typ, content)
}

// checkOwnData checks that who may touch userID's data and that roomID,
// if set, is a room ID. verb completes "Cannot … other users".
func (s *Service) checkOwnData(who Identity, userID id.UserID, roomID id.RoomID, verb string) error {
	if who.UserID != userID {
		return mxerr.Forbidden("Cannot %s other users", verb)
	}
	if roomID != "" && !validRoomID(roomID) {
		return mxerr.InvalidParam("%s is not a valid room ID", roomID)
	}
	return nil
}

// AccountData returns the content of one account data entry (global when
// roomID is ""), or store.ErrNotFound.
func (s *Service) AccountData(ctx context.Context, userID id.UserID, roomID id.RoomID, typ string) ([]byte, error) {
	return s.db.AccountData(ctx, userID, roomID, typ)
}

// GetAccountData is GET /user/{userId}/account_data/{type} and its room
// variant. Errors: M_FORBIDDEN for another user's data, M_INVALID_PARAM
// for a malformed room ID, M_NOT_FOUND when there is no such entry.
func (s *Service) GetAccountData(ctx context.Context, who Identity, userID id.UserID, roomID id.RoomID, typ string) ([]byte, error) {
	if err := s.checkOwnData(who, userID, roomID, "get account data for"); err != nil {
		return nil, err
	}
	c, err := s.db.AccountData(ctx, userID, roomID, typ)
	if errors.Is(err, store.ErrNotFound) {
		if roomID != "" {
			return nil, mxerr.NotFound("Room account data not found")
		}
		return nil, mxerr.NotFound("Account data not found")
	}
	return c, err
}

// AccountDataSince returns the user's account data entries (global and
// per room) changed at stream positions in (from, to], each once with its
// latest content; from 0 returns every entry.
func (s *Service) AccountDataSince(ctx context.Context, userID id.UserID, from, to int64) ([]store.AccountData, error) {
	return s.db.AccountDataSince(ctx, userID, from, to)
}

// ignoredList is the content of m.ignored_user_list (spec "Ignoring
// Users").
type ignoredList struct {
	IgnoredUsers map[string]json.RawMessage `json:"ignored_users"`
}

// checkIgnoredUsers checks an m.ignored_user_list a client sets:
// ignored_users must be an object whose keys are user IDs.
func checkIgnoredUsers(content []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(content, &raw); err != nil {
		return nil // not an object: jsonObject reports it
	}
	v, ok := raw["ignored_users"]
	if !ok {
		return mxerr.BadJSON("m.ignored_user_list must have an ignored_users object")
	}
	var l map[string]json.RawMessage
	if err := json.Unmarshal(v, &l); err != nil || l == nil {
		return mxerr.BadJSON("ignored_users must be an object whose keys are user IDs")
	}
	for u := range l {
		if !validUserID(u) {
			return mxerr.InvalidParam("ignored_users: %q is not a user ID", u)
		}
	}
	return nil
}

// IgnoredUsers returns the users userID ignores, from its
// m.ignored_user_list account data (empty if it has none).
func (s *Service) IgnoredUsers(ctx context.Context, userID id.UserID) (map[id.UserID]bool, error) {
	c, err := s.db.AccountData(ctx, userID, "", TypeIgnoredUsers)
	if errors.Is(err, store.ErrNotFound) {
		return map[id.UserID]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ignored users of %s: %w", userID, err)
	}
	var l ignoredList
	// Content set before validation existed, or by the server, may be of
	// another shape: it ignores no one rather than failing every sync.
	_ = json.Unmarshal(c, &l)
	out := make(map[id.UserID]bool, len(l.IgnoredUsers))
	for u := range l.IgnoredUsers {
		out[id.UserID(u)] = true
	}
	return out, nil
}

// Tags is GET /user/{userId}/rooms/{roomId}/tags: the tags object of the
// user's m.tag account data in the room ({} if none). Errors: M_FORBIDDEN
// for another user's tags, M_INVALID_PARAM for a malformed room ID.
func (s *Service) Tags(ctx context.Context, who Identity, userID id.UserID, roomID id.RoomID) (json.RawMessage, error) {
	if err := s.checkOwnData(who, userID, roomID, "get tags for"); err != nil {
		return nil, err
	}
	c, err := s.db.AccountData(ctx, userID, roomID, TypeTag)
	if errors.Is(err, store.ErrNotFound) {
		return json.RawMessage(`{}`), nil
	}
	if err != nil {
		return nil, err
	}
	_, tags := splitTags(c)
	out, err := json.Marshal(tags)
	return out, err
}

// splitTags parses m.tag content into its other members and its tags. A
// malformed content has no tags.
func splitTags(content []byte) (top, tags map[string]json.RawMessage) {
	_ = json.Unmarshal(content, &top)
	if top == nil {
		top = map[string]json.RawMessage{}
	}
	_ = json.Unmarshal(top["tags"], &tags)
	if tags == nil {
		tags = map[string]json.RawMessage{}
	}
	return top, tags
}

// SetTag is PUT /user/{userId}/rooms/{roomId}/tags/{tag}: it adds or
// replaces a tag of the room in the user's m.tag account data. The user
// must have a membership of the room (as Synapse requires). content is the
// tag's object; its order, if present, must be a number. Errors:
// M_FORBIDDEN, M_INVALID_PARAM (room ID, tag longer than 255 bytes),
// M_NOT_JSON, M_BAD_JSON.
func (s *Service) SetTag(ctx context.Context, who Identity, userID id.UserID, roomID id.RoomID, tag string, content []byte) error {
	if err := s.checkOwnData(who, userID, roomID, "add tags for"); err != nil {
		return err
	}
	if tag == "" || len(tag) > maxTagLen {
		return mxerr.InvalidParam("The tag must be 1 to %d bytes long", maxTagLen)
	}
	content, err := jsonObject(content)
	if err != nil {
		return err
	}
	var t struct {
		Order json.RawMessage `json:"order"`
	}
	if err := json.Unmarshal(content, &t); err != nil {
		return mxerr.BadJSON("Content must be a JSON object")
	}
	if t.Order != nil {
		var f float64
		if err := json.Unmarshal(t.Order, &f); err != nil || bytes.Equal(t.Order, []byte("null")) {
			return mxerr.BadJSON("order must be a number")
		}
	}
	if _, err := s.db.UserMembership(ctx, roomID, userID); errors.Is(err, store.ErrNotFound) {
		return mxerr.Forbidden("You have no membership of %s", roomID)
	} else if err != nil {
		return err
	}
	return s.updateTags(ctx, userID, roomID, func(tags map[string]json.RawMessage) { tags[tag] = content })
}

// DeleteTag is DELETE /user/{userId}/rooms/{roomId}/tags/{tag}. Removing a
// tag the room does not have succeeds and changes nothing. Errors:
// M_FORBIDDEN, M_INVALID_PARAM.
func (s *Service) DeleteTag(ctx context.Context, who Identity, userID id.UserID, roomID id.RoomID, tag string) error {
	if err := s.checkOwnData(who, userID, roomID, "remove tags for"); err != nil {
		return err
	}
	return s.updateTags(ctx, userID, roomID, func(tags map[string]json.RawMessage) { delete(tags, tag) })
}

// updateTags changes the tags of m.tag in one transaction and wakes the
// user's /sync if they changed.
func (s *Service) updateTags(ctx context.Context, userID id.UserID, roomID id.RoomID, change func(map[string]json.RawMessage)) error {
	pos, err := s.db.UpdateAccountData(ctx, userID, roomID, TypeTag, func(old []byte) ([]byte, error) {
		top, tags := splitTags(old)
		before, _ := json.Marshal(tags)
		change(tags)
		after, err := json.Marshal(tags)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(before, after) {
			return nil, nil
		}
		top["tags"] = after
		return json.Marshal(top)
	})
	if err != nil {
		return fmt.Errorf("update tags of %s in %s: %w", userID, roomID, err)
	}
	s.wakeUser(pos, userID)
	return nil
}

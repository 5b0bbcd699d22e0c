package room

import (
	"context"
	"encoding/json"
	"errors"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
)

// The federation side of the room service: what the inbound federation API
// (internal/api/federation) calls. Every method takes the requesting
// server's name (origin), already authenticated by X-Matrix and checked
// against nothing else: these methods check the room's server ACL
// (m.room.server_acl) and whether origin may see what it asks for.
//
// Errors the remote server must see are *mxerr.Error: M_FORBIDDEN (ACL,
// not allowed, auth refusal), M_NOT_FOUND (unknown room or event),
// M_INCOMPATIBLE_ROOM_VERSION, M_BAD_JSON.

var errNotYet = errors.New("room federation: not implemented yet")

// ReceivePDUs processes the PDUs of an inbound transaction from origin
// (server-server API, "Checks performed on receipt of a PDU") and returns
// a result per event ID: nil when accepted (or already known), else why
// it was dropped or rejected. PDUs that cannot be parsed at all (no room,
// unknown room version) are left out of the result, as Synapse does.
// Rooms are processed concurrently, each room's PDUs in order.
func (s *Service) ReceivePDUs(ctx context.Context, origin string, pdus []json.RawMessage) map[id.EventID]error {
	return nil
}

// MakeMembership answers make_join, make_leave and make_knock (membership
// "join", "leave" or "knock") for userID, whose server is origin, with an
// event template. versions are the room versions origin supports (join and
// knock only; nil for leave).
func (s *Service) MakeMembership(ctx context.Context, origin string, roomID id.RoomID, userID id.UserID, membership string, versions []id.RoomVersion) (*federation.MakeResponse, error) {
	return nil, errNotYet
}

// SendJoin accepts a join event signed by origin (send_join v2), persists
// it, and returns the state before it and the auth chain (without the
// non-heroes' members when omitMembers, MSC3706/spec "partial state").
func (s *Service) SendJoin(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage, omitMembers bool) (*federation.SendJoinResponse, error) {
	return nil, errNotYet
}

// SendLeave accepts a leave event signed by origin (send_leave v2).
func (s *Service) SendLeave(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage) error {
	return errNotYet
}

// SendKnock accepts a knock event signed by origin (send_knock v1).
func (s *Service) SendKnock(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage) (*federation.SendKnockResponse, error) {
	return nil, errNotYet
}

// ReceiveInvite handles an invite of a local user to a remote room
// (invite v2): it checks and signs the event and records the invite with
// its stripped state, and returns the event with our signature.
func (s *Service) ReceiveInvite(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, req federation.InviteRequest) (json.RawMessage, error) {
	return nil, errNotYet
}

// FederationEvent returns an event for GET /event, if origin may see it
// (history visibility for servers).
func (s *Service) FederationEvent(ctx context.Context, origin string, eventID id.EventID) (json.RawMessage, error) {
	return nil, errNotYet
}

// FederationState returns the state at (before) eventID and its auth chain.
func (s *Service) FederationState(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (*federation.StateResponse, error) {
	return nil, errNotYet
}

// FederationStateIDs is FederationState with event IDs only.
func (s *Service) FederationStateIDs(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (*federation.StateIDsResponse, error) {
	return nil, errNotYet
}

// FederationEventAuth returns the auth chain of eventID.
func (s *Service) FederationEventAuth(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (*federation.EventAuthResponse, error) {
	return nil, errNotYet
}

// FederationBackfill returns up to limit events preceding (and including)
// from, newest first, that origin may see.
func (s *Service) FederationBackfill(ctx context.Context, origin string, roomID id.RoomID, from []id.EventID, limit int) ([]json.RawMessage, error) {
	return nil, errNotYet
}

// FederationMissingEvents answers get_missing_events.
func (s *Service) FederationMissingEvents(ctx context.Context, origin string, roomID id.RoomID, req federation.MissingEventsRequest) ([]json.RawMessage, error) {
	return nil, errNotYet
}

// ServerAllowed reports whether the room's server ACL lets server take
// part (server-server API, "Server Access Control Lists"). Unknown rooms
// allow everyone.
func (s *Service) ServerAllowed(ctx context.Context, roomID id.RoomID, server string) (bool, error) {
	return true, nil
}

// ServerInRoom reports whether server has a joined member in the room.
func (s *Service) ServerInRoom(ctx context.Context, roomID id.RoomID, server string) (bool, error) {
	return false, errNotYet
}

// JoinedServers returns the servers with joined members in the room,
// ourselves included when we have one.
func (s *Service) JoinedServers(ctx context.Context, roomID id.RoomID) ([]string, error) {
	return nil, errNotYet
}

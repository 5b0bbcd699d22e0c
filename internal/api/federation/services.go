package federation

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/directory"
	"polder.dev/polder/internal/e2ee"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/presence"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
)

// What the inbound federation handlers need of the domain services. The
// server passes the real services; tests pass fakes.

// Rooms is the federation side of the room service (internal/room,
// federation.go). Its methods check the room's server ACL and what origin
// may see; the handlers check the ACL too, before reading a body.
type Rooms interface {
	ReceivePDUs(ctx context.Context, origin string, pdus []json.RawMessage) map[id.EventID]error
	MakeMembership(ctx context.Context, origin string, roomID id.RoomID, userID id.UserID, membership string, versions []id.RoomVersion) (*federation.MakeResponse, error)
	SendJoin(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage, omitMembers bool) (*federation.SendJoinResponse, error)
	SendLeave(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage) error
	SendKnock(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, raw json.RawMessage) (*federation.SendKnockResponse, error)
	ReceiveInvite(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID, req federation.InviteRequest) (json.RawMessage, error)
	FederationEvent(ctx context.Context, origin string, eventID id.EventID) (json.RawMessage, error)
	FederationState(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (*federation.StateResponse, error)
	FederationStateIDs(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (*federation.StateIDsResponse, error)
	FederationEventAuth(ctx context.Context, origin string, roomID id.RoomID, eventID id.EventID) (*federation.EventAuthResponse, error)
	FederationBackfill(ctx context.Context, origin string, roomID id.RoomID, from []id.EventID, limit int) ([]json.RawMessage, error)
	FederationMissingEvents(ctx context.Context, origin string, roomID id.RoomID, req federation.MissingEventsRequest) ([]json.RawMessage, error)
	ServerAllowed(ctx context.Context, roomID id.RoomID, server string) (bool, error)
	ServerInRoom(ctx context.Context, roomID id.RoomID, server string) (bool, error)
	JoinedServers(ctx context.Context, roomID id.RoomID) ([]string, error)
	// Version is the room's version, or room.ErrUnknownRoom.
	Version(ctx context.Context, roomID id.RoomID) (id.RoomVersion, error)
}

var _ Rooms = (*room.Service)(nil)

// Users is what the queries need of the user service.
type Users interface {
	Profile(ctx context.Context, u id.UserID) (map[string]json.RawMessage, error)
	ProfileField(ctx context.Context, u id.UserID, field string) (json.RawMessage, error)
	Devices(ctx context.Context, localpart string) ([]store.Device, error)
	// OpenIDUserInfo is the owner of an OpenID token, or 401
	// M_UNKNOWN_TOKEN.
	OpenIDUserInfo(ctx context.Context, token string) (id.UserID, error)
}

// Directory resolves local aliases and lists the published rooms.
type Directory interface {
	ResolveAlias(ctx context.Context, rawAlias string) (id.RoomID, []string, error)
	PublicRooms(ctx context.Context, req directory.PublicRoomsRequest) (*directory.PublicRoomsResponse, error)
}

// Typing applies m.typing EDUs.
type Typing interface {
	SetRemote(ctx context.Context, user id.UserID, roomID id.RoomID, typing bool) error
}

// Receipts applies m.receipt EDUs.
type Receipts interface {
	PutRemote(ctx context.Context, user id.UserID, roomID id.RoomID, eventID id.EventID, threadID string, ts int64) error
}

// Presence applies m.presence EDUs.
type Presence interface {
	SetRemote(ctx context.Context, p presence.Remote) error
}

// E2EE serves other servers' questions about local users' devices and
// keys, and applies the EDUs of end-to-end encryption (e2ee.Service).
type E2EE interface {
	LocalUserDevices(ctx context.Context, user id.UserID) (*federation.UserDevicesResponse, error)
	QueryLocal(ctx context.Context, req federation.UserKeysQueryRequest) (*federation.UserKeysQueryResponse, error)
	ClaimLocal(ctx context.Context, req federation.UserKeysClaimRequest) (*federation.UserKeysClaimResponse, error)
	ReceiveDeviceListUpdate(ctx context.Context, origin string, u federation.DeviceListUpdate) error
	ReceiveSigningKeyUpdate(ctx context.Context, origin string, u federation.SigningKeyUpdate) error
	ReceiveToDevice(ctx context.Context, origin string, m federation.DirectToDevice) error
}

var _ E2EE = (*e2ee.Service)(nil)

// Services are the inbound federation API's dependencies. Every field may
// be nil in tests that do not reach it.
type Services struct {
	Rooms     Rooms
	Users     Users
	Directory Directory
	Typing    Typing
	Receipts  Receipts
	Presence  Presence
	E2EE      E2EE
	// Txns keeps the answers to transactions for retries; nil keeps none.
	Txns TxnStore
	// EventByTime finds the event of a room closest to ts (ms) before or
	// after it, or store.ErrNotFound (store.DB.RoomEventByTime). nil
	// leaves timestamp_to_event unserved.
	EventByTime func(ctx context.Context, roomID id.RoomID, ts int64, backwards bool) (*store.Event, error)
	// Media serves this server's media (media.go); nil serves none.
	Media Media
}

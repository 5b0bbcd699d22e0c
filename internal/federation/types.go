package federation

import (
	"encoding/json"

	"maunium.net/go/mautrix/id"
)

// The wire types of the Server-Server API (spec v1.19, server-server-api.md).
// PDUs travel as raw JSON: only the room version says how to parse them,
// and the room package does that.

// Transaction is the body of PUT /_matrix/federation/v1/send/{txnId}.
type Transaction struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []EDU             `json:"edus,omitempty"`
}

// EDU is an ephemeral data unit.
type EDU struct {
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// PDUResult is the result of one PDU of a transaction: empty Error when it
// was accepted.
type PDUResult struct {
	Error string `json:"error,omitempty"`
}

// TransactionResponse is the answer to /send.
type TransactionResponse struct {
	PDUs map[id.EventID]PDUResult `json:"pdus"`
}

// MakeResponse is the answer to make_join, make_leave and make_knock: an
// event template to sign and send back.
type MakeResponse struct {
	RoomVersion id.RoomVersion  `json:"room_version"`
	Event       json.RawMessage `json:"event"`
}

// SendJoinResponse is the answer to PUT /_matrix/federation/v2/send_join.
type SendJoinResponse struct {
	Origin         string            `json:"origin"`
	State          []json.RawMessage `json:"state"`
	AuthChain      []json.RawMessage `json:"auth_chain"`
	Event          json.RawMessage   `json:"event,omitempty"`
	MembersOmitted bool              `json:"members_omitted,omitempty"`
	ServersInRoom  []string          `json:"servers_in_room,omitempty"`
}

// SendKnockResponse is the answer to PUT /_matrix/federation/v1/send_knock.
type SendKnockResponse struct {
	KnockRoomState []json.RawMessage `json:"knock_room_state"`
}

// InviteRequest is the body of PUT /_matrix/federation/v2/invite.
type InviteRequest struct {
	Event           json.RawMessage   `json:"event"`
	RoomVersion     id.RoomVersion    `json:"room_version"`
	InviteRoomState []json.RawMessage `json:"invite_room_state,omitempty"`
}

// InviteResponse is the answer to an invite: the event signed by the
// invitee's server.
type InviteResponse struct {
	Event json.RawMessage `json:"event"`
}

// EventsResponse is the answer to /event, /backfill: a transaction-like
// list of PDUs.
type EventsResponse struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
}

// StateResponse is the answer to GET /_matrix/federation/v1/state.
type StateResponse struct {
	AuthChain []json.RawMessage `json:"auth_chain"`
	PDUs      []json.RawMessage `json:"pdus"`
}

// StateIDsResponse is the answer to GET /_matrix/federation/v1/state_ids.
type StateIDsResponse struct {
	AuthChainIDs []id.EventID `json:"auth_chain_ids"`
	PDUIDs       []id.EventID `json:"pdu_ids"`
}

// TimestampToEventResponse is the answer to GET
// /_matrix/federation/v1/timestamp_to_event.
type TimestampToEventResponse struct {
	EventID        id.EventID `json:"event_id"`
	OriginServerTS int64      `json:"origin_server_ts"`
}

// EventAuthResponse is the answer to GET /_matrix/federation/v1/event_auth.
type EventAuthResponse struct {
	AuthChain []json.RawMessage `json:"auth_chain"`
}

// MissingEventsRequest is the body of POST
// /_matrix/federation/v1/get_missing_events/{roomId}.
type MissingEventsRequest struct {
	EarliestEvents []id.EventID `json:"earliest_events"`
	LatestEvents   []id.EventID `json:"latest_events"`
	Limit          int          `json:"limit,omitempty"`
	MinDepth       int64        `json:"min_depth,omitempty"`
}

// MissingEventsResponse is its answer.
type MissingEventsResponse struct {
	Events []json.RawMessage `json:"events"`
}

// DirectoryResponse is the answer to GET /_matrix/federation/v1/query/directory.
type DirectoryResponse struct {
	RoomID  id.RoomID `json:"room_id"`
	Servers []string  `json:"servers"`
}

// ProfileResponse is the answer to GET /_matrix/federation/v1/query/profile.
// Other fields of the profile are kept in Extra by the decoder of the
// caller's choice; Polder uses only these two.
type ProfileResponse struct {
	DisplayName *string `json:"displayname,omitempty"`
	AvatarURL   *string `json:"avatar_url,omitempty"`
}

// PublicRoomsRequest is the body of POST /_matrix/federation/v1/publicRooms
// (the GET form carries the same fields as query parameters).
type PublicRoomsRequest struct {
	Limit                int             `json:"limit,omitempty"`
	Since                string          `json:"since,omitempty"`
	Filter               json.RawMessage `json:"filter,omitempty"`
	IncludeAllNetworks   bool            `json:"include_all_networks,omitempty"`
	ThirdPartyInstanceID string          `json:"third_party_instance_id,omitempty"`
}

// UserDevicesResponse is the answer to GET /_matrix/federation/v1/user/devices/{userId}.
type UserDevicesResponse struct {
	UserID         id.UserID       `json:"user_id"`
	StreamID       int64           `json:"stream_id"`
	Devices        []UserDevice    `json:"devices"`
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

// UserDevice is one device of a UserDevicesResponse.
type UserDevice struct {
	DeviceID          id.DeviceID     `json:"device_id"`
	DeviceDisplayName string          `json:"device_display_name,omitempty"`
	Keys              json.RawMessage `json:"keys,omitempty"`
}

// OpenIDUserInfo is the answer to GET /_matrix/federation/v1/openid/userinfo.
type OpenIDUserInfo struct {
	Sub id.UserID `json:"sub"`
}

// The EDU types (server-server API, "EDUs").
const (
	EDUTyping           = "m.typing"
	EDUReceipt          = "m.receipt"
	EDUPresence         = "m.presence"
	EDUDeviceListUpdate = "m.device_list_update"
	EDUSigningKeyUpdate = "m.signing_key_update"
	EDUDirectToDevice   = "m.direct_to_device"
)

// Limits of one transaction (server-server API, "Transactions").
const (
	MaxPDUsPerTxn = 50
	MaxEDUsPerTxn = 100
)

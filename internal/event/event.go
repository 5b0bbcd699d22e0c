// Package event owns the PDU formats of room versions 1 to 12: parsing and
// validating events as they arrive over federation, content and reference
// hashes, event IDs (and v12 room IDs), the redaction algorithm of each
// version, signing and signature checks, building new local events, and the
// stripped state shown with invites and knocks.
//
// Specification: the room version texts (content/rooms/v1.md … v12.md),
// server-server API "PDUs" and "Signing Events", client-server API "Size
// limits", "Redactions" and "Stripped state", appendix "Signing JSON".
//
// Events are kept as canonical JSON (cjson) from the moment they are parsed,
// so hashing, redacting and signing are filters over sorted members and never
// re-sort or re-encode. A PDU is immutable once made and safe to share
// between goroutines.
//
// The package is pure: no I/O. Signing keys come from keys; public keys for
// verification come through a KeyFunc. It implements eventauth.Event and may
// be imported by eventauth's callers: stateres, room, federation, api, sync.
package event

import (
	"errors"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
)

// Limits from the client-server API, "Size limits", and the PDU schemas.
const (
	// MaxSize is the largest an event may be, as canonical JSON in the
	// federation format. unsigned is not counted: see Parse.
	MaxSize = 65536
	// MaxIDSize bounds event_id, room_id and sender; MaxKeySize bounds
	// type and state_key.
	MaxIDSize  = 255
	MaxKeySize = 255
	// MaxPrevEvents and MaxAuthEvents bound prev_events and auth_events.
	MaxPrevEvents = 20
	MaxAuthEvents = 10
)

// Event types whose format or redaction this package knows.
const (
	TypeCreate            = "m.room.create"
	TypeMember            = "m.room.member"
	TypeJoinRules         = "m.room.join_rules"
	TypePowerLevels       = "m.room.power_levels"
	TypeHistoryVisibility = "m.room.history_visibility"
	TypeServerACL         = "m.room.server_acl"
	TypeRedaction         = "m.room.redaction"
	TypeAliases           = "m.room.aliases"
)

var (
	// ErrInvalid is wrapped by every error about an event that does not
	// comply with the format of its room version. Such events are dropped
	// (server-server API, "Checks performed on receipt of a PDU", step 1).
	ErrInvalid = errors.New("invalid event")
	// ErrUnsupportedVersion is wrapped by errors about room versions this
	// package does not know.
	ErrUnsupportedVersion = errors.New("unsupported room version")
	// ErrHashMismatch is returned by VerifyContentHash when the content hash
	// differs from hashes.sha256: the event must then be redacted.
	ErrHashMismatch = errors.New("content hash mismatch")
)

// PDU is one event of a room in the federation format of its room version.
type PDU struct {
	rules *rules
	// raw is the event as canonical JSON without unsigned. content and
	// signatures are slices of it.
	raw        []byte
	unsigned   []byte // canonical JSON object, or nil
	content    []byte
	signatures []byte

	eventID  id.EventID
	roomID   id.RoomID
	typ      string
	stateKey *string
	sender   id.UserID
	prev     []id.EventID
	auth     []id.EventID
	depth    int64
	ts       int64
	redacts  id.EventID
	refHash  [32]byte // the reference hash (all room versions)
}

// EventID is the event's ID: the event_id field in room versions 1 and 2,
// the reference hash from version 3.
func (p *PDU) EventID() id.EventID { return p.eventID }

// RoomID is the room's ID: the room_id field, or for a version 12
// m.room.create event (which has none) the ID derived from its reference
// hash.
func (p *PDU) RoomID() id.RoomID { return p.roomID }

// Type is the event type.
func (p *PDU) Type() string { return p.typ }

// StateKey is the state key, nil for a message event. The caller must not
// modify it.
func (p *PDU) StateKey() *string { return p.stateKey }

// IsState reports whether the event is a state event.
func (p *PDU) IsState() bool { return p.stateKey != nil }

// Sender is the user who sent the event.
func (p *PDU) Sender() id.UserID { return p.sender }

// Content is the event's content as canonical JSON. The caller must not
// modify it.
func (p *PDU) Content() []byte { return p.content }

// PrevEventIDs are the IDs in prev_events. The caller must not modify them.
func (p *PDU) PrevEventIDs() []id.EventID { return p.prev }

// AuthEventIDs are the IDs in auth_events. The caller must not modify them.
func (p *PDU) AuthEventIDs() []id.EventID { return p.auth }

// Depth is the event's depth.
func (p *PDU) Depth() int64 { return p.depth }

// OriginServerTS is the sender's timestamp in milliseconds.
func (p *PDU) OriginServerTS() int64 { return p.ts }

// Redacts is the ID of the event an m.room.redaction event redacts: the
// top-level redacts field up to room version 10, content.redacts from
// version 11. It is "" for other event types and when the field is missing
// or not a string.
func (p *PDU) Redacts() id.EventID { return p.redacts }

// RoomVersion is the version of the event's room.
func (p *PDU) RoomVersion() id.RoomVersion { return p.rules.version }

// JSON is the event as canonical JSON in the federation format, without
// unsigned: what is hashed, stored and sent. The caller must not modify it.
func (p *PDU) JSON() []byte { return p.raw }

// Unsigned is the event's unsigned object as canonical JSON, or nil.
func (p *PDU) Unsigned() []byte { return p.unsigned }

// Signatures is the event's signatures object as canonical JSON.
func (p *PDU) Signatures() []byte { return p.signatures }

// ReferenceHash is the event's reference hash (server-server API,
// "Calculating the reference hash for an event").
func (p *PDU) ReferenceHash() [32]byte { return p.refHash }

// MarshalJSON returns the event with its unsigned object, as canonical JSON.
func (p *PDU) MarshalJSON() ([]byte, error) {
	if p.unsigned == nil {
		return p.raw, nil
	}
	return cjson.Set(make([]byte, 0, len(p.raw)+len(p.unsigned)+12), p.raw, "unsigned", p.unsigned), nil
}

// WithUnsigned returns a copy of the event whose unsigned object is
// unsigned (nil removes it). It returns an error wrapping ErrInvalid if
// unsigned is not a JSON object.
func (p *PDU) WithUnsigned(unsigned []byte) (*PDU, error) {
	q := *p
	if unsigned == nil {
		q.unsigned = nil
		return &q, nil
	}
	u, err := cjson.Append(nil, unsigned, p.rules.jsonMode())
	if err != nil {
		return nil, invalidf("unsigned: %w", err)
	}
	if u[0] != '{' {
		return nil, invalidf("unsigned is not an object")
	}
	q.unsigned = u
	return &q, nil
}

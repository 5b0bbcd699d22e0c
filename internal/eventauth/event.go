// Package eventauth implements the authorization rules of every room version
// (Matrix spec, "Room Versions", section "Authorization rules" of versions 1–12).
// It is pure: no I/O, no SQL. Events come in through the Event interface and
// the auth events through a Lookup func.
//
// Imported by stateres, room and federation.
package eventauth

import "maunium.net/go/mautrix/id"

// Event is what the authorization rules read of a PDU. internal/event's PDU
// type implements it; tests use small fakes.
type Event interface {
	EventID() id.EventID
	RoomID() id.RoomID
	Type() string
	// StateKey is nil for message events.
	StateKey() *string
	Sender() id.UserID
	// Content is the raw JSON of the event's content.
	Content() []byte
	PrevEventIDs() []id.EventID
	AuthEventIDs() []id.EventID
	Depth() int64
	OriginServerTS() int64
	// Redacts is the event a redaction redacts: the top-level field up to
	// room version 10, content.redacts from version 11. "" if none.
	Redacts() id.EventID
}

// Lookup returns the auth event for a (type, state_key) pair, or nil when
// there is none.
type Lookup func(evType, stateKey string) Event

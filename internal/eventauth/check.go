package eventauth

import (
	"errors"

	"maunium.net/go/mautrix/id"
)

// Check reports whether ev is allowed by the authorization rules of the room
// version, given its auth events (or the state before it) through auth.
// It returns nil when the event is allowed and an error saying which rule
// rejected it otherwise.
//
// Placeholder until the rules land: it rejects everything.
func Check(version id.RoomVersion, ev Event, auth Lookup) error {
	return errors.New("eventauth: not implemented")
}

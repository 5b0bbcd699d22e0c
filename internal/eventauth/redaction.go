package eventauth

import (
	"fmt"

	"maunium.net/go/mautrix/id"
)

// RedactionApplies reports whether redaction, an m.room.redaction event
// that passed the authorization rules, may be applied to target, the event
// it redacts, given the power levels of the room at the redaction:
//
//   - from room version 3 ("Handling redactions"): if the redaction's sender
//     has at least the redact level, or is on the same server as the
//     target's sender. The first holds "even when the sender doesn't have a
//     high enough power level to send the type of event that they're
//     redacting".
//   - in versions 1 and 2 the authorization rules decided it (rule 11: the
//     redact level, or the redacted event ID's domain is the redaction
//     event ID's); RedactionApplies repeats that rule.
//
// It is false when target is not the event redaction.Redacts() names or is
// in another room. It returns an error wrapping ErrUnknownVersion for an
// unknown version.
func RedactionApplies(version id.RoomVersion, redaction, target Event, pl *PowerLevels) (bool, error) {
	n := versionNumber(version)
	if n == 0 {
		return false, fmt.Errorf("%w %q", ErrUnknownVersion, version)
	}
	if redaction.Redacts() != target.EventID() || redaction.RoomID() != target.RoomID() {
		return false, nil
	}
	if pl.UserLevel(redaction.Sender()) >= pl.Redact() {
		return true, nil
	}
	if n <= 2 {
		d := serverOf(string(target.EventID()))
		return d != "" && d == serverOf(string(redaction.EventID())), nil
	}
	d := serverOf(string(target.Sender()))
	return d != "" && d == serverOf(string(redaction.Sender())), nil
}

package eventauth

// How callers use this package (the package comment is in event.go).
//
// Checks performed on receipt of a PDU (server-server API):
//
//   - check 4, "based on the event's auth events": fetch the events its
//     auth_events name, run CheckAuthEvents, then Check with
//     LookupEvents(authEvents...). In room version 12 add the room's
//     m.room.create event to the lookup: it is never an auth event, but the
//     rules read it (and Check verifies that the room ID names it).
//   - checks 5 and 6, "based on the state before the event" and "the
//     current state": Check with a Lookup over that state.
//   - state resolution's iterative auth checks: Check with the partial
//     state, falling back to the event's auth events for missing keys.
//   - building a new event: AuthEventSelection chooses its auth events.
//   - applying a redaction (v3+ "Handling redactions"): RedactionApplies.
//
// Check reads only the keys the rules need, with one Lookup call each, so
// its cost does not depend on the number of members; the power levels
// content is decoded once per call and its users, events and notifications
// entries are read on demand.
//
// Where the spec text is silent, this package chooses (and says so where
// the choice is made): a room without m.room.join_rules has join rule
// "invite", as in Synapse; a non-string join_rule matches no rule; a power
// level that is not a level of the room version counts as absent, except in
// users, which the rules validate. Rule numbers in errors are those of the
// room version's own list (Rule.Number).

package eventauth

import (
	"errors"
	"fmt"
	"strconv"

	"maunium.net/go/mautrix/id"
)

// ErrUnknownVersion is returned (wrapped) for a room version this package
// does not implement. Only versions "1" to "12" are known.
var ErrUnknownVersion = errors.New("eventauth: unknown room version")

// ErrMissingAuthEvent is returned (wrapped) by CheckAuthEvents when the
// events given do not match the event's auth_events IDs: the caller could
// not fetch one of them, so the rules cannot be applied yet.
var ErrMissingAuthEvent = errors.New("eventauth: auth event missing")

// Rule names one authorization rule, independently of its number, which
// changes between room versions (the member rules are rule 5 in v1–5, rule 4
// in v6–11 and rule 5 again in v12). Number gives the number in the text of
// a given room version.
type Rule uint8

// The rules, in the order of the spec's list.
const (
	_ Rule = iota

	RuleCreatePrevEvents         // create: has prev_events
	RuleCreateRoomIDDomain       // create (v1–11): room_id domain ≠ sender domain
	RuleCreateHasRoomID          // create (v12): has a room_id
	RuleCreateRoomVersion        // create: content.room_version not recognised
	RuleCreateNoCreator          // create (v1–10): content has no creator
	RuleCreateAdditionalCreators // create (v12): invalid additional_creators

	RuleRoomIDNotCreateEvent // v12 rule 2: room_id is not an accepted create event's ID

	RuleAuthEventsDuplicate  // auth_events: duplicate (type, state_key)
	RuleAuthEventsUnexpected // auth_events: pair not chosen by the auth events selection
	RuleAuthEventsRejected   // auth_events: an entry was rejected
	RuleAuthEventsNoCreate   // auth_events (v1–11): no m.room.create
	RuleAuthEventsRoomID     // auth_events: an entry is from another room

	RuleFederate // m.federate is false and the sender is on another server

	RuleAliasesNoStateKey // m.room.aliases (v1–5): no state_key
	RuleAliasesDomain     // m.room.aliases (v1–5): sender domain ≠ state_key

	RuleMemberFields              // member: no state_key or no membership
	RuleMemberAuthoriserSignature // member (v8+): not signed by the authorising server

	RuleJoinSenderNotTarget // join: sender ≠ state_key
	RuleJoinBanned          // join: sender is banned
	RuleJoinRestrictedVia   // join (v8+): restricted join without a valid authorising user
	RuleJoinOtherwise       // join: no join rule allows it

	RuleInvite3PIDBanned         // third-party invite: target is banned
	RuleInvite3PIDNoSigned       // third-party invite: no signed property
	RuleInvite3PIDSignedFields   // third-party invite: signed lacks mxid or token
	RuleInvite3PIDMXID           // third-party invite: mxid ≠ state_key
	RuleInvite3PIDNoEvent        // third-party invite: no m.room.third_party_invite for the token
	RuleInvite3PIDSender         // third-party invite: sender ≠ sender of the m.room.third_party_invite
	RuleInvite3PIDSignature      // third-party invite: no signature matches a public key
	RuleInviteSenderNotJoined    // invite: sender is not joined
	RuleInviteTargetJoinedBanned // invite: target is joined or banned
	RuleInviteLevel              // invite: sender below the invite level

	RuleLeaveSelf            // leave by the user: membership is not invite/join(/knock)
	RuleLeaveSenderNotJoined // kick/unban: sender is not joined
	RuleLeaveUnbanLevel      // unban: sender below the ban level
	RuleLeaveKick            // kick: sender below the kick level or not above the target

	RuleBanSenderNotJoined // ban: sender is not joined
	RuleBanLevel           // ban: sender below the ban level or not above the target

	RuleKnockJoinRule        // knock (v7+): join rule does not allow knocking
	RuleKnockSenderNotTarget // knock (v7+): sender ≠ state_key
	RuleKnockMembership      // knock (v7+): sender is banned, invited or joined

	RuleMemberUnknown // member: unknown membership

	RuleSenderNotJoined // sender is not joined

	RuleThirdPartyInviteLevel // m.room.third_party_invite: sender below the invite level

	RuleEventLevel // sender below the event type's required level

	RuleStateKeyUser // state_key starts with @ and is not the sender

	RulePowerTopNotInteger  // power levels (v10+): a top-level level is not an integer
	RulePowerMapNotInteger  // power levels (v10+): events/notifications not an object of integers
	RulePowerUsers          // power levels: users is not an object of user ID → integer
	RulePowerFloatRange     // power levels (v1–5): a float outside binary64 range
	RulePowerCreatorInUsers // power levels (v12): users names a room creator
	RulePowerTopCurrent     // power levels: changed top-level value, current value above sender
	RulePowerTopNew         // power levels: changed top-level value, new value above sender
	RulePowerEventsCurrent  // power levels: changed events/notifications entry, current value above sender
	RulePowerEventsNew      // power levels: changed events/notifications entry, new value above sender
	RulePowerUsersCurrent   // power levels: changed users entry, current value ≥ sender
	RulePowerUsersNew       // power levels: changed users entry, new value above sender
	RuleRedaction           // m.room.redaction (v1–2): below redact level and from another server
	ruleCount
)

var ruleNames = [...]string{
	RuleCreatePrevEvents:          "m.room.create has prev_events",
	RuleCreateRoomIDDomain:        "m.room.create room_id domain does not match sender",
	RuleCreateHasRoomID:           "m.room.create has a room_id",
	RuleCreateRoomVersion:         "m.room.create content.room_version is not recognised",
	RuleCreateNoCreator:           "m.room.create content has no creator",
	RuleCreateAdditionalCreators:  "m.room.create content.additional_creators is invalid",
	RuleRoomIDNotCreateEvent:      "room_id is not the ID of an accepted m.room.create",
	RuleAuthEventsDuplicate:       "auth_events has duplicate type and state_key",
	RuleAuthEventsUnexpected:      "auth_events has an entry the auth events selection does not choose",
	RuleAuthEventsRejected:        "auth_events has a rejected entry",
	RuleAuthEventsNoCreate:        "auth_events has no m.room.create",
	RuleAuthEventsRoomID:          "auth_events has an entry from another room",
	RuleFederate:                  "room does not federate",
	RuleAliasesNoStateKey:         "m.room.aliases has no state_key",
	RuleAliasesDomain:             "m.room.aliases state_key is not the sender's domain",
	RuleMemberFields:              "m.room.member has no state_key or membership",
	RuleMemberAuthoriserSignature: "m.room.member is not signed by the join_authorised_via_users_server server",
	RuleJoinSenderNotTarget:       "join: sender does not match state_key",
	RuleJoinBanned:                "join: sender is banned",
	RuleJoinRestrictedVia:         "join: join_authorised_via_users_server cannot invite or is not joined",
	RuleJoinOtherwise:             "join: not allowed by the join rule",
	RuleInvite3PIDBanned:          "third-party invite: target user is banned",
	RuleInvite3PIDNoSigned:        "third-party invite: no signed property",
	RuleInvite3PIDSignedFields:    "third-party invite: signed has no mxid or token",
	RuleInvite3PIDMXID:            "third-party invite: mxid does not match state_key",
	RuleInvite3PIDNoEvent:         "third-party invite: no m.room.third_party_invite for token",
	RuleInvite3PIDSender:          "third-party invite: sender does not match the m.room.third_party_invite sender",
	RuleInvite3PIDSignature:       "third-party invite: no signature matches a public key",
	RuleInviteSenderNotJoined:     "invite: sender is not joined",
	RuleInviteTargetJoinedBanned:  "invite: target user is joined or banned",
	RuleInviteLevel:               "invite: sender's power level is below the invite level",
	RuleLeaveSelf:                 "leave: user is not invited, joined or knocking",
	RuleLeaveSenderNotJoined:      "leave: sender is not joined",
	RuleLeaveUnbanLevel:           "leave: target is banned and sender is below the ban level",
	RuleLeaveKick:                 "leave: sender cannot kick the target user",
	RuleBanSenderNotJoined:        "ban: sender is not joined",
	RuleBanLevel:                  "ban: sender cannot ban the target user",
	RuleKnockJoinRule:             "knock: join rule does not allow knocking",
	RuleKnockSenderNotTarget:      "knock: sender does not match state_key",
	RuleKnockMembership:           "knock: sender is banned, invited or joined",
	RuleMemberUnknown:             "m.room.member has an unknown membership",
	RuleSenderNotJoined:           "sender is not joined",
	RuleThirdPartyInviteLevel:     "m.room.third_party_invite: sender's power level is below the invite level",
	RuleEventLevel:                "sender's power level is below the event's required power level",
	RuleStateKeyUser:              "state_key starts with @ and does not match sender",
	RulePowerTopNotInteger:        "m.room.power_levels: a level property is not an integer",
	RulePowerMapNotInteger:        "m.room.power_levels: events or notifications is not an object of integers",
	RulePowerUsers:                "m.room.power_levels: users is not an object of user IDs to integers",
	RulePowerFloatRange:           "m.room.power_levels: a float level is out of range",
	RulePowerCreatorInUsers:       "m.room.power_levels: users contains a room creator",
	RulePowerTopCurrent:           "m.room.power_levels: current value of a changed level is above the sender's",
	RulePowerTopNew:               "m.room.power_levels: new value of a changed level is above the sender's",
	RulePowerEventsCurrent:        "m.room.power_levels: current value of a changed events/notifications entry is above the sender's",
	RulePowerEventsNew:            "m.room.power_levels: new value of a changed events/notifications entry is above the sender's",
	RulePowerUsersCurrent:         "m.room.power_levels: current level of a changed user is not below the sender's",
	RulePowerUsersNew:             "m.room.power_levels: new level of a changed user is above the sender's",
	RuleRedaction:                 "m.room.redaction: sender is below the redact level and on another server",
}

// String is a short description of the rule.
func (r Rule) String() string {
	if r == 0 || r >= ruleCount {
		return "rule(" + strconv.Itoa(int(r)) + ")"
	}
	return ruleNames[r]
}

// Number is the rule's number in the list of room version v ("4.3.2"), or ""
// when the rule does not exist in that version or v is unknown.
func (r Rule) Number(v id.RoomVersion) string {
	n := versionNumber(v)
	if n == 0 {
		return ""
	}
	return ruleNumber(n, r)
}

// ruleNumber numbers r in the list of room version n. The lists are those of
// rooms/v1.md (v1–2, fragment v1-auth-rules), v3-auth-rules (v3–5), v6.md,
// v7.md, v8-auth-rules (v8–9), v10.md, v11.md and v12.md.
func ruleNumber(n int, r Rule) string {
	// Top-level numbers: v1–5 have the m.room.aliases rule 4; v6 removed it
	// and v12 added rule 2 (room_id is the create event).
	var member, joined, tpi, level, stateKey, power, authEvents, federate string
	switch {
	case n <= 5:
		authEvents, federate, member, joined, tpi, level, stateKey, power = "2", "3", "5", "6", "7", "8", "9", "10"
	case n <= 11:
		authEvents, federate, member, joined, tpi, level, stateKey, power = "2", "3", "4", "5", "6", "7", "8", "9"
	default:
		authEvents, federate, member, joined, tpi, level, stateKey, power = "3", "4", "5", "6", "7", "8", "9", "10"
	}
	// Member sub-rules: v8 inserted 2 (join_authorised_via_users_server
	// signature), shifting join/invite/leave/ban/knock by one.
	shift := 0
	if n >= 8 {
		shift = 1
	}
	join := member + "." + strconv.Itoa(2+shift)
	invite := member + "." + strconv.Itoa(3+shift)
	leave := member + "." + strconv.Itoa(4+shift)
	ban := member + "." + strconv.Itoa(5+shift)
	knock := member + "." + strconv.Itoa(6+shift)
	// Power level sub-rules: v10 added 1 and 2 (integers), v12 added 4
	// (creators).
	pl := func(v1to9, v10to11, v12 string) string {
		switch {
		case n <= 9:
			return power + "." + v1to9
		case n <= 11:
			return power + "." + v10to11
		default:
			return power + "." + v12
		}
	}
	switch r {
	case RuleCreatePrevEvents:
		return "1.1"
	case RuleCreateRoomIDDomain, RuleCreateHasRoomID:
		return "1.2"
	case RuleCreateRoomVersion:
		return "1.3"
	case RuleCreateNoCreator, RuleCreateAdditionalCreators:
		return "1.4"
	case RuleRoomIDNotCreateEvent:
		return "2"
	case RuleAuthEventsDuplicate:
		return authEvents + ".1"
	case RuleAuthEventsUnexpected:
		return authEvents + ".2"
	case RuleAuthEventsRejected:
		return authEvents + ".3"
	case RuleAuthEventsNoCreate:
		return authEvents + ".4"
	case RuleAuthEventsRoomID:
		return authEvents + ".5" // v12 skips 3.4 but keeps 3.5.
	case RuleFederate:
		return federate
	case RuleAliasesNoStateKey:
		return "4.1"
	case RuleAliasesDomain:
		return "4.2"
	case RuleMemberFields:
		return member + ".1"
	case RuleMemberAuthoriserSignature:
		return member + ".2.1"
	case RuleJoinSenderNotTarget:
		return join + ".2"
	case RuleJoinBanned:
		return join + ".3"
	case RuleJoinRestrictedVia:
		return join + ".5.2"
	case RuleJoinOtherwise:
		if n >= 8 {
			return join + ".7"
		}
		return join + ".6"
	case RuleInvite3PIDBanned:
		return invite + ".1.1"
	case RuleInvite3PIDNoSigned:
		return invite + ".1.2"
	case RuleInvite3PIDSignedFields:
		return invite + ".1.3"
	case RuleInvite3PIDMXID:
		return invite + ".1.4"
	case RuleInvite3PIDNoEvent:
		return invite + ".1.5"
	case RuleInvite3PIDSender:
		return invite + ".1.6"
	case RuleInvite3PIDSignature:
		return invite + ".1.8"
	case RuleInviteSenderNotJoined:
		return invite + ".2"
	case RuleInviteTargetJoinedBanned:
		return invite + ".3"
	case RuleInviteLevel:
		return invite + ".5"
	case RuleLeaveSelf:
		return leave + ".1"
	case RuleLeaveSenderNotJoined:
		return leave + ".2"
	case RuleLeaveUnbanLevel:
		return leave + ".3"
	case RuleLeaveKick:
		return leave + ".5"
	case RuleBanSenderNotJoined:
		return ban + ".1"
	case RuleBanLevel:
		return ban + ".3"
	case RuleKnockJoinRule:
		return knock + ".1"
	case RuleKnockSenderNotTarget:
		return knock + ".2"
	case RuleKnockMembership:
		return knock + ".4"
	case RuleMemberUnknown:
		switch {
		case n <= 6:
			return member + ".6"
		case n == 7:
			return member + ".7"
		default:
			return member + ".8"
		}
	case RuleSenderNotJoined:
		return joined
	case RuleThirdPartyInviteLevel:
		return tpi + ".1"
	case RuleEventLevel:
		return level
	case RuleStateKeyUser:
		return stateKey
	case RulePowerTopNotInteger:
		return power + ".1"
	case RulePowerMapNotInteger:
		return power + ".2"
	case RulePowerUsers:
		return pl("1", "3", "3")
	case RulePowerFloatRange:
		// Not a numbered rule: the "accept values as floats" section of
		// v1–5 says such a power levels event is rejected.
		return power + " (floats)"
	case RulePowerCreatorInUsers:
		return power + ".4"
	case RulePowerTopCurrent:
		return pl("3.1", "5.1", "6.1")
	case RulePowerTopNew:
		return pl("3.2", "5.2", "6.2")
	case RulePowerEventsCurrent:
		return pl("4", "6", "7")
	case RulePowerEventsNew:
		return pl("5", "7", "8")
	case RulePowerUsersCurrent:
		return pl("6", "8", "9")
	case RulePowerUsersNew:
		return pl("7", "9", "10")
	case RuleRedaction:
		return "11.3"
	}
	return ""
}

// Error is the error Check and CheckAuthEvents return when a rule rejects an
// event. Rule says which one; Rule.Number(Version) is its number in the
// spec's list for that room version.
type Error struct {
	Version id.RoomVersion
	Rule    Rule
	Detail  string // what was found, e.g. "sender level 0 < invite level 50"
}

func (e *Error) Error() string {
	s := fmt.Sprintf("eventauth: room v%s rule %s: %s", e.Version, e.Rule.Number(e.Version), e.Rule)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// versionNumber maps the room versions this package implements to 1–12 and
// everything else to 0.
func versionNumber(v id.RoomVersion) int {
	switch v {
	case "1":
		return 1
	case "2":
		return 2
	case "3":
		return 3
	case "4":
		return 4
	case "5":
		return 5
	case "6":
		return 6
	case "7":
		return 7
	case "8":
		return 8
	case "9":
		return 9
	case "10":
		return 10
	case "11":
		return 11
	case "12":
		return 12
	}
	return 0
}

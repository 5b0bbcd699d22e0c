package eventauth

import (
	"encoding/json/jsontext"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"
)

// Event types and memberships the rules read.
const (
	typeCreate           = "m.room.create"
	typeMember           = "m.room.member"
	typeJoinRules        = "m.room.join_rules"
	typePowerLevels      = "m.room.power_levels"
	typeThirdPartyInvite = "m.room.third_party_invite"
	typeAliases          = "m.room.aliases"
	typeRedaction        = "m.room.redaction"

	membershipJoin   = "join"
	membershipInvite = "invite"
	membershipLeave  = "leave"
	membershipBan    = "ban"
	membershipKnock  = "knock"
)

// Rejecter is implemented by events that know whether they were rejected.
// CheckAuthEvents rejects an event with a rejected auth event (rule 2.3), and
// in v12 Check rejects an event whose m.room.create was rejected (rule 2).
// Events that do not implement it count as accepted.
type Rejecter interface {
	Rejected() bool
}

// SignatureVerifier is implemented by events that know which servers'
// signatures on them have been verified.
//
// From room version 8 a member event whose content has
// join_authorised_via_users_server must be "validly signed by the homeserver
// of the user ID denoted by the key" (v8 rule 4.2.1). Verifying needs that
// server's keys, which this pure package cannot fetch, so Check asks the
// event. For an event that does not implement SignatureVerifier, Check
// trusts the signature checks done on receipt to have verified it:
// internal/event's SigningServers requires that server's signature on such
// joins (though not on other memberships, which the rule's text covers too).
// Check still rejects a key whose value is not a user ID.
type SignatureVerifier interface {
	// HasVerifiedSignature reports whether the event carries a signature
	// from server that was checked against one of server's keys.
	HasVerifiedSignature(server string) bool
}

type createContent struct {
	Creator            jsontext.Value `json:"creator"`
	RoomVersion        jsontext.Value `json:"room_version"`
	Federate           jsontext.Value `json:"m.federate"`
	AdditionalCreators jsontext.Value `json:"additional_creators"`
}

type memberContent struct {
	Membership        jsontext.Value `json:"membership"`
	ThirdPartyInvite  jsontext.Value `json:"third_party_invite"`
	JoinAuthorisedVia jsontext.Value `json:"join_authorised_via_users_server"`
}

type joinRulesContent struct {
	JoinRule jsontext.Value `json:"join_rule"`
}

// Check reports whether ev is allowed by the authorization rules of the room
// version ("Authorisation rules" in rooms/v1.md … v12.md), given the auth
// events through auth: the event's own auth events (check 4 of "Checks
// performed on receipt of a PDU"), the state before it (check 5), the
// current state (check 6) or the partial state of state resolution.
//
// Check applies every rule except those about the list of auth_events itself
// (rule 2 in v1–11, 3 in v12), which need the events behind the event's
// auth_events IDs: CheckAuthEvents applies those. When auth has no
// m.room.create, Check rejects the event (rule 2.4 in v1–11).
//
// In room version 12 the m.room.create event is never an auth event but the
// rules still read it: auth must return it for ("m.room.create", "") all the
// same, and Check rejects the event unless its room_id is that event's ID
// with "!" for "$" (v12 rule 2). For a v12 m.room.create event itself,
// RoomID() must be "" (rule 1.2: "If the event has a room_id, reject"), or
// the room ID derived from its event ID, which cannot have been part of the
// hashed event.
//
// It returns nil when the event is allowed; an *Error naming the rule when a
// rule rejects it; an error wrapping ErrUnknownVersion for a version other
// than "1" to "12".
//
// Choices where the spec is silent (each is commented where it is made):
// a room without m.room.join_rules has join rule "invite", as in Synapse; a
// power level value that is not a level in the room version is ignored (the
// default applies) except in users, where rule 10.1 (v1–9) rejects it.
func Check(version id.RoomVersion, ev Event, auth Lookup) error {
	n := versionNumber(version)
	if n == 0 {
		return fmt.Errorf("%w %q", ErrUnknownVersion, version)
	}
	c := checker{n: n, version: version, ev: ev, auth: auth, sender: ev.Sender()}
	return c.check()
}

// checker holds what one Check call has read so far.
type checker struct {
	n       int
	version id.RoomVersion
	ev      Event
	auth    Lookup
	sender  id.UserID

	create   Event
	createC  createContent
	creators []id.UserID
	pl       *PowerLevels
}

func (c *checker) reject(r Rule, format string, args ...any) error {
	return &Error{Version: c.version, Rule: r, Detail: fmt.Sprintf(format, args...)}
}

func (c *checker) check() error {
	ev := c.ev
	evType := ev.Type()
	if evType == typeCreate {
		return c.checkCreate()
	}

	create := c.auth(typeCreate, "")
	if c.n >= 12 {
		// v12 rule 2: the room ID is the create event's ID (MSC4291).
		roomID := string(ev.RoomID())
		switch {
		case create == nil:
			return c.reject(RuleRoomIDNotCreateEvent, "no m.room.create event for %s", roomID)
		case len(roomID) < 2 || roomID[0] != '!' || string(create.EventID()) != "$"+roomID[1:]:
			return c.reject(RuleRoomIDNotCreateEvent, "room %s, m.room.create %s", roomID, create.EventID())
		case isRejected(create):
			return c.reject(RuleRoomIDNotCreateEvent, "m.room.create %s was rejected", create.EventID())
		}
	} else if create == nil {
		return c.reject(RuleAuthEventsNoCreate, "no m.room.create event")
	}
	c.create = create
	c.createC = decode[createContent](create.Content())
	c.creators = creators(c.n, create, c.createC)

	// Rule 3 (v12: 4): m.federate.
	if string(c.createC.Federate) == "false" && serverOf(string(c.sender)) != serverOf(string(create.Sender())) {
		return c.reject(RuleFederate, "sender %s, creator %s", c.sender, create.Sender())
	}

	// Rule 4 of v1–5: m.room.aliases, removed in v6 (MSC2432).
	if c.n <= 5 && evType == typeAliases {
		sk := ev.StateKey()
		if sk == nil {
			return c.reject(RuleAliasesNoStateKey, "")
		}
		if serverOf(string(c.sender)) != *sk {
			return c.reject(RuleAliasesDomain, "sender %s, state_key %q", c.sender, *sk)
		}
		return nil
	}

	if evType == typeMember {
		return c.checkMember()
	}

	if m := c.membership(c.sender); m != membershipJoin {
		return c.reject(RuleSenderNotJoined, "%s is %q", c.sender, m)
	}

	pl := c.powerLevels()
	senderLevel := pl.UserLevel(c.sender)
	if evType == typeThirdPartyInvite {
		if senderLevel >= pl.Invite() {
			return nil
		}
		return c.reject(RuleThirdPartyInviteLevel, "level %d < invite %d", senderLevel, pl.Invite())
	}

	sk := ev.StateKey()
	if required := pl.EventLevel(evType, sk != nil); required > senderLevel {
		return c.reject(RuleEventLevel, "%s needs %d, sender has %d", evType, required, senderLevel)
	}

	if sk != nil && strings.HasPrefix(*sk, "@") && *sk != string(c.sender) {
		return c.reject(RuleStateKeyUser, "state_key %q, sender %s", *sk, c.sender)
	}

	if evType == typePowerLevels {
		return c.checkPowerLevels()
	}

	// Rule 11 of v1–2. From v3 redactions are checked when they are
	// applied, not here (v3 "Handling redactions").
	if c.n <= 2 && evType == typeRedaction {
		if senderLevel >= pl.Redact() {
			return nil
		}
		target := string(ev.Redacts())
		if d := serverOf(target); d != "" && d == serverOf(string(ev.EventID())) {
			return nil
		}
		return c.reject(RuleRedaction, "level %d < redact %d; redacts %s from %s", senderLevel, pl.Redact(), target, ev.EventID())
	}
	return nil
}

// checkCreate applies rule 1.
func (c *checker) checkCreate() error {
	ev := c.ev
	if prev := ev.PrevEventIDs(); len(prev) > 0 {
		return c.reject(RuleCreatePrevEvents, "%d prev_events", len(prev))
	}
	roomID := string(ev.RoomID())
	if c.n >= 12 {
		// MSC4291: the room ID is derived from the create event. An
		// implementation may report it through RoomID; it cannot have been
		// in the event, whose ID is the hash of the event.
		if roomID != "" && (len(ev.EventID()) < 1 || roomID != "!"+string(ev.EventID())[1:]) {
			return c.reject(RuleCreateHasRoomID, "room_id %s", roomID)
		}
	} else if d := serverOf(roomID); d == "" || d != serverOf(string(c.sender)) {
		return c.reject(RuleCreateRoomIDDomain, "room %s, sender %s", roomID, c.sender)
	}
	cc := decode[createContent](ev.Content())
	if present(cc.RoomVersion) {
		v, ok := str(cc.RoomVersion)
		if !ok || versionNumber(id.RoomVersion(v)) == 0 {
			return c.reject(RuleCreateRoomVersion, "room_version %s", cc.RoomVersion)
		}
	}
	if c.n <= 10 && !present(cc.Creator) {
		return c.reject(RuleCreateNoCreator, "")
	}
	if c.n >= 12 && present(cc.AdditionalCreators) {
		list, ok := array(cc.AdditionalCreators)
		if !ok {
			return c.reject(RuleCreateAdditionalCreators, "not an array")
		}
		for _, v := range list {
			if s, ok := str(v); !ok || !validUserID(s) {
				return c.reject(RuleCreateAdditionalCreators, "%s is not a user ID", v)
			}
		}
	}
	return nil
}

// membership is user's current membership: content.membership of their
// m.room.member event, or "" when they have none (or it is not a string).
func (c *checker) membership(user id.UserID) string {
	ev := c.auth(typeMember, string(user))
	if ev == nil {
		return ""
	}
	m, _ := str(decode[memberContent](ev.Content()).Membership)
	return m
}

// joinRule is content.join_rule of m.room.join_rules. The spec does not say
// what applies when the room has no such event (or it has no join_rule);
// like Synapse, the rule is then "invite". A join_rule that is not a string
// matches no rule.
func (c *checker) joinRule() string {
	ev := c.auth(typeJoinRules, "")
	if ev == nil {
		return "invite"
	}
	raw := decode[joinRulesContent](ev.Content()).JoinRule
	if !present(raw) {
		return "invite"
	}
	s, _ := str(raw)
	return s
}

func (c *checker) powerLevels() *PowerLevels {
	if c.pl == nil {
		c.pl = newPowerLevels(c.n, c.creators, c.auth(typePowerLevels, ""))
	}
	return c.pl
}

func isRejected(ev Event) bool {
	r, ok := ev.(Rejecter)
	return ok && r.Rejected()
}

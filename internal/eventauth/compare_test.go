package eventauth_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	mautrixauth "maunium.net/go/mautrix/federation/eventauth"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

// TestCompareMautrix runs Check (with CheckAuthEvents) and mautrix-go's
// federation/eventauth.Authorize (v0.31.0) on random but plausible rooms and
// events of every room version, and fails on any disagreement that
// explainDisagreement does not explain. Each explanation says who is right
// per the spec text.
func TestCompareMautrix(t *testing.T) {
	pdu.UseInternalMetaForGetEventID = true // our fakes carry their event IDs
	t.Cleanup(func() { pdu.UseInternalMetaForGetEventID = false })

	iterations := 2500
	if testing.Short() {
		iterations = 300
	}
	for n := 1; n <= 12; n++ {
		t.Run(fmt.Sprintf("v%d", n), func(t *testing.T) {
			g := newGen(n, uint64(n)+compareSeed)
			reasons := map[string]int{}
			kinds := map[string][2]int{} // kind → allowed by us, total
			unexplained, allowed := 0, 0
			for i := range iterations {
				c := g.scenario()
				ours := c.runOurs()
				theirs, panicked := c.runMautrix()
				if c.selectionDiffers() {
					t.Errorf("case %d: AuthEventSelection = %v, mautrix %v\n%s", i, c.ourSelection(), c.theirSelection(), c)
				}
				k := kinds[c.kind()]
				k[1]++
				if ours == nil {
					allowed++
					k[0]++
				}
				kinds[c.kind()] = k
				if (ours == nil) == (theirs == nil && !panicked) {
					continue
				}
				reason := explainDisagreement(c, ours, theirs, panicked)
				if reason == "" {
					unexplained++
					if unexplained <= 10 {
						t.Errorf("case %d: ours %v; mautrix %v (panicked %v)\n%s", i, ours, theirs, panicked, c)
					}
					continue
				}
				reasons[reason]++
			}
			t.Logf("%d cases, %d allowed by us; by kind (allowed/total):", iterations, allowed)
			for _, k := range slices.Sorted(maps.Keys(kinds)) {
				t.Logf("  %4d/%4d  %s", kinds[k][0], kinds[k][1], k)
			}
			t.Logf("explained disagreements:")
			for _, r := range slices.Sorted(maps.Keys(reasons)) {
				t.Logf("  %4d  %s", reasons[r], r)
			}
		})
	}
}

// explainDisagreement returns why Check and mautrix disagree on c, when it is
// a known difference, and "" otherwise. Who is right is said per the text of
// the room version (rooms/vN.md).
func explainDisagreement(c *scenario, ours, theirs error, panicked bool) string {
	var ae *eventauth.Error
	ourRule := eventauth.Rule(0)
	if errors.As(ours, &ae) {
		ourRule = ae.Rule
	}
	ev := c.ev
	n := c.g.n
	switch {
	case panicked && ourRule == eventauth.RulePowerUsersCurrent:
		// Spec (v1 10.6 … v12 10.9): removing another user's entry whose
		// current value is ≥ the sender's level is rejected. mautrix
		// dereferences the missing new value (allowPowerChangeMap) and
		// panics when the current value equals the sender's level.
		return "mautrix panics removing a users entry at the sender's level (we reject, per users rule)"

	case n <= 5 && ev.typ == "m.room.aliases":
		// v1–5 rule 4: m.room.aliases is allowed iff the state_key is the
		// sender's domain, before the membership rule. mautrix applies
		// the v6 rules to every version.
		return "v1–5 rule 4 (m.room.aliases special case) missing in mautrix; we follow the text"

	case n <= 7 && ours == nil && errors.Is(theirs, mautrixauth.ErrNotSignedByAuthoriser):
		// The join_authorised_via_users_server signature rule (v8 4.2.1)
		// came with restricted rooms in v8; mautrix applies it in every
		// version.
		return "join_authorised_via_users_server signature before v8: mautrix checks it, the v1–7 text has no such rule"

	case n <= 2 && ourRule == eventauth.RuleRedaction:
		// v1–2 rule 11: a redaction needs the redact level or the
		// redacted event ID's domain. mautrix applies the v3 rules.
		return "v1–2 rule 11 (redactions) missing in mautrix; we follow the text"

	case ours == nil && c.isThirdPartyInvite() && errors.Is(theirs, mautrixauth.ErrThirdPartyInviteNotSigned):
		// Rule "If any signature in signed matches any public key in the
		// m.room.third_party_invite event, allow": mautrix reads the keys
		// from the member event's content ("public_key.token",
		// "public_keys") instead of the m.room.third_party_invite event,
		// so valid third-party invites fail.
		return "mautrix reads third-party invite public keys from the member event, not m.room.third_party_invite; we follow the text"

	case n <= 10 && c.noPowerLevels() && c.contentCreator() != c.create.sender:
		// Without m.room.power_levels "the room's creator has a power level
		// of 100" (m.room.power_levels schema); up to v10 the creator is
		// content.creator (v11 "Remove the creator property"). mautrix
		// gives 100 to the create event's sender.
		return "v1–10 without power levels: mautrix gives 100 to the create sender, not content.creator"

	case ourRule == eventauth.RulePowerUsers && c.newPLHas(`:true`, `:false`):
		// v1–9: users values must be "integers (or a string that is an
		// integer)"; v10+: integers. mautrix parses like Python's int()
		// and takes true/false as 1/0.
		return "booleans in power levels users: mautrix takes them as 1/0 (Python int()); the text wants integers"

	case n >= 6 && c.newPLHasFraction():
		// From v6 events must be canonical JSON, whose numbers are
		// integers (v6 "Canonical JSON"), so such an event is dropped
		// before the auth rules. Within them, v10 9.1–9.3 reject it; in
		// v6–9 we reject it in users (9.1) and ignore it elsewhere, as
		// any value that is not a level. mautrix truncates 50.5 to 50.
		return "non-integral number in power levels (v6+, not canonical JSON): mautrix truncates it to a level, we do not"

	case n <= 5 && ours == nil && errors.Is(theirs, mautrixauth.ErrInvalidPowerChange) && c.newPLChangesNotifications():
		// v1–5 10.4/10.5 check only events; v6 added notifications
		// ("changed-in v=6"). mautrix checks notifications in every
		// version.
		return "v1–5 notifications changes: mautrix checks them, the v1–5 text does not"

	case ourRule == eventauth.RuleCreateRoomVersion:
		// Rule 1.3 reads content.room_version of the create event; mautrix
		// checks the room version it was called with instead.
		return "create with an unrecognised content.room_version: mautrix checks the version argument instead"

	case ours == nil && c.isFirstJoinAfterCreate() && len(ev.auth) > 1:
		// Rule "If the only previous event is an m.room.create and the
		// state_key is the creator, allow" says nothing of auth_events;
		// mautrix also requires at most one auth event.
		return "creator's first join with more than one auth event: mautrix adds a condition the text lacks"

	case c.joinRuleNotString():
		// The spec has no default join rule; we take a missing rule as
		// invite (like Synapse) and a non-string one as no rule, mautrix
		// takes both as invite. Not decided by the text.
		return "non-string join_rule: unspecified; we match no rule (Synapse), mautrix takes invite"

	case ourRule == eventauth.RuleMemberAuthoriserSignature && c.viaNotUserID():
		// v8 4.2.1: with a join_authorised_via_users_server key the event
		// must be signed by the homeserver of the user ID it denotes; a
		// value that is not a user ID denotes no server. mautrix skips
		// the rule for non-strings.
		return "join_authorised_via_users_server that is not a user ID: we reject (no server can have signed), mautrix ignores it"

	case (ourRule == eventauth.RulePowerUsers || ourRule == eventauth.RuleCreateAdditionalCreators) && c.hasBadServerName():
		// "valid user IDs" (appendix: server_name grammar); mautrix only
		// checks for "@" and ":".
		return "user ID with an invalid server name: mautrix accepts it, the grammar does not"
	}
	return ""
}

// creators per the version (for generation and explanations).
func (c *scenario) creators() []id.UserID {
	cr, _ := eventauth.Creators(c.g.version, c.create)
	return cr
}

func (c *scenario) authEvents() []eventauth.Event {
	var out []eventauth.Event
	for _, eid := range c.ev.auth {
		if ev, ok := c.all[eid]; ok {
			out = append(out, ev)
		}
	}
	return out
}

func (c *scenario) runOurs() error {
	auth := c.authEvents()
	if err := eventauth.CheckAuthEvents(c.g.version, c.ev, auth); err != nil {
		return err
	}
	if c.g.n >= 12 {
		auth = append(auth, c.create)
	}
	return eventauth.Check(c.g.version, c.ev, eventauth.LookupEvents(auth...))
}

func (c *scenario) toPDU(e *fakeEvent) *pdu.PDU {
	p := &pdu.PDU{
		AuthEvents:     slices.Clone(e.auth),
		Content:        jsontext.Value(e.content),
		Depth:          e.depth,
		OriginServerTS: e.ts,
		PrevEvents:     slices.Clone(e.prev),
		RoomID:         e.room,
		Sender:         e.sender,
		StateKey:       e.sk,
		Type:           e.typ,
		InternalMeta:   pdu.InternalMeta{EventID: e.id, Rejected: e.rejected},
	}
	if p.AuthEvents == nil {
		p.AuthEvents = []id.EventID{}
	}
	if p.PrevEvents == nil {
		p.PrevEvents = []id.EventID{}
	}
	if e.redacts != "" && c.g.n <= 10 {
		p.Redacts = &e.redacts
	}
	if strings.Contains(e.content, "join_authorised_via_users_server") {
		// mautrix verifies the signature itself: sign for real with the
		// servers the fake says signed.
		for _, s := range append([]string{serverOf(e.sender)}, e.signedBy...) {
			if err := p.Sign(c.g.version, s, "ed25519:1", c.g.keys[s]); err != nil {
				panic(err)
			}
		}
	}
	return p
}

func (c *scenario) runMautrix() (err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			err, panicked = fmt.Errorf("panic: %v", r), true
		}
	}()
	pdus := map[id.EventID]*pdu.PDU{}
	for eid, ev := range c.all {
		pdus[eid] = c.toPDU(ev)
	}
	getEvents := func(ids []id.EventID) ([]*pdu.PDU, error) {
		out := make([]*pdu.PDU, len(ids))
		for i, eid := range ids {
			out[i] = pdus[eid]
		}
		return out, nil
	}
	getKey := func(server string, keyID id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
		k, ok := c.g.keys[server]
		if !ok {
			return "", time.Time{}, nil
		}
		return id.SigningKey(base64.RawStdEncoding.EncodeToString(k.Public().(ed25519.PublicKey))), time.Now().Add(24 * time.Hour), nil
	}
	return mautrixauth.Authorize(c.g.version, c.toPDU(c.ev), nil, getEvents, getKey), false
}

func (c *scenario) ourSelection() []eventauth.StateKeyTuple {
	s := eventauth.AuthEventSelection(c.g.version, c.ev)
	slices.SortFunc(s, cmpKey)
	return s
}

func (c *scenario) theirSelection() []eventauth.StateKeyTuple {
	var s []eventauth.StateKeyTuple
	for _, k := range c.toPDU(c.ev).AuthEventSelection(c.g.version) {
		s = append(s, eventauth.StateKeyTuple{Type: k.Type, StateKey: k.StateKey})
	}
	slices.SortFunc(s, cmpKey)
	return s
}

func cmpKey(a, b eventauth.StateKeyTuple) int {
	return strings.Compare(a.Type+"\x00"+a.StateKey, b.Type+"\x00"+b.StateKey)
}

func (c *scenario) selectionDiffers() bool {
	return !slices.Equal(c.ourSelection(), c.theirSelection())
}

func (c *scenario) isThirdPartyInvite() bool {
	return c.ev.typ == "m.room.member" && strings.Contains(c.ev.content, `"third_party_invite"`)
}

// authPL is the power levels event among ev's auth events, which is what
// both implementations read.
func (c *scenario) authPL() *fakeEvent {
	for _, eid := range c.ev.auth {
		if ev := c.all[eid]; ev != nil && ev.typ == "m.room.power_levels" {
			return ev
		}
	}
	return nil
}

func (c *scenario) noPowerLevels() bool { return c.authPL() == nil }

func (c *scenario) contentCreator() id.UserID {
	var cc struct {
		Creator string `json:"creator"`
	}
	_ = json.Unmarshal([]byte(c.create.content), &cc)
	return id.UserID(cc.Creator)
}

func (c *scenario) newPLHas(subs ...string) bool {
	if c.ev.typ != "m.room.power_levels" {
		return false
	}
	for _, s := range subs {
		if strings.Contains(c.ev.content, s) {
			return true
		}
	}
	return false
}

func (c *scenario) newPLHasFraction() bool {
	return c.newPLHas(".1", ".2", ".3", ".4", ".5", ".6", ".7", ".8", ".9")
}

func (c *scenario) newPLChangesNotifications() bool {
	if c.ev.typ != "m.room.power_levels" {
		return false
	}
	prev := c.authPL()
	if prev == nil {
		return false
	}
	return fmt.Sprint(parsePLDoc(prev.content).notifs) != fmt.Sprint(parsePLDoc(c.ev.content).notifs)
}

func (c *scenario) isFirstJoinAfterCreate() bool {
	return c.ev.typ == "m.room.member" && len(c.ev.prev) == 1 && c.ev.prev[0] == c.create.id
}

func (c *scenario) joinRuleNotString() bool {
	jr, ok := c.state[eventauth.StateKeyTuple{Type: "m.room.join_rules"}]
	return ok && !strings.Contains(jr.content, `"join_rule":"`)
}

func (c *scenario) viaNotUserID() bool {
	return strings.Contains(c.ev.content, `"join_authorised_via_users_server":5`)
}

func (c *scenario) hasBadServerName() bool {
	return strings.Contains(c.ev.content, "bad server") || strings.Contains(c.ev.content, "bad_server")
}

func (c *scenario) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  version %s room %s\n", c.g.version, c.roomID)
	keys := slices.SortedFunc(maps.Keys(c.state), cmpKey)
	for _, k := range keys {
		ev := c.state[k]
		fmt.Fprintf(&b, "  state %s %q by %s: %s (rejected %v) %s\n", k.Type, k.StateKey, ev.sender, ev.content, ev.rejected, ev.id)
	}
	sk := "<none>"
	if c.ev.sk != nil {
		sk = strconv.Quote(*c.ev.sk)
	}
	fmt.Fprintf(&b, "  event %s %s by %s: %s\n    prev %v auth %v signedBy %v redacts %q room %s", c.ev.typ, sk, c.ev.sender, c.ev.content, c.ev.prev, c.ev.auth, c.ev.signedBy, c.ev.redacts, c.ev.room)
	return b.String()
}

// compareSeed shifts the generator's seeds; change it locally to explore.
var compareSeed uint64 = 0

// kind names the event for the summary: its type, and its membership and
// what it carries for member events.
func (c *scenario) kind() string {
	if c.ev.typ != "m.room.member" {
		return c.ev.typ
	}
	var mc struct {
		Membership any `json:"membership"`
	}
	_ = json.Unmarshal([]byte(c.ev.content), &mc)
	k := fmt.Sprintf("m.room.member %v", mc.Membership)
	switch {
	case strings.Contains(c.ev.content, "join_authorised_via_users_server"):
		k += " (restricted)"
	case c.isThirdPartyInvite():
		k += " (third-party)"
	}
	return k
}

func (c *scenario) joined() []id.UserID {
	var out []id.UserID
	for _, k := range slices.SortedFunc(maps.Keys(c.state), cmpKey) {
		if ev := c.state[k]; k.Type == "m.room.member" && ev.content == `{"membership":"join"}` {
			out = append(out, id.UserID(k.StateKey))
		}
	}
	return out
}

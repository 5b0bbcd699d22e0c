package eventauth_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
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

// gen generates rooms of one version.
type gen struct {
	n       int
	version id.RoomVersion
	rng     *rand.Rand
	users   []id.UserID
	seq     int
	keys    map[string]ed25519.PrivateKey // server signing keys (join_authorised_via_users_server)
	tpiKey  ed25519.PrivateKey
	badKey  ed25519.PrivateKey
}

const outsider id.UserID = "@out:o.example"

func newGen(n int, seed uint64) *gen {
	g := &gen{
		n: n, version: id.RoomVersion(strconv.Itoa(n)),
		rng:   rand.New(rand.NewPCG(seed, 0x5eed)),
		users: []id.UserID{"@u0:a.example", "@u1:a.example", "@u2:b.example", "@u3:b.example", "@u4:c.example", "@u5:c.example"},
		keys:  map[string]ed25519.PrivateKey{},
	}
	for i, s := range []string{"a.example", "b.example", "c.example", "o.example"} {
		g.keys[s] = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(10 + i)}, 32))
	}
	g.tpiKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	g.badKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, 32))
	return g
}

func (g *gen) chance(p float64) bool { return g.rng.Float64() < p }

func pick[T any](g *gen, xs ...T) T { return xs[g.rng.IntN(len(xs))] }

func (g *gen) anyUser() id.UserID {
	if g.chance(0.1) {
		return outsider
	}
	return pick(g, g.users...)
}

// eventID makes an event ID in the version's format: v1–2 "$x:server",
// later a 43-character hash-like string (v12 room IDs must be 44 long).
func (g *gen) eventID(sender id.UserID) id.EventID {
	g.seq++
	if g.n <= 2 {
		return id.EventID(fmt.Sprintf("$g%d:%s", g.seq, serverOf(sender)))
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("%d/%d", g.n, g.seq)))
	return id.EventID("$" + base64.RawURLEncoding.EncodeToString(h[:]))
}

type scenario struct {
	g      *gen
	roomID id.RoomID
	create *fakeEvent
	state  map[eventauth.StateKeyTuple]*fakeEvent
	all    map[id.EventID]*fakeEvent
	ev     *fakeEvent
	newPL  string // content of ev when it is a power levels event
}

func (c *scenario) add(ev *fakeEvent) {
	c.all[ev.id] = ev
	if ev.sk != nil {
		c.state[eventauth.StateKeyTuple{Type: ev.typ, StateKey: *ev.sk}] = ev
	}
}

func (c *scenario) event(typ string, sender id.UserID, sk *string, content string) *fakeEvent {
	return &fakeEvent{
		id: c.g.eventID(sender), room: c.roomID, typ: typ, sk: sk, sender: sender, content: content,
		depth: int64(c.g.seq), ts: int64(1000 + c.g.seq),
	}
}

func (g *gen) scenario() *scenario {
	c := &scenario{g: g, state: map[eventauth.StateKeyTuple]*fakeEvent{}, all: map[id.EventID]*fakeEvent{}}
	creator := g.users[0]
	if g.chance(0.2) {
		creator = pick(g, g.users...)
	}
	cc := map[string]any{"room_version": string(g.version)}
	if g.n <= 10 {
		cc["creator"] = string(creator)
		if g.chance(0.1) {
			cc["creator"] = string(pick(g, g.users...))
		}
	}
	if g.chance(0.1) {
		cc["m.federate"] = false
	}
	if g.n >= 12 && g.chance(0.3) {
		var extra []string
		for _, u := range g.users {
			if g.chance(0.25) {
				extra = append(extra, string(u))
			}
		}
		cc["additional_creators"] = extra
	}
	create := &fakeEvent{id: g.eventID(creator), typ: "m.room.create", sk: ptr(""), sender: creator, content: mustJSON(cc)}
	if g.n >= 12 {
		c.roomID = id.RoomID("!" + string(create.id)[1:])
	} else {
		c.roomID = id.RoomID("!r:" + serverOf(creator))
		create.room = c.roomID
	}
	c.create = create
	c.add(create)

	// Memberships.
	for _, u := range append(slices.Clone(g.users), outsider) {
		m := pick(g, "join", "join", "join", "join", "invite", "leave", "ban", "knock", "")
		if u == creator && g.chance(0.9) {
			m = "join"
		}
		if m == "" {
			continue
		}
		c.add(c.event("m.room.member", u, ptr(string(u)), fmt.Sprintf(`{"membership":%q}`, m)))
	}
	// Join rules.
	switch jr := pick(g, "public", "invite", "invite", "knock", "restricted", "knock_restricted", "private", "number", "none"); jr {
	case "none":
	case "number":
		if g.chance(0.3) {
			c.add(c.event("m.room.join_rules", creator, ptr(""), `{"join_rule":5}`))
		}
	default:
		c.add(c.event("m.room.join_rules", creator, ptr(""), fmt.Sprintf(`{"join_rule":%q}`, jr)))
	}
	// Power levels.
	if g.chance(0.85) {
		c.add(c.event("m.room.power_levels", creator, ptr(""), g.plDoc(c).String()))
	}
	// Third-party invites.
	for _, tok := range []string{"tok1", "tok2"} {
		if g.chance(0.4) {
			key := g.tpiKey
			if g.chance(0.2) {
				key = g.badKey
			}
			pub := base64.RawStdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
			content := fmt.Sprintf(`{"display_name":"x","key_validity_url":"https://i.example","public_key":%q}`, pub)
			if g.chance(0.3) {
				content = fmt.Sprintf(`{"display_name":"x","public_key":"AAAA","public_keys":[{"public_key":%q}]}`, pub)
			}
			c.add(c.event("m.room.third_party_invite", pick(g, g.users...), ptr(tok), content))
		}
	}
	// Rejected state, sometimes.
	if g.chance(0.03) {
		for _, ev := range c.state {
			if ev.typ != "m.room.create" && g.chance(0.3) {
				ev.rejected = true
			}
		}
	}

	c.ev = g.event(c)
	return c
}

var levelChoices = []int64{-10, 0, 10, 49, 50, 51, 75, 100}

// level writes a level value valid in the version: integers, and sometimes
// strings up to v9 and floats up to v5.
func (g *gen) level(v int64) string {
	switch {
	case g.n <= 9 && g.chance(0.15):
		sign, abs := "+", v
		if v < 0 {
			sign, abs = "-", -v
		}
		return pick(g, fmt.Sprintf(`"%d"`, v), fmt.Sprintf(`" %d "`, v), fmt.Sprintf(`"%s%d"`, sign, abs), fmt.Sprintf(`"%s00%d"`, sign, abs))
	case g.n <= 5 && g.chance(0.1):
		return fmt.Sprintf(`%d.%d`, v, g.rng.IntN(10))
	}
	return strconv.FormatInt(v, 10)
}

var topKeys = []string{"users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"}
var eventTypes = []string{"m.room.message", "m.room.topic", "m.room.name", "m.room.power_levels", "m.room.join_rules", "m.room.redaction", "m.room.third_party_invite", "m.room.aliases", "m.custom"}

// plDoc is a power levels content as raw JSON values.
type plDoc struct {
	top                   map[string]string
	users, events, notifs map[string]string
}

func (d plDoc) String() string {
	obj := func(m map[string]string) string {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			parts = append(parts, strconv.Quote(k)+":"+m[k])
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(d.top)) {
		parts = append(parts, strconv.Quote(k)+":"+d.top[k])
	}
	if d.users != nil {
		parts = append(parts, `"users":`+obj(d.users))
	}
	if d.events != nil {
		parts = append(parts, `"events":`+obj(d.events))
	}
	if d.notifs != nil {
		parts = append(parts, `"notifications":`+obj(d.notifs))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func (g *gen) plDoc(c *scenario) plDoc {
	d := plDoc{top: map[string]string{}, users: map[string]string{}}
	creators := c.creators()
	for _, u := range append(slices.Clone(g.users), outsider) {
		if g.n >= 12 && slices.Contains(creators, u) {
			continue
		}
		if g.chance(0.5) || (u == c.create.sender && g.n <= 11) {
			d.users[string(u)] = g.level(pick(g, levelChoices...))
		}
	}
	for _, k := range topKeys {
		if g.chance(0.4) {
			d.top[k] = g.level(pick(g, levelChoices...))
		}
	}
	if g.chance(0.6) {
		d.events = map[string]string{}
		for _, t := range eventTypes {
			if g.chance(0.3) {
				d.events[t] = g.level(pick(g, levelChoices...))
			}
		}
	}
	if g.chance(0.3) {
		d.notifs = map[string]string{"room": g.level(pick(g, levelChoices...))}
	}
	return d
}

// event makes the event to check, of a random kind, with auth events chosen
// from the state (and sometimes spoilt).
func (g *gen) event(c *scenario) *fakeEvent {
	sender := g.anyUser()
	var ev *fakeEvent
	switch pick(g, "message", "state", "state", "pl", "pl", "pl", "member", "member", "member", "member", "member", "jr", "tpi", "aliases", "redaction", "create") {
	case "message":
		ev = c.event("m.room.message", sender, nil, `{"body":"hi"}`)
	case "state":
		sk := pick(g, "", "", string(sender), string(g.anyUser()), "x@y")
		ev = c.event(pick(g, "m.room.topic", "m.room.name", "m.custom"), sender, ptr(sk), `{}`)
	case "pl":
		ev = c.event("m.room.power_levels", sender, ptr(""), "")
		if g.chance(0.7) {
			sender = pick(g, g.users[:3]...) // likelier to have power
			ev.sender = sender
		}
		c.newPL = g.mutatePL(c, sender)
		ev.content = c.newPL
	case "member":
		ev = g.memberEvent(c, sender)
	case "jr":
		ev = c.event("m.room.join_rules", sender, ptr(""), fmt.Sprintf(`{"join_rule":%q}`, pick(g, "public", "invite", "knock")))
	case "tpi":
		ev = c.event("m.room.third_party_invite", sender, ptr(pick(g, "tok3", string(g.anyUser()))), `{"display_name":"x"}`)
	case "aliases":
		var sk *string
		if g.chance(0.9) {
			sk = ptr(pick(g, "a.example", "b.example", "c.example", "o.example"))
		}
		ev = c.event("m.room.aliases", sender, sk, `{"aliases":[]}`)
	case "redaction":
		target := id.EventID(fmt.Sprintf("$t%d:%s", g.seq, pick(g, "a.example", "b.example", "c.example", "o.example")))
		ev = c.event("m.room.redaction", sender, nil, fmt.Sprintf(`{"redacts":%q}`, target))
		ev.redacts = target
	case "create":
		cc := map[string]any{"room_version": pick(g, string(g.version), string(g.version), "1", "foo")}
		if g.n <= 10 && g.chance(0.9) {
			cc["creator"] = string(sender)
		}
		if g.n >= 12 && g.chance(0.3) {
			cc["additional_creators"] = []any{string(g.anyUser()), pick[any](g, "@x:bad_server", "notauser", 5, "@y:b.example")}
		}
		ev = &fakeEvent{id: g.eventID(sender), typ: "m.room.create", sk: ptr(""), sender: sender, content: mustJSON(cc)}
		if g.n <= 11 {
			ev.room = pick(g, id.RoomID("!r:"+serverOf(sender)), c.roomID)
		}
		if g.chance(0.3) {
			ev.prev = []id.EventID{c.create.id}
		}
		return ev
	}
	// prev_events: the create event sometimes (first-join rule), else a
	// state event.
	if g.chance(0.1) {
		ev.prev = []id.EventID{c.create.id}
	} else {
		ids := slices.Sorted(maps.Keys(c.all))
		ev.prev = []id.EventID{pick(g, ids...)}
	}
	for _, k := range eventauth.AuthEventSelection(g.version, ev) {
		if ae, ok := c.state[k]; ok {
			ev.auth = append(ev.auth, ae.id)
		}
	}
	if g.chance(0.08) {
		g.spoilAuthEvents(c, ev)
	}
	return ev
}

func (g *gen) spoilAuthEvents(c *scenario, ev *fakeEvent) {
	switch pick(g, "extra", "dup", "drop") {
	case "extra":
		ids := slices.Sorted(maps.Keys(c.all))
		ev.auth = append(ev.auth, pick(g, ids...))
	case "dup":
		if len(ev.auth) > 0 {
			ev.auth = append(ev.auth, ev.auth[g.rng.IntN(len(ev.auth))])
		}
	case "drop":
		if len(ev.auth) > 0 {
			i := g.rng.IntN(len(ev.auth))
			ev.auth = slices.Delete(slices.Clone(ev.auth), i, i+1)
		}
	}
}

func (g *gen) memberEvent(c *scenario, sender id.UserID) *fakeEvent {
	target := sender
	if g.chance(0.5) {
		target = g.anyUser()
	}
	m := pick(g, "join", "join", "join", "invite", "invite", "leave", "leave", "ban", "knock", "knock", "foo")
	// Bias towards events that can pass, so that both outcomes are
	// compared often: invites and bans from joined users, knocks on
	// knockable rooms.
	if (m == "invite" || m == "ban") && g.chance(0.7) {
		if joined := c.joined(); len(joined) > 0 {
			sender = pick(g, joined...)
		}
	}
	if m == "knock" && g.chance(0.5) {
		sender, target = "@k:k.example", "@k:k.example" // no membership yet
	}
	if m == "knock" && g.chance(0.5) {
		c.add(c.event("m.room.join_rules", c.create.sender, ptr(""), fmt.Sprintf(`{"join_rule":%q}`, pick(g, "knock", "knock_restricted"))))
	}
	content := map[string]any{"membership": m}
	if g.chance(0.02) {
		delete(content, "membership")
	}
	var signedBy []string
	if m == "join" && g.chance(0.4) {
		via := g.anyUser()
		content["join_authorised_via_users_server"] = string(via)
		if g.chance(0.05) {
			content["join_authorised_via_users_server"] = 5
		}
		if g.chance(0.8) {
			signedBy = append(signedBy, serverOf(via))
		}
	}
	if m == "invite" && g.chance(0.4) {
		mxid := target
		if g.chance(0.1) {
			mxid = g.anyUser()
		}
		token := pick(g, "tok1", "tok1", "tok2", "tok3")
		if tpi, ok := c.state[eventauth.StateKeyTuple{Type: "m.room.third_party_invite", StateKey: token}]; ok && g.chance(0.8) {
			sender = tpi.sender
		}
		signed := map[string]any{"mxid": string(mxid), "token": token}
		key := g.tpiKey
		if g.chance(0.15) {
			key = g.badKey
		}
		msg, _ := json.Marshal(signed)
		signed["signatures"] = map[string]any{"i.example": map[string]any{"ed25519:0": base64.RawStdEncoding.EncodeToString(ed25519.Sign(key, msg))}}
		if g.chance(0.05) {
			delete(signed, "token")
		}
		tpi := map[string]any{"display_name": "x", "signed": signed}
		if g.chance(0.03) {
			delete(tpi, "signed")
		}
		content["third_party_invite"] = tpi
	}
	ev := c.event("m.room.member", sender, ptr(string(target)), mustJSON(content))
	ev.signedBy = signedBy
	return ev
}

// mutatePL derives a new power levels content from the current one (or a
// fresh one), with one to three changes and sometimes an invalid value.
func (g *gen) mutatePL(c *scenario, sender id.UserID) string {
	var d plDoc
	if prev, ok := c.state[eventauth.StateKeyTuple{Type: "m.room.power_levels"}]; ok && g.chance(0.8) {
		d = parsePLDoc(prev.content)
	} else {
		d = g.plDoc(c)
	}
	for range 1 + g.rng.IntN(3) {
		switch pick(g, "top", "top", "users", "users", "users", "events", "notifs", "remove") {
		case "top":
			d.top[pick(g, topKeys...)] = g.level(pick(g, levelChoices...))
		case "users":
			if d.users == nil {
				d.users = map[string]string{}
			}
			u := g.anyUser()
			if g.chance(0.3) {
				u = sender
			}
			d.users[string(u)] = g.level(pick(g, levelChoices...))
		case "events":
			if d.events == nil {
				d.events = map[string]string{}
			}
			d.events[pick(g, eventTypes...)] = g.level(pick(g, levelChoices...))
		case "notifs":
			d.notifs = map[string]string{"room": g.level(pick(g, levelChoices...))}
		case "remove":
			if len(d.users) > 0 {
				delete(d.users, pick(g, slices.Sorted(maps.Keys(d.users))...))
			} else if len(d.top) > 0 {
				delete(d.top, pick(g, slices.Sorted(maps.Keys(d.top))...))
			}
		}
	}
	if g.chance(0.15) {
		switch pick(g, "bool", "string", "fraction", "badkey", "badserver", "creator", "null") {
		case "bool":
			d.users[string(pick(g, g.users...))] = "true"
		case "string":
			d.top[pick(g, topKeys...)] = `"50"`
		case "fraction":
			if d.events == nil {
				d.events = map[string]string{}
			}
			d.events["m.room.topic"] = "50.5"
		case "badkey":
			d.users["notauser"] = "10"
		case "badserver":
			d.users["@x:bad server"] = "10"
		case "creator":
			d.users[string(c.create.sender)] = "100"
		case "null":
			d.top["kick"] = "null"
		}
	}
	return d.String()
}

func parsePLDoc(content string) plDoc {
	var m map[string]jsontext.Value
	_ = json.Unmarshal([]byte(content), &m)
	d := plDoc{top: map[string]string{}}
	sub := func(raw jsontext.Value) map[string]string {
		var mm map[string]jsontext.Value
		if json.Unmarshal(raw, &mm) != nil {
			return nil
		}
		out := map[string]string{}
		for k, v := range mm {
			out[k] = string(v)
		}
		return out
	}
	for k, v := range m {
		switch k {
		case "users":
			d.users = sub(v)
		case "events":
			d.events = sub(v)
		case "notifications":
			d.notifs = sub(v)
		default:
			d.top[k] = string(v)
		}
	}
	return d
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
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

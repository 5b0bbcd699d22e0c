package eventauth_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/json/jsontext"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

// The generator of random rooms and events for TestCompareMautrix.

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

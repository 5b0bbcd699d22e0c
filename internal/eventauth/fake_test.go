package eventauth_test

import (
	"fmt"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

// fakeEvent is a small in-memory event. It implements eventauth.Rejecter and
// eventauth.SignatureVerifier; wrap it in plain to hide them.
type fakeEvent struct {
	id       id.EventID
	room     id.RoomID
	typ      string
	sk       *string
	sender   id.UserID
	content  string
	prev     []id.EventID
	auth     []id.EventID
	depth    int64
	ts       int64
	redacts  id.EventID
	rejected bool
	signedBy []string // servers whose signatures count as verified
}

var (
	_ eventauth.Event             = (*fakeEvent)(nil)
	_ eventauth.Rejecter          = (*fakeEvent)(nil)
	_ eventauth.SignatureVerifier = (*fakeEvent)(nil)
)

func (e *fakeEvent) EventID() id.EventID        { return e.id }
func (e *fakeEvent) RoomID() id.RoomID          { return e.room }
func (e *fakeEvent) Type() string               { return e.typ }
func (e *fakeEvent) StateKey() *string          { return e.sk }
func (e *fakeEvent) Sender() id.UserID          { return e.sender }
func (e *fakeEvent) Content() []byte            { return []byte(e.content) }
func (e *fakeEvent) PrevEventIDs() []id.EventID { return e.prev }
func (e *fakeEvent) AuthEventIDs() []id.EventID { return e.auth }
func (e *fakeEvent) Depth() int64               { return e.depth }
func (e *fakeEvent) OriginServerTS() int64      { return e.ts }
func (e *fakeEvent) Redacts() id.EventID        { return e.redacts }
func (e *fakeEvent) Rejected() bool             { return e.rejected }
func (e *fakeEvent) HasVerifiedSignature(s string) bool {
	if s == serverOf(e.sender) {
		return true // the sender's signature was checked on receipt
	}
	for _, have := range e.signedBy {
		if have == s {
			return true
		}
	}
	return false
}

// plain hides the optional interfaces of an event.
type plain struct{ eventauth.Event }

func serverOf(u id.UserID) string {
	_, s, _ := strings.Cut(string(u), ":")
	return s
}

func ptr(s string) *string { return &s }

const (
	alice   id.UserID = "@alice:a.example" // creator
	bob     id.UserID = "@bob:b.example"
	carol   id.UserID = "@carol:c.example"
	dave    id.UserID = "@dave:a.example"
	mallory id.UserID = "@mallory:m.example"
)

// room builds the state of a room of one version, one event at a time.
type room struct {
	n       int
	version id.RoomVersion
	id      id.RoomID
	create  *fakeEvent
	state   map[eventauth.StateKeyTuple]*fakeEvent
	last    id.EventID
	seq     int
}

// newRoom starts a room created by creator with the given extra create
// content (a JSON object's members without braces, "" for none), in the
// format of the version: content.creator up to v10, no room_id in v12.
func newRoom(n int, creator id.UserID, extra string) *room {
	r := &room{n: n, version: id.RoomVersion(strconv.Itoa(n)), state: map[eventauth.StateKeyTuple]*fakeEvent{}}
	var members []string
	if n <= 10 {
		members = append(members, fmt.Sprintf(`"creator":%q`, creator))
	}
	members = append(members, fmt.Sprintf(`"room_version":"%d"`, n))
	if extra != "" {
		members = append(members, extra)
	}
	create := &fakeEvent{
		typ: "m.room.create", sk: ptr(""), sender: creator,
		content: "{" + strings.Join(members, ",") + "}",
	}
	if n >= 12 {
		create.id = id.EventID("$createhash" + strconv.Itoa(n))
		r.id = id.RoomID("!" + string(create.id)[1:])
	} else {
		create.id = id.EventID("$create:" + serverOf(creator))
		r.id = id.RoomID("!room:" + serverOf(creator))
		create.room = r.id
	}
	r.create = create
	r.state[eventauth.StateKeyTuple{Type: "m.room.create"}] = create
	r.last = create.id
	return r
}

// event makes an event in the room whose prev_event is the last one made
// and whose auth_events are chosen from the current state.
func (r *room) event(typ string, sender id.UserID, sk *string, content string) *fakeEvent {
	r.seq++
	ev := &fakeEvent{
		id:      id.EventID(fmt.Sprintf("$ev%d:%s", r.seq, serverOf(sender))),
		room:    r.id,
		typ:     typ,
		sk:      sk,
		sender:  sender,
		content: content,
		prev:    []id.EventID{r.last},
		depth:   int64(r.seq + 1),
		ts:      int64(1000 + r.seq),
	}
	for _, k := range eventauth.AuthEventSelection(r.version, ev) {
		if ae, ok := r.state[k]; ok {
			ev.auth = append(ev.auth, ae.id)
		}
	}
	return ev
}

// set puts state events into the current state.
func (r *room) set(evs ...*fakeEvent) *room {
	for _, ev := range evs {
		r.state[eventauth.StateKeyTuple{Type: ev.typ, StateKey: *ev.sk}] = ev
		r.last = ev.id
	}
	return r
}

func (r *room) lookup() eventauth.Lookup {
	return func(t, sk string) eventauth.Event {
		if ev, ok := r.state[eventauth.StateKeyTuple{Type: t, StateKey: sk}]; ok {
			return ev
		}
		return nil
	}
}

func (r *room) member(sender, target id.UserID, membership string) *fakeEvent {
	return r.event("m.room.member", sender, ptr(string(target)), fmt.Sprintf(`{"membership":%q}`, membership))
}

func (r *room) memberContent(sender, target id.UserID, content string) *fakeEvent {
	return r.event("m.room.member", sender, ptr(string(target)), content)
}

// setMember sets target's membership (sent by target itself).
func (r *room) setMember(target id.UserID, membership string) *room {
	return r.set(r.member(target, target, membership))
}

func (r *room) joinRule(rule string) *room {
	return r.set(r.event("m.room.join_rules", r.create.sender, ptr(""), fmt.Sprintf(`{"join_rule":%q}`, rule)))
}

func (r *room) powerLevels(content string) *room {
	return r.set(r.event("m.room.power_levels", r.create.sender, ptr(""), content))
}

func (r *room) message(sender id.UserID) *fakeEvent {
	return r.event("m.room.message", sender, nil, `{"msgtype":"m.text","body":"hi"}`)
}

// adminPL is a power levels content where alice has 100 (in v12 she is a
// creator, who may not be listed) and the given users have the given levels
// ("@bob:b.example":50,...).
func (r *room) adminPL(users string, rest string) string {
	var u []string
	if r.n <= 11 {
		u = append(u, fmt.Sprintf(`%q:100`, alice))
	}
	if users != "" {
		u = append(u, users)
	}
	s := `{"users":{` + strings.Join(u, ",") + `}`
	if rest != "" {
		s += "," + rest
	}
	return s + "}"
}

// std is the usual room: alice created and joined it, power levels give
// bob 50 and carol 0 (explicitly), the join rule is invite, bob and carol
// are joined.
func std(n int) *room {
	r := newRoom(n, alice, "")
	r.setMember(alice, "join")
	r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50,%q:0`, bob, carol), ""))
	r.joinRule("invite")
	r.setMember(bob, "join")
	r.setMember(carol, "join")
	return r
}

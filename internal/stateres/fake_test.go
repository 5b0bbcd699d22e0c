package stateres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
	"polder.dev/polder/internal/stateres"
)

// fakeEvent is a small in-memory event.
type fakeEvent struct {
	id       id.EventID
	room     id.RoomID
	typ      string
	sk       *string
	sender   id.UserID
	content  []byte
	prev     []id.EventID
	auth     []id.EventID
	depth    int64
	ts       int64
	rejected bool
}

var (
	_ eventauth.Event    = (*fakeEvent)(nil)
	_ eventauth.Rejecter = (*fakeEvent)(nil)
)

func (e *fakeEvent) EventID() id.EventID        { return e.id }
func (e *fakeEvent) RoomID() id.RoomID          { return e.room }
func (e *fakeEvent) Type() string               { return e.typ }
func (e *fakeEvent) StateKey() *string          { return e.sk }
func (e *fakeEvent) Sender() id.UserID          { return e.sender }
func (e *fakeEvent) Content() []byte            { return e.content }
func (e *fakeEvent) PrevEventIDs() []id.EventID { return e.prev }
func (e *fakeEvent) AuthEventIDs() []id.EventID { return e.auth }
func (e *fakeEvent) Depth() int64               { return e.depth }
func (e *fakeEvent) OriginServerTS() int64      { return e.ts }
func (e *fakeEvent) Redacts() id.EventID        { return "" }
func (e *fakeEvent) Rejected() bool             { return e.rejected }

func ptr(s string) *string { return &s }

// allowAll is a fake authorizer that allows every event.
func allowAll(id.RoomVersion, eventauth.Event, eventauth.Lookup) error { return nil }

// fixture is a JSON DAG in testdata/: a room's events, the states to
// resolve and what each step of the algorithm must find. Events are named;
// a name N stands for the event ID "$N". See testdata/README.md.
type fixture struct {
	Description string   `json:"description"`
	Reasoning   []string `json:"reasoning"`
	RoomVersion string   `json:"room_version"`
	Events      []struct {
		ID       string          `json:"id"`
		Type     string          `json:"type"`
		StateKey *string         `json:"state_key"`
		Sender   string          `json:"sender"`
		Content  json.RawMessage `json:"content"`
		Prev     []string        `json:"prev"`
		Auth     []string        `json:"auth"`
		TS       *int64          `json:"ts"`
		Depth    *int64          `json:"depth"`
		Rejected bool            `json:"rejected"`
	} `json:"events"`
	States []struct {
		After string            `json:"after"`
		Set   map[string]string `json:"set"`
	} `json:"states"`

	Conflicted     []string          `json:"conflicted"`
	AuthDifference []string          `json:"auth_difference"`
	Subgraph       []string          `json:"subgraph"`
	FullConflicted []string          `json:"full_conflicted_set"`
	PowerOrder     []string          `json:"power_order"`
	Partial        map[string]string `json:"partial_state"`
	Mainline       []string          `json:"mainline"`
	MainlineOrder  []string          `json:"mainline_order"`
	Resolved       []string          `json:"resolved"`
}

// loadedFixture is a fixture with its events built.
type loadedFixture struct {
	fixture
	version id.RoomVersion
	events  stateres.EventMap
	byName  map[string]*fakeEvent
	after   map[string]stateres.StateMap
	states  []stateres.StateMap
}

func eventID(name string) id.EventID { return id.EventID("$" + name) }

func nameOf(eid id.EventID) string { return strings.TrimPrefix(string(eid), "$") }

// parseKey reads a state key written "type|state_key".
func parseKey(s string) stateres.StateKey {
	t, sk, _ := strings.Cut(s, "|")
	return stateres.StateKey{Type: t, StateKey: sk}
}

// loadFixture reads a fixture and builds its events. An event's auth events,
// unless given, are those eventauth.AuthEventSelection picks from the state
// before it: the state after its prev event, or the resolution of the states
// after its prev events. Its ts defaults to its place in the list, its depth
// to one more than its deepest prev event.
func loadFixture(tb testing.TB, path string) *loadedFixture {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	f := &loadedFixture{
		events: make(stateres.EventMap),
		byName: make(map[string]*fakeEvent),
		after:  make(map[string]stateres.StateMap),
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f.fixture); err != nil {
		tb.Fatalf("decode %s: %v", path, err)
	}
	f.version = id.RoomVersion(f.RoomVersion)
	room := id.RoomID("!room:x")
	if f.version.RoomIDIsCreateEventID() {
		for _, e := range f.Events {
			if e.Type == "m.room.create" {
				room = id.RoomID("!" + e.ID)
				break
			}
		}
	}
	ctx := context.Background()
	res := stateres.New(stateres.Config{Source: f.events})
	for i, e := range f.Events {
		if _, dup := f.byName[e.ID]; dup {
			tb.Fatalf("%s: event %s twice", path, e.ID)
		}
		ev := &fakeEvent{
			id:       eventID(e.ID),
			room:     room,
			typ:      e.Type,
			sk:       e.StateKey,
			sender:   id.UserID(e.Sender),
			content:  e.Content,
			ts:       int64(i + 1),
			rejected: e.Rejected,
		}
		if len(ev.content) == 0 {
			ev.content = []byte("{}")
		}
		if e.TS != nil {
			ev.ts = *e.TS
		}
		var prevStates []stateres.StateMap
		for _, p := range e.Prev {
			pe, ok := f.byName[p]
			if !ok {
				tb.Fatalf("%s: event %s: prev event %s not (yet) defined", path, e.ID, p)
			}
			ev.prev = append(ev.prev, pe.id)
			ev.depth = max(ev.depth, pe.depth)
			prevStates = append(prevStates, f.after[p])
		}
		ev.depth++
		if e.Depth != nil {
			ev.depth = *e.Depth
		}
		before, err := res.StateBefore(ctx, f.version, prevStates)
		if err != nil {
			tb.Fatalf("%s: state before %s: %v", path, e.ID, err)
		}
		if e.Auth != nil {
			ev.auth = []id.EventID{}
			for _, a := range e.Auth {
				if _, ok := f.byName[a]; !ok {
					tb.Fatalf("%s: event %s: auth event %s not (yet) defined", path, e.ID, a)
				}
				ev.auth = append(ev.auth, eventID(a))
			}
		} else {
			for _, k := range eventauth.AuthEventSelection(f.version, ev) {
				if a, ok := before[stateres.StateKey{Type: k.Type, StateKey: k.StateKey}]; ok {
					ev.auth = append(ev.auth, a)
				}
			}
		}
		f.byName[e.ID] = ev
		f.events.Add(ev)
		if ev.rejected || ev.sk == nil {
			f.after[e.ID] = before
		} else {
			f.after[e.ID] = before.Apply(ev)
		}
	}
	for i, s := range f.States {
		st, ok := f.after[s.After]
		if !ok {
			tb.Fatalf("%s: state %d: no event %q", path, i, s.After)
		}
		if len(s.Set) > 0 {
			st = cloneState(st)
			for k, v := range s.Set {
				if v == "" {
					delete(st, parseKey(k))
					continue
				}
				if _, ok := f.byName[v]; !ok {
					tb.Fatalf("%s: state %d: no event %q", path, i, v)
				}
				st[parseKey(k)] = eventID(v)
			}
		}
		f.states = append(f.states, st)
	}
	return f
}

func cloneState(s stateres.StateMap) stateres.StateMap {
	out := make(stateres.StateMap, len(s))
	for k, v := range s {
		out[k] = v
	}
	return out
}

// stateOf builds the state map made of the named events.
func (f *loadedFixture) stateOf(tb testing.TB, names []string) stateres.StateMap {
	tb.Helper()
	out := make(stateres.StateMap)
	for _, n := range names {
		ev, ok := f.byName[n]
		if !ok {
			tb.Fatalf("no event %q", n)
		}
		k := stateres.StateKey{Type: ev.typ, StateKey: *ev.sk}
		if _, dup := out[k]; dup {
			tb.Fatalf("two events for %v", k)
		}
		out[k] = ev.id
	}
	return out
}

// names returns the names of event IDs, in the same order.
func names(ids []id.EventID) []string {
	out := make([]string, len(ids))
	for i, eid := range ids {
		out[i] = nameOf(eid)
	}
	return out
}

func sortedNames(ids []id.EventID) []string {
	out := names(ids)
	slices.Sort(out)
	return out
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// describe renders a state map with event names, sorted by key.
func describe(s stateres.StateMap) string {
	var lines []string
	for k, v := range s {
		lines = append(lines, fmt.Sprintf("%s=%s", k, nameOf(v)))
	}
	slices.Sort(lines)
	return strings.Join(lines, " ")
}

func fixtureFiles(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no fixtures in testdata: %v", err)
	}
	return files
}

// builder makes small hand-made auth DAGs for unit tests: each event's auth
// events are given by name, its ts is its place in the list unless set.
type builder struct {
	tb      testing.TB
	version id.RoomVersion
	room    id.RoomID
	events  stateres.EventMap
	byName  map[string]*fakeEvent
}

func newBuilder(tb testing.TB, version id.RoomVersion) *builder {
	return &builder{tb: tb, version: version, room: "!room:x", events: make(stateres.EventMap), byName: make(map[string]*fakeEvent)}
}

// add adds an event; stateKey "-" makes a message event.
func (b *builder) add(name, evType, stateKey string, sender id.UserID, content string, auth ...string) *fakeEvent {
	b.tb.Helper()
	ev := &fakeEvent{
		id:      eventID(name),
		room:    b.room,
		typ:     evType,
		sender:  sender,
		content: []byte(content),
		ts:      int64(len(b.byName) + 1),
		depth:   1,
	}
	if stateKey != "-" {
		ev.sk = ptr(stateKey)
	}
	if evType == "m.room.create" && b.version.RoomIDIsCreateEventID() {
		b.room = id.RoomID("!" + name)
		ev.room = b.room
	}
	ev.auth = []id.EventID{}
	for _, a := range auth {
		pe, ok := b.byName[a]
		if !ok {
			b.tb.Fatalf("auth event %s of %s not defined", a, name)
		}
		ev.auth = append(ev.auth, pe.id)
		ev.depth = max(ev.depth, pe.depth+1)
	}
	b.byName[name] = ev
	b.events.Add(ev)
	return ev
}

func (b *builder) ids(names ...string) []id.EventID {
	out := make([]id.EventID, len(names))
	for i, n := range names {
		if _, ok := b.byName[n]; !ok {
			b.tb.Fatalf("no event %s", n)
		}
		out[i] = eventID(n)
	}
	return out
}

// state builds a state map of the named events.
func (b *builder) state(names ...string) stateres.StateMap {
	out := make(stateres.StateMap)
	for _, n := range names {
		ev := b.byName[n]
		out[stateres.StateKey{Type: ev.typ, StateKey: *ev.sk}] = ev.id
	}
	return out
}

func (b *builder) resolver(auth stateres.AuthFunc) *stateres.Resolver {
	return stateres.New(stateres.Config{Source: b.events, Auth: auth})
}

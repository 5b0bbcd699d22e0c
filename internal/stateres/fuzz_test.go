package stateres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/stateres"
)

// fuzzRoom builds a small random room from seed: a create event, then
// events of the auth types and topics with random senders and contents,
// each citing a random subset of earlier events, and 2 or 3 states made of
// random events per key.
func fuzzRoom(seed uint64, version id.RoomVersion) (stateres.EventMap, []stateres.StateMap) {
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	users := []id.UserID{"@a:x", "@b:x", "@c:x"}
	events := make(stateres.EventMap)
	var all []*fakeEvent
	create := &fakeEvent{id: "$create", room: "!room:x", typ: "m.room.create", sk: ptr(""), sender: users[0],
		content: []byte(`{"creator":"@a:x","room_version":"` + string(version) + `"}`), auth: []id.EventID{}, ts: 1, depth: 1}
	if version.RoomIDIsCreateEventID() {
		create.room = "!create"
	}
	events.Add(create)
	all = append(all, create)
	contents := map[string][]string{
		"m.room.member":       {`{"membership":"join"}`, `{"membership":"leave"}`, `{"membership":"ban"}`, `{"membership":"invite"}`},
		"m.room.power_levels": {`{"users":{"@a:x":100}}`, `{"users":{"@a:x":100,"@b:x":50}}`, `{"users":{"@b:x":100},"kick":0}`},
		"m.room.join_rules":   {`{"join_rule":"public"}`, `{"join_rule":"invite"}`},
		"m.room.topic":        {`{"topic":"t"}`},
	}
	types := []string{"m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.topic"}
	n := 3 + rng.IntN(25)
	for i := range n {
		typ := types[rng.IntN(len(types))]
		sender := users[rng.IntN(len(users))]
		sk := ""
		if typ == "m.room.member" {
			sk = string(users[rng.IntN(len(users))])
		}
		ev := &fakeEvent{
			id: id.EventID(fmt.Sprintf("$e%02d", i)), room: create.room, typ: typ, sk: ptr(sk), sender: sender,
			content: []byte(contents[typ][rng.IntN(len(contents[typ]))]),
			ts:      int64(2 + rng.IntN(10)), depth: 2, rejected: rng.IntN(8) == 0,
		}
		if !version.RoomIDIsCreateEventID() {
			ev.auth = append(ev.auth, create.id)
		}
		for range rng.IntN(4) {
			a := all[rng.IntN(len(all))]
			if a != create && !slices.Contains(ev.auth, a.id) {
				ev.auth = append(ev.auth, a.id)
				ev.depth = max(ev.depth, a.depth+1)
			}
		}
		events.Add(ev)
		all = append(all, ev)
	}
	states := make([]stateres.StateMap, 2+rng.IntN(2))
	for i := range states {
		states[i] = stateres.StateMap{{Type: "m.room.create"}: create.id}
		for range 2 + rng.IntN(8) {
			ev := all[1+rng.IntN(len(all)-1)]
			states[i][stateres.StateKey{Type: ev.typ, StateKey: *ev.sk}] = ev.id
		}
	}
	return events, states
}

// FuzzResolve resolves random small rooms in every state resolution
// version and checks what must hold whatever the DAG: no error or panic,
// every resolved entry is an event of its key from the room, every key of
// the unconflicted state keeps its event, and the result does not depend on
// the order of the states.
func FuzzResolve(f *testing.F) {
	for _, seed := range []uint64{0, 1, 2, 3, 42, 1 << 20, 99999} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		for _, version := range []id.RoomVersion{"1", "10", "12"} {
			events, states := fuzzRoom(seed, version)
			r := stateres.New(stateres.Config{Source: events})
			got, err := r.Resolve(context.Background(), version, states)
			if err != nil {
				t.Fatalf("v%s: Resolve: %v", version, err)
			}
			for k, eid := range got {
				ev, ok := events[eid]
				if !ok || ev.Type() != k.Type || *ev.StateKey() != k.StateKey {
					t.Errorf("v%s: Resolve: %v = %s, not an event of that key", version, k, eid)
				}
			}
			unconflicted, _ := stateres.SplitStates(states, version != "1")
			for k, eid := range unconflicted {
				if got[k] != eid {
					t.Errorf("v%s: Resolve: unconflicted %v = %s, got %s", version, k, eid, got[k])
				}
			}
			rev := slices.Clone(states)
			slices.Reverse(rev)
			again, err := stateres.New(stateres.Config{Source: events}).Resolve(context.Background(), version, rev)
			if err != nil {
				t.Fatalf("v%s: Resolve(reversed): %v", version, err)
			}
			if describe(again) != describe(got) {
				t.Errorf("v%s: Resolve(reversed) = %s\nResolve = %s", version, describe(again), describe(got))
			}
		}
	})
}

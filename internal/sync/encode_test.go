package sync_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/sync"
)

// AppendJSON writes what json.Marshal writes.
func TestAppendJSON(t *testing.T) {
	ev := func(s string) json.RawMessage { return json.RawMessage(s) }
	full := &sync.Response{NextBatch: "s5_1"}
	full.DeviceLists.Changed = []id.UserID{"@a:hs", `@q"uote:hs`}
	full.DeviceLists.Left = []id.UserID{}
	full.OneTimeKeysCount = map[string]int{"signed_curve25519": 3, "curve25519": 1}
	full.UnusedFallback = []string{"signed_curve25519"}
	full.ToDevice.Events = []json.RawMessage{ev(`{"type":"m.x","content":{}}`)}
	full.Presence = &sync.EventList{Events: []json.RawMessage{ev(`{"type":"m.presence"}`)}}
	full.AccountData = &sync.EventList{}
	full.Rooms = &sync.Rooms{
		Join: map[id.RoomID]*sync.JoinedRoom{
			"!b:hs": {
				Summary:       &sync.Summary{Heroes: []id.UserID{"@h:hs"}, JoinedMemberCount: 2},
				State:         &sync.EventList{Events: []json.RawMessage{ev(`{"type":"m.room.create","state_key":""}`)}},
				Timeline:      sync.Timeline{Events: []json.RawMessage{ev(`{"type":"m.room.message","content":{"body":"é \u2028"}}`)}, Limited: true, PrevBatch: "t1_2"},
				Unread:        sync.Counts{Highlights: 1, Notifications: 4},
				UnreadThreads: map[id.EventID]sync.Counts{"$root": {Notifications: 2}},
			},
			"!a:hs": {StateAfter: &sync.EventList{}, Timeline: sync.Timeline{Events: []json.RawMessage{}}},
		},
		Invite: map[id.RoomID]*sync.InvitedRoom{"!i:hs": {InviteState: sync.EventList{Events: []json.RawMessage{ev(`{"type":"m.room.name"}`)}}}},
		Knock:  map[id.RoomID]*sync.KnockedRoom{"!k:hs": {}},
		Leave:  map[id.RoomID]*sync.LeftRoom{"!l:hs": {State: &sync.EventList{}, Timeline: sync.Timeline{Events: []json.RawMessage{}}}},
	}
	empty := &sync.Response{NextBatch: "s0_0", OneTimeKeysCount: map[string]int{}, UnusedFallback: []string{}}
	empty.DeviceLists.Changed, empty.DeviceLists.Left = []id.UserID{}, []id.UserID{}
	for name, r := range map[string]*sync.Response{"full": full, "empty": empty} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got := r.AppendJSON(nil)
		if r.Size() < len(got) {
			t.Errorf("%s: Size %d is below the output's %d", name, r.Size(), len(got))
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%s: AppendJSON wrote invalid JSON %s: %v", name, got, err)
		}
		json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: AppendJSON =\n%s\nwant (json.Marshal)\n%s", name, got, want)
		}
	}
}

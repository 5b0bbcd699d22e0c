package sync_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/sync"
)

// initialSyncResponse is the shape of polder-bench's initial-sync
// scenario: rooms joined rooms, each with 5 state events, a timeline of 10
// messages and a summary.
func initialSyncResponse(rooms int) *sync.Response {
	r := &sync.Response{NextBatch: "s123_456", OneTimeKeysCount: map[string]int{}, UnusedFallback: []string{}}
	r.DeviceLists.Changed, r.DeviceLists.Left = []id.UserID{}, []id.UserID{}
	r.Rooms = &sync.Rooms{Join: make(map[id.RoomID]*sync.JoinedRoom, rooms)}
	for i := range rooms {
		room := id.RoomID(fmt.Sprintf("!room%05dabcdefghijklmnopqrstuvwxyz0123456", i))
		state := make([]json.RawMessage, 5)
		for s := range state {
			state[s] = json.RawMessage(fmt.Sprintf(`{"type":"m.room.member","state_key":"@user%d:example.org","sender":"@user%d:example.org","content":{"membership":"join","displayname":"User %d"},"event_id":"$state%05d%02dabcdefghijklmnopqrstuvwxyz01234567890","origin_server_ts":1700000000000,"unsigned":{"age":1234}}`, s, s, s, i, s))
		}
		tl := make([]json.RawMessage, 10)
		for m := range tl {
			tl[m] = json.RawMessage(fmt.Sprintf(`{"type":"m.room.message","sender":"@user%d:example.org","content":{"msgtype":"m.text","body":"history %d of room %d, with some text to make it a typical chat line"},"event_id":"$ev%05d%02dabcdefghijklmnopqrstuvwxyz0123456789012","origin_server_ts":1700000000000,"unsigned":{"age":1234}}`, m%2, m, i, i, m))
		}
		r.Rooms.Join[room] = &sync.JoinedRoom{
			Summary:  &sync.Summary{Heroes: []id.UserID{"@user1:example.org"}, JoinedMemberCount: 2},
			State:    &sync.EventList{Events: state},
			Timeline: sync.Timeline{Events: tl, Limited: true, PrevBatch: "t12_345"},
		}
	}
	return r
}

// BenchmarkAppendJSON encodes an initial sync of 500 rooms (about 2.6 MB),
// the last step of sync assembly, against encoding/json as a reference.
func BenchmarkAppendJSON(b *testing.B) {
	r := initialSyncResponse(500)
	out := r.AppendJSON(nil)
	b.Run("AppendJSON", func(b *testing.B) {
		b.SetBytes(int64(len(out)))
		b.ReportAllocs()
		for b.Loop() {
			_ = r.AppendJSON(make([]byte, 0, r.Size()))
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(out)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkParseFilter parses the filter a client sends with every /sync
// (Element's lazy-loading filter).
func BenchmarkParseFilter(b *testing.B) {
	raw := []byte(`{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":20,"unread_thread_notifications":true}},"presence":{"not_types":["*"]},"event_fields":["type","content","sender","event_id","origin_server_ts","state_key","unsigned"]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sync.ParseFilter(raw); err != nil {
			b.Fatal(err)
		}
	}
}

package client_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store/storetest"
)

// BenchmarkMessages pages backwards through a room of 10,000 messages, 50
// events per page, over real HTTP, on every engine (PostgreSQL when
// POLDER_TEST_POSTGRES is set):
//
//	go test -run '^$' -bench Messages -benchtime 200x ./internal/api/client/
//
// One op is one GET /messages; the room is filled through the room service
// (not timed). Figures are in docs/benchmarks.md.
func BenchmarkMessages(b *testing.B) {
	for _, e := range storetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			hs := hstest.Start(b, e, hstest.Options{})
			alice := hs.Register(b, "alice", "pw")
			r := alice.Do(b, "POST", c3+"/createRoom", map[string]any{"preset": "private_chat"})
			roomID := hstest.Str(b, hstest.MustOK(b, r), "room_id")
			rooms := hs.Process().Rooms
			for i := range 10000 {
				content, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d", i)})
				if _, err := rooms.Send(b.Context(), id.UserID(alice.UserID), id.RoomID(roomID), room.Draft{Type: "m.room.message", Content: content}); err != nil {
					b.Fatalf("Send: %v", err)
				}
			}
			path := func(from string) string {
				p := roomPath(roomID, "/messages?dir=b&limit=50")
				if from != "" {
					p += "&from=" + url.QueryEscape(from)
				}
				return p
			}
			from := ""
			b.ResetTimer()
			for b.Loop() {
				r := alice.Do(b, "GET", path(from), nil)
				if r.Status != 200 {
					b.Fatalf("GET /messages: %d %s", r.Status, r.Body)
				}
				var p struct {
					Chunk []json.RawMessage `json:"chunk"`
					End   *string           `json:"end"`
				}
				if err := json.Unmarshal(r.Body, &p); err != nil {
					b.Fatal(err)
				}
				if p.End == nil { // the beginning: start again at the end
					from = ""
					continue
				}
				if len(p.Chunk) != 50 {
					b.Fatalf("page of %d events", len(p.Chunk))
				}
				from = *p.End
			}
		})
	}
}

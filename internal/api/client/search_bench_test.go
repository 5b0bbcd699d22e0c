package client_test

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store/storetest"
)

// benchWords is the vocabulary of the benchmark's messages: common words
// appear in many messages, the rest less often.
var benchWords = strings.Fields(`the a to and of is in it you that for on with this be are have was not at
	but we so do can what just like my if get all about up out one go your no me know will how when time
	there think now then good see more would yeah some people today really work day going back right here
	make want need also well something because thanks lol much new still only said any over into way even
	after first last long great little own other old big high different small large next early young
	important few public bad same able martian rocket planet orbit telescope nebula comet asteroid galaxy
	crater lander rover module capsule payload booster launch countdown gravity vacuum meteor eclipse
	satellite station docking thruster antenna signal beacon harbour lighthouse compass anchor voyage`)

// BenchmarkSearch runs POST /search over a room of 10,000 messages of 12
// words each, over real HTTP, on every engine (PostgreSQL when
// POLDER_TEST_POSTGRES is set):
//
//	go test -run '^$' -bench Search -benchtime 200x ./internal/api/client/
//
// One op is one search of 10 results. "rare" matches 1% of the messages
// (every hundredth mentions "kiwi"), "common" a word of the vocabulary
// ("rocket"), "prefix" the words beginning "sat" (satellite, station...);
// the matches metric says how many messages each matches. The room is
// filled through the room service (not timed). Figures are in
// docs/benchmarks.md.
func BenchmarkSearch(b *testing.B) {
	for _, e := range storetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			hs := hstest.Start(b, e, hstest.Options{})
			alice := hs.Register(b, "alice", "pw")
			r := alice.Do(b, "POST", c3+"/createRoom", map[string]any{"preset": "private_chat"})
			roomID := hstest.Str(b, hstest.MustOK(b, r), "room_id")
			rooms := hs.Process().Rooms
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range 10000 {
				ws := make([]string, 12)
				for j := range ws {
					ws[j] = benchWords[rng.IntN(len(benchWords))]
				}
				if i%100 == 0 {
					ws[rng.IntN(len(ws))] = "kiwi"
				}
				content, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": strings.Join(ws, " ")})
				if _, err := rooms.Send(b.Context(), id.UserID(alice.UserID), id.RoomID(roomID), room.Draft{Type: "m.room.message", Content: content}); err != nil {
					b.Fatalf("Send: %v", err)
				}
			}
			for _, bc := range []struct {
				name     string
				criteria map[string]any
			}{
				{"rare", map[string]any{"search_term": "kiwi"}},
				{"common", map[string]any{"search_term": "rocket"}},
				{"common-recent", map[string]any{"search_term": "rocket", "order_by": "recent"}},
				{"prefix", map[string]any{"search_term": "sat"}},
				{"two-words", map[string]any{"search_term": "rocket launch"}},
				{"context", map[string]any{"search_term": "kiwi", "event_context": map[string]any{"before_limit": 2, "after_limit": 2}}},
			} {
				b.Run(bc.name, func(b *testing.B) {
					body := roomEvents(bc.criteria)
					b.ResetTimer()
					for b.Loop() {
						r := alice.Do(b, "POST", c3+"/search", body)
						if r.Status != 200 {
							b.Fatalf("POST /search: %d %s", r.Status, r.Body)
						}
					}
					b.StopTimer()
					var a searchAnswer
					if err := json.Unmarshal(alice.Do(b, "POST", c3+"/search", body).Body, &a); err != nil {
						b.Fatal(err)
					}
					re := a.SearchCategories.RoomEvents
					if len(re.Results) != 10 {
						b.Fatalf("%d results, want 10", len(re.Results))
					}
					b.ReportMetric(float64(*re.Count), "matches")
				})
			}
		})
	}
}

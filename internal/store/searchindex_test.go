package store_test

import (
	"context"
	"fmt"
	"testing"

	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// TestSearchIndexBatches: on SQLite messages reach the search index in
// batches (migration 0022), on PostgreSQL one by one. Either way a search
// finds every message sent before it, whether its batch has run or not,
// and a message redacted before or after it was indexed is not found.
func TestSearchIndexBatches(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rs := newRooms(t, db)
		alice := mustUser(t, db, "alice")
		r := mustRoom(t, rs, alice, room.CreateRequest{Preset: room.PresetPublic})
		count := func(t *testing.T, word string) int {
			t.Helper()
			n, err := db.CountSearch(ctx, store.SearchQuery{Match: words(word), Rooms: []store.SearchRoom{{RoomID: r}}, Types: allTypes, Limit: 10})
			if err != nil {
				t.Fatalf("CountSearch(%s): %v", word, err)
			}
			return n
		}
		early := mustSend(t, rs, alice, r, "m.room.message", `{"msgtype":"m.text","body":"zebra early"}`)
		if n := count(t, "zebra"); n != 1 {
			t.Fatalf("CountSearch(zebra) right after the send = %d, want 1", n)
		}
		unindexed := mustSend(t, rs, alice, r, "m.room.message", `{"msgtype":"m.text","body":"zebra pending"}`)
		mustRedact(t, rs, alice, r, unindexed.EventID()) // before its batch: never indexed
		for i := range 600 {                             // past two batches (256 events)
			mustSend(t, rs, alice, r, "m.room.message", fmt.Sprintf(`{"msgtype":"m.text","body":"filler w%d"}`, i))
		}
		mustRedact(t, rs, alice, r, early.EventID()) // after its batch: removed from the index
		last := mustSend(t, rs, alice, r, "m.room.message", `{"msgtype":"m.text","body":"zebra late w599"}`)
		if n := count(t, "zebra"); n != 1 {
			t.Errorf("CountSearch(zebra) = %d, want 1 (%s only)", n, last.EventID())
		}
		if n := count(t, "w599"); n != 2 {
			t.Errorf("CountSearch(w599) = %d, want 2", n)
		}
		if n := count(t, "filler"); n != 600 {
			t.Errorf("CountSearch(filler) = %d, want 600", n)
		}
	})
}

package receipt_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/receipt"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// PutRemote applies a receipt of an m.receipt EDU: only for joined users
// and events of the room, never moving back.
func TestPutRemote(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newWorld(t, db)
		s := receipt.New(db, w.n)
		e1 := w.send(t, w.alice, w.room, "")
		e2 := w.send(t, w.alice, w.room, "")
		carolEv := w.send(t, w.carol, w.other, "")

		wantErr(t, "PutRemote(carol, not joined)", s.PutRemote(ctx, w.carol, w.room, e1, "", 5), "M_FORBIDDEN")
		wantErr(t, "PutRemote(event of another room)", s.PutRemote(ctx, w.bob, w.room, carolEv, "", 5), "M_NOT_FOUND")
		wantErr(t, "PutRemote(unknown event)", s.PutRemote(ctx, w.bob, w.room, "$unknown", "", 5), "M_NOT_FOUND")
		wantErr(t, "PutRemote(bad thread)", s.PutRemote(ctx, w.bob, w.room, e1, "nope", 5), "M_INVALID_PARAM")

		if !woken(t, w.n, w.alice, []id.RoomID{w.room}, func() {
			if err := s.PutRemote(ctx, w.bob, w.room, e2, "", 42); err != nil {
				t.Fatalf("PutRemote(bob, e2): %v", err)
			}
		}) {
			t.Errorf("a remote receipt did not wake the room's /sync")
		}
		if err := s.PutRemote(ctx, w.bob, w.room, e1, "", 43); err != nil { // earlier: ignored
			t.Fatalf("PutRemote(bob, e1): %v", err)
		}
		rs, err := db.UserReceipts(ctx, w.bob, w.room)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 1 || rs[0].EventID != e2 || rs[0].Type != receipt.Read || rs[0].TS != 42 {
			t.Errorf("bob's receipts = %+v, want one m.read of %s at ts 42", rs, e2)
		}
	})
}

package store_test

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// The multi-row current state and snapshot writes give what the row by
// row ones give: current state, memberships (with their event, sender and
// position) and snapshot entries.
func TestBulkState(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		k, err := keys.Generate("")
		if err != nil {
			t.Fatal(err)
		}
		const roomID = id.RoomID("!bulk:hs.test")
		const version = id.RoomVersion("10")
		if err := db.WithTx(ctx, "test", func(tx *store.Tx) error {
			return tx.CreateRoom(ctx, store.Room{RoomID: roomID, Version: version})
		}); err != nil {
			t.Fatal(err)
		}
		var outliers []store.NewEvent
		build := func(typ, sk string, sender id.UserID, content string) id.EventID {
			p, err := event.New(version, event.Proto{Type: typ, StateKey: &sk, Sender: sender, RoomID: roomID,
				Content: []byte(content), Depth: int64(len(outliers) + 1)}, "hs.test", k)
			if err != nil {
				t.Fatal(err)
			}
			outliers = append(outliers, store.NewEvent{PDU: p, Outlier: true})
			return p.EventID()
		}
		first := stateres.StateMap{{Type: "m.room.name"}: build("m.room.name", "", "@u0:hs.test", `{"name":"bulk"}`)}
		users := make([]string, 70) // more than one statement of 64
		for i := range users {
			users[i] = fmt.Sprintf("@u%d:hs.test", i)
			first[stateres.StateKey{Type: "m.room.member", StateKey: users[i]}] = build("m.room.member", users[i], id.UserID(users[i]), `{"membership":"join"}`)
		}
		// Then: the first ten leave, the name goes.
		second := stateres.StateMap{{Type: "m.room.name"}: ""}
		for _, u := range users[:10] {
			second[stateres.StateKey{Type: "m.room.member", StateKey: u}] = build("m.room.member", u, id.UserID(u), `{"membership":"leave"}`)
		}
		var snap stateres.StateMap
		err = db.WithTx(ctx, "test", func(tx *store.Tx) error {
			if err := tx.PersistOutliers(ctx, outliers); err != nil {
				return err
			}
			if err := tx.ApplyCurrentBulk(ctx, roomID, first, 5); err != nil {
				return fmt.Errorf("first ApplyCurrentBulk: %w", err)
			}
			if err := tx.ApplyCurrentBulk(ctx, roomID, second, 6); err != nil {
				return fmt.Errorf("second ApplyCurrentBulk: %w", err)
			}
			var err error
			snap, err = tx.WriteFullSnapshotBulk(ctx, roomID, first)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		want := stateres.StateMap{}
		for sk, eid := range first {
			want[sk] = eid
		}
		for sk, eid := range second {
			if eid == "" {
				delete(want, sk)
			} else {
				want[sk] = eid
			}
		}
		cur, err := db.CurrentState(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		if !equalState(cur, want) {
			t.Errorf("current state has %d entries, want %d (or they differ)", len(cur), len(want))
		}
		joined, err := db.RoomMemberships(ctx, roomID, "join")
		if err != nil {
			t.Fatal(err)
		}
		left, err := db.RoomMemberships(ctx, roomID, "leave")
		if err != nil {
			t.Fatal(err)
		}
		if len(joined) != 60 || len(left) != 10 {
			t.Errorf("%d joined and %d left, want 60 and 10", len(joined), len(left))
		}
		for _, m := range append(joined, left...) {
			wantPos := int64(5)
			if m.Membership == "leave" {
				wantPos = 6
			}
			if m.EventID != want[stateres.StateKey{Type: "m.room.member", StateKey: string(m.UserID)}] || m.Sender != m.UserID || m.StreamPos != wantPos {
				t.Errorf("membership %+v: wrong event, sender or position (want %d)", m, wantPos)
				break
			}
		}
		if !equalState(snap, first) {
			t.Errorf("snapshot has %d entries, want %d (or they differ)", len(snap), len(first))
		}
	})
}

func equalState(a, b stateres.StateMap) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

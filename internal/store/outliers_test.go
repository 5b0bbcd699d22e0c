package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// PersistOutliers stores what PersistEvent stores for outliers, in chunks
// of every size, skipping events already stored and repeats.
func TestPersistOutliers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		k, err := keys.Generate("")
		if err != nil {
			t.Fatal(err)
		}
		const roomID = id.RoomID("!outliers:hs.test")
		const version = id.RoomVersion("10")
		if err := db.WithTx(ctx, "test", func(tx *store.Tx) error {
			return tx.CreateRoom(ctx, store.Room{RoomID: roomID, Version: version})
		}); err != nil {
			t.Fatal(err)
		}
		// 341 = 256 + 64 + 16 + 4 + 1: one statement of each size.
		var evs []store.NewEvent
		for i := range 341 {
			sk := fmt.Sprintf("@u%d:hs.test", i)
			p, err := event.New(version, event.Proto{Type: "m.room.member", StateKey: &sk, Sender: id.UserID(sk), RoomID: roomID,
				Content: []byte(`{"membership":"join"}`), Depth: int64(i + 1)}, "hs.test", k)
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, store.NewEvent{PDU: p, Outlier: true, Rejected: i%7 == 3})
		}
		// One already stored, and a repeat.
		if err := db.WithTx(ctx, "test", func(tx *store.Tx) error {
			_, err := tx.PersistEvent(ctx, evs[10])
			return err
		}); err != nil {
			t.Fatal(err)
		}
		in := append(append([]store.NewEvent{}, evs...), evs[20])
		for range 2 { // the second time, everything is stored already
			if err := db.WithTx(ctx, "test", func(tx *store.Tx) error { return tx.PersistOutliers(ctx, in) }); err != nil {
				t.Fatalf("PersistOutliers: %v", err)
			}
		}
		ids := make([]id.EventID, len(evs))
		for i, ne := range evs {
			ids[i] = ne.PDU.EventID()
		}
		got, err := db.Events(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(evs) {
			t.Fatalf("Events gave %d events, want %d", len(got), len(evs))
		}
		byID := map[id.EventID]*store.Event{}
		for _, ev := range got {
			byID[ev.EventID()] = ev
		}
		for _, ne := range evs {
			ev := byID[ne.PDU.EventID()]
			switch {
			case ev == nil:
				t.Fatalf("event %s not stored", ne.PDU.EventID())
			case ev.StreamPos != 0:
				t.Errorf("event %s has stream position %d, want 0 (outlier)", ev.EventID(), ev.StreamPos)
			case ev.IsRejected != ne.Rejected:
				t.Errorf("event %s rejected = %v, want %v", ev.EventID(), ev.IsRejected, ne.Rejected)
			case !bytes.Equal(ev.JSON(), ne.PDU.JSON()):
				t.Errorf("event %s JSON differs", ev.EventID())
			}
		}
		if cur, err := db.CurrentState(ctx, roomID); err != nil || len(cur) != 0 {
			t.Errorf("current state = %d entries, %v; want none", len(cur), err)
		}
	})
}

func TestPersistOutliersErrors(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		k, err := keys.Generate("")
		if err != nil {
			t.Fatal(err)
		}
		sk := "@u:hs.test"
		p, err := event.New("10", event.Proto{Type: "m.room.member", StateKey: &sk, Sender: id.UserID(sk), RoomID: "!unknown:hs.test",
			Content: []byte(`{"membership":"join"}`), Depth: 1}, "hs.test", k)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			ne   store.NewEvent
			want error
		}{
			{"unknown room", store.NewEvent{PDU: p, Outlier: true}, store.ErrNotFound},
			{"not an outlier", store.NewEvent{PDU: p}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := db.WithTx(ctx, "test", func(tx *store.Tx) error { return tx.PersistOutliers(ctx, []store.NewEvent{tc.ne}) })
				if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
					t.Errorf("PersistOutliers = %v, want an error (%v)", err, tc.want)
				}
			})
		}
	})
}

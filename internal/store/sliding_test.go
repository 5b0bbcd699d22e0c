package store_test

import (
	"context"
	"errors"
	"testing"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestSlidingPositions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const u, d = "@alice:test", "DEV"
		tok1, err := db.SlidingSave(ctx, u, d, "main", "", 10, 1, nil, []store.SlidingSent{
			{RoomID: "!a:test", SentTo: 10, TimelineLimit: 1, RequiredState: "x"},
			{RoomID: "!b:test", SentTo: 10, TimelineLimit: 1, RequiredState: "x"},
		})
		if err != nil {
			t.Fatalf("SlidingSave(new): %v", err)
		}
		p, err := db.SlidingPos(ctx, u, d, "main", tok1)
		if err != nil || p.Stream != 10 || p.Typing != 1 || len(p.Rooms) != 2 || string(p.Subscriptions) != "{}" {
			t.Fatalf("SlidingPos(%s) = %+v, %v; want stream 10, typing 1, 2 rooms", tok1, p, err)
		}
		if _, err := db.SlidingPos(ctx, u, d, "other", tok1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SlidingPos(other conn) error = %v, want ErrNotFound", err)
		}
		if _, err := db.SlidingPos(ctx, "@bob:test", d, "main", tok1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SlidingPos(other user) error = %v, want ErrNotFound", err)
		}
		if _, err := db.SlidingPos(ctx, u, d, "main", "garbage"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SlidingPos(garbage) error = %v, want ErrNotFound", err)
		}
		// Two responses from tok1 (a retry): the second replaces the first.
		tok2, err := db.SlidingSave(ctx, u, d, "main", tok1, 20, 1, []byte(`{"!a:test":{}}`), []store.SlidingSent{{RoomID: "!a:test", SentTo: 20, TimelineLimit: 5}})
		if err != nil {
			t.Fatal(err)
		}
		tok2b, err := db.SlidingSave(ctx, u, d, "main", tok1, 21, 1, nil, []store.SlidingSent{{RoomID: "!b:test", SentTo: 21, TimelineLimit: 3}})
		if err != nil {
			t.Fatal(err)
		}
		if tok2 == tok2b {
			t.Fatalf("two responses got the same pos %s", tok2)
		}
		p, err = db.SlidingPos(ctx, u, d, "main", tok2b)
		if err != nil {
			t.Fatal(err)
		}
		if p.Rooms["!a:test"].SentTo != 10 || p.Rooms["!b:test"].SentTo != 21 || p.Rooms["!b:test"].TimelineLimit != 3 {
			t.Errorf("rooms at %s = %+v; want !a at 10 (the dropped response's row gone), !b at 21", tok2b, p.Rooms)
		}
		// Using tok2b acknowledges it: tok1 is gone.
		if _, err := db.SlidingSave(ctx, u, d, "main", tok2b, 22, 1, nil, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SlidingPos(ctx, u, d, "main", tok1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SlidingPos(acknowledged-over %s) error = %v, want ErrNotFound", tok1, err)
		}
		if _, err := db.SlidingSave(ctx, u, d, "main", tok1, 23, 1, nil, nil); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SlidingSave(after old %s) error = %v, want ErrNotFound", tok1, err)
		}
		// A new connection with the same conn_id replaces the old one.
		if _, err := db.SlidingSave(ctx, u, d, "main", "", 30, 0, nil, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SlidingPos(ctx, u, d, "main", tok2b); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SlidingPos(old connection) error = %v, want ErrNotFound", err)
		}
	})
}

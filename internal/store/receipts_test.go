package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestReceipts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const alice, bob = id.UserID("@alice:hs"), id.UserID("@bob:hs")
		const r1, r2 = id.RoomID("!r1:hs"), id.RoomID("!r2:hs")
		put := func(r store.Receipt, eventPos int64) int64 {
			t.Helper()
			pos, err := db.PutReceipt(ctx, r, eventPos)
			if err != nil {
				t.Fatalf("PutReceipt(%+v): %v", r, err)
			}
			return pos
		}
		str := func(rs []store.Receipt) string {
			var b []string
			for _, r := range rs {
				b = append(b, fmt.Sprintf("%s %s %s %q %s", r.RoomID, r.UserID, r.Type, r.ThreadID, r.EventID))
			}
			return strings.Join(b, "; ")
		}

		if _, err := db.LastRead(ctx, alice, r1); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("LastRead with no receipts: got %v, want ErrNotFound", err)
		}
		p1 := put(store.Receipt{RoomID: r1, UserID: alice, Type: "m.read", EventID: "$e5", TS: 1}, 5)
		if p1 == 0 {
			t.Fatalf("first receipt took no position")
		}
		// A receipt for an earlier event does not move it back; the same
		// event changes nothing either.
		if p := put(store.Receipt{RoomID: r1, UserID: alice, Type: "m.read", EventID: "$e3", TS: 2}, 3); p != 0 {
			t.Errorf("receipt moving back = %d, want 0 (ignored)", p)
		}
		if p := put(store.Receipt{RoomID: r1, UserID: alice, Type: "m.read", EventID: "$e5", TS: 2}, 5); p != 0 {
			t.Errorf("repeated receipt = %d, want 0 (ignored)", p)
		}
		// Types and threads are separate markers.
		p2 := put(store.Receipt{RoomID: r1, UserID: alice, Type: "m.read.private", EventID: "$e7", TS: 3}, 7)
		p3 := put(store.Receipt{RoomID: r1, UserID: alice, Type: "m.read", ThreadID: "$root", EventID: "$e4", TS: 4}, 4)
		p4 := put(store.Receipt{RoomID: r1, UserID: bob, Type: "m.read.private", EventID: "$e6", TS: 5}, 6)
		p5 := put(store.Receipt{RoomID: r2, UserID: bob, Type: "m.read", ThreadID: "main", EventID: "$f1", TS: 6}, 10)
		if !(p1 < p2 && p2 < p3 && p3 < p4 && p4 < p5) {
			t.Fatalf("positions not increasing: %d %d %d %d %d", p1, p2, p3, p4, p5)
		}

		for _, c := range []struct {
			name     string
			forUser  id.UserID
			rooms    []id.RoomID
			from, to int64
			want     string
		}{
			{"alice sees her private receipt, not bob's", alice, []id.RoomID{r1, r2}, 0, p5,
				`!r1:hs @alice:hs m.read "" $e5; !r1:hs @alice:hs m.read.private "" $e7; !r1:hs @alice:hs m.read "$root" $e4; !r2:hs @bob:hs m.read "main" $f1`},
			{"bob sees his private receipt, not alice's", bob, []id.RoomID{r1}, 0, p5,
				`!r1:hs @alice:hs m.read "" $e5; !r1:hs @alice:hs m.read "$root" $e4; !r1:hs @bob:hs m.read.private "" $e6`},
			{"a range", alice, []id.RoomID{r1, r2}, p2, p4, `!r1:hs @alice:hs m.read "$root" $e4`},
			{"no rooms", alice, nil, 0, p5, ``},
		} {
			rs, err := db.ReceiptsSince(ctx, c.forUser, c.rooms, c.from, c.to)
			if err != nil {
				t.Fatalf("ReceiptsSince: %v", err)
			}
			if got := str(rs); got != c.want {
				t.Errorf("ReceiptsSince %s = %s\nwant %s", c.name, got, c.want)
			}
		}

		// LastRead: the furthest of m.read and m.read.private, unthreaded
		// or main; thread receipts do not count.
		if ev, err := db.LastRead(ctx, alice, r1); err != nil || ev != "$e7" {
			t.Errorf("LastRead(alice, r1) = %s, %v; want $e7 (the private receipt is further)", ev, err)
		}
		if ev, err := db.LastRead(ctx, bob, r2); err != nil || ev != "$f1" {
			t.Errorf("LastRead(bob, r2) = %s, %v; want $f1 (main thread)", ev, err)
		}
		put(store.Receipt{RoomID: r1, UserID: alice, Type: "m.read", EventID: "$e9", TS: 7}, 9)
		if ev, err := db.LastRead(ctx, alice, r1); err != nil || ev != "$e9" {
			t.Errorf("LastRead(alice, r1) after a later m.read = %s, %v; want $e9", ev, err)
		}
		rs, err := db.UserReceipts(ctx, alice, r1)
		if err != nil || len(rs) != 3 {
			t.Errorf("UserReceipts(alice, r1) = %s, %v; want 3 receipts", str(rs), err)
		}
	})
}

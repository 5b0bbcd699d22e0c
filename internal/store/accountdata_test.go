package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestAccountData(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const alice, bob = id.UserID("@alice:hs"), id.UserID("@bob:hs")
		const room = id.RoomID("!r:hs")

		if _, err := db.AccountData(ctx, alice, "", "m.direct"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("AccountData before any write: got %v, want ErrNotFound", err)
		}
		p1, err := db.SetAccountData(ctx, alice, "", "m.direct", []byte(`{"a":1}`))
		if err != nil {
			t.Fatalf("SetAccountData: %v", err)
		}
		p2, err := db.SetAccountData(ctx, alice, room, "m.direct", []byte(`{"room":true}`))
		if err != nil || p2 <= p1 {
			t.Fatalf("SetAccountData(room) = %d, %v; want a position after %d", p2, err, p1)
		}
		p3, err := db.SetAccountData(ctx, bob, "", "m.direct", []byte(`{"bob":1}`))
		if err != nil || p3 <= p2 {
			t.Fatalf("SetAccountData(bob) = %d, %v; want a position after %d", p3, err, p2)
		}
		p4, err := db.SetAccountData(ctx, alice, "", "m.direct", []byte(`{"a":2}`))
		if err != nil || p4 <= p3 {
			t.Fatalf("SetAccountData again = %d, %v; want a position after %d", p4, err, p3)
		}
		if pos, err := db.StreamPos(ctx); err != nil || pos != p4 {
			t.Fatalf("StreamPos = %d, %v; want %d", pos, err, p4)
		}

		// Global and room account data of the same type are distinct.
		for _, c := range []struct {
			user id.UserID
			room id.RoomID
			want string
		}{{alice, "", `{"a":2}`}, {alice, room, `{"room":true}`}, {bob, "", `{"bob":1}`}} {
			got, err := db.AccountData(ctx, c.user, c.room, "m.direct")
			if err != nil || string(got) != c.want {
				t.Errorf("AccountData(%s, %q) = %s, %v; want %s", c.user, c.room, got, err, c.want)
			}
		}
		if _, err := db.AccountData(ctx, bob, room, "m.direct"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("AccountData(bob, room): got %v, want ErrNotFound", err)
		}

		since := func(from, to int64) string {
			t.Helper()
			ads, err := db.AccountDataSince(ctx, alice, from, to)
			if err != nil {
				t.Fatalf("AccountDataSince: %v", err)
			}
			s := ""
			for _, a := range ads {
				s += fmt.Sprintf("[%s %s %s %v]", a.RoomID, a.Type, a.Content, a.StreamPos == p4 || a.StreamPos == p2)
			}
			return s
		}
		for _, c := range []struct {
			name     string
			from, to int64
			want     string
		}{
			{"all", 0, p4, `[!r:hs m.direct {"room":true} true][ m.direct {"a":2} true]`},
			{"only the latest of an entry", p2, p4, `[ m.direct {"a":2} true]`},
			{"nothing after to", 0, p3, `[!r:hs m.direct {"room":true} true]`},
			{"empty range", p4, p4, ``},
		} {
			if got := since(c.from, c.to); got != c.want {
				t.Errorf("AccountDataSince %s (%d, %d] = %s, want %s", c.name, c.from, c.to, got, c.want)
			}
		}

		// UpdateAccountData: no write when fn returns nil or the same
		// content; an error from fn writes nothing.
		pos, err := db.UpdateAccountData(ctx, alice, room, "m.tag", func(old []byte) ([]byte, error) {
			if old != nil {
				t.Errorf("UpdateAccountData of an absent entry: old = %s, want nil", old)
			}
			return []byte(`{"tags":{}}`), nil
		})
		if err != nil || pos <= p4 {
			t.Fatalf("UpdateAccountData = %d, %v; want a new position", pos, err)
		}
		same, err := db.UpdateAccountData(ctx, alice, room, "m.tag", func(old []byte) ([]byte, error) { return old, nil })
		if err != nil || same != 0 {
			t.Errorf("UpdateAccountData with unchanged content = %d, %v; want 0, nil", same, err)
		}
		none, err := db.UpdateAccountData(ctx, alice, room, "m.tag", func(old []byte) ([]byte, error) { return nil, nil })
		if err != nil || none != 0 {
			t.Errorf("UpdateAccountData returning nil = %d, %v; want 0, nil", none, err)
		}
		boom := errors.New("boom")
		if _, err := db.UpdateAccountData(ctx, alice, room, "m.tag", func(old []byte) ([]byte, error) { return []byte(`{"x":1}`), boom }); !errors.Is(err, boom) {
			t.Errorf("UpdateAccountData with failing fn: got %v, want boom", err)
		}
		if got, _ := db.AccountData(ctx, alice, room, "m.tag"); string(got) != `{"tags":{}}` {
			t.Errorf("m.tag after no-op updates = %s, want {\"tags\":{}}", got)
		}
		if cur, _ := db.StreamPos(ctx); cur != pos {
			t.Errorf("StreamPos after no-op updates = %d, want %d (no position taken)", cur, pos)
		}
	})
}

// Concurrent read-modify-writes of one entry lose no update.
func TestUpdateAccountDataConcurrent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const n = 20
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := db.UpdateAccountData(ctx, "@a:hs", "!r:hs", "counter", func(old []byte) ([]byte, error) {
					return append(append([]byte(nil), old...), byte('a'+i%26)), nil
				})
				if err != nil {
					t.Errorf("UpdateAccountData: %v", err)
				}
			}()
		}
		wg.Wait()
		got, err := db.AccountData(ctx, "@a:hs", "!r:hs", "counter")
		if err != nil || len(got) != n {
			t.Fatalf("after %d concurrent appends: %q (%d bytes), %v", n, got, len(got), err)
		}
	})
}

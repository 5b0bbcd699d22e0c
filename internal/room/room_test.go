package room_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

const server = "hs.test"

func newService(tb testing.TB, db *store.DB) *room.Service {
	tb.Helper()
	k, err := keys.Generate("")
	if err != nil {
		tb.Fatal(err)
	}
	pos, err := db.StreamPos(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return room.New(room.Config{ServerName: server, Key: k}, db, notify.New(notify.Position{Stream: pos}), slog.New(slog.DiscardHandler))
}

func mustAccount(tb testing.TB, db *store.DB, name string) id.UserID {
	tb.Helper()
	if err := db.CreateAccount(context.Background(), store.Account{Localpart: name}, name); err != nil {
		tb.Fatal(err)
	}
	return id.UserID("@" + name + ":" + server)
}

// State snapshots are deltas with bounded chains: the state after every
// event, read back, is what was sent, however long the chain.
func TestStateSnapshots(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		alice := mustAccount(t, db, "alice")
		roomID, err := s.Create(ctx, alice, room.CreateRequest{Preset: room.PresetPublic})
		if err != nil {
			t.Fatal(err)
		}
		want := map[id.EventID]stateres.StateMap{}
		cur, err := db.CurrentState(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 60 {
			var d room.Draft
			if i%3 == 2 {
				d = room.Draft{Type: "m.room.message", Content: []byte(`{"body":"x"}`)}
			} else {
				sk := fmt.Sprintf("k%d", i%7)
				d = room.Draft{Type: "org.example.state", StateKey: &sk, Content: fmt.Appendf(nil, `{"n":%d}`, i)}
			}
			ev, err := s.Send(ctx, alice, roomID, d)
			if err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			if sk := ev.StateKey(); sk != nil {
				cur = clone(cur)
				cur[stateres.StateKey{Type: ev.Type(), StateKey: *sk}] = ev.EventID()
			}
			want[ev.EventID()] = cur
		}
		for eid, w := range want {
			got, err := db.StateAfter(ctx, eid)
			if err != nil {
				t.Fatalf("StateAfter(%s): %v", eid, err)
			}
			if !equal(got, w) {
				t.Fatalf("StateAfter(%s) has %d entries, want %d", eid, len(got), len(w))
			}
		}
		final, _ := db.CurrentState(ctx, roomID)
		if !equal(final, cur) {
			t.Errorf("current state differs from the last snapshot")
		}
	})
}

// Concurrent sends to one room are serialised: every event is persisted,
// and the room's DAG stays a line (one forward extremity).
func TestConcurrentSends(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		alice := mustAccount(t, db, "alice")
		roomID, err := s.Create(ctx, alice, room.CreateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 80)
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					_, err := s.Send(ctx, alice, roomID, room.Draft{Type: "m.room.message", Content: fmt.Appendf(nil, `{"body":"%d-%d"}`, w, i),
						Txn: &store.Txn{UserID: alice, DeviceID: "D", TxnID: fmt.Sprintf("%d-%d", w, i)}})
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		x, err := db.Extremities(ctx, roomID)
		if err != nil || len(x) != 1 {
			t.Fatalf("extremities = %v, %v; want one", x, err)
		}
		evs, err := db.RoomEventsByStream(ctx, roomID, 0, 1<<40, 1000)
		if err != nil {
			t.Fatal(err)
		}
		msgs := 0
		for _, ev := range evs {
			if ev.Type() == "m.room.message" {
				msgs++
			}
		}
		if msgs != 80 {
			t.Errorf("%d messages stored, want 80", msgs)
		}
	})
}

// A restarted service (a new process) picks up the room where it was.
func TestReloadAfterRestart(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		alice := mustAccount(t, db, "alice")
		roomID, err := s.Create(ctx, alice, room.CreateRequest{Name: ptr("before")})
		if err != nil {
			t.Fatal(err)
		}
		s2 := newService(t, db)
		empty := ""
		if _, err := s2.Send(ctx, alice, roomID, room.Draft{Type: "m.room.name", StateKey: &empty, Content: []byte(`{"name":"after"}`)}); err != nil {
			t.Fatal(err)
		}
		c, err := s2.StateContent(ctx, roomID, "m.room.name", "")
		if err != nil {
			t.Fatal(err)
		}
		var n struct{ Name string }
		json.Unmarshal(c, &n)
		if n.Name != "after" {
			t.Errorf("name = %q, want after", n.Name)
		}
		ev, _ := s2.StateEvent(ctx, roomID, "m.room.name", "")
		if ev.Replaces == "" || len(ev.Added) == 0 {
			t.Errorf("replacing state event lacks replaces_state/prev_content: %q %s", ev.Replaces, ev.Added)
		}
	})
}

func ptr[T any](v T) *T { return &v }

func clone(m stateres.StateMap) stateres.StateMap {
	out := make(stateres.StateMap, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func equal(a, b stateres.StateMap) bool {
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

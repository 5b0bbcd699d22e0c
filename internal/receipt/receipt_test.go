package receipt_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/receipt"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// world is a room with alice and bob joined and carol not in it, and a
// second room only carol is in.
type world struct {
	db                *store.DB
	n                 *notify.Notifier
	rooms             *room.Service
	room, other       id.RoomID
	alice, bob, carol id.UserID
}

func newWorld(t *testing.T, db *store.DB) *world {
	t.Helper()
	ctx := context.Background()
	k, err := keys.Generate("")
	if err != nil {
		t.Fatal(err)
	}
	n := notify.New(notify.Position{})
	w := &world{db: db, n: n, rooms: room.New(room.Config{ServerName: "hs.test", Key: k}, db, n, slog.New(slog.DiscardHandler))}
	for _, name := range []string{"alice", "bob", "carol"} {
		if err := db.CreateAccount(ctx, store.Account{Localpart: name}, name); err != nil {
			t.Fatal(err)
		}
	}
	w.alice, w.bob, w.carol = "@alice:hs.test", "@bob:hs.test", "@carol:hs.test"
	if w.room, err = w.rooms.Create(ctx, w.alice, room.CreateRequest{Preset: room.PresetPublic}); err != nil {
		t.Fatalf("create room: %v", err)
	}
	if _, err := w.rooms.SetMembership(ctx, room.MemberChange{RoomID: w.room, Sender: w.bob, Target: w.bob, Membership: room.Join}); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	if w.other, err = w.rooms.Create(ctx, w.carol, room.CreateRequest{}); err != nil {
		t.Fatalf("create carol's room: %v", err)
	}
	return w
}

// send sends an m.room.message with extra content members and returns its ID.
func (w *world) send(t *testing.T, sender id.UserID, roomID id.RoomID, relatesTo string) id.EventID {
	t.Helper()
	content := `{"msgtype":"m.text","body":"hi"}`
	if relatesTo != "" {
		content = `{"msgtype":"m.text","body":"hi","m.relates_to":` + relatesTo + `}`
	}
	ev, err := w.rooms.Send(context.Background(), sender, roomID, room.Draft{Type: "m.room.message", Content: []byte(content)})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return ev.EventID()
}

func wantErr(t *testing.T, call string, err error, code string) {
	t.Helper()
	if e, ok := mxerr.As(err); !ok || e.Code != code {
		t.Errorf("%s: got %v, want %s", call, err, code)
	}
}

// woken reports whether fn wakes a /sync of u waiting on rooms.
func woken(t *testing.T, n *notify.Notifier, u id.UserID, rooms []id.RoomID, fn func()) bool {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Wait(ctx, u, rooms, n.Current()); close(done) }()
	for n.Waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	fn()
	// Wake unregisters the waiters it wakes before it returns, and writers
	// wake before they return: a waiter still registered was not woken.
	woke := n.Waiting() == 0
	cancel()
	<-done
	return woke
}

type content map[id.EventID]map[string]map[id.UserID]struct {
	TS       int64   `json:"ts"`
	ThreadID *string `json:"thread_id"`
}

func decode(t *testing.T, raw json.RawMessage) content {
	t.Helper()
	var c content
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("m.receipt content %s: %v", raw, err)
	}
	return c
}

func TestReceipts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newWorld(t, db)
		s := receipt.New(db, w.n)
		e1 := w.send(t, w.alice, w.room, "")
		e2 := w.send(t, w.bob, w.room, "")
		carolEv := w.send(t, w.carol, w.other, "")
		start := w.n.Current().Stream

		// A public receipt wakes the room; a private one only its sender.
		if !woken(t, w.n, w.alice, []id.RoomID{w.room}, func() {
			if err := s.Send(ctx, w.bob, w.room, receipt.Read, e1, ""); err != nil {
				t.Fatalf("Send(m.read): %v", err)
			}
		}) {
			t.Errorf("bob's m.read did not wake alice's /sync of the room")
		}
		if woken(t, w.n, w.alice, []id.RoomID{w.room}, func() {
			if err := s.Send(ctx, w.bob, w.room, receipt.ReadPrivate, e2, ""); err != nil {
				t.Fatalf("Send(m.read.private): %v", err)
			}
		}) {
			t.Errorf("bob's m.read.private woke alice's /sync")
		}
		if !woken(t, w.n, w.bob, nil, func() {
			if err := s.Send(ctx, w.bob, w.room, receipt.ReadPrivate, e2, "main"); err != nil {
				t.Fatalf("Send(m.read.private, main): %v", err)
			}
		}) {
			t.Errorf("bob's m.read.private did not wake his own /sync")
		}
		now := w.n.Current().Stream

		for _, who := range []id.UserID{w.alice, w.bob} {
			got, err := s.Since(ctx, who, []id.RoomID{w.room, w.other}, start, now)
			if err != nil {
				t.Fatalf("Since: %v", err)
			}
			if len(got) != 1 || got[w.room] == nil {
				t.Fatalf("Since(%s) rooms = %v, want only the room", who, got)
			}
			c := decode(t, got[w.room])
			if r, ok := c[e1]["m.read"][w.bob]; !ok || r.TS == 0 || r.ThreadID != nil {
				t.Errorf("Since(%s): bob's m.read on e1 = %+v, %v; want an unthreaded receipt with ts", who, r, ok)
			}
			r, ok := c[e2]["m.read.private"][w.bob]
			if who == w.bob && (!ok || r.ThreadID == nil || *r.ThreadID != "main") {
				t.Errorf("Since(bob): his private main-thread receipt on e2 = %+v, %v", r, ok)
			}
			if who == w.alice && len(c[e2]) != 0 {
				t.Errorf("Since(alice) shows bob's private receipts: %s", got[w.room])
			}
		}
		// An incremental range holds only what changed in it.
		got, err := s.Since(ctx, w.alice, []id.RoomID{w.room}, now, now)
		if err != nil || len(got) != 0 {
			t.Errorf("Since of an empty range = %v, %v", got, err)
		}

		// Receipts do not move back, and such a send wakes nobody.
		if err := s.Send(ctx, w.bob, w.room, receipt.Read, e2, ""); err != nil {
			t.Fatal(err)
		}
		at := w.n.Current()
		if err := s.Send(ctx, w.bob, w.room, receipt.Read, e1, ""); err != nil {
			t.Fatalf("Send of an earlier receipt: %v", err)
		}
		if w.n.Current() != at {
			t.Errorf("an earlier receipt moved the stream")
		}
		all, err := s.Since(ctx, w.alice, []id.RoomID{w.room}, 0, w.n.Current().Stream)
		if err != nil {
			t.Fatal(err)
		}
		c := decode(t, all[w.room])
		if _, ok := c[e2]["m.read"][w.bob]; !ok || len(c[e1]) != 0 {
			t.Errorf("all receipts after moving back = %s; want bob's m.read still on e2", all[w.room])
		}

		// LastRead: the furthest of m.read and m.read.private.
		if ev, err := s.LastRead(ctx, w.bob, w.room); err != nil || ev != e2 {
			t.Errorf("LastRead(bob) = %s, %v; want %s", ev, err, e2)
		}
		if _, err := s.LastRead(ctx, w.alice, w.room); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("LastRead(alice) = %v, want store.ErrNotFound", err)
		}

		// Refusals change nothing.
		before := w.n.Current()
		for _, c := range []struct {
			name    string
			user    id.UserID
			room    id.RoomID
			typ     string
			ev      id.EventID
			thread  string
			errcode string
		}{
			{"unknown type", w.bob, w.room, "m.unread", e1, "", "M_INVALID_PARAM"},
			{"thread on m.fully_read", w.bob, w.room, receipt.FullyRead, e1, "main", "M_INVALID_PARAM"},
			{"malformed thread", w.bob, w.room, receipt.Read, e1, "thread", "M_INVALID_PARAM"},
			{"not joined", w.carol, w.room, receipt.Read, e1, "", "M_FORBIDDEN"},
			{"unknown room", w.bob, "!nope:hs.test", receipt.Read, e1, "", "M_FORBIDDEN"},
			{"unknown event", w.bob, w.room, receipt.Read, "$nope", "", "M_NOT_FOUND"},
			{"malformed event ID", w.bob, w.room, receipt.Read, "nope", "", "M_INVALID_PARAM"},
			{"event of another room", w.bob, w.room, receipt.Read, carolEv, "", "M_NOT_FOUND"},
		} {
			err := s.Send(ctx, c.user, c.room, c.typ, c.ev, c.thread)
			wantErr(t, "Send "+c.name, err, c.errcode)
		}
		if w.n.Current() != before {
			t.Errorf("refused receipts moved the stream")
		}
	})
}

// Threaded receipts must name the event's thread (spec "Threaded read
// receipts"; the DAG of Synapse's check: A <-thread- B <-annotation- C,
// A <-reference- D <-annotation- E).
func TestThreadedReceipts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newWorld(t, db)
		s := receipt.New(db, w.n)
		rel := func(typ string, to id.EventID) string {
			if typ == "m.annotation" {
				return fmt.Sprintf(`{"rel_type":%q,"event_id":%q,"key":"👍"}`, typ, to)
			}
			return fmt.Sprintf(`{"rel_type":%q,"event_id":%q}`, typ, to)
		}
		a := w.send(t, w.alice, w.room, "")
		b := w.send(t, w.alice, w.room, rel("m.thread", a))
		c := w.send(t, w.alice, w.room, rel("m.annotation", b))
		d := w.send(t, w.alice, w.room, rel("m.reference", a))
		e := w.send(t, w.alice, w.room, rel("m.annotation", d))
		names := map[id.EventID]string{a: "A", b: "B", c: "C", d: "D", e: "E"}
		for ev, thread := range map[id.EventID]map[string]bool{
			a: {"main": true, string(a): true},
			b: {"main": false, string(a): true},
			c: {"main": false, string(a): true},
			d: {"main": true, string(a): true},
			e: {"main": true, string(a): true, string(b): false},
		} {
			for th, ok := range thread {
				err := s.Send(ctx, w.bob, w.room, receipt.Read, ev, th)
				if ok && err != nil {
					t.Errorf("receipt on %s for thread %s: %v, want accepted", names[ev], th, err)
				}
				if !ok {
					wantErr(t, fmt.Sprintf("receipt on %s for thread %s", names[ev], th), err, "M_INVALID_PARAM")
				}
			}
		}
	})
}

func TestReadMarkers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := newWorld(t, db)
		s := receipt.New(db, w.n)
		e1 := w.send(t, w.alice, w.room, "")
		e2 := w.send(t, w.alice, w.room, "")
		fullyRead := func() string {
			t.Helper()
			c, err := db.AccountData(ctx, w.bob, w.room, "m.fully_read")
			if errors.Is(err, store.ErrNotFound) {
				return ""
			}
			if err != nil {
				t.Fatal(err)
			}
			return string(c)
		}

		// The fully read marker wakes only its owner.
		if woken(t, w.n, w.alice, []id.RoomID{w.room}, func() {
			if err := s.ReadMarkers(ctx, w.bob, w.room, e2, "", ""); err != nil {
				t.Fatalf("ReadMarkers: %v", err)
			}
		}) {
			t.Errorf("bob's fully read marker woke alice")
		}
		if got, want := fullyRead(), `{"event_id":"`+string(e2)+`"}`; got != want {
			t.Errorf("m.fully_read = %s, want %s", got, want)
		}
		// It does not move back, also through the receipt endpoint.
		at := w.n.Current()
		if err := s.Send(ctx, w.bob, w.room, receipt.FullyRead, e1, ""); err != nil {
			t.Fatalf("Send(m.fully_read, e1): %v", err)
		}
		if got := fullyRead(); got != `{"event_id":"`+string(e2)+`"}` || w.n.Current() != at {
			t.Errorf("m.fully_read moved back to %s", got)
		}

		// All three at once; a bad one writes none.
		err := s.ReadMarkers(ctx, w.bob, w.room, e2, e2, "$nope")
		wantErr(t, "ReadMarkers with an unknown private receipt event", err, "M_NOT_FOUND")
		if rs, _ := db.UserReceipts(ctx, w.bob, w.room); len(rs) != 0 {
			t.Errorf("a refused ReadMarkers wrote receipts: %+v", rs)
		}
		if err := s.ReadMarkers(ctx, w.bob, w.room, e2, e1, e2); err != nil {
			t.Fatalf("ReadMarkers: %v", err)
		}
		rs, err := db.UserReceipts(ctx, w.bob, w.room)
		if err != nil || len(rs) != 2 || rs[0].Type != "m.read" || rs[0].EventID != e1 || rs[1].Type != "m.read.private" || rs[1].EventID != e2 {
			t.Errorf("receipts after ReadMarkers = %+v, %v", rs, err)
		}
		err = s.ReadMarkers(ctx, w.carol, w.room, e2, "", "")
		wantErr(t, "ReadMarkers of a non-member", err, "M_FORBIDDEN")
	})
}

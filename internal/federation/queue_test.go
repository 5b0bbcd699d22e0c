package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

const us = "us.example"

// call is one SendTransaction a fake transport received.
type call struct {
	dest, txnID string
	txn         federation.Transaction
}

// fakeTransport records every transaction and answers with send (nil:
// success). It checks that no destination ever has two transactions in
// flight.
type fakeTransport struct {
	send func(ctx context.Context, c call) error

	mu       sync.Mutex
	calls    []call
	inFlight map[string]bool
	overlap  bool
	changed  chan struct{} // signalled after each answer
}

func newFake(send func(ctx context.Context, c call) error) *fakeTransport {
	return &fakeTransport{send: send, inFlight: map[string]bool{}, changed: make(chan struct{}, 1)}
}

func (f *fakeTransport) SendTransaction(ctx context.Context, dest, txnID string, txn federation.Transaction) (*federation.TransactionResponse, error) {
	c := call{dest, txnID, txn}
	f.mu.Lock()
	if f.inFlight[dest] {
		f.overlap = true
	}
	f.inFlight[dest] = true
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	var err error
	if f.send != nil {
		err = f.send(ctx, c)
	}
	f.mu.Lock()
	f.inFlight[dest] = false
	f.mu.Unlock()
	select {
	case f.changed <- struct{}{}:
	default:
	}
	if err != nil {
		return nil, err
	}
	return &federation.TransactionResponse{}, nil
}

func (f *fakeTransport) callsTo(dest string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.dest == dest {
			out = append(out, c)
		}
	}
	return out
}

// waitFor waits until cond holds, checking it after each answer of the
// transport and every few milliseconds (the queue's bookkeeping follows
// the answer). It fails the test after a generous deadline: a condition
// wait, not a timing assertion.
func waitFor(tb testing.TB, f *fakeTransport, what string, cond func() bool) {
	tb.Helper()
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-f.changed:
		case <-tick.C:
		case <-deadline:
			tb.Fatalf("timed out waiting for %s", what)
		}
	}
}

func openDB(tb testing.TB) *store.DB {
	tb.Helper()
	return storetest.Open(tb, storetest.Engines(tb)[0].Options(tb))
}

// startQueue runs a queue until the test ends (or stop is called) and
// checks that Run returns.
func startQueue(tb testing.TB, q *federation.Queue) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("Run: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

func newQueue(db *store.DB, tr federation.Transport, cfg federation.QueueConfig) *federation.Queue {
	cfg.ServerName = us
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 50 * time.Millisecond
	}
	return federation.NewQueue(cfg, db, tr, nil)
}

func pdu(n int) []byte { return []byte(fmt.Sprintf(`{"n":%d}`, n)) }

func mustSendPDU(tb testing.TB, q *federation.Queue, n int, room string, dests ...string) {
	tb.Helper()
	err := q.SendPDU(context.Background(), pdu(n), id.EventID(fmt.Sprintf("$%d", n)), id.RoomID(room), dests)
	if err != nil {
		tb.Fatalf("SendPDU(%d): %v", n, err)
	}
}

// pduNumbers returns the n of each {"n":n} PDU of the calls, in order.
func pduNumbers(calls []call) []int {
	var out []int
	for _, c := range calls {
		for _, p := range c.txn.PDUs {
			var v struct{ N int }
			json.Unmarshal(p, &v)
			out = append(out, v.N)
		}
	}
	return out
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestQueueBatchesInOrder(t *testing.T) {
	db := openDB(t)
	f := newFake(nil)
	q := newQueue(db, f, federation.QueueConfig{})
	ctx := context.Background()
	// Queued before Run (as after a restart): read back at start.
	for i := 1; i <= 120; i++ {
		mustSendPDU(t, q, i, "!r", "b.example", us, "c.example")
	}
	for i := 1; i <= 150; i++ {
		edu := federation.EDU{Type: federation.EDUDirectToDevice, Content: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
		if err := q.SendEDU(ctx, []string{"b.example"}, edu, ""); err != nil {
			t.Fatalf("SendEDU: %v", err)
		}
	}
	startQueue(t, q)
	for i := 121; i <= 130; i++ { // and while running
		mustSendPDU(t, q, i, "!r", "b.example")
	}
	waitFor(t, f, "130 PDUs to b", func() bool { return len(pduNumbers(f.callsTo("b.example"))) == 130 })
	waitFor(t, f, "120 PDUs to c", func() bool { return len(pduNumbers(f.callsTo("c.example"))) == 120 })

	calls := f.callsTo("b.example")
	if got := pduNumbers(calls); !slices.Equal(got, seq(1, 130)) {
		t.Errorf("PDUs to b in order %v", got)
	}
	var edus []string
	ids := map[string]bool{}
	for _, c := range calls {
		if len(c.txn.PDUs) > federation.MaxPDUsPerTxn || len(c.txn.EDUs) > federation.MaxEDUsPerTxn {
			t.Errorf("transaction %s has %d PDUs and %d EDUs, over the limits", c.txnID, len(c.txn.PDUs), len(c.txn.EDUs))
		}
		if ids[c.txnID] {
			t.Errorf("transaction ID %s used twice", c.txnID)
		}
		ids[c.txnID] = true
		if c.txn.Origin != us {
			t.Errorf("origin %q, want %q", c.txn.Origin, us)
		}
		for _, e := range c.txn.EDUs {
			edus = append(edus, string(e.Content))
		}
	}
	if len(calls[0].txn.PDUs) != 50 || len(calls[0].txn.EDUs) != 100 {
		t.Errorf("first transaction has %d PDUs and %d EDUs, want full (50, 100)", len(calls[0].txn.PDUs), len(calls[0].txn.EDUs))
	}
	var want []string
	for i := 1; i <= 150; i++ {
		want = append(want, fmt.Sprintf(`{"i":%d}`, i))
	}
	if !slices.Equal(edus, want) {
		t.Errorf("EDUs to b: %v", edus)
	}
	if len(f.callsTo(us)) != 0 {
		t.Errorf("sent to ourselves")
	}
	f.mu.Lock()
	if f.overlap {
		t.Errorf("two transactions in flight to one destination at once")
	}
	f.mu.Unlock()
	waitFor(t, f, "queue empty", func() bool { s := q.Stats(); return s.PendingPDUs == 0 && s.PendingEDUs == 0 })
	if p, e, err := db.FedPending(ctx, "b.example"); err != nil || p != 0 || e != 0 {
		t.Errorf("FedPending(b) after delivery = %d, %d, %v; want 0, 0", p, e, err)
	}
}

func TestQueueRetrySameTxn(t *testing.T) {
	db := openDB(t)
	var mu sync.Mutex
	fails := 2
	f := newFake(func(ctx context.Context, c call) error {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return fmt.Errorf("dial: %w", federation.ErrUnreachable)
		}
		return nil
	})
	q := newQueue(db, f, federation.QueueConfig{})
	startQueue(t, q)
	mustSendPDU(t, q, 1, "!r", "b.example")
	waitFor(t, f, "three attempts", func() bool { return len(f.callsTo("b.example")) >= 3 })
	mustSendPDU(t, q, 2, "!r", "b.example")
	waitFor(t, f, "the second PDU", func() bool { return len(pduNumbers(f.callsTo("b.example"))) == 4 })
	calls := f.callsTo("b.example")
	for i := 1; i < 3; i++ {
		if calls[i].txnID != calls[0].txnID || string(calls[i].txn.PDUs[0]) != string(calls[0].txn.PDUs[0]) {
			t.Errorf("attempt %d: %s %s, want a retry of %s %s", i+1, calls[i].txnID, calls[i].txn.PDUs, calls[0].txnID, calls[0].txn.PDUs)
		}
	}
	if calls[3].txnID == calls[0].txnID {
		t.Errorf("the next transaction reuses ID %s", calls[0].txnID)
	}
	if got := pduNumbers(calls[3:]); !slices.Equal(got, []int{2}) {
		t.Errorf("next transaction carries %v, want [2]", got)
	}
	if s := q.Stats(); s.TxnsFailed != 2 {
		t.Errorf("Stats().TxnsFailed = %d, want 2", s.TxnsFailed)
	}
}

func TestQueueBackoffGrowsAndResets(t *testing.T) {
	db := openDB(t)
	release := make(chan struct{})
	var attempts atomic.Int32
	f := newFake(func(ctx context.Context, c call) error {
		switch n := attempts.Add(1); {
		case n <= 3:
			return &federation.RemoteError{Server: c.dest, Status: 502}
		case n == 4:
			<-release
		}
		return nil
	})
	q := newQueue(db, f, federation.QueueConfig{MinBackoff: time.Millisecond, MaxBackoff: time.Second})
	startQueue(t, q)
	mustSendPDU(t, q, 1, "!r", "b.example")
	waitFor(t, f, "the fourth attempt", func() bool { return len(f.callsTo("b.example")) == 4 })
	d, err := db.FedDestination(context.Background(), "b.example")
	if err != nil || d.Failures != 3 || d.Backoff != 4*time.Millisecond || d.FailingSince.IsZero() || d.RetryAt.IsZero() {
		t.Fatalf("after 3 failures FedDestination = %+v, %v; want 3 failures, backoff 4ms", d, err)
	}
	close(release)
	waitFor(t, f, "the backoff reset", func() bool {
		d, err := db.FedDestination(context.Background(), "b.example")
		return err == nil && d.Failures == 0
	})
	d, _ = db.FedDestination(context.Background(), "b.example")
	if d.Backoff != 0 || !d.RetryAt.IsZero() || !d.FailingSince.IsZero() || d.LastSuccess.IsZero() || d.PendingPDUs != 0 {
		t.Errorf("after a success FedDestination = %+v; want no backoff, a last success, nothing pending", d)
	}
}

func TestQueueBackoffCap(t *testing.T) {
	q := newQueue(nil, nil, federation.QueueConfig{MinBackoff: 2 * time.Second, MaxBackoff: time.Hour})
	for _, c := range []struct {
		failures int
		want     time.Duration
	}{{1, 2 * time.Second}, {2, 4 * time.Second}, {3, 8 * time.Second}, {11, 2048 * time.Second}, {12, time.Hour}, {500, time.Hour}} {
		if got := federation.QueueBackoff(q, c.failures); got != c.want {
			t.Errorf("backoff after %d failures = %v, want %v", c.failures, got, c.want)
		}
	}
}

func TestQueueRestartResumesTxnAndBackoff(t *testing.T) {
	db := openDB(t)
	down := newFake(func(ctx context.Context, c call) error { return fmt.Errorf("refused: %w", federation.ErrUnreachable) })
	q1 := newQueue(db, down, federation.QueueConfig{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	stop := startQueue(t, q1)
	mustSendPDU(t, q1, 1, "!r", "b.example")
	mustSendPDU(t, q1, 2, "!r", "b.example")
	waitFor(t, down, "a failed attempt recorded", func() bool {
		d, err := db.FedDestination(context.Background(), "b.example")
		return err == nil && d.Failures == 1
	})
	stop()
	first := down.callsTo("b.example")[0]

	up := newFake(nil)
	q2 := newQueue(db, up, federation.QueueConfig{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	startQueue(t, q2)
	// Still backing off after the restart: nothing is sent until Wake.
	waitFor(t, up, "the backoff read back", func() bool { return q2.Stats().BackingOff == 1 })
	if p, _ := q2.Pending("b.example"); p != 2 {
		t.Errorf("Pending(b) after restart = %d, want 2", p)
	}
	if n := len(up.callsTo("b.example")); n != 0 {
		t.Fatalf("sent %d transactions while backing off", n)
	}
	q2.Wake("b.example")
	waitFor(t, up, "delivery after Wake", func() bool { return len(pduNumbers(up.callsTo("b.example"))) == 2 })
	calls := up.callsTo("b.example")
	if got := calls[0]; got.txnID != first.txnID || !slices.Equal(pduNumbers([]call{got}), pduNumbers([]call{first})) {
		t.Errorf("after restart sent %s %v first, want a retry of %s %v", got.txnID, pduNumbers([]call{got}), first.txnID, pduNumbers([]call{first}))
	}
	if got := pduNumbers(calls); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("after restart sent %v, want [1 2]", got)
	}
	waitFor(t, up, "the backoff reset", func() bool {
		d, err := db.FedDestination(context.Background(), "b.example")
		return err == nil && d.Failures == 0 && q2.Stats().BackingOff == 0
	})
}

func TestQueueCatchUp(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	// A destination failing for long, with a backlog in two rooms.
	now := time.Now()
	if err := db.FedTxnFailed(ctx, "b.example", 20, time.Hour, now.Add(time.Hour), now.Add(-2*time.Hour)); err != nil {
		t.Fatalf("FedTxnFailed: %v", err)
	}
	f := newFake(nil)
	q := newQueue(db, f, federation.QueueConfig{CatchUpAfter: time.Hour, CatchUpPerRoom: 3})
	for i := 1; i <= 10; i++ {
		mustSendPDU(t, q, i, "!r", "b.example")
		mustSendPDU(t, q, 100+i, "!s", "b.example")
	}
	mustSendPDU(t, q, 200, "!r", "c.example") // a healthy destination keeps everything
	startQueue(t, q)
	waitFor(t, f, "the backoff read back", func() bool { return q.Stats().BackingOff == 1 })
	q.Wake("b.example")
	waitFor(t, f, "catch-up delivery", func() bool { return len(f.callsTo("b.example")) == 1 })
	if got, want := pduNumbers(f.callsTo("b.example")), []int{8, 108, 9, 109, 10, 110}; !slices.Equal(got, want) {
		t.Errorf("catch-up sent %v, want %v", got, want)
	}
	waitFor(t, f, "c's PDU", func() bool { return len(f.callsTo("c.example")) == 1 })
}

func TestQueueDeadDestinationDoesNotBlockOthers(t *testing.T) {
	db := openDB(t)
	f := newFake(func(ctx context.Context, c call) error {
		if c.dest == "dead.example" {
			<-ctx.Done() // hangs until the attempt times out or Run ends
			return ctx.Err()
		}
		return nil
	})
	q := newQueue(db, f, federation.QueueConfig{SendTimeout: time.Hour})
	mustSendPDU(t, q, 1, "!r", "dead.example", "live.example")
	startQueue(t, q)
	waitFor(t, f, "dead's attempt to start", func() bool { return len(f.callsTo("dead.example")) == 1 })
	for i := 2; i <= 60; i++ {
		mustSendPDU(t, q, i, "!r", "dead.example", "live.example")
	}
	waitFor(t, f, "live's PDUs", func() bool { return len(pduNumbers(f.callsTo("live.example"))) == 60 })
	if p, _ := q.Pending("dead.example"); p != 60 {
		t.Errorf("Pending(dead) = %d, want 60", p)
	}
}

func TestQueueEDUCoalescing(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	f := newFake(nil)
	q := newQueue(db, f, federation.QueueConfig{})
	send := func(edu federation.EDU, key string) {
		t.Helper()
		if err := q.SendEDU(ctx, []string{"b.example"}, edu, key); err != nil {
			t.Fatalf("SendEDU: %v", err)
		}
	}
	// Before Run: all of these wait, and only the latest of each key is
	// sent.
	send(federation.TypingEDU("!r", "@a:us.example", true), "!r @a")
	send(federation.TypingEDU("!r", "@b:us.example", true), "!r @b")
	send(federation.TypingEDU("!r", "@a:us.example", false), "!r @a")
	send(federation.PresenceEDU(federation.PresenceUpdate{UserID: "@a:us.example", Presence: "online"}), "@a")
	send(federation.PresenceEDU(federation.PresenceUpdate{UserID: "@a:us.example", Presence: "unavailable"}), "@a")
	send(federation.ReceiptEDU("!r", "@a:us.example", "$1", "", 1), "!r @a")
	send(federation.ReceiptEDU("!r", "@a:us.example", "$2", "", 2), "!r @a")
	send(federation.ReceiptEDU("!r", "@a:us.example", "$t", "$root", 3), "!r @a $root")
	startQueue(t, q)
	waitFor(t, f, "the EDUs", func() bool { return len(f.callsTo("b.example")) == 1 })
	var got []string
	for _, e := range f.callsTo("b.example")[0].txn.EDUs {
		got = append(got, e.Type+" "+string(e.Content))
	}
	want := []string{
		// stored EDUs first, then those in memory
		`m.receipt {"!r":{"m.read":{"@a:us.example":{"event_ids":["$2"],"data":{"ts":2}}}}}`,
		`m.receipt {"!r":{"m.read":{"@a:us.example":{"event_ids":["$t"],"data":{"ts":3,"thread_id":"$root"}}}}}`,
		`m.typing {"room_id":"!r","user_id":"@b:us.example","typing":true}`,
		`m.typing {"room_id":"!r","user_id":"@a:us.example","typing":false}`,
		`m.presence {"push":[{"user_id":"@a:us.example","presence":"unavailable","last_active_ago":0,"currently_active":false}]}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("EDUs sent:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestQueueFanOut(t *testing.T) {
	db := openDB(t)
	f := newFake(nil)
	servers := map[id.RoomID][]string{"!r:us.example": {us, "b.example", "c.example"}}
	q := newQueue(db, f, federation.QueueConfig{
		RoomServers: func(ctx context.Context, roomID id.RoomID) ([]string, error) {
			if s, ok := servers[roomID]; ok {
				return s, nil
			}
			return nil, errors.New("unknown room")
		},
	})
	startQueue(t, q)
	key, err := keys.Generate("v1")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	refID := id.EventID("$" + strings.Repeat("A", 43))
	ev := func(sender, typ string, stateKey *string, content string) *store.Event {
		t.Helper()
		n++
		p, err := event.New("10", event.Proto{Type: typ, StateKey: stateKey, Sender: id.UserID(sender), RoomID: "!r:us.example",
			Content: []byte(content), Depth: int64(n), PrevEvents: []id.EventID{refID}, AuthEvents: []id.EventID{refID}}, us, key)
		if err != nil {
			t.Fatalf("event.New: %v", err)
		}
		return &store.Event{PDU: p, StreamPos: int64(n)}
	}
	ptr := func(s string) *string { return &s }

	msg := ev("@a:us.example", "m.room.message", nil, `{"body":"hi"}`)
	remote := ev("@x:b.example", "m.room.message", nil, `{"body":"not ours"}`)
	kick := ev("@a:us.example", event.TypeMember, ptr("@d:d.example"), `{"membership":"leave"}`)
	invite := ev("@a:us.example", event.TypeMember, ptr("@e:e.example"), `{"membership":"invite"}`)
	outlier := ev("@a:us.example", "m.room.message", nil, `{}`)
	outlier.StreamPos = 0
	for _, e := range []*store.Event{msg, remote, kick, invite, outlier} {
		q.RoomEvent(e)
	}
	q.Typing("!r:us.example", "@a:us.example", true)
	q.Typing("!r:us.example", "@x:b.example", true) // remote: not ours to send
	q.Receipt(store.Receipt{RoomID: "!r:us.example", UserID: "@a:us.example", Type: "m.read", EventID: msg.EventID(), TS: 5})
	q.Receipt(store.Receipt{RoomID: "!r:us.example", UserID: "@a:us.example", Type: "m.read.private", EventID: msg.EventID(), TS: 6})

	ids := func(dest string) (evs []id.EventID, edus []string) {
		for _, c := range f.callsTo(dest) {
			for _, p := range c.txn.PDUs {
				var v struct{ Content json.RawMessage }
				json.Unmarshal(p, &v)
				for _, e := range []*store.Event{msg, remote, kick, invite, outlier} {
					if string(e.JSON()) == string(p) {
						evs = append(evs, e.EventID())
					}
				}
			}
			for _, e := range c.txn.EDUs {
				edus = append(edus, e.Type)
			}
		}
		return evs, edus
	}
	waitFor(t, f, "the fan-out", func() bool {
		b, bedus := ids("b.example")
		c, _ := ids("c.example")
		d, _ := ids("d.example")
		return len(b) == 3 && len(c) == 3 && len(d) == 1 && len(bedus) == 2
	})
	b, bedus := ids("b.example")
	if want := []id.EventID{msg.EventID(), kick.EventID(), invite.EventID()}; !slices.Equal(b, want) {
		t.Errorf("events to b = %v, want %v", b, want)
	}
	if d, _ := ids("d.example"); !slices.Equal(d, []id.EventID{kick.EventID()}) {
		t.Errorf("events to d (kicked) = %v, want the kick", d)
	}
	if e, _ := ids("e.example"); len(e) != 0 {
		t.Errorf("events to e (invited) = %v, want none (the room service sends invites)", e)
	}
	slices.Sort(bedus)
	if want := []string{"m.receipt", "m.typing"}; !slices.Equal(bedus, want) {
		t.Errorf("EDUs to b = %v, want %v", bedus, want)
	}
}

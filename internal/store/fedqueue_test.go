package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func mustQueuePDU(tb testing.TB, db *store.DB, eventID, roomID string, dests ...string) {
	tb.Helper()
	p := store.FedPDU{EventID: id.EventID(eventID), RoomID: id.RoomID(roomID), PDU: []byte(`{"e":"` + eventID + `"}`), Destinations: dests}
	if err := db.QueueFedPDUs(context.Background(), []store.FedPDU{p}); err != nil {
		tb.Fatalf("QueueFedPDUs(%s): %v", eventID, err)
	}
}

func mustClaim(tb testing.TB, db *store.DB, dest string, maxPDUs, maxEDUs int) store.FedTxn {
	tb.Helper()
	t, err := db.ClaimFedTxn(context.Background(), dest, maxPDUs, maxEDUs)
	if err != nil {
		tb.Fatalf("ClaimFedTxn(%s): %v", dest, err)
	}
	return t
}

// txnString shows a transaction's PDUs and EDUs compactly.
func txnString(t store.FedTxn) string {
	var b []string
	for _, p := range t.PDUs {
		b = append(b, string(p))
	}
	for _, e := range t.EDUs {
		b = append(b, e.Type+"="+string(e.Content))
	}
	return strings.Join(b, " ")
}

func TestFedQueuePDUs(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustQueuePDU(t, db, "$1", "!r", "a", "b")
		mustQueuePDU(t, db, "$2", "!r", "a")
		mustQueuePDU(t, db, "$3", "!r", "a", "b", "a") // a repeat in the list
		mustQueuePDU(t, db, "$2", "!r", "b", "a")      // again: adds b only
		// Several in one transaction, in order.
		if err := db.QueueFedPDUs(ctx, []store.FedPDU{
			{EventID: "$4", RoomID: "!r", PDU: []byte(`{"e":"$4"}`), Destinations: []string{"c"}},
			{EventID: "$5", RoomID: "!r", PDU: []byte(`{"e":"$5"}`)}, // no destination: not stored
			{EventID: "$6", RoomID: "!r", PDU: []byte(`{"e":"$6"}`), Destinations: []string{"c"}},
		}); err != nil {
			t.Fatalf("QueueFedPDUs: %v", err)
		}
		tc := mustClaim(t, db, "c", 50, 10)
		if got := txnString(tc); got != `{"e":"$4"} {"e":"$6"}` {
			t.Fatalf("claim for c = %q", got)
		}
		if err := db.FedTxnSent(ctx, "c", tc.ID, time.UnixMilli(500)); err != nil {
			t.Fatalf("FedTxnSent: %v", err)
		}

		t1 := mustClaim(t, db, "a", 2, 10)
		if got, want := txnString(t1), `{"e":"$1"} {"e":"$2"}`; got != want || t1.ID == "" || t1.Retry {
			t.Fatalf("first claim for a = %q %q retry=%v, want %q with an ID", t1.ID, got, t1.Retry, want)
		}
		// Not acknowledged: the same transaction again.
		again := mustClaim(t, db, "a", 2, 10)
		if again.ID != t1.ID || !again.Retry || txnString(again) != txnString(t1) {
			t.Fatalf("second claim for a = %q %q retry=%v, want the first again (%q)", again.ID, txnString(again), again.Retry, t1.ID)
		}
		if err := db.FedTxnSent(ctx, "a", t1.ID, time.UnixMilli(1000)); err != nil {
			t.Fatalf("FedTxnSent: %v", err)
		}
		t2 := mustClaim(t, db, "a", 2, 10)
		if got := txnString(t2); got != `{"e":"$3"}` || t2.ID == t1.ID {
			t.Fatalf("claim after ack = %q %q, want $3 under a new ID", t2.ID, got)
		}
		// An acknowledgement of another ID (an EDU-only transaction) does
		// not dequeue the one in flight.
		if err := db.FedTxnSent(ctx, "a", "other", time.UnixMilli(1500)); err != nil {
			t.Fatalf("FedTxnSent(other): %v", err)
		}
		if p, _, err := db.FedPending(ctx, "a"); err != nil || p != 1 {
			t.Fatalf("FedPending(a) = %d, %v; want 1", p, err)
		}
		if err := db.FedTxnSent(ctx, "a", t2.ID, time.UnixMilli(2000)); err != nil {
			t.Fatalf("FedTxnSent: %v", err)
		}
		if empty := mustClaim(t, db, "a", 2, 10); empty.ID != "" || len(empty.PDUs) != 0 {
			t.Fatalf("claim of an empty queue = %+v, want empty", empty)
		}
		// b still gets everything, in order.
		tb := mustClaim(t, db, "b", 50, 10)
		if got := txnString(tb); got != `{"e":"$1"} {"e":"$2"} {"e":"$3"}` {
			t.Fatalf("claim for b = %q", got)
		}
		d, err := db.FedDestination(ctx, "a")
		if err != nil || d.LastSuccess.UnixMilli() != 2000 || d.PendingPDUs != 0 {
			t.Fatalf("FedDestination(a) = %+v, %v; want last success 2000, nothing pending", d, err)
		}
		if err := db.FedTxnSent(ctx, "b", tb.ID, time.UnixMilli(3000)); err != nil {
			t.Fatalf("FedTxnSent: %v", err)
		}
		// Every PDU was sent everywhere: the PDUs themselves are gone, so
		// queueing one again queues it anew.
		if ds, err := db.FedDestinations(ctx); err != nil || len(ds) != 0 {
			t.Fatalf("FedDestinations after everything was sent = %+v, %v; want none", ds, err)
		}
		mustQueuePDU(t, db, "$1", "!r", "a")
		if got := txnString(mustClaim(t, db, "a", 50, 10)); got != `{"e":"$1"}` {
			t.Fatalf("claim after queueing a sent PDU again = %q", got)
		}
	})
}

func TestFedQueueEDUs(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		q := func(dests []string, typ, content, key string) {
			t.Helper()
			if err := db.QueueFedEDU(ctx, dests, typ, []byte(content), key); err != nil {
				t.Fatalf("QueueFedEDU(%s): %v", content, err)
			}
		}
		q([]string{"a", "b"}, "m.receipt", `1`, "!r @u")
		q([]string{"a"}, "m.direct_to_device", `2`, "")
		q([]string{"a"}, "m.direct_to_device", `3`, "")
		q([]string{"a", "b", "a"}, "m.receipt", `4`, "!r @u") // replaces 1, moves to the end
		q([]string{"a"}, "m.receipt", `5`, "!r @v")
		mustQueuePDU(t, db, "$1", "!r", "a")

		ta := mustClaim(t, db, "a", 50, 3)
		if got, want := txnString(ta), `{"e":"$1"} m.direct_to_device=2 m.direct_to_device=3 m.receipt=4`; got != want {
			t.Fatalf("claim for a = %q, want %q", got, want)
		}
		// A newer receipt for the same key while the old one is in
		// flight: the retry lacks the old one, the next transaction has
		// the new one.
		q([]string{"a"}, "m.receipt", `6`, "!r @u")
		if got, want := txnString(mustClaim(t, db, "a", 50, 3)), `{"e":"$1"} m.direct_to_device=2 m.direct_to_device=3`; got != want {
			t.Fatalf("retry for a = %q, want %q", got, want)
		}
		if err := db.FedTxnSent(ctx, "a", ta.ID, time.Now()); err != nil {
			t.Fatalf("FedTxnSent: %v", err)
		}
		if got, want := txnString(mustClaim(t, db, "a", 50, 3)), `m.receipt=5 m.receipt=6`; got != want {
			t.Fatalf("next claim for a = %q, want %q", got, want)
		}
		if got, want := txnString(mustClaim(t, db, "b", 50, 3)), `m.receipt=4`; got != want {
			t.Fatalf("claim for b = %q, want %q", got, want)
		}
		if p, e, err := db.FedPending(ctx, "a"); err != nil || p != 0 || e != 2 {
			t.Fatalf("FedPending(a) = %d, %d, %v; want 0, 2", p, e, err)
		}
	})
}

func TestFedQueueBackoff(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := db.FedDestination(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("FedDestination of an unknown server: %v, want ErrNotFound", err)
		}
		mustQueuePDU(t, db, "$1", "!r", "a")
		t0 := time.UnixMilli(1_000_000)
		for i, b := range []time.Duration{2 * time.Second, 4 * time.Second} {
			now := t0.Add(time.Duration(i) * time.Minute)
			if err := db.FedTxnFailed(ctx, "a", i+1, b, now.Add(b), now); err != nil {
				t.Fatalf("FedTxnFailed: %v", err)
			}
		}
		if err := db.FedTxnFailed(ctx, "dead", 7, time.Hour, t0.Add(time.Hour), t0); err != nil {
			t.Fatalf("FedTxnFailed: %v", err)
		}
		ds, err := db.FedDestinations(ctx)
		if err != nil {
			t.Fatalf("FedDestinations: %v", err)
		}
		got := fmt.Sprint(len(ds))
		for _, d := range ds {
			got += fmt.Sprintf(" %s:%d,%v,%d,%d,%d", d.Name, d.Failures, d.Backoff, d.RetryAt.UnixMilli(), d.FailingSince.UnixMilli(), d.PendingPDUs)
		}
		want := fmt.Sprintf("2 a:2,4s,%d,%d,1 dead:7,1h0m0s,%d,%d,0",
			t0.Add(time.Minute+4*time.Second).UnixMilli(), t0.UnixMilli(), t0.Add(time.Hour).UnixMilli(), t0.UnixMilli())
		if got != want {
			t.Fatalf("FedDestinations = %s\nwant %s", got, want)
		}
		if err := db.FedTxnSent(ctx, "a", "x", t0.Add(time.Hour)); err != nil {
			t.Fatalf("FedTxnSent: %v", err)
		}
		d, err := db.FedDestination(ctx, "a")
		if err != nil || d.Failures != 0 || d.Backoff != 0 || !d.RetryAt.IsZero() || !d.FailingSince.IsZero() || !d.LastSuccess.Equal(t0.Add(time.Hour)) {
			t.Fatalf("after a success FedDestination = %+v, %v; want the backoff reset", d, err)
		}
	})
}

func TestFedQueueTrim(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for i := 1; i <= 5; i++ {
			mustQueuePDU(t, db, fmt.Sprintf("$r%d", i), "!r", "a", "b")
			mustQueuePDU(t, db, fmt.Sprintf("$s%d", i), "!s", "a")
		}
		// The first one is in flight: trimming leaves it.
		inFlight := mustClaim(t, db, "a", 1, 0)
		n, err := db.TrimFedPDUs(ctx, "a", 2)
		if err != nil || n != 5 {
			t.Fatalf("TrimFedPDUs = %d, %v; want 5 dropped", n, err)
		}
		if got, want := txnString(mustClaim(t, db, "a", 50, 0)), `{"e":"$r1"}`; got != want {
			t.Fatalf("retry after trim = %q, want %q", got, want)
		}
		if err := db.FedTxnSent(ctx, "a", inFlight.ID, time.Now()); err != nil {
			t.Fatalf("FedTxnSent: %v", err)
		}
		if got, want := txnString(mustClaim(t, db, "a", 50, 0)), `{"e":"$r4"} {"e":"$s4"} {"e":"$r5"} {"e":"$s5"}`; got != want {
			t.Fatalf("claim after trim = %q, want %q", got, want)
		}
		// b's queue is untouched.
		if got, want := txnString(mustClaim(t, db, "b", 50, 0)), `{"e":"$r1"} {"e":"$r2"} {"e":"$r3"} {"e":"$r4"} {"e":"$r5"}`; got != want {
			t.Fatalf("claim for b = %q, want %q", got, want)
		}
	})
}

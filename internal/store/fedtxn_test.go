package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestInboundTxns(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := db.InboundTxn(ctx, "remote.test", "t1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("InboundTxn before any answer: got %v, want ErrNotFound", err)
		}
		mustPut := func(origin, txnID, resp string) {
			t.Helper()
			if err := db.PutInboundTxn(ctx, origin, txnID, []byte(resp)); err != nil {
				t.Fatalf("PutInboundTxn(%s, %s): %v", origin, txnID, err)
			}
		}
		mustPut("remote.test", "t1", `{"pdus":{}}`)
		mustPut("remote.test", "t1", `{"pdus":{"$x":{}}}`) // a second answer keeps the first
		mustPut("other.test", "t1", `{"pdus":{"$o":{}}}`)  // txn IDs are per origin

		for _, c := range []struct{ origin, txnID, want string }{
			{"remote.test", "t1", `{"pdus":{}}`},
			{"other.test", "t1", `{"pdus":{"$o":{}}}`},
		} {
			got, err := db.InboundTxn(ctx, c.origin, c.txnID)
			if err != nil || string(got) != c.want {
				t.Errorf("InboundTxn(%s, %s) = %s, %v; want %s", c.origin, c.txnID, got, err, c.want)
			}
		}

		if n, err := db.PruneInboundTxns(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
			t.Errorf("PruneInboundTxns(an hour ago) = %d, %v; want 0 (both are newer)", n, err)
		}
		if n, err := db.PruneInboundTxns(ctx, time.Now().Add(time.Minute)); err != nil || n != 2 {
			t.Errorf("PruneInboundTxns(now) = %d, %v; want 2", n, err)
		}
		if _, err := db.InboundTxn(ctx, "remote.test", "t1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("InboundTxn after pruning: got %v, want ErrNotFound", err)
		}
	})
}

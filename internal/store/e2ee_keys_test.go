package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestE2EEOneTimeKeys(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const alice, dev = id.UserID("@alice:hs"), id.DeviceID("DEV")
		add := func(keys ...store.OneTimeKey) error {
			return db.WithTx(ctx, "test", func(tx *store.Tx) error { return tx.AddOneTimeKeys(ctx, alice, dev, keys) })
		}
		var keys []store.OneTimeKey
		for i := range 50 {
			keys = append(keys, store.OneTimeKey{Algorithm: "signed_curve25519", KeyID: fmt.Sprint(i), JSON: []byte(fmt.Sprintf(`{"key":"%d"}`, i))})
		}
		if err := add(keys...); err != nil {
			t.Fatalf("AddOneTimeKeys: %v", err)
		}
		if err := add(keys[3]); err != nil {
			t.Errorf("AddOneTimeKeys of a stored key with the same content: %v", err)
		}
		var ce *store.KeyConflictError
		if err := add(store.OneTimeKey{Algorithm: "signed_curve25519", KeyID: "3", JSON: []byte(`{"key":"x"}`)}); !errors.As(err, &ce) || ce.KeyID != "3" {
			t.Errorf("AddOneTimeKeys of a stored key ID with other content: %v, want a KeyConflictError for 3", err)
		}
		err := db.WithTx(ctx, "test", func(tx *store.Tx) error {
			return tx.SetFallbackKeys(ctx, alice, dev, []store.OneTimeKey{{Algorithm: "signed_curve25519", KeyID: "F", JSON: []byte(`{"key":"F"}`)}})
		})
		if err != nil {
			t.Fatal(err)
		}
		counts, fallback, err := db.KeyCounts(ctx, alice, dev)
		if err != nil || counts["signed_curve25519"] != 50 || !slices.Equal(fallback, []string{"signed_curve25519"}) {
			t.Fatalf("KeyCounts = %v, %v, %v; want 50 and [signed_curve25519]", counts, fallback, err)
		}

		// 80 concurrent claims: the 50 keys once each, then the fallback.
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		for range 80 {
			wg.Go(func() {
				ks, err := db.ClaimKeys(ctx, []store.KeyClaim{{UserID: alice, DeviceID: dev, Algorithm: "signed_curve25519"}})
				if err != nil || len(ks) != 1 {
					t.Errorf("ClaimKeys = %v, %v; want one key", ks, err)
					return
				}
				mu.Lock()
				got[ks[0].KeyID]++
				mu.Unlock()
			})
		}
		wg.Wait()
		for k, n := range got {
			if k != "F" && n != 1 {
				t.Errorf("key %s handed out %d times", k, n)
			}
		}
		if len(got) != 51 || got["F"] != 30 {
			t.Errorf("claims got %d distinct keys and the fallback %d times; want 51 and 30", len(got), got["F"])
		}
		counts, fallback, err = db.KeyCounts(ctx, alice, dev)
		if err != nil || counts["signed_curve25519"] != 0 || len(fallback) != 0 {
			t.Errorf("KeyCounts after the claims = %v, %v, %v; want none left, fallback used", counts, fallback, err)
		}
		// The same fallback key again stays used; another one is unused.
		setFallback := func(keyID string) {
			t.Helper()
			err := db.WithTx(ctx, "test", func(tx *store.Tx) error {
				return tx.SetFallbackKeys(ctx, alice, dev, []store.OneTimeKey{{Algorithm: "signed_curve25519", KeyID: keyID, JSON: []byte(`{"key":"` + keyID + `"}`)}})
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		setFallback("F")
		if _, fallback, _ = db.KeyCounts(ctx, alice, dev); len(fallback) != 0 {
			t.Errorf("same fallback key again: unused %v, want none", fallback)
		}
		setFallback("G")
		if _, fallback, _ = db.KeyCounts(ctx, alice, dev); !slices.Equal(fallback, []string{"signed_curve25519"}) {
			t.Errorf("new fallback key: unused %v", fallback)
		}
		ks, err := db.ClaimKeys(ctx, []store.KeyClaim{{UserID: alice, DeviceID: "NOSUCH", Algorithm: "signed_curve25519"}})
		if err != nil || len(ks) != 0 {
			t.Errorf("ClaimKeys of an unknown device = %v, %v; want nothing", ks, err)
		}
	})
}

func TestE2EEDeviceKeysAndStream(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const alice, bob = id.UserID("@alice:hs"), id.UserID("@bob:hs")
		var pos int64
		err := db.WithTx(ctx, "test", func(tx *store.Tx) error {
			for _, d := range []id.DeviceID{"A", "B"} {
				if err := tx.SetDeviceKeys(ctx, alice, d, []byte(`{"device_id":"`+string(d)+`"}`)); err != nil {
					return err
				}
				if err := tx.AddOneTimeKeys(ctx, alice, d, []store.OneTimeKey{{Algorithm: "x", KeyID: "1", JSON: []byte(`"k"`)}}); err != nil {
					return err
				}
			}
			var err error
			pos, err = tx.MarkDeviceListChanged(ctx, "", alice)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		dks, err := db.DeviceKeysOf(ctx, alice, "", nil)
		if err != nil || len(dks) != 2 || dks[0].DeviceID != "A" {
			t.Fatalf("DeviceKeysOf = %+v, %v; want A and B", dks, err)
		}
		if dks, _ = db.DeviceKeysOf(ctx, alice, "", []id.DeviceID{"B", "C"}); len(dks) != 1 || dks[0].DeviceID != "B" {
			t.Errorf("DeviceKeysOf B and C = %+v, want B", dks)
		}
		// A user without rooms sees its own changes only.
		changed, left, err := db.DeviceListChanges(ctx, alice, pos-1, pos)
		if err != nil || !slices.Equal(changed, []id.UserID{alice}) || len(left) != 0 {
			t.Errorf("DeviceListChanges(alice) = %v, %v, %v; want [alice]", changed, left, err)
		}
		if changed, _, _ = db.DeviceListChanges(ctx, bob, pos-1, pos); len(changed) != 0 {
			t.Errorf("DeviceListChanges(bob) = %v, want nothing (no shared room)", changed)
		}
		if changed, _, _ = db.DeviceListChanges(ctx, alice, pos, pos+5); len(changed) != 0 {
			t.Errorf("DeviceListChanges after the change = %v, want nothing", changed)
		}
		// A change private to bob (he signed alice's master key).
		err = db.WithTx(ctx, "test", func(tx *store.Tx) error {
			var err error
			pos, err = tx.MarkDeviceListChanged(ctx, bob, alice)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if changed, _, _ = db.DeviceListChanges(ctx, bob, pos-1, pos); !slices.Equal(changed, []id.UserID{alice}) {
			t.Errorf("DeviceListChanges(bob) of his private change = %v, want [alice]", changed)
		}

		// EDU stream ids chain per user.
		for i := int64(1); i <= 3; i++ {
			var next, prev int64
			err := db.WithTx(ctx, "test", func(tx *store.Tx) error {
				var err error
				next, prev, err = tx.NextDeviceListStreamID(ctx, alice)
				return err
			})
			if err != nil || next != i || prev != i-1 {
				t.Errorf("NextDeviceListStreamID #%d = %d, %d, %v", i, next, prev, err)
			}
		}
		if n, err := db.DeviceListStreamID(ctx, alice); n != 3 || err != nil {
			t.Errorf("DeviceListStreamID = %d, %v; want 3", n, err)
		}
		if n, err := db.DeviceListStreamID(ctx, bob); n != 0 || err != nil {
			t.Errorf("DeviceListStreamID of a user without updates = %d, %v; want 0", n, err)
		}

		// Deleting every device: the keys go, and the devices that had
		// keys are returned.
		var had []id.DeviceID
		err = db.WithTx(ctx, "test", func(tx *store.Tx) error {
			var err error
			had, err = tx.DeleteDeviceKeys(ctx, alice, nil)
			return err
		})
		slices.Sort(had)
		if err != nil || !slices.Equal(had, []id.DeviceID{"A", "B"}) {
			t.Errorf("DeleteDeviceKeys = %v, %v; want A and B", had, err)
		}
		if counts, _, _ := db.KeyCounts(ctx, alice, "A"); counts["x"] != 0 {
			t.Errorf("one-time keys left after deletion: %v", counts)
		}
	})
}

func TestE2EECrossSigningAndSignatures(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const alice, bob = id.UserID("@alice:hs"), id.UserID("@bob:hs")
		err := db.WithTx(ctx, "test", func(tx *store.Tx) error {
			for _, k := range []store.CrossSigningKey{
				{UserID: alice, Type: store.MasterKey, KeyID: "M1", JSON: []byte(`{"m":1}`)},
				{UserID: alice, Type: store.SelfSigningKey, KeyID: "S1", JSON: []byte(`{"s":1}`)},
			} {
				if err := tx.SetCrossSigningKey(ctx, k); err != nil {
					return err
				}
			}
			return tx.AddSignatures(ctx, []store.Signature{
				{TargetUser: alice, TargetKey: "M1", SignerUser: bob, SignerKey: "ed25519:U", Signature: "sig1"},
				{TargetUser: alice, TargetKey: "DEV", SignerUser: alice, SignerKey: "ed25519:S1", Signature: "sig2"},
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		ks, err := db.CrossSigningKeys(ctx, []id.UserID{alice, bob})
		if err != nil || len(ks) != 1 || ks[alice][store.MasterKey].KeyID != "M1" || ks[alice][store.SelfSigningKey].KeyID != "S1" {
			t.Fatalf("CrossSigningKeys = %+v, %v", ks, err)
		}
		sigs, err := db.SignaturesOn(ctx, []id.UserID{alice})
		if err != nil || len(sigs) != 2 {
			t.Fatalf("SignaturesOn = %+v, %v; want 2", sigs, err)
		}
		// A new master key drops the signatures on the old one.
		err = db.WithTx(ctx, "test", func(tx *store.Tx) error {
			return tx.SetCrossSigningKey(ctx, store.CrossSigningKey{UserID: alice, Type: store.MasterKey, KeyID: "M2", JSON: []byte(`{"m":2}`)})
		})
		if err != nil {
			t.Fatal(err)
		}
		sigs, _ = db.SignaturesOn(ctx, []id.UserID{alice})
		if len(sigs) != 1 || sigs[0].TargetKey != "DEV" {
			t.Errorf("SignaturesOn after a new master key = %+v, want only the device's", sigs)
		}
	})
}

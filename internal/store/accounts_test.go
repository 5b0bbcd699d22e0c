package store_test

import (
	"context"
	"errors"
	"testing"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestAccounts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.CreateAccount(ctx, store.Account{Localpart: "alice", PasswordHash: "h"}, "Alice"); err != nil {
			t.Fatalf("CreateAccount: %v", err)
		}
		if err := db.CreateAccount(ctx, store.Account{Localpart: "alice"}, ""); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("CreateAccount twice: got %v, want ErrConflict", err)
		}
		a, err := db.Account(ctx, "alice")
		if err != nil || a.PasswordHash != "h" || a.IsAdmin || a.Deactivated {
			t.Fatalf("Account = %+v, %v", a, err)
		}
		if _, err := db.Account(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Account(bob): got %v, want ErrNotFound", err)
		}
		p, err := db.Profile(ctx, "alice")
		if err != nil || p.DisplayName != "Alice" {
			t.Fatalf("Profile = %+v, %v", p, err)
		}
		if err := db.SetAdmin(ctx, "alice", true); err != nil {
			t.Fatalf("SetAdmin: %v", err)
		}
		if err := db.SetPassword(ctx, "nobody", "x"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("SetPassword(nobody): got %v, want ErrNotFound", err)
		}
		sess := store.NewSession{Localpart: "alice", DeviceID: "DEV", DisplayName: "phone", AccessHash: []byte("a1"), RefreshHash: []byte("r1"), ExpiresTS: 99}
		if err := db.CreateSession(ctx, sess); err != nil {
			t.Fatalf("CreateSession: %v", err)
		}
		o, err := db.AccessToken(ctx, []byte("a1"))
		if err != nil || o.Localpart != "alice" || o.DeviceID != "DEV" || !o.IsAdmin || o.ExpiresTS != 99 {
			t.Fatalf("AccessToken = %+v, %v", o, err)
		}
		// Refresh: old access token revoked at once, old refresh token kept
		// until the new access token is used.
		lp, dev, err := db.Refresh(ctx, []byte("r1"), []byte("a2"), 0, []byte("r2"))
		if err != nil || lp != "alice" || dev != "DEV" {
			t.Fatalf("Refresh = %q %q %v", lp, dev, err)
		}
		if _, err := db.AccessToken(ctx, []byte("a1")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("AccessToken(a1) after refresh: got %v, want ErrNotFound", err)
		}
		o, err = db.AccessToken(ctx, []byte("a2"))
		if err != nil || string(o.PrevRefreshHash) != "r1" {
			t.Fatalf("AccessToken(a2) = %+v, %v", o, err)
		}
		if err := db.RevokeReplacedRefresh(ctx, []byte("a2"), o.PrevRefreshHash); err != nil {
			t.Fatalf("RevokeReplacedRefresh: %v", err)
		}
		if _, _, err := db.Refresh(ctx, []byte("r1"), []byte("a3"), 0, []byte("r3")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Refresh(r1) after use of a2: got %v, want ErrNotFound", err)
		}
		devs, err := db.Devices(ctx, "alice")
		if err != nil || len(devs) != 1 || devs[0].DisplayName != "phone" {
			t.Fatalf("Devices = %+v, %v", devs, err)
		}
		if _, _, err := db.DeleteAccessTokenDevice(ctx, []byte("a2")); err != nil {
			t.Fatalf("DeleteAccessTokenDevice: %v", err)
		}
		if _, err := db.Device(ctx, "alice", "DEV"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Device after logout: got %v, want ErrNotFound", err)
		}
		if _, _, err := db.Refresh(ctx, []byte("r2"), []byte("a4"), 0, nil); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Refresh(r2) after logout: got %v, want ErrNotFound", err)
		}
		if err := db.Deactivate(ctx, "alice"); err != nil {
			t.Fatalf("Deactivate: %v", err)
		}
		if ok, err := db.AccountExists(ctx, "alice"); !ok || err != nil {
			t.Fatalf("AccountExists after deactivate = %v, %v; want true (IDs are never reused)", ok, err)
		}
	})
}

func TestRegistrationTokens(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		one := 1
		if err := db.CreateRegistrationToken(ctx, store.RegistrationToken{Token: "tok", UsesAllowed: &one}); err != nil {
			t.Fatalf("CreateRegistrationToken: %v", err)
		}
		for _, id := range []string{"s1", "s2"} {
			if err := db.CreateUIASession(ctx, store.UIASession{ID: id, Operation: "register", CreatedTS: 1}); err != nil {
				t.Fatalf("CreateUIASession: %v", err)
			}
		}
		if err := db.ReserveRegistrationToken(ctx, "s1", "tok"); err != nil {
			t.Fatalf("ReserveRegistrationToken(s1): %v", err)
		}
		if err := db.ReserveRegistrationToken(ctx, "s2", "tok"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("ReserveRegistrationToken(s2) with the only use pending: got %v, want ErrNotFound", err)
		}
		if n, err := db.ExpireUIASessions(ctx, 2); err != nil || n != 2 {
			t.Fatalf("ExpireUIASessions = %d, %v", n, err)
		}
		tok, err := db.RegistrationToken(ctx, "tok")
		if err != nil || tok.Pending != 0 {
			t.Fatalf("RegistrationToken after expiry = %+v, %v; want pending 0", tok, err)
		}
	})
}

func TestMigrationsIdempotent(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			o := e.Options(t)
			for i := 0; i < 2; i++ {
				db := storetest.Open(t, o)
				v, err := db.SchemaVersion(context.Background())
				if err != nil || v < 1 {
					t.Fatalf("SchemaVersion = %d, %v", v, err)
				}
				db.Close()
			}
		})
	}
}

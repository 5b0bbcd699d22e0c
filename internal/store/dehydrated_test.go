package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestDehydratedDevices(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for _, lp := range []string{"alice", "bob"} {
			if err := db.CreateAccount(ctx, store.Account{Localpart: lp}, ""); err != nil {
				t.Fatalf("CreateAccount(%s): %v", lp, err)
			}
		}
		if err := db.CreateSession(ctx, store.NewSession{Localpart: "alice", DeviceID: "PHONE", AccessHash: []byte("tok")}); err != nil {
			t.Fatalf("CreateSession: %v", err)
		}
		devices := func(lp string) []string {
			t.Helper()
			ds, err := db.Devices(ctx, lp)
			if err != nil {
				t.Fatalf("Devices(%s): %v", lp, err)
			}
			var ids []string
			for _, d := range ds {
				ids = append(ids, d.DeviceID)
			}
			return ids
		}
		want := func(lp, deviceID, data string) {
			t.Helper()
			d, err := db.DehydratedDevice(ctx, lp)
			if deviceID == "" {
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("DehydratedDevice(%s) = %+v, %v; want ErrNotFound", lp, d, err)
				}
				return
			}
			if err != nil || d.DeviceID != deviceID || string(d.DeviceData) != data {
				t.Errorf("DehydratedDevice(%s) = %q %s, %v; want %q %s", lp, d.DeviceID, d.DeviceData, err, deviceID, data)
			}
		}

		want("alice", "", "")
		old, err := db.PutDehydratedDevice(ctx, "alice", "D1", "Dehydrated", []byte(`{"n":1}`))
		if err != nil || old != "" {
			t.Fatalf("PutDehydratedDevice(D1) = %q, %v; want no previous one", old, err)
		}
		want("alice", "D1", `{"n":1}`)
		if d, err := db.Device(ctx, "alice", "D1"); err != nil || d.DisplayName != "Dehydrated" {
			t.Errorf("Device(D1) = %+v, %v; want a device named Dehydrated", d, err)
		}
		want("bob", "", "")

		// Replacing deletes the previous device.
		if old, err = db.PutDehydratedDevice(ctx, "alice", "D2", "", []byte(`{"n":2}`)); err != nil || old != "D1" {
			t.Fatalf("PutDehydratedDevice(D2) = %q, %v; want previous D1", old, err)
		}
		want("alice", "D2", `{"n":2}`)
		// Devices list by creation time, then ID: PHONE and D2 may have
		// been created in the same millisecond.
		if got := devices("alice"); len(got) != 2 || !slices.Contains(got, "PHONE") || !slices.Contains(got, "D2") {
			t.Errorf("devices after replacing = %v, want PHONE and D2", got)
		}
		// The same ID again replaces it too.
		if old, err = db.PutDehydratedDevice(ctx, "alice", "D2", "", []byte(`{"n":3}`)); err != nil || old != "D2" {
			t.Fatalf("PutDehydratedDevice(D2 again) = %q, %v; want previous D2", old, err)
		}
		want("alice", "D2", `{"n":3}`)
		// An ordinary device's ID is refused, and nothing changes.
		if _, err := db.PutDehydratedDevice(ctx, "alice", "PHONE", "", []byte(`{}`)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("PutDehydratedDevice(PHONE) = %v, want ErrConflict", err)
		}
		want("alice", "D2", `{"n":3}`)

		// Deleting the device by any route deletes the dehydrated device.
		if err := db.DeleteDevices(ctx, "alice", []string{"D2"}); err != nil {
			t.Fatalf("DeleteDevices(D2): %v", err)
		}
		want("alice", "", "")
		if _, err := db.PutDehydratedDevice(ctx, "alice", "D3", "", []byte(`{}`)); err != nil {
			t.Fatalf("PutDehydratedDevice(D3): %v", err)
		}
		if err := db.DeleteAllDevices(ctx, "alice", "PHONE"); err != nil {
			t.Fatalf("DeleteAllDevices: %v", err)
		}
		want("alice", "", "")

		if _, err := db.PutDehydratedDevice(ctx, "alice", "D4", "", []byte(`{}`)); err != nil {
			t.Fatalf("PutDehydratedDevice(D4): %v", err)
		}
		if id, err := db.DeleteDehydratedDevice(ctx, "alice"); err != nil || id != "D4" {
			t.Errorf("DeleteDehydratedDevice = %q, %v; want D4", id, err)
		}
		if _, err := db.Device(ctx, "alice", "D4"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Device(D4) after DeleteDehydratedDevice = %v, want ErrNotFound", err)
		}
		if _, err := db.DeleteDehydratedDevice(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteDehydratedDevice(none) = %v, want ErrNotFound", err)
		}
		if got := devices("alice"); len(got) != 1 || got[0] != "PHONE" {
			t.Errorf("devices at the end = %v, want [PHONE]", got)
		}
	})
}

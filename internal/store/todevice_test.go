package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// mustDevices creates accounts with devices: localpart → device IDs.
func mustDevices(t *testing.T, db *store.DB, devs map[string][]string) {
	t.Helper()
	ctx := context.Background()
	for lp, ids := range devs {
		if err := db.CreateAccount(ctx, store.Account{Localpart: lp}, ""); err != nil && !errors.Is(err, store.ErrConflict) {
			t.Fatalf("CreateAccount(%s): %v", lp, err)
		}
		for _, d := range ids {
			if err := db.CreateSession(ctx, store.NewSession{Localpart: lp, DeviceID: d, AccessHash: []byte(lp + "/" + d)}); err != nil {
				t.Fatalf("CreateSession(%s, %s): %v", lp, d, err)
			}
		}
	}
}

func contents(ms []store.ToDeviceMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Content)
	}
	return out
}

func TestToDevice(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustDevices(t, db, map[string][]string{"alice": {"A1"}, "bob": {"B1", "B2", "B3"}})
		bob := store.ToDeviceRecipient{UserID: "@bob:hs", Localpart: "bob"}

		// "*" to every device, one device with its own content, an
		// unknown device skipped.
		r := bob
		r.All = json.RawMessage(`{"n":"all"}`)
		r.Devices = map[string]json.RawMessage{"B2": json.RawMessage(`{"n":"b2"}`), "NOPE": json.RawMessage(`{}`)}
		pos1, users, err := db.PutToDevice(ctx, store.ToDeviceBatch{Sender: "@alice:hs", Type: "m.test",
			TxnUser: "@alice:hs", TxnDevice: "A1", TxnID: "t1", Recipients: []store.ToDeviceRecipient{r}})
		if err != nil || pos1 == 0 || len(users) != 1 || users[0] != "@bob:hs" {
			t.Fatalf("PutToDevice = %d, %v, %v; want a position and [@bob:hs]", pos1, users, err)
		}
		for dev, want := range map[string]string{"B1": `{"n":"all"}`, "B2": `{"n":"b2"}`, "B3": `{"n":"all"}`, "NOPE": ""} {
			ms, err := db.ToDeviceAfter(ctx, "@bob:hs", dev, 0, 10)
			got := ""
			if len(ms) == 1 {
				got = string(ms[0].Content)
				if ms[0].Pos != pos1 || ms[0].Sender != "@alice:hs" || ms[0].Type != "m.test" {
					t.Errorf("ToDeviceAfter(%s) = %+v", dev, ms[0])
				}
			}
			if err != nil || got != want || len(ms) > 1 {
				t.Errorf("ToDeviceAfter(%s) = %v, %v; want [%s]", dev, contents(ms), err, want)
			}
		}
		// The same transaction again: ErrConflict, nothing stored.
		if _, _, err := db.PutToDevice(ctx, store.ToDeviceBatch{Sender: "@alice:hs", Type: "m.test",
			TxnUser: "@alice:hs", TxnDevice: "A1", TxnID: "t1", Recipients: []store.ToDeviceRecipient{r}}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("PutToDevice with the same txn: got %v, want ErrConflict", err)
		}
		if seen, err := db.ToDeviceTxnSeen(ctx, "@alice:hs", "A1", "t1"); err != nil || !seen {
			t.Errorf("ToDeviceTxnSeen(t1) = %v, %v; want true", seen, err)
		}
		if seen, err := db.ToDeviceTxnSeen(ctx, "@alice:hs", "A2", "t1"); err != nil || seen {
			t.Errorf("ToDeviceTxnSeen(other device) = %v, %v; want false", seen, err)
		}
		// Inbound message IDs are per origin.
		in := func(origin, msgID, content string) (int64, error) {
			r := bob
			r.Devices = map[string]json.RawMessage{"B1": json.RawMessage(content)}
			pos, _, err := db.PutToDevice(ctx, store.ToDeviceBatch{Sender: "@carol:" + origin, Type: "m.fed",
				Origin: origin, MessageID: msgID, Recipients: []store.ToDeviceRecipient{r}})
			return pos, err
		}
		if _, err := in("remote.test", "m1", `{"i":1}`); err != nil {
			t.Fatalf("PutToDevice inbound: %v", err)
		}
		if _, err := in("remote.test", "m1", `{"i":1}`); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("PutToDevice inbound again: got %v, want ErrConflict", err)
		}
		if _, err := in("other.test", "m1", `{"i":2}`); err != nil {
			t.Fatalf("PutToDevice inbound from another origin: %v", err)
		}
		// No device: no position taken.
		if pos, users, err := db.PutToDevice(ctx, store.ToDeviceBatch{Sender: "@alice:hs", Type: "m.test",
			Recipients: []store.ToDeviceRecipient{{UserID: "@nobody:hs", Localpart: "nobody", All: json.RawMessage(`{}`)}}}); err != nil || pos != 0 || users != nil {
			t.Errorf("PutToDevice to nobody = %d, %v, %v; want 0, nil, nil", pos, users, err)
		}

		ms, bumped, err := db.ToDeviceSync(ctx, "@bob:hs", "B1", 0, pos1, 10)
		if err != nil || len(ms) != 1 || bumped != 0 {
			t.Fatalf("ToDeviceSync(to pos1) = %v, %d, %v; want the first message only", contents(ms), bumped, err)
		}
		ms, err = db.ToDeviceAfter(ctx, "@bob:hs", "B1", 0, 2)
		if got := fmt.Sprint(contents(ms)); err != nil || got != `[{"n":"all"} {"i":1}]` {
			t.Fatalf("ToDeviceAfter(limit 2) = %s, %v", got, err)
		}

		// A sync at token t1 with a limit of 2 returns the first two and,
		// as a third waits, a new position.
		t1, _ := db.StreamPos(ctx)
		ms, bumped, err = db.ToDeviceSync(ctx, "@bob:hs", "B1", 0, t1, 2)
		if got := fmt.Sprint(contents(ms)); err != nil || got != `[{"n":"all"} {"i":1}]` || bumped <= t1 {
			t.Fatalf("ToDeviceSync(limit 2) = %s, %d, %v; want the first two and a new position", got, bumped, err)
		}
		// From an older since (the response was lost): the same again.
		ms, _, err = db.ToDeviceSync(ctx, "@bob:hs", "B1", pos1-1, t1, 2)
		if got := fmt.Sprint(contents(ms)); err != nil || got != `[{"n":"all"} {"i":1}]` {
			t.Fatalf("ToDeviceSync from an older since = %s, %v; want the same two", got, err)
		}
		// From t1: acknowledged, the third comes; nothing waits beyond it.
		t2 := bumped
		ms, bumped, err = db.ToDeviceSync(ctx, "@bob:hs", "B1", t1, t2, 2)
		if got := fmt.Sprint(contents(ms)); err != nil || got != `[{"i":2}]` || bumped != 0 {
			t.Fatalf("ToDeviceSync from t1 = %s, %d, %v; want the third only", got, bumped, err)
		}
		if ms, _ := db.ToDeviceAfter(ctx, "@bob:hs", "B1", 0, 10); fmt.Sprint(contents(ms)) != `[{"i":2}]` {
			t.Fatalf("after the acknowledgement: %v; want the third only", contents(ms))
		}
		// Retried from t1: the third again, the first two stay deleted.
		if ms, _, _ := db.ToDeviceSync(ctx, "@bob:hs", "B1", t1, t2, 2); fmt.Sprint(contents(ms)) != `[{"i":2}]` {
			t.Fatalf("ToDeviceSync retried from t1 = %v; want the third only", contents(ms))
		}
		// From t2: all acknowledged, nothing left.
		if ms, _, err := db.ToDeviceSync(ctx, "@bob:hs", "B1", t2, t2, 2); err != nil || len(ms) != 0 {
			t.Fatalf("ToDeviceSync from t2 = %v, %v; want nothing", contents(ms), err)
		}
		if ms, _ := db.ToDeviceAfter(ctx, "@bob:hs", "B1", 0, 10); len(ms) != 0 {
			t.Fatalf("after acknowledging t2: %v", contents(ms))
		}
		if err := db.DeleteToDeviceUpTo(ctx, "@bob:hs", "B2", pos1); err != nil {
			t.Fatalf("DeleteToDeviceUpTo: %v", err)
		}
		if ms, _ := db.ToDeviceAfter(ctx, "@bob:hs", "B2", 0, 10); len(ms) != 0 {
			t.Fatalf("after DeleteToDeviceUpTo: %v", contents(ms))
		}

		// Deleted devices: B3 is gone from the devices table, B1 stays.
		if _, err := in("remote.test", "m9", `{"i":9}`); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteDevices(ctx, "bob", []string{"B3"}); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteToDeviceOfGoneDevices(ctx, "@bob:hs", "bob", nil); err != nil {
			t.Fatalf("DeleteToDeviceOfGoneDevices: %v", err)
		}
		if ms, _ := db.ToDeviceAfter(ctx, "@bob:hs", "B3", 0, 10); len(ms) != 0 {
			t.Errorf("B3's messages after its deletion: %v", contents(ms))
		}
		if ms, _ := db.ToDeviceAfter(ctx, "@bob:hs", "B1", 0, 10); len(ms) != 1 {
			t.Errorf("B1's messages after B3's deletion: %v; want 1", contents(ms))
		}
		if err := db.DeleteToDeviceOfGoneDevices(ctx, "@bob:hs", "bob", []string{"B1"}); err != nil {
			t.Fatal(err)
		}
		if ms, _ := db.ToDeviceAfter(ctx, "@bob:hs", "B1", 0, 10); len(ms) != 1 {
			t.Errorf("B1 (still in devices) after its listed deletion: %v; want 1 kept", contents(ms))
		}
		if err := db.Deactivate(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteToDeviceOfGoneDevices(ctx, "@bob:hs", "bob", nil); err != nil {
			t.Fatal(err)
		}
		if ms, _ := db.ToDeviceAfter(ctx, "@bob:hs", "B1", 0, 10); len(ms) != 0 {
			t.Errorf("B1 after deactivation: %v", contents(ms))
		}
	})
}

// TestToDeviceDeliveriesKept: a device remembers its newest few
// responses; acknowledging the newest deletes everything they carried.
func TestToDeviceDeliveriesKept(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustDevices(t, db, map[string][]string{"bob": {"B1"}})
		// 15 messages, each read by a sync from the initial token (the
		// client never acknowledges) at its own token: 15 responses.
		var tokens []int64
		for i := range 15 {
			if _, _, err := db.PutToDevice(ctx, store.ToDeviceBatch{Sender: "@a:hs", Type: "m.t",
				Recipients: []store.ToDeviceRecipient{{UserID: "@bob:hs", Localpart: "bob", All: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}}}); err != nil {
				t.Fatal(err)
			}
			to, _ := db.StreamPos(ctx)
			ms, _, err := db.ToDeviceSync(ctx, "@bob:hs", "B1", 0, to, 100)
			if err != nil || len(ms) != i+1 {
				t.Fatalf("sync %d: %d messages, %v; want %d", i, len(ms), err, i+1)
			}
			tokens = append(tokens, to)
		}
		// The oldest responses are forgotten: acknowledging the third
		// deletes nothing.
		if ms, _, err := db.ToDeviceSync(ctx, "@bob:hs", "B1", tokens[2], tokens[14], 100); err != nil || len(ms) != 15 {
			t.Fatalf("after acknowledging a forgotten response: %d messages, %v; want 15", len(ms), err)
		}
		// The seventh is remembered: its 7 messages go.
		if ms, _, err := db.ToDeviceSync(ctx, "@bob:hs", "B1", tokens[6], tokens[14], 100); err != nil || len(ms) != 8 {
			t.Fatalf("after acknowledging response 7: %d messages, %v; want 8", len(ms), err)
		}
	})
}

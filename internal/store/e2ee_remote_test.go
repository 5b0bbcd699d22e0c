package store_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestRemoteDeviceLists(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		bob := id.UserID("@bob:remote.test")
		get := func() (store.RemoteDeviceList, store.RemoteListState, bool) {
			t.Helper()
			lists, states, err := db.RemoteDeviceLists(ctx, []id.UserID{bob, "@nobody:remote.test"})
			if err != nil {
				t.Fatalf("RemoteDeviceLists: %v", err)
			}
			st, ok := states[bob]
			return lists[bob], st, ok
		}
		devices := func(l store.RemoteDeviceList) []string {
			var out []string
			for _, d := range l.Devices {
				out = append(out, string(d.DeviceID)+"="+string(d.Keys)+"/"+d.DisplayName)
			}
			return out
		}
		if _, _, ok := get(); ok {
			t.Fatalf("a list before any write")
		}

		// An update of an unknown user: decide sees found false; resync
		// creates the row, stale.
		act, err := db.ApplyRemoteDeviceUpdate(ctx, store.RemoteDeviceUpdate{UserID: bob, DeviceID: "D1", StreamID: 7},
			func(st store.RemoteListState, found bool) store.RemoteUpdateAction {
				if found {
					t.Errorf("decide: found a row before any write")
				}
				return store.RemoteResync
			})
		if err != nil || act != store.RemoteResync {
			t.Fatalf("ApplyRemoteDeviceUpdate = %v, %v", act, err)
		}
		if _, st, ok := get(); !ok || !st.Stale || st.HasList || st.Tracked() {
			t.Fatalf("after a resync mark: %+v, %v", st, ok)
		}
		if got, err := db.StaleRemoteUsers(ctx, 10); err != nil || !slices.Equal(got, []id.UserID{bob}) {
			t.Errorf("StaleRemoteUsers = %v, %v", got, err)
		}

		// A resync older than an update seen while stale leaves it stale,
		// once.
		l := store.RemoteDeviceList{UserID: bob, StreamID: 5, MasterKey: json.RawMessage(`{"m":1}`),
			Devices: []store.RemoteDevice{{DeviceID: "D1", Keys: json.RawMessage(`{"k":1}`)}, {DeviceID: "D2", DisplayName: "two"}}}
		if stale, err := db.ReplaceRemoteDeviceList(ctx, l); err != nil || !stale {
			t.Fatalf("ReplaceRemoteDeviceList(older than an update seen) = stale %v, %v; want stale", stale, err)
		}
		if stale, err := db.ReplaceRemoteDeviceList(ctx, l); err != nil || stale {
			t.Fatalf("ReplaceRemoteDeviceList again = stale %v, %v; want not stale", stale, err)
		}
		got, st, _ := get()
		if !st.Tracked() || st.StreamID != 5 || st.ResyncStreamID != 5 || string(got.MasterKey) != `{"m":1}` || got.SelfSigningKey != nil {
			t.Errorf("after a resync: %+v %+v", st, got)
		}
		if want := []string{`D1={"k":1}/`, "D2=/two"}; !slices.Equal(devices(got), want) {
			t.Errorf("devices = %v, want %v", devices(got), want)
		}
		if got, err := db.StaleRemoteUsers(ctx, 10); err != nil || len(got) != 0 {
			t.Errorf("StaleRemoteUsers after the resync = %v, %v", got, err)
		}

		// Applied updates: upsert, delete, stream_id moves up only.
		apply := func(u store.RemoteDeviceUpdate) {
			t.Helper()
			act, err := db.ApplyRemoteDeviceUpdate(ctx, u, func(st store.RemoteListState, found bool) store.RemoteUpdateAction {
				return store.RemoteApply
			})
			if err != nil || act != store.RemoteApply {
				t.Fatalf("ApplyRemoteDeviceUpdate = %v, %v", act, err)
			}
		}
		apply(store.RemoteDeviceUpdate{UserID: bob, DeviceID: "D2", DisplayName: "deux", Keys: json.RawMessage(`{"k":2}`), StreamID: 8})
		apply(store.RemoteDeviceUpdate{UserID: bob, DeviceID: "D1", Deleted: true, StreamID: 6})
		apply(store.RemoteDeviceUpdate{UserID: bob, DeviceID: "D3", StreamID: 9})
		got, st, _ = get()
		if want := []string{`D2={"k":2}/deux`, "D3=/"}; !slices.Equal(devices(got), want) || st.StreamID != 9 {
			t.Errorf("after updates: devices %v at %d, want %v at 9", devices(got), st.StreamID, want)
		}
		act, err = db.ApplyRemoteDeviceUpdate(ctx, store.RemoteDeviceUpdate{UserID: bob, DeviceID: "D9", StreamID: 10},
			func(store.RemoteListState, bool) store.RemoteUpdateAction { return store.RemoteIgnore })
		if got, _, _ := get(); err != nil || act != store.RemoteIgnore || len(got.Devices) != 2 {
			t.Errorf("an ignored update: %v, %v, devices %v", act, err, devices(got))
		}

		// Cross-signing keys: nil leaves a key as it is.
		if created, err := db.SetRemoteCrossSigningKeys(ctx, bob, nil, json.RawMessage(`{"s":2}`)); err != nil || created {
			t.Errorf("SetRemoteCrossSigningKeys = %v, %v", created, err)
		}
		if got, _, _ := get(); string(got.MasterKey) != `{"m":1}` || string(got.SelfSigningKey) != `{"s":2}` {
			t.Errorf("cross-signing keys = %s, %s", got.MasterKey, got.SelfSigningKey)
		}
		carol := id.UserID("@carol:far.test")
		if created, err := db.SetRemoteCrossSigningKeys(ctx, carol, json.RawMessage(`{"m":3}`), nil); err != nil || !created {
			t.Errorf("SetRemoteCrossSigningKeys of a new user = %v, %v", created, err)
		}
		if err := db.MarkRemoteDeviceListsStale(ctx, []id.UserID{bob}); err != nil {
			t.Fatal(err)
		}
		if got, err := db.StaleRemoteUsers(ctx, 10); err != nil || !slices.Equal(got, []id.UserID{carol, bob}) {
			t.Errorf("StaleRemoteUsers = %v, %v; want carol (far.test) then bob (remote.test)", got, err)
		}
		if err := db.DeleteRemoteDeviceLists(ctx, []id.UserID{bob, carol}); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := get(); ok {
			t.Errorf("bob's list after DeleteRemoteDeviceLists")
		}
	})
}

func TestSharedRoomsSince(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rs := newRooms(t, db)
		alice := mustUser(t, db, "alice")
		bob, carol, dan := id.UserID("@bob:remote.test"), id.UserID("@carol:remote.test"), id.UserID("@dan:remote.test")
		r1 := mustRoom(t, rs, alice, room.CreateRequest{Preset: "public_chat"})
		mustJoin(t, rs, bob, r1, room.Join)
		mustJoin(t, rs, dan, r1, room.Join)
		mustJoin(t, rs, dan, r1, room.Leave)
		// carol is in a room no local user is joined to (alice left it).
		r2 := mustRoom(t, rs, alice, room.CreateRequest{Preset: "public_chat"})
		mustJoin(t, rs, carol, r2, room.Join)
		mustJoin(t, rs, alice, r2, room.Leave)
		got, err := db.SharedRoomsSince(ctx, searchServer, []id.UserID{bob, carol, dan, "@eve:remote.test"})
		if _, ok := got[bob]; err != nil || len(got) != 1 || !ok {
			t.Errorf("SharedRoomsSince(%s) = %v, %v; want bob only", searchServer, got, err)
		}
		// The server name must match whole: "test" is not hs.test.
		if got, err := db.SharedRoomsSince(ctx, "test", []id.UserID{bob}); err != nil || len(got) != 0 {
			t.Errorf("SharedRoomsSince(test) = %v, %v; want none", got, err)
		}
		if got, err := db.SharedRoomsSince(ctx, "remote.test", []id.UserID{alice}); err != nil || len(got) != 1 {
			t.Errorf("SharedRoomsSince(remote.test, alice) = %v, %v; want alice", got, err)
		}

		// Shared since the later of the two joins; a break moves it.
		since := func() int64 {
			t.Helper()
			got, err := db.SharedRoomsSince(ctx, searchServer, []id.UserID{bob})
			if err != nil {
				t.Fatal(err)
			}
			return got[bob]
		}
		pos := func(u id.UserID) int64 {
			t.Helper()
			m, err := db.UserMembership(ctx, r1, u)
			if err != nil {
				t.Fatal(err)
			}
			return m.StreamPos
		}
		if got, want := since(), pos(bob); got != want || pos(alice) >= want {
			t.Errorf("shared since %d, want bob's join at %d (after alice's at %d)", got, want, pos(alice))
		}
		mustJoin(t, rs, alice, r1, room.Leave)
		mustJoin(t, rs, alice, r1, room.Join)
		if got, want := since(), pos(alice); got != want || want <= pos(bob) {
			t.Errorf("after alice left and came back: shared since %d, want her new join at %d", got, want)
		}
		// Another room shared without a break since earlier: the earliest.
		r3 := mustRoom(t, rs, alice, room.CreateRequest{Preset: "public_chat"})
		mustJoin(t, rs, bob, r3, room.Join)
		m3, err := db.UserMembership(ctx, r3, bob)
		if err != nil {
			t.Fatal(err)
		}
		if got := since(); got != pos(alice) {
			t.Errorf("with a second room joined later (%d): shared since %d, want %d", m3.StreamPos, got, pos(alice))
		}
	})
}

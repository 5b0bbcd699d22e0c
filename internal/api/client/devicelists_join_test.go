package client_test

import (
	"context"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

// A local user's join of a room with a server it shared no room with
// sends that server its devices (server-server API, "Device Management":
// m.device_list_update EDUs are sent "when that user joins a room which
// contains servers which are not already receiving updates"), and the
// user sees itself in device_lists.changed. Complement
// TestDeviceListsUpdateOverFederation and
// TestDeviceListsUpdateOverFederationOnRoomJoin.
func TestDeviceListsSentOnJoin(t *testing.T) {
	t.Parallel()
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			f := hstest.NewFederation(t, hstest.Options{Engine: &eng}, "hs1.polder.test", "hs2.polder.test")
			hs1, hs2 := f.Server("hs1.polder.test"), f.Server("hs2.polder.test")
			t.Cleanup(func() {
				if t.Failed() {
					for _, hs := range f.Servers() {
						for _, l := range strings.Split(hs.Logs(), "\n") {
							if strings.Contains(l, "level=WARN") || strings.Contains(l, "device list") {
								t.Logf("%s: %s", hs.ServerName(), l)
							}
						}
					}
				}
			})
			alice := hs1.Register(t, "alice", "pw")
			bob := hs2.Register(t, "bob", "pw")
			uploadKeys(t, bob, map[string]any{"device_keys": deviceKeys(t, bob, newEdKey(t))})
			room := createRoom(t, alice, map[string]any{"preset": "public_chat"})
			_, aliceTok := syncDeviceLists(t, alice, "")
			_, bobTok := syncDeviceLists(t, bob, "")

			joinVia(t, bob, room, hs1.ServerName())
			aliceTok = awaitChanged(t, alice, aliceTok, bob.UserID)
			// hs1 heard of bob's devices without asking: it tracks his
			// list after the EDU (which it cannot chain, so it resyncs).
			eventually(t, "hs1 tracks bob's device list", func() error { return tracked(hs1, bob.UserID) })
			awaitChanged(t, bob, bobTok, bob.UserID)
			// alice adds a device: bob sees her changed, though hs2 never
			// held her list (no client there asked for it): the update
			// is news all the same (Complement
			// TestDeviceListsUpdateOverFederation).
			_, bobTok = syncDeviceLists(t, bob, "")
			phone := hs1.Login(t, "alice", "pw")
			uploadKeys(t, phone, map[string]any{"device_keys": deviceKeys(t, phone, newEdKey(t))})
			awaitChanged(t, bob, bobTok, alice.UserID)
			_ = aliceTok

			// A second room with the same servers brings no new server.
			room2 := createRoom(t, alice, map[string]any{"preset": "public_chat"})
			joinVia(t, bob, room2, hs1.ServerName())
			servers, err := hs2.DB().ServersNewToUser(context.Background(), id.UserID(bob.UserID), id.RoomID(room2), hs2.ServerName())
			if err != nil || len(servers) != 0 {
				t.Errorf("ServersNewToUser(bob, room2) = %v, %v; want none (hs1 shares the first room)", servers, err)
			}
			servers, err = hs1.DB().ServersNewToUser(context.Background(), id.UserID(alice.UserID), id.RoomID(room2), hs1.ServerName())
			if err != nil || len(servers) != 0 {
				t.Errorf("ServersNewToUser(alice, room2) on hs1 = %v, %v; want none", servers, err)
			}
		})
	}
}

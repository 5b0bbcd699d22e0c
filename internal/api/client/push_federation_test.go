package client_test

import (
	"fmt"
	"testing"

	"polder.dev/polder/internal/hstest"
)

// TestPushFederation: events that arrive over federation are evaluated for
// the receiving server's users like local ones: counts in /sync and
// pushes to their gateway, with a mention as a highlight; the sender's own
// server counts nothing for the sender.
func TestPushFederation(t *testing.T) {
	t.Parallel()
	f := hstest.NewFederation(t, hstest.Options{}, "hs1.polder.test", "hs2.polder.test")
	hs1, hs2 := f.Server("hs1.polder.test"), f.Server("hs2.polder.test")
	alice := hs1.Register(t, "alice", "password-alice")
	bob := hs2.Register(t, "bob", "password-bob")
	gw := newGateway(t)
	setPusher(t, bob, "bob-key", map[string]any{"url": gw.url()})

	roomID := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Across"})
	joinVia(t, bob, roomID, hs1.ServerName())
	m1 := sendText(t, alice, roomID, "hello from hs1")
	m2 := syncSend(t, alice, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "bob?",
		"m.mentions": map[string]any{"user_ids": []string{bob.UserID}}})
	seesEvent(t, bob, roomID, m2)

	got := gw.await(t, "bob-key", 2)
	if len(got) != 2 || got[0].EventID != m1 || got[1].EventID != m2 {
		t.Fatalf("bob's gateway got %+v, want pushes for %s and %s", got, m1, m2)
	}
	if got[0].RoomName != "Across" || got[1].Counts["unread"] != 2 || got[1].Devices[0].Tweaks["highlight"] != true {
		t.Errorf("pushes: %+v", got)
	}
	eventually(t, "bob's counts on hs2", func() error {
		jr := doSync(t, bob, "").join(roomID)
		if jr == nil || jr.Unread == nil || jr.Unread.Notifications != 2 || jr.Unread.Highlights != 1 {
			return fmt.Errorf("room in sync: %+v", jr)
		}
		return nil
	})
	// The sender's server counts nothing for alice: her own messages.
	if jr := doSync(t, alice, "").join(roomID); jr == nil || (jr.Unread != nil && jr.Unread.Notifications != 0) {
		t.Errorf("alice's counts on hs1: %+v", jr)
	}
}

package client_test

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"polder.dev/polder/internal/hstest"
)

// Typing, receipts, presence and account data reach /sync, and wake a
// long-poll.
func TestSyncEphemeralAndAccountData(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), nil))
		msg := sendText(t, bob, roomID, "read me")
		s0 := doSync(t, alice, "")
		if jr := s0.join(roomID); jr == nil || jr.Unread.Notifications != 1 {
			t.Fatalf("unread before the receipt = %+v, want 1", jr)
		}
		if s0.Presence == nil {
			t.Errorf("initial sync has no presence (alice is online now)")
		}

		// Typing wakes a long-poll and shows in ephemeral.
		done := make(chan syncResponse, 1)
		go func() {
			r := alice.Send(t, hstest.Request{Method: "GET", Path: c3 + "/sync?" + syncSince(s0.NextBatch) + "&timeout=10000"})
			var s syncResponse
			json.Unmarshal(r.Body, &s)
			done <- s
		}()
		time.Sleep(100 * time.Millisecond)
		hstest.MustOK(t, bob.Do(t, "PUT", roomPath(roomID, "/typing/"+url.PathEscape(bob.UserID)), map[string]any{"typing": true, "timeout": 30000}))
		var s1 syncResponse
		select {
		case s1 = <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("typing did not wake the long-poll")
		}
		jr := s1.join(roomID)
		if jr == nil || len(jr.Ephemeral.Events) != 1 || jr.Ephemeral.Events[0].Type != "m.typing" {
			t.Fatalf("ephemeral after typing = %+v", jr)
		}
		if ids, _ := jr.Ephemeral.Events[0].Content["user_ids"].([]any); len(ids) != 1 || ids[0] != bob.UserID {
			t.Errorf("typing users = %v, want bob", jr.Ephemeral.Events[0].Content)
		}
		if len(jr.Timeline.Events) != 0 {
			t.Errorf("typing-only room entry has timeline events")
		}
		// The same typing state is not repeated.
		if s := doSync(t, alice, syncSince(s1.NextBatch)); s.join(roomID) != nil {
			t.Errorf("typing repeated in the next sync")
		}

		// A receipt shows in ephemeral and clears the unread count.
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/receipt/m.read/"+url.PathEscape(msg)), map[string]any{}))
		s2 := doSync(t, alice, syncSince(s1.NextBatch))
		jr = s2.join(roomID)
		if jr == nil || !syncHasType(jr.Ephemeral.Events, "m.receipt") {
			t.Fatalf("no receipt after sending one: %+v", jr)
		}
		if jr.Unread.Notifications != 0 {
			t.Errorf("unread after the receipt = %+v, want 0", *jr.Unread)
		}

		// Room account data (a tag) and global account data.
		hstest.MustOK(t, alice.Do(t, "PUT", c3+"/user/"+url.PathEscape(alice.UserID)+"/rooms/"+url.PathEscape(roomID)+"/tags/u.work", map[string]any{"order": 0.5}))
		hstest.MustOK(t, alice.Do(t, "PUT", c3+"/user/"+url.PathEscape(alice.UserID)+"/account_data/org.example.setting", map[string]any{"on": true}))
		s3 := doSync(t, alice, syncSince(s2.NextBatch))
		if jr := s3.join(roomID); jr == nil || !syncHasType(jr.AccountData.Events, "m.tag") {
			t.Errorf("room account data lacks the tag: %+v", jr)
		}
		if s3.AccountData == nil || !syncHasType(s3.AccountData.Events, "org.example.setting") {
			t.Errorf("global account data lacks the setting: %+v", s3.AccountData)
		}
		// account_data filters.
		s4 := doSync(t, alice, syncFilter(map[string]any{"account_data": map[string]any{"not_types": []string{"org.example.*"}},
			"room": map[string]any{"account_data": map[string]any{"types": []string{"nothing"}}}})+"&"+syncSince(s2.NextBatch))
		if s4.AccountData != nil || s4.join(roomID) != nil {
			t.Errorf("account data filters let through: global %+v, room %+v", s4.AccountData, s4.join(roomID))
		}

		// Bob's presence reaches alice when it changes.
		hstest.MustOK(t, bob.Do(t, "PUT", c3+"/presence/"+url.PathEscape(bob.UserID)+"/status", map[string]any{"presence": "unavailable", "status_msg": "away"}))
		s5 := doSync(t, alice, syncSince(s3.NextBatch)+"&set_presence=offline")
		found := false
		if s5.Presence != nil {
			for _, e := range s5.Presence.Events {
				found = found || (e.Sender == bob.UserID && e.Content["presence"] == "unavailable")
			}
		}
		if !found {
			t.Errorf("presence of bob not in alice's sync: %+v", s5.Presence)
		}
		if s6 := doSync(t, alice, syncFilter(map[string]any{"presence": map[string]any{"not_senders": []string{bob.UserID}}})+"&"+syncSince(s3.NextBatch)+"&set_presence=offline"); s6.Presence != nil {
			t.Errorf("presence filter let bob's presence through: %+v", s6.Presence)
		}
	})
}

// set_presence: syncing marks the user online (from offline) or
// unavailable; offline leaves its presence alone.
func TestSyncSetPresence(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		status := func() string {
			t.Helper()
			m := hstest.MustOK(t, alice.Do(t, "GET", c3+"/presence/"+url.PathEscape(alice.UserID)+"/status", nil))
			s, _ := m["presence"].(string)
			return s
		}
		doSync(t, alice, "set_presence=offline")
		if got := status(); got != "offline" {
			t.Errorf("after a sync with set_presence=offline: %q, want offline", got)
		}
		doSync(t, alice, "")
		if got := status(); got != "online" {
			t.Errorf("after a plain sync: %q, want online", got)
		}
		doSync(t, alice, "set_presence=unavailable")
		if got := status(); got != "unavailable" {
			t.Errorf("after set_presence=unavailable: %q", got)
		}
	})
}

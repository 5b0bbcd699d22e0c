package client_test

import (
	"net/url"
	"slices"
	"testing"

	"polder.dev/polder/internal/hstest"
)

// What userdata endpoints write reaches /sync: account data (global and per
// room), typing, receipts (private ones only to their sender) and presence.
func TestUserdataReachesSync(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := publicRoom(t, alice, bob)
		ev := sendText(t, bob, roomID, "hello")
		aliceTok := doSync(t, alice, "").NextBatch
		bobTok := doSync(t, bob, "").NextBatch

		hstest.MustOK(t, alice.Do(t, "PUT", accountDataPath(alice.UserID, "", "org.example.global"), map[string]any{"a": 1}))
		hstest.MustOK(t, alice.Do(t, "PUT", tagsPath(alice.UserID, roomID, "m.favourite"), map[string]any{"order": 0.5}))
		hstest.MustOK(t, alice.Do(t, "PUT", roomPath(roomID, "/typing/"+url.PathEscape(alice.UserID)), map[string]any{"typing": true, "timeout": 30000}))
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/receipt/m.read/"+url.PathEscape(ev)), map[string]any{}))
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/receipt/m.read.private/"+url.PathEscape(ev)), map[string]any{}))
		hstest.MustOK(t, alice.Do(t, "PUT", c3+"/presence/"+url.PathEscape(alice.UserID)+"/status", map[string]any{"presence": "online", "status_msg": "here"}))

		// alice: her account data, global and the room's tags.
		as := doSync(t, alice, syncSince(aliceTok))
		if as.AccountData == nil || ephemeralFind(as.AccountData, "org.example.global") == nil {
			t.Errorf("alice's sync has no global account data: %+v", as.AccountData)
		}
		if r := as.join(roomID); r == nil || ephemeralFind(&r.AccountData, "m.tag") == nil {
			t.Errorf("alice's sync has no m.tag in the room")
		}

		// bob: alice typing, her public receipt and his private one, her
		// presence; none of her account data.
		bs := doSync(t, bob, syncSince(bobTok))
		if bs.AccountData != nil && ephemeralFind(bs.AccountData, "org.example.global") != nil {
			t.Errorf("bob's sync has alice's account data")
		}
		r := bs.join(roomID)
		if r == nil {
			t.Fatalf("bob's incremental sync has no room %s", roomID)
		}
		typing := ephemeralFind(&r.Ephemeral, "m.typing")
		if typing == nil {
			t.Errorf("no m.typing in bob's ephemeral events: %+v", r.Ephemeral)
		} else if ids, _ := typing.Content["user_ids"].([]any); !slices.Contains(ids, any(alice.UserID)) {
			t.Errorf("m.typing = %v, want alice", typing.Content)
		}
		rc := ephemeralFind(&r.Ephemeral, "m.receipt")
		if rc == nil {
			t.Fatalf("no m.receipt in bob's ephemeral events: %+v", r.Ephemeral)
		}
		onEv, _ := rc.Content[ev].(map[string]any)
		if read, _ := onEv["m.read"].(map[string]any); read[alice.UserID] == nil {
			t.Errorf("m.receipt = %v, want alice's m.read on %s", rc.Content, ev)
		}
		if priv, _ := onEv["m.read.private"].(map[string]any); priv[bob.UserID] == nil {
			t.Errorf("m.receipt = %v, want bob's own m.read.private on %s", rc.Content, ev)
		}
		var sawAlice bool
		if bs.Presence != nil {
			for _, p := range bs.Presence.Events {
				if p.Sender == alice.UserID && p.Content["presence"] == "online" && p.Content["status_msg"] == "here" {
					sawAlice = true
				}
			}
		}
		if !sawAlice {
			t.Errorf("bob's sync has no online presence of alice: %+v", bs.Presence)
		}

		// alice does not see bob's private receipt.
		as = doSync(t, alice, syncSince(aliceTok))
		if r := as.join(roomID); r != nil {
			if rc := ephemeralFind(&r.Ephemeral, "m.receipt"); rc != nil {
				onEv, _ := rc.Content[ev].(map[string]any)
				if onEv["m.read.private"] != nil {
					t.Errorf("alice sees bob's private receipt: %v", rc.Content)
				}
			}
		}
	})
}

// ephemeralFind returns the first event of the type in l (account data and
// ephemeral events have no state key), or nil.
func ephemeralFind(l *syncEvents, typ string) *syncEvent {
	if l == nil {
		return nil
	}
	for i, e := range l.Events {
		if e.Type == typ {
			return &l.Events[i]
		}
	}
	return nil
}

package client_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"polder.dev/polder/internal/hstest"
)

// Filters (MSC4186 "SlidingRoomFilter"): is_dm from m.direct, is_encrypted,
// is_invite(d), room_types, not_room_types, spaces, tags and not_tags.
func TestSlidingSyncFilters(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		plain := createRoom(t, alice, map[string]any{"name": "plain"})
		enc := createRoom(t, alice, map[string]any{"initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
		space := createRoom(t, alice, map[string]any{"creation_content": map[string]any{"type": "m.space"}})
		dm := createRoom(t, alice, map[string]any{"is_direct": true})
		hstest.MustOK(t, alice.Do(t, "PUT", roomPath(space, "/state/m.space.child/"+plain), map[string]any{"via": []string{hs.ServerName()}}))
		hstest.MustOK(t, alice.Do(t, "PUT", c3+"/user/"+alice.UserID+"/account_data/m.direct", map[string]any{bob.UserID: []string{dm}}))
		invited := createRoom(t, bob, map[string]any{"name": "from bob"})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(invited, "/invite"), map[string]any{"user_id": alice.UserID}))
		hstest.MustOK(t, alice.Do(t, "PUT", c3+"/user/"+alice.UserID+"/rooms/"+plain+"/tags/m.favourite", map[string]any{"order": 0.5}))
		hstest.MustOK(t, alice.Do(t, "PUT", c3+"/user/"+alice.UserID+"/rooms/"+enc+"/tags/u.work", map[string]any{}))
		hstest.MustOK(t, alice.Do(t, "PUT", c3+"/user/"+alice.UserID+"/rooms/"+dm+"/tags/m.lowpriority", map[string]any{}))

		list := func(filters map[string]any) map[string]any {
			return map[string]any{"range": []int{0, 20}, "timeline_limit": 0, "required_state": [][]string{}, "filters": filters}
		}
		resp := slide(t, alice, map[string]any{"lists": map[string]any{
			"dm":         list(map[string]any{"is_dm": true}),
			"notdm":      list(map[string]any{"is_dm": false, "is_invite": false}),
			"enc":        list(map[string]any{"is_encrypted": true}),
			"invites":    list(map[string]any{"is_invited": true}),
			"spaces":     list(map[string]any{"room_types": []any{"m.space"}}),
			"nospaces":   list(map[string]any{"not_room_types": []any{"m.space"}, "is_invite": false}),
			"untyped":    list(map[string]any{"room_types": []any{nil}, "is_invite": false}),
			"inspace":    list(map[string]any{"spaces": []string{space}}),
			"tagged":     list(map[string]any{"tags": []string{"m.favourite", "u.work"}}),
			"notlow":     list(map[string]any{"not_tags": []string{"m.lowpriority"}, "is_invite": false}),
			"favnotwork": list(map[string]any{"tags": []string{"m.favourite", "u.work"}, "not_tags": []string{"u.work"}}),
			"everything": list(nil),
		}})
		want := map[string][]string{
			"dm":         {dm},
			"notdm":      {plain, enc, space},
			"enc":        {enc},
			"invites":    {invited},
			"spaces":     {space},
			"nospaces":   {plain, enc, dm},
			"untyped":    {plain, enc, dm},
			"inspace":    {plain},
			"tagged":     {plain, enc},
			"notlow":     {plain, enc, space},
			"favnotwork": {plain},
			"everything": {plain, enc, space, dm, invited},
		}
		for name, rooms := range want {
			var got []string
			for r, rr := range resp.Rooms {
				if slices.Contains(rr.Lists, name) {
					got = append(got, r)
				}
			}
			slices.Sort(got)
			slices.Sort(rooms)
			if !slices.Equal(got, rooms) || resp.Lists[name].Count != len(rooms) {
				t.Errorf("list %s: rooms %v count %d, want %v", name, got, resp.Lists[name].Count, rooms)
			}
		}
		if !resp.Rooms[dm].IsDM || resp.Rooms[plain].IsDM {
			t.Errorf("is_dm: dm room %v, plain room %v; want true, false", resp.Rooms[dm].IsDM, resp.Rooms[plain].IsDM)
		}
		// The invite: stripped state and membership invite.
		inv := resp.Rooms[invited]
		if inv.Membership != "invite" || len(inv.StrippedState) == 0 || inv.RawTimeline != nil {
			t.Errorf("invite: membership %q, %d stripped events, timeline %v; want invite, stripped state, no timeline", inv.Membership, len(inv.StrippedState), inv.RawTimeline)
		}
	})
}

// required_state (MSC4186 "RequiredStateRequest"): wildcards, $ME,
// exclusions, lazy members, in both request forms; and state stubs for
// deleted state is not exercised (Polder's rooms never delete state).
func TestSlidingSyncRequiredState(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		carol := hs.Register(t, "carol", "pw")
		r := createRoom(t, alice, map[string]any{"name": "state", "preset": "public_chat"})
		for _, c := range []*hstest.Client{bob, carol} {
			hstest.MustOK(t, c.Do(t, "POST", roomPath(r, "/join"), map[string]any{}))
		}
		sendText(t, bob, r, "bob speaks")
		cases := []struct {
			name string
			rs   any
			want []string
		}{
			{"pairs me", [][]string{{"m.room.name", ""}, {"m.room.member", "$ME"}}, []string{"m.room.member|" + alice.UserID, "m.room.name|"}},
			{"type wildcard", [][]string{{"m.room.member", "*"}}, []string{"m.room.member|" + alice.UserID, "m.room.member|" + bob.UserID, "m.room.member|" + carol.UserID}},
			{"lazy", [][]string{{"m.room.member", "$LAZY"}}, []string{"m.room.member|" + bob.UserID}},
			{"object lazy", map[string]any{"include": []any{map[string]any{"type": "m.room.create"}}, "lazy_members": true}, []string{"m.room.create|", "m.room.member|" + bob.UserID}},
			{"exclude", map[string]any{"include": []any{map[string]any{}}, "exclude": []any{map[string]any{"type": "m.room.member"}, map[string]any{"type": "m.room.power_levels", "state_key": ""}}},
				[]string{"m.room.create|", "m.room.history_visibility|", "m.room.join_rules|", "m.room.name|"}},
			{"state_key only", map[string]any{"include": []any{map[string]any{"state_key": carol.UserID}}}, []string{"m.room.member|" + carol.UserID}},
		}
		for _, c := range cases {
			resp := slide(t, alice, map[string]any{"conn_id": c.name, "lists": map[string]any{"l": allList(0, 0, 1, c.rs)}})
			rr := resp.Rooms[r]
			if rr == nil {
				t.Fatalf("%s: room missing", c.name)
			}
			got := stateKeys(rr.RequiredState)
			if c.name == "exclude" {
				// guest_access etc. depend on the preset: compare what was asked.
				got = slices.DeleteFunc(got, func(k string) bool { return !slices.Contains(c.want, k) && k[:7] != "m.room." })
			}
			if !slices.Equal(got, c.want) && !(c.name == "exclude" && subset(c.want, got) && !hasPrefix(got, "m.room.member|") && !slices.Contains(got, "m.room.power_levels|")) {
				t.Errorf("%s: required_state = %v, want %v", c.name, got, c.want)
			}
		}
	})
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func hasPrefix(ss []string, p string) bool {
	return slices.ContainsFunc(ss, func(s string) bool { return len(s) >= len(p) && s[:len(p)] == p })
}

// Room subscriptions and a timeline_limit that grows (MSC4186
// "Subscriptions", "Changes to timeline_limit").
func TestSlidingSyncSubscriptions(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		a := createRoom(t, alice, map[string]any{"name": "a"})
		b := createRoom(t, alice, map[string]any{"name": "b"})
		notMine := createRoom(t, bob, map[string]any{"name": "bob's"})
		for i := range 5 {
			sendText(t, alice, a, "a"+string(rune('0'+i)))
		}
		sendText(t, alice, b, "b0")
		// List [0,0] is b (latest); a comes by subscription only.
		resp := slide(t, alice, map[string]any{
			"lists":              map[string]any{"l": allList(0, 0, 1, [][]string{})},
			"room_subscriptions": map[string]any{a: map[string]any{"timeline_limit": 2, "required_state": [][]string{}}, notMine: map[string]any{"timeline_limit": 2}},
		})
		if resp.Rooms[notMine] != nil {
			t.Errorf("a room the user is not in was returned by a subscription")
		}
		ra := resp.Rooms[a]
		if ra == nil || ra.Lists != nil || !slices.Equal(ssBodies(ra.Timeline), []string{"a3", "a4"}) {
			t.Fatalf("subscribed room: %+v, want timeline [a3 a4] and no lists", ra)
		}
		// The subscription stays (sticky) while the list grows its
		// timeline limit: a comes again with 4 events, expanded.
		resp = slide(t, alice, map[string]any{"pos": resp.Pos, "room_subscriptions": map[string]any{a: map[string]any{"timeline_limit": 4, "required_state": [][]string{}}}})
		ra = resp.Rooms[a]
		if ra == nil || !ra.ExpandedTimeline || !slices.Equal(ssBodies(ra.Timeline), []string{"a1", "a2", "a3", "a4"}) {
			t.Fatalf("expanded: %+v, want expanded_timeline and [a1..a4]", ra)
		}
		sendText(t, alice, a, "a5")
		resp = slide(t, alice, map[string]any{"pos": resp.Pos})
		if ra = resp.Rooms[a]; ra == nil || !slices.Equal(ssBodies(ra.Timeline), []string{"a5"}) {
			t.Fatalf("sticky subscription: %+v, want [a5]", ra)
		}
		// Unsubscribed: no more updates.
		resp = slide(t, alice, map[string]any{"pos": resp.Pos, "unsubscribe_rooms": []string{a}})
		sendText(t, alice, a, "a6")
		resp = slide(t, alice, map[string]any{"pos": resp.Pos})
		if resp.Rooms[a] != nil {
			t.Errorf("unsubscribed room still returned: %v", ssBodies(resp.Rooms[a].Timeline))
		}
	})
}

// pos handling (MSC4186 "Connections"): unknown, another device's, an
// older one, and a restart of the server, which keeps positions.
func TestSlidingSyncPos(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		other := hs.Login(t, "alice", "pw")
		r := createRoom(t, alice, map[string]any{"name": "r"})
		body := func(pos string) map[string]any {
			return map[string]any{"pos": pos, "lists": map[string]any{"l": allList(0, 9, 1, [][]string{})}}
		}
		hstest.MustErr(t, alice.Do(t, "POST", ssPath, body("1_1")), 400, "M_UNKNOWN_POS")
		hstest.MustErr(t, alice.Do(t, "POST", ssPath, body("nonsense")), 400, "M_UNKNOWN_POS")
		first := slide(t, alice, body(""))
		hstest.MustErr(t, other.Do(t, "POST", ssPath, body(first.Pos)), 400, "M_UNKNOWN_POS")
		hstest.MustErr(t, alice.Do(t, "POST", ssPath, map[string]any{"pos": first.Pos, "conn_id": "other"}), 400, "M_UNKNOWN_POS")
		second := slide(t, alice, body(first.Pos))
		// A retry of the same pos is answered.
		second = slide(t, alice, body(first.Pos))
		third := slide(t, alice, body(second.Pos))
		// first is older than what the client acknowledged.
		hstest.MustErr(t, alice.Do(t, "POST", ssPath, body(first.Pos)), 400, "M_UNKNOWN_POS")

		hs.Restart(t)
		sendText(t, alice, r, "after restart")
		resp := slide(t, alice, body(third.Pos))
		rr := resp.Rooms[r]
		if rr == nil || rr.Initial || !slices.Equal(ssBodies(rr.Timeline), []string{"after restart"}) {
			t.Fatalf("after restart: %+v, want a delta with [after restart]", rr)
		}
	})
}

// Long-polling: a request with a timeout returns when a message arrives.
func TestSlidingSyncLongPoll(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		r := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(r, "/join"), map[string]any{}))
		body := map[string]any{"lists": map[string]any{"l": allList(0, 9, 1, [][]string{})}}
		resp := slide(t, alice, body)
		body["pos"], body["timeout"] = resp.Pos, 60_000
		done := make(chan ssResponse, 1)
		go func() { done <- slide(t, alice, body) }()
		// Send until the long-poll has answered: it may start waiting
		// after the first message.
		deadline := time.After(60 * time.Second)
		for i := 0; ; i++ {
			sendText(t, bob, r, "wake")
			select {
			case got := <-done:
				if rr := got.Rooms[r]; rr == nil || len(rr.Timeline) == 0 {
					t.Fatalf("woken response: %+v, want the room with the message", got.Rooms)
				}
				return
			case <-deadline:
				t.Fatal("long-poll did not return within 60 s of messages")
			case <-time.After(time.Duration(100*(i+1)) * time.Millisecond):
			}
		}
	})
}

// Extensions: to_device with since acknowledgement, e2ee, account_data,
// receipts and typing, with lists/rooms scoping.
func TestSlidingSyncExtensions(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		r1 := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		r2 := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(r1, "/join"), map[string]any{}))
		ev := sendText(t, bob, r1, "read me")
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(r1, "/receipt/m.read/"+ev), map[string]any{}))
		hstest.MustOK(t, bob.Do(t, "PUT", roomPath(r1, "/typing/"+bob.UserID), map[string]any{"typing": true, "timeout": 30000}))
		hstest.MustOK(t, alice.Do(t, "PUT", c3+"/user/"+alice.UserID+"/account_data/org.example.global", map[string]any{"g": 1}))
		hstest.MustOK(t, alice.Do(t, "PUT", c3+"/user/"+alice.UserID+"/rooms/"+r2+"/account_data/org.example.room", map[string]any{"r": 2}))
		hstest.MustOK(t, sendToDevice(t, bob, "m.test", "td1", map[string]map[string]any{alice.UserID: {alice.DeviceID: nmsg("one")}}))
		hstest.MustOK(t, alice.Do(t, "POST", c3+"/keys/upload", map[string]any{"one_time_keys": map[string]any{"signed_curve25519:AAAA": map[string]any{"key": "x", "signatures": map[string]any{}}}}))

		exts := func(since string) map[string]any {
			return map[string]any{
				"to_device":    map[string]any{"enabled": true, "since": since},
				"e2ee":         map[string]any{"enabled": true},
				"account_data": map[string]any{"enabled": true, "lists": []string{"only2"}},
				"receipts":     map[string]any{"enabled": true},
				"typing":       map[string]any{"enabled": true, "rooms": []string{}, "lists": []string{"only1"}},
			}
		}
		lists := map[string]any{
			"only1": map[string]any{"range": []int{0, 9}, "timeline_limit": 0, "required_state": [][]string{}, "filters": map[string]any{"is_dm": false, "room_types": []any{nil}}},
			"only2": map[string]any{"timeline_limit": 0, "required_state": [][]string{}, "filters": map[string]any{"spaces": []string{}}},
		}
		// only2 without range: every room; scoping by list name.
		resp := slide(t, alice, map[string]any{"lists": lists, "extensions": exts("")})
		var td struct {
			NextBatch string            `json:"next_batch"`
			Events    []json.RawMessage `json:"events"`
		}
		json.Unmarshal(resp.Extensions["to_device"], &td)
		if len(td.Events) != 1 || td.NextBatch == "" {
			t.Fatalf("to_device = %s, want one message and a next_batch", resp.Extensions["to_device"])
		}
		var e2ee struct {
			Counts   map[string]int `json:"device_one_time_keys_count"`
			Fallback []string       `json:"device_unused_fallback_key_types"`
		}
		json.Unmarshal(resp.Extensions["e2ee"], &e2ee)
		if e2ee.Counts["signed_curve25519"] != 1 || e2ee.Fallback == nil {
			t.Errorf("e2ee = %s, want signed_curve25519 1 and fallback types", resp.Extensions["e2ee"])
		}
		var ad struct {
			Global []map[string]any            `json:"global"`
			Rooms  map[string][]map[string]any `json:"rooms"`
		}
		json.Unmarshal(resp.Extensions["account_data"], &ad)
		if !slices.ContainsFunc(ad.Global, func(e map[string]any) bool { return e["type"] == "org.example.global" }) || len(ad.Rooms[r2]) != 1 {
			t.Errorf("account_data = %s, want the global entry and r2's", resp.Extensions["account_data"])
		}
		var eph struct {
			Rooms map[string]map[string]any `json:"rooms"`
		}
		json.Unmarshal(resp.Extensions["receipts"], &eph)
		if eph.Rooms[r1]["type"] != "m.receipt" {
			t.Errorf("receipts = %s, want r1's m.receipt", resp.Extensions["receipts"])
		}
		eph.Rooms = nil
		json.Unmarshal(resp.Extensions["typing"], &eph)
		if eph.Rooms[r1]["type"] != "m.typing" {
			t.Errorf("typing = %s, want r1's m.typing (list only1)", resp.Extensions["typing"])
		}
		// Not acknowledged: the message comes again; acknowledged: gone.
		resp = slide(t, alice, map[string]any{"pos": resp.Pos, "lists": lists, "extensions": exts("")})
		json.Unmarshal(resp.Extensions["to_device"], &td)
		if len(td.Events) != 1 {
			t.Fatalf("to_device without since: %s, want the message again", resp.Extensions["to_device"])
		}
		resp = slide(t, alice, map[string]any{"pos": resp.Pos, "lists": lists, "extensions": exts(td.NextBatch)})
		td.Events = nil
		json.Unmarshal(resp.Extensions["to_device"], &td)
		if len(td.Events) != 0 {
			t.Errorf("to_device after since: %s, want none", resp.Extensions["to_device"])
		}
		// Incremental: a device list change of bob (a new device).
		nb := hs.Login(t, "bob", "pw")
		uploadKeys(t, nb, map[string]any{"device_keys": deviceKeys(t, nb, newEdKey(t))})
		resp = slide(t, alice, map[string]any{"pos": resp.Pos, "lists": lists, "extensions": exts(td.NextBatch)})
		var dl struct {
			DeviceLists struct {
				Changed []string `json:"changed"`
			} `json:"device_lists"`
		}
		json.Unmarshal(resp.Extensions["e2ee"], &dl)
		if !slices.Contains(dl.DeviceLists.Changed, bob.UserID) {
			t.Errorf("e2ee after bob's new device: %s, want bob in changed", resp.Extensions["e2ee"])
		}
	})
}

// The same room's timeline events are the same JSON in /sync v2 and in
// sliding sync.
func TestSlidingSyncSameAsSyncV2(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		r := createRoom(t, alice, map[string]any{"name": "same"})
		ev := sendText(t, alice, r, "first")
		hstest.MustOK(t, alice.Do(t, "PUT", roomPath(r, "/send/m.reaction/rx1"), map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": ev, "key": "👍"}}))
		sendText(t, alice, r, "second")
		v2 := hstest.MustOK(t, alice.Do(t, "GET", c3+"/sync?filter="+hstest.Query(`{"room":{"timeline":{"limit":3}}}`), nil))
		raw, _ := json.Marshal(v2["rooms"].(map[string]any)["join"].(map[string]any)[r].(map[string]any)["timeline"].(map[string]any)["events"])
		resp := slide(t, alice, map[string]any{"lists": map[string]any{"l": allList(0, 0, 3, [][]string{})}})
		ss, _ := json.Marshal(resp.Rooms[r].RawTimeline)
		// Only unsigned.age (the time since the event) may differ.
		var a, b []map[string]any
		json.Unmarshal(raw, &a)
		json.Unmarshal(ss, &b)
		for _, evs := range [][]map[string]any{a, b} {
			for _, e := range evs {
				if u, ok := e["unsigned"].(map[string]any); ok {
					delete(u, "age")
				}
			}
		}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Errorf("timelines differ:\n v2:      %s\n sliding: %s", ja, jb)
		}
	})
}

package client_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
)

func accountDataPath(user, roomID, typ string) string {
	if roomID == "" {
		return c3 + "/user/" + url.PathEscape(user) + "/account_data/" + url.PathEscape(typ)
	}
	return c3 + "/user/" + url.PathEscape(user) + "/rooms/" + url.PathEscape(roomID) + "/account_data/" + url.PathEscape(typ)
}

func tagsPath(user, roomID, tag string) string {
	p := c3 + "/user/" + url.PathEscape(user) + "/rooms/" + url.PathEscape(roomID) + "/tags"
	if tag != "" {
		p += "/" + url.PathEscape(tag)
	}
	return p
}

// publicRoom creates a public room of owner that the others join.
func publicRoom(t *testing.T, owner *hstest.Client, others ...*hstest.Client) string {
	t.Helper()
	roomID := createRoom(t, owner, map[string]any{"preset": "public_chat"})
	for _, c := range others {
		hstest.MustOK(t, c.Do(t, "POST", roomPath(roomID, "/join"), map[string]any{}))
	}
	return roomID
}

// mustEqualJSON fails unless the body is the JSON value want.
func mustEqualJSON(t *testing.T, r *hstest.Response, want string) {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("%s: status %d %s, want 200", r.Call, r.Status, r.Body)
	}
	var got, w any
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("%s: body %s: %v", r.Call, r.Body, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	g, _ := json.Marshal(got)
	ww, _ := json.Marshal(w)
	if string(g) != string(ww) {
		t.Errorf("%s = %s, want %s", r.Call, g, ww)
	}
}

// Account data, global and per room (spec "Client Config").
func TestAccountDataAPI(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		const room = "!somewhere:hs1.polder.test"

		hstest.MustOK(t, alice.Do(t, "PUT", accountDataPath(alice.UserID, "", "org.example.config"), map[string]any{"theme": "dark"}))
		hstest.MustOK(t, alice.Do(t, "PUT", accountDataPath(alice.UserID, room, "org.example.config"), map[string]any{"pinned": true}))
		mustEqualJSON(t, alice.Do(t, "GET", accountDataPath(alice.UserID, "", "org.example.config"), nil), `{"theme":"dark"}`)
		mustEqualJSON(t, alice.Do(t, "GET", accountDataPath(alice.UserID, room, "org.example.config"), nil), `{"pinned":true}`)
		// Replacing it.
		hstest.MustOK(t, alice.Do(t, "PUT", accountDataPath(alice.UserID, "", "org.example.config"), map[string]any{"theme": "light"}))
		mustEqualJSON(t, alice.Do(t, "GET", accountDataPath(alice.UserID, "", "org.example.config"), nil), `{"theme":"light"}`)

		tests := []struct {
			name    string
			c       *hstest.Client
			method  string
			path    string
			body    any
			status  int
			errcode string
		}{
			{"get another user's", bob, "GET", accountDataPath(alice.UserID, "", "org.example.config"), nil, 403, "M_FORBIDDEN"},
			{"put another user's", bob, "PUT", accountDataPath(alice.UserID, "", "org.example.config"), map[string]any{}, 403, "M_FORBIDDEN"},
			{"get another user's room data", bob, "GET", accountDataPath(alice.UserID, room, "org.example.config"), nil, 403, "M_FORBIDDEN"},
			{"get absent", alice, "GET", accountDataPath(alice.UserID, "", "org.example.none"), nil, 404, "M_NOT_FOUND"},
			{"get absent room data", alice, "GET", accountDataPath(alice.UserID, "!other:hs1.polder.test", "org.example.config"), nil, 404, "M_NOT_FOUND"},
			{"set m.fully_read", alice, "PUT", accountDataPath(alice.UserID, "", "m.fully_read"), map[string]any{"event_id": "$x"}, 405, "M_BAD_JSON"},
			{"set m.fully_read in a room", alice, "PUT", accountDataPath(alice.UserID, room, "m.fully_read"), map[string]any{"event_id": "$x"}, 405, "M_BAD_JSON"},
			{"set m.push_rules", alice, "PUT", accountDataPath(alice.UserID, "", "m.push_rules"), map[string]any{}, 405, "M_BAD_JSON"},
			{"not JSON", alice, "PUT", accountDataPath(alice.UserID, "", "org.example.config"), `{"theme":`, 400, "M_NOT_JSON"},
			{"empty body", alice, "PUT", accountDataPath(alice.UserID, "", "org.example.config"), "", 400, "M_NOT_JSON"},
			{"an array", alice, "PUT", accountDataPath(alice.UserID, "", "org.example.config"), `["dark"]`, 400, "M_BAD_JSON"},
			{"a bad room ID", alice, "PUT", accountDataPath(alice.UserID, "#alias:hs1.polder.test", "org.example.config"), map[string]any{}, 400, "M_INVALID_PARAM"},
			{"get with a bad room ID", alice, "GET", accountDataPath(alice.UserID, "#alias:hs1.polder.test", "org.example.config"), nil, 400, "M_INVALID_PARAM"},
			{"ignored_users not an object", alice, "PUT", accountDataPath(alice.UserID, "", "m.ignored_user_list"), map[string]any{"ignored_users": []string{bob.UserID}}, 400, "M_BAD_JSON"},
			{"no access token", alice.WithToken(""), "GET", accountDataPath(alice.UserID, "", "org.example.config"), nil, 401, "M_MISSING_TOKEN"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hstest.MustErr(t, tt.c.Do(t, tt.method, tt.path, tt.body), tt.status, tt.errcode)
			})
		}
		// Refused writes changed nothing.
		mustEqualJSON(t, alice.Do(t, "GET", accountDataPath(alice.UserID, "", "org.example.config"), nil), `{"theme":"light"}`)
		hstest.MustErr(t, alice.Do(t, "GET", accountDataPath(alice.UserID, "", "m.fully_read"), nil), 404, "M_NOT_FOUND")

		// Ignoring users is account data the server reads.
		hstest.MustOK(t, alice.Do(t, "PUT", accountDataPath(alice.UserID, "", "m.ignored_user_list"),
			map[string]any{"ignored_users": map[string]any{bob.UserID: map[string]any{}}}))
		ignored, err := hs.Users().IgnoredUsers(t.Context(), id.UserID(alice.UserID))
		if err != nil || len(ignored) != 1 || !ignored[id.UserID(bob.UserID)] {
			t.Errorf("IgnoredUsers after PUT m.ignored_user_list = %v, %v; want bob", ignored, err)
		}

		// Account data survives a restart.
		hs.Restart(t)
		mustEqualJSON(t, alice.Do(t, "GET", accountDataPath(alice.UserID, room, "org.example.config"), nil), `{"pinned":true}`)
	})
}

// Room tags (spec "Room Tagging").
func TestTagsAPI(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{})

		mustEqualJSON(t, alice.Do(t, "GET", tagsPath(alice.UserID, roomID, ""), nil), `{"tags":{}}`)
		hstest.MustOK(t, alice.Do(t, "PUT", tagsPath(alice.UserID, roomID, "m.favourite"), map[string]any{"order": 0.25}))
		hstest.MustOK(t, alice.Do(t, "PUT", tagsPath(alice.UserID, roomID, "u.work"), map[string]any{}))
		mustEqualJSON(t, alice.Do(t, "GET", tagsPath(alice.UserID, roomID, ""), nil), `{"tags":{"m.favourite":{"order":0.25},"u.work":{}}}`)
		// The tags are the room's m.tag account data.
		mustEqualJSON(t, alice.Do(t, "GET", accountDataPath(alice.UserID, roomID, "m.tag"), nil), `{"tags":{"m.favourite":{"order":0.25},"u.work":{}}}`)
		// Replacing a tag and removing one.
		hstest.MustOK(t, alice.Do(t, "PUT", tagsPath(alice.UserID, roomID, "m.favourite"), map[string]any{"order": 0.5}))
		hstest.MustOK(t, alice.Do(t, "DELETE", tagsPath(alice.UserID, roomID, "u.work"), nil))
		hstest.MustOK(t, alice.Do(t, "DELETE", tagsPath(alice.UserID, roomID, "u.never"), nil))
		mustEqualJSON(t, alice.Do(t, "GET", tagsPath(alice.UserID, roomID, ""), nil), `{"tags":{"m.favourite":{"order":0.5}}}`)

		tests := []struct {
			name    string
			c       *hstest.Client
			method  string
			path    string
			body    any
			status  int
			errcode string
		}{
			{"get another user's tags", bob, "GET", tagsPath(alice.UserID, roomID, ""), nil, 403, "M_FORBIDDEN"},
			{"tag for another user", bob, "PUT", tagsPath(alice.UserID, roomID, "u.x"), map[string]any{}, 403, "M_FORBIDDEN"},
			{"untag for another user", bob, "DELETE", tagsPath(alice.UserID, roomID, "m.favourite"), nil, 403, "M_FORBIDDEN"},
			{"tag a room without membership", bob, "PUT", tagsPath(bob.UserID, roomID, "u.x"), map[string]any{}, 403, "M_FORBIDDEN"},
			{"tag longer than 255 bytes", alice, "PUT", tagsPath(alice.UserID, roomID, "u."+strings.Repeat("x", 254)), map[string]any{}, 400, "M_INVALID_PARAM"},
			{"order not a number", alice, "PUT", tagsPath(alice.UserID, roomID, "u.x"), map[string]any{"order": "first"}, 400, "M_BAD_JSON"},
			{"body not an object", alice, "PUT", tagsPath(alice.UserID, roomID, "u.x"), `[]`, 400, "M_BAD_JSON"},
			{"bad room ID", alice, "GET", tagsPath(alice.UserID, "room", ""), nil, 400, "M_INVALID_PARAM"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hstest.MustErr(t, tt.c.Do(t, tt.method, tt.path, tt.body), tt.status, tt.errcode)
			})
		}
		mustEqualJSON(t, alice.Do(t, "GET", tagsPath(alice.UserID, roomID, ""), nil), `{"tags":{"m.favourite":{"order":0.5}}}`)
	})
}

// Filters (spec: POST /user/{userId}/filter, GET .../filter/{filterId}).
func TestFiltersAPI(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		filter := map[string]any{
			"room":         map[string]any{"timeline": map[string]any{"limit": 10, "types": []string{"m.room.message"}}, "state": map[string]any{"lazy_load_members": true}},
			"presence":     map[string]any{"not_senders": []string{bob.UserID}},
			"event_format": "client",
		}
		fid := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", c3+"/user/"+url.PathEscape(alice.UserID)+"/filter", filter)), "filter_id")
		if fid == "" || strings.HasPrefix(fid, "{") {
			t.Fatalf("filter_id = %q", fid)
		}
		want, _ := json.Marshal(filter)
		mustEqualJSON(t, alice.Do(t, "GET", c3+"/user/"+url.PathEscape(alice.UserID)+"/filter/"+fid, nil), string(want))
		again := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", c3+"/user/"+url.PathEscape(alice.UserID)+"/filter", filter)), "filter_id")
		if again != fid {
			t.Errorf("uploading the same filter again = %q, want %q", again, fid)
		}
		tests := []struct {
			name    string
			c       *hstest.Client
			method  string
			path    string
			body    any
			status  int
			errcode string
		}{
			{"another user's filter", bob, "GET", c3 + "/user/" + url.PathEscape(alice.UserID) + "/filter/" + fid, nil, 403, "M_FORBIDDEN"},
			{"not one's own filter", bob, "GET", c3 + "/user/" + url.PathEscape(bob.UserID) + "/filter/" + fid, nil, 404, "M_NOT_FOUND"},
			{"unknown filter", alice, "GET", c3 + "/user/" + url.PathEscape(alice.UserID) + "/filter/12345", nil, 404, "M_NOT_FOUND"},
			{"non-numeric filter ID", alice, "GET", c3 + "/user/" + url.PathEscape(alice.UserID) + "/filter/abc", nil, 404, "M_NOT_FOUND"},
			{"upload for another user", bob, "POST", c3 + "/user/" + url.PathEscape(alice.UserID) + "/filter", map[string]any{}, 403, "M_FORBIDDEN"},
			{"not JSON", alice, "POST", c3 + "/user/" + url.PathEscape(alice.UserID) + "/filter", `{"room":`, 400, "M_NOT_JSON"},
			{"wrong type", alice, "POST", c3 + "/user/" + url.PathEscape(alice.UserID) + "/filter", map[string]any{"room": map[string]any{"timeline": map[string]any{"types": "m.room.message"}}}, 400, "M_BAD_JSON"},
			{"bad limit", alice, "POST", c3 + "/user/" + url.PathEscape(alice.UserID) + "/filter", map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 0}}}, 400, "M_INVALID_PARAM"},
			{"bad sender", alice, "POST", c3 + "/user/" + url.PathEscape(alice.UserID) + "/filter", map[string]any{"presence": map[string]any{"senders": []string{"bob"}}}, 400, "M_INVALID_PARAM"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hstest.MustErr(t, tt.c.Do(t, tt.method, tt.path, tt.body), tt.status, tt.errcode)
			})
		}
	})
}

// Typing notifications (spec "Typing Notifications").
func TestTypingAPI(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		carol := hs.Register(t, "carol", "pw")
		roomID := publicRoom(t, alice, bob)
		typingPath := func(c *hstest.Client) string {
			return roomPath(roomID, "/typing/"+url.PathEscape(c.UserID))
		}
		typers := func() []id.UserID {
			users, _ := hs.Process().Typing.Typing(id.RoomID(roomID))
			return users
		}

		hstest.MustOK(t, alice.Do(t, "PUT", typingPath(alice), map[string]any{"typing": true, "timeout": 30000}))
		hstest.MustOK(t, bob.Do(t, "PUT", typingPath(bob), map[string]any{"typing": true}))
		if got := typers(); len(got) != 2 || got[0] != id.UserID(alice.UserID) || got[1] != id.UserID(bob.UserID) {
			t.Errorf("typing = %v, want alice and bob", got)
		}
		hstest.MustOK(t, alice.Do(t, "PUT", typingPath(alice), map[string]any{"typing": false}))
		if got := typers(); len(got) != 1 || got[0] != id.UserID(bob.UserID) {
			t.Errorf("typing after alice stopped = %v, want bob", got)
		}

		tests := []struct {
			name    string
			c       *hstest.Client
			path    string
			body    any
			status  int
			errcode string
		}{
			{"not in the room", carol, typingPath(carol), map[string]any{"typing": true}, 403, "M_FORBIDDEN"},
			{"another user", bob, typingPath(alice), map[string]any{"typing": true}, 403, "M_FORBIDDEN"},
			{"typing missing", alice, typingPath(alice), map[string]any{"timeout": 1000}, 400, "M_BAD_JSON"},
			{"typing not a boolean", alice, typingPath(alice), map[string]any{"typing": "yes"}, 400, "M_BAD_JSON"},
			{"negative timeout", alice, typingPath(alice), map[string]any{"typing": true, "timeout": -1}, 400, "M_INVALID_PARAM"},
			{"not JSON", alice, typingPath(alice), `{`, 400, "M_NOT_JSON"},
			{"bad room ID", alice, c3 + "/rooms/nope/typing/" + url.PathEscape(alice.UserID), map[string]any{"typing": true}, 400, "M_INVALID_PARAM"},
			{"unknown room", alice, c3 + "/rooms/" + url.PathEscape("!nope:hs1.polder.test") + "/typing/" + url.PathEscape(alice.UserID), map[string]any{"typing": true}, 403, "M_FORBIDDEN"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hstest.MustErr(t, tt.c.Do(t, "PUT", tt.path, tt.body), tt.status, tt.errcode)
			})
		}
		if got := typers(); len(got) != 1 || got[0] != id.UserID(bob.UserID) {
			t.Errorf("typing after refusals = %v, want bob", got)
		}
	})
}

// Receipts and read markers (spec "Receipts", "Read and unread markers").
func TestReceiptsAPI(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		carol := hs.Register(t, "carol", "pw")
		roomID := publicRoom(t, alice, bob)
		e1 := sendText(t, alice, roomID, "one")
		e2 := sendText(t, alice, roomID, "two")
		otherRoom := createRoom(t, carol, map[string]any{})
		carolEv := sendText(t, carol, otherRoom, "elsewhere")
		receiptPath := func(typ, ev string) string {
			return roomPath(roomID, "/receipt/"+url.PathEscape(typ)+"/"+url.PathEscape(ev))
		}
		// receipts returns the m.receipt content of the room as user sees it.
		receipts := func(user *hstest.Client) map[string]map[string]map[string]map[string]any {
			t.Helper()
			p := hs.Process()
			got, err := p.Receipts.Since(t.Context(), id.UserID(user.UserID), []id.RoomID{id.RoomID(roomID)}, 0, p.Notify.Current().Stream)
			if err != nil {
				t.Fatalf("Receipts.Since: %v", err)
			}
			var c map[string]map[string]map[string]map[string]any
			if raw := got[id.RoomID(roomID)]; raw != nil {
				if err := json.Unmarshal(raw, &c); err != nil {
					t.Fatal(err)
				}
			}
			return c
		}

		hstest.MustOK(t, bob.Do(t, "POST", receiptPath("m.read", e1), map[string]any{}))
		// No body is an unthreaded receipt too.
		hstest.MustOK(t, bob.Do(t, "POST", receiptPath("m.read.private", e2), nil))
		hstest.MustOK(t, bob.Do(t, "POST", receiptPath("m.read", e2), map[string]any{"thread_id": "main"}))
		forAlice, forBob := receipts(alice), receipts(bob)
		if r := forAlice[e1]["m.read"][bob.UserID]; r == nil || r["ts"] == nil || r["thread_id"] != nil {
			t.Errorf("bob's unthreaded m.read on e1 as alice sees it = %v", forAlice[e1])
		}
		if r := forAlice[e2]["m.read"][bob.UserID]; r == nil || r["thread_id"] != "main" {
			t.Errorf("bob's main-thread m.read on e2 = %v", forAlice[e2])
		}
		if forAlice[e2]["m.read.private"] != nil {
			t.Errorf("alice sees bob's private receipt: %v", forAlice[e2])
		}
		if forBob[e2]["m.read.private"][bob.UserID] == nil {
			t.Errorf("bob does not see his own private receipt: %v", forBob[e2])
		}

		// m.fully_read through the receipt endpoint and /read_markers.
		hstest.MustOK(t, bob.Do(t, "POST", receiptPath("m.fully_read", e1), map[string]any{}))
		mustEqualJSON(t, bob.Do(t, "GET", accountDataPath(bob.UserID, roomID, "m.fully_read"), nil), `{"event_id":"`+e1+`"}`)
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/read_markers"), map[string]any{"m.fully_read": e2, "m.read.private": e2}))
		mustEqualJSON(t, bob.Do(t, "GET", accountDataPath(bob.UserID, roomID, "m.fully_read"), nil), `{"event_id":"`+e2+`"}`)
		// The marker never moves back.
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/read_markers"), map[string]any{"m.fully_read": e1}))
		mustEqualJSON(t, bob.Do(t, "GET", accountDataPath(bob.UserID, roomID, "m.fully_read"), nil), `{"event_id":"`+e2+`"}`)
		if ev, err := hs.Process().Receipts.LastRead(t.Context(), id.UserID(bob.UserID), id.RoomID(roomID)); err != nil || string(ev) != e2 {
			t.Errorf("LastRead(bob) = %s, %v; want %s", ev, err, e2)
		}

		tests := []struct {
			name    string
			c       *hstest.Client
			path    string
			body    any
			status  int
			errcode string
		}{
			{"unknown receipt type", bob, receiptPath("m.unread", e1), map[string]any{}, 400, "M_INVALID_PARAM"},
			{"unknown event", bob, receiptPath("m.read", "$nope"), map[string]any{}, 404, "M_NOT_FOUND"},
			{"event of another room", bob, receiptPath("m.read", carolEv), map[string]any{}, 404, "M_NOT_FOUND"},
			{"malformed event ID", bob, receiptPath("m.read", "nope"), map[string]any{}, 400, "M_INVALID_PARAM"},
			{"not in the room", carol, receiptPath("m.read", e1), map[string]any{}, 403, "M_FORBIDDEN"},
			{"empty thread_id", bob, receiptPath("m.read", e1), map[string]any{"thread_id": ""}, 400, "M_INVALID_PARAM"},
			{"thread_id not a string", bob, receiptPath("m.read", e1), map[string]any{"thread_id": 1}, 400, "M_INVALID_PARAM"},
			{"thread_id of m.fully_read", bob, receiptPath("m.fully_read", e1), map[string]any{"thread_id": "main"}, 400, "M_INVALID_PARAM"},
			{"event not in the thread", bob, receiptPath("m.read", e1), map[string]any{"thread_id": e2}, 400, "M_INVALID_PARAM"},
			{"bad room ID", bob, c3 + "/rooms/nope/receipt/m.read/" + url.PathEscape(e1), map[string]any{}, 400, "M_INVALID_PARAM"},
			{"read markers not in the room", carol, roomPath(roomID, "/read_markers"), map[string]any{"m.fully_read": e1}, 403, "M_FORBIDDEN"},
			{"read markers of an unknown event", bob, roomPath(roomID, "/read_markers"), map[string]any{"m.fully_read": e2, "m.read": "$nope"}, 404, "M_NOT_FOUND"},
			{"read markers not a string", bob, roomPath(roomID, "/read_markers"), map[string]any{"m.read": 5}, 400, "M_BAD_JSON"},
			{"read markers not JSON", bob, roomPath(roomID, "/read_markers"), `{`, 400, "M_NOT_JSON"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hstest.MustErr(t, tt.c.Do(t, "POST", tt.path, tt.body), tt.status, tt.errcode)
			})
		}
		if r := receipts(alice)[e1]["m.read"][bob.UserID]; r == nil {
			t.Errorf("refusals changed bob's m.read on e1")
		}
	})
}

// Presence (spec "Presence").
func TestPresenceAPI(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		statusPath := func(user string) string { return c3 + "/presence/" + url.PathEscape(user) + "/status" }

		got := hstest.MustOK(t, alice.Do(t, "GET", statusPath(alice.UserID), nil))
		if got["presence"] != "offline" {
			t.Errorf("presence before any = %v, want offline", got)
		}
		hstest.MustOK(t, alice.Do(t, "PUT", statusPath(alice.UserID), map[string]any{"presence": "online", "status_msg": "Busy"}))
		got = hstest.MustOK(t, alice.Do(t, "GET", statusPath(alice.UserID), nil))
		if got["presence"] != "online" || got["status_msg"] != "Busy" || got["currently_active"] != true {
			t.Errorf("own presence = %v", got)
		}
		if ago, ok := got["last_active_ago"].(float64); !ok || ago < 0 || ago > 60000 {
			t.Errorf("last_active_ago = %v, want a recent time", got["last_active_ago"])
		}
		// Others see it only when they share a room.
		hstest.MustErr(t, bob.Do(t, "GET", statusPath(alice.UserID), nil), 403, "M_FORBIDDEN")
		publicRoom(t, alice, bob)
		got = hstest.MustOK(t, bob.Do(t, "GET", statusPath(alice.UserID), nil))
		if got["presence"] != "online" || got["status_msg"] != "Busy" {
			t.Errorf("alice's presence as bob sees it = %v", got)
		}
		hstest.MustOK(t, alice.Do(t, "PUT", statusPath(alice.UserID), map[string]any{"presence": "unavailable"}))
		got = hstest.MustOK(t, bob.Do(t, "GET", statusPath(alice.UserID), nil))
		if got["presence"] != "unavailable" || got["status_msg"] != nil || got["currently_active"] != nil {
			t.Errorf("after unavailable without a message = %v", got)
		}

		tests := []struct {
			name    string
			c       *hstest.Client
			method  string
			path    string
			body    any
			status  int
			errcode string
		}{
			{"set another user's", bob, "PUT", statusPath(alice.UserID), map[string]any{"presence": "offline"}, 403, "M_FORBIDDEN"},
			{"unknown state", alice, "PUT", statusPath(alice.UserID), map[string]any{"presence": "away"}, 400, "M_INVALID_PARAM"},
			{"presence missing", alice, "PUT", statusPath(alice.UserID), map[string]any{"status_msg": "x"}, 400, "M_BAD_JSON"},
			{"status_msg not a string", alice, "PUT", statusPath(alice.UserID), map[string]any{"presence": "online", "status_msg": 5}, 400, "M_BAD_JSON"},
			{"not JSON", alice, "PUT", statusPath(alice.UserID), `{`, 400, "M_NOT_JSON"},
			{"bad user ID", alice, "GET", statusPath("alice"), nil, 400, "M_INVALID_PARAM"},
			{"a stranger's", alice, "GET", statusPath("@nobody:hs1.polder.test"), nil, 403, "M_FORBIDDEN"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hstest.MustErr(t, tt.c.Do(t, tt.method, tt.path, tt.body), tt.status, tt.errcode)
			})
		}
		got = hstest.MustOK(t, alice.Do(t, "GET", statusPath(alice.UserID), nil))
		if got["presence"] != "unavailable" {
			t.Errorf("presence after refusals = %v, want unavailable", got)
		}
		// Activity (a receipt) brings an unavailable user back online.
		roomID := publicRoom(t, bob, alice)
		ev := sendText(t, bob, roomID, "hello")
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/receipt/m.read/"+url.PathEscape(ev)), map[string]any{}))
		got = hstest.MustOK(t, alice.Do(t, "GET", statusPath(alice.UserID), nil))
		if got["presence"] != "online" {
			t.Errorf("presence after a receipt = %v, want online", got)
		}
	})
}

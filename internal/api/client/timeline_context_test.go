package client_test

import (
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"polder.dev/polder/internal/hstest"
)

// GET /event and GET /context (client-server API, "Getting events for a
// room", "Event context").
func TestEventAndContext(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Ctx"})
		other := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		join(t, bob, roomID)
		var sent []string
		for i := range 10 {
			c := alice
			if i%2 == 1 {
				c = bob
			}
			sent = append(sent, send(t, c, roomID, "m.room.message", msg(fmt.Sprintf("c%d", i))))
		}

		// /event: the client format, with the transaction ID only for the
		// sender's device.
		r := hstest.MustOK(t, alice.Do(t, "GET", roomPath(roomID, "/event/"+url.PathEscape(sent[4])), nil))
		if r["event_id"] != sent[4] || r["room_id"] != roomID || r["sender"] != alice.UserID || r["type"] != "m.room.message" {
			t.Errorf("/event = %v", r)
		}
		if _, ok := r["origin_server_ts"].(float64); !ok {
			t.Errorf("/event has no origin_server_ts: %v", r)
		}
		for _, k := range []string{"hashes", "signatures", "depth", "prev_events", "auth_events"} {
			if _, ok := r[k]; ok {
				t.Errorf("/event has federation key %s", k)
			}
		}
		u, _ := r["unsigned"].(map[string]any)
		if _, ok := u["transaction_id"]; !ok {
			t.Errorf("sender's /event lacks unsigned.transaction_id: %v", u)
		}
		if u := hstest.MustOK(t, bob.Do(t, "GET", roomPath(roomID, "/event/"+url.PathEscape(sent[4])), nil))["unsigned"].(map[string]any); u["transaction_id"] != nil {
			t.Errorf("another user sees transaction_id: %v", u)
		}
		hstest.MustErr(t, alice.Do(t, "GET", roomPath(roomID, "/event/$unknown"), nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, alice.Do(t, "GET", roomPath(other, "/event/"+url.PathEscape(sent[4])), nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, alice.Do(t, "GET", roomPath(roomID, "/event/notanid"), nil), 400, "M_INVALID_PARAM")

		// /context: limit split before and after, tokens that page on.
		type ctxResp struct {
			Event  ev   `json:"event"`
			Before []ev `json:"events_before"`
			After  []ev `json:"events_after"`
			State  []ev `json:"state"`
			Start  string
			End    string
		}
		get := func(c *hstest.Client, eventID, params string) ctxResp {
			t.Helper()
			return decodeOK[ctxResp](t, c.Do(t, "GET", roomPath(roomID, "/context/"+url.PathEscape(eventID)+"?"+params), nil))
		}
		c := get(alice, sent[5], "limit=4")
		if c.Event.EventID != sent[5] {
			t.Errorf("context event = %s", c.Event.EventID)
		}
		if got := ids(c.Before); !slices.Equal(got, []string{sent[4], sent[3]}) {
			t.Errorf("events_before = %v, want c4 c3", bodies(c.Before))
		}
		if got := ids(c.After); !slices.Equal(got, []string{sent[6], sent[7]}) {
			t.Errorf("events_after = %v, want c6 c7", bodies(c.After))
		}
		if p := getPage(t, alice, roomID, "dir=b", "limit=2", "from="+q(c.Start)); !slices.Equal(ids(p.Chunk), []string{sent[2], sent[1]}) {
			t.Errorf("/messages back from context start = %v, want c2 c1", bodies(p.Chunk))
		}
		if p := getPage(t, alice, roomID, "dir=f", "limit=2", "from="+q(c.End)); !slices.Equal(ids(p.Chunk), []string{sent[8], sent[9]}) {
			t.Errorf("/messages on from context end = %v, want c8 c9", bodies(p.Chunk))
		}
		// The full state, or with lazy loading only the senders' members.
		types := map[string]bool{}
		for _, e := range c.State {
			types[e.Type] = true
		}
		for _, typ := range []string{"m.room.create", "m.room.power_levels", "m.room.name", "m.room.member"} {
			if !types[typ] {
				t.Errorf("context state lacks %s", typ)
			}
		}
		lazy := get(alice, sent[0], "limit=0&filter="+q(`{"lazy_load_members":true}`))
		var members []string
		for _, e := range lazy.State {
			if e.Type == "m.room.member" {
				members = append(members, *e.StateKey)
			}
		}
		if !slices.Equal(members, []string{alice.UserID}) || len(lazy.Before)+len(lazy.After) != 0 {
			t.Errorf("lazy context of alice's event, limit 0: members %v, %d events", members, len(lazy.Before)+len(lazy.After))
		}
		// The filter applies around the event, not to it.
		fc := get(alice, sent[5], "limit=10&filter="+q(`{"senders":["`+alice.UserID+`"]}`))
		if fc.Event.EventID != sent[5] {
			t.Errorf("filtered context lost its event")
		}
		for _, e := range append(fc.Before, fc.After...) {
			if e.Sender != alice.UserID {
				t.Errorf("filtered context holds %s's event", e.Sender)
			}
		}
		hstest.MustErr(t, alice.Do(t, "GET", roomPath(roomID, "/context/$nope"), nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, alice.Do(t, "GET", roomPath(roomID, "/context/"+url.PathEscape(sent[0])+"?limit=x"), nil), 400, "M_INVALID_PARAM")
		eve := hs.Register(t, "eve", "pw")
		hstest.MustErr(t, eve.Do(t, "GET", roomPath(roomID, "/context/"+url.PathEscape(sent[0])), nil), 403, "M_FORBIDDEN")
	})
}

// GET /members, /joined_members and /state.
func TestMembersAndState(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		carol := hs.Register(t, "carol", "pw")
		eve := hs.Register(t, "eve", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "private_chat", "name": "Members"})
		invite(t, alice, roomID, bob.UserID)
		join(t, bob, roomID)
		mid := getPage(t, alice, roomID, "dir=b", "limit=1").Start // bob joined, carol not yet invited
		invite(t, alice, roomID, carol.UserID)

		members := func(c *hstest.Client, params string) map[string]string {
			t.Helper()
			r := hstest.MustOK(t, c.Do(t, "GET", roomPath(roomID, "/members?"+params), nil))
			out := map[string]string{}
			for _, e := range r["chunk"].([]any) {
				m := e.(map[string]any)
				if m["type"] != "m.room.member" {
					t.Errorf("/members returned a %v", m["type"])
				}
				out[m["state_key"].(string)] = m["content"].(map[string]any)["membership"].(string)
			}
			return out
		}
		all := members(alice, "")
		if len(all) != 3 || all[alice.UserID] != "join" || all[bob.UserID] != "join" || all[carol.UserID] != "invite" {
			t.Errorf("/members = %v", all)
		}
		if got := members(alice, "membership=join"); len(got) != 2 || got[carol.UserID] != "" {
			t.Errorf("membership=join: %v", got)
		}
		if got := members(alice, "not_membership=join"); len(got) != 1 || got[carol.UserID] != "invite" {
			t.Errorf("not_membership=join: %v", got)
		}
		if got := members(alice, "at="+q(mid)); len(got) != 2 || got[carol.UserID] != "" {
			t.Errorf("members at a token before carol's invite: %v", got)
		}
		hstest.MustErr(t, alice.Do(t, "GET", roomPath(roomID, "/members?membership=joined"), nil), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, alice.Do(t, "GET", roomPath(roomID, "/members?at=bad"), nil), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, eve.Do(t, "GET", roomPath(roomID, "/members"), nil), 403, "M_FORBIDDEN")
		// An invited user is not yet a member.
		hstest.MustErr(t, carol.Do(t, "GET", roomPath(roomID, "/members"), nil), 403, "M_FORBIDDEN")

		// /joined_members: joined users with their profiles.
		jm := hstest.MustOK(t, bob.Do(t, "GET", roomPath(roomID, "/joined_members"), nil))
		joined := jm["joined"].(map[string]any)
		if len(joined) != 2 || joined[alice.UserID] == nil || joined[carol.UserID] != nil {
			t.Errorf("/joined_members = %v", jm)
		}
		if p := joined[alice.UserID].(map[string]any); p["display_name"] != "alice" {
			t.Errorf("alice's joined member profile = %v", p)
		}
		hstest.MustErr(t, eve.Do(t, "GET", roomPath(roomID, "/joined_members"), nil), 403, "M_FORBIDDEN")

		// /state: every current state event, client format.
		st := decodeOK[[]ev](t, alice.Do(t, "GET", roomPath(roomID, "/state"), nil))
		seen := map[string]bool{}
		for _, e := range st {
			if e.StateKey == nil || e.EventID == "" {
				t.Errorf("/state holds %+v", e)
				continue
			}
			seen[e.Type+"|"+*e.StateKey] = true
		}
		for _, k := range []string{"m.room.create|", "m.room.name|", "m.room.member|" + carol.UserID, "m.room.join_rules|"} {
			if !seen[k] {
				t.Errorf("/state lacks %s", k)
			}
		}
		hstest.MustErr(t, eve.Do(t, "GET", roomPath(roomID, "/state"), nil), 403, "M_FORBIDDEN")
		hstest.MustErr(t, eve.Do(t, "GET", roomPath("!unknown:"+hs.ServerName(), "/state"), nil), 403, "M_FORBIDDEN")
		// Bob, kicked, reads state and members as of then.
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/kick"), map[string]any{"user_id": bob.UserID}))
		putState(t, alice, roomID, "m.room.name", "", map[string]any{"name": "Renamed"})
		for _, e := range decodeOK[[]ev](t, bob.Do(t, "GET", roomPath(roomID, "/state"), nil)) {
			if e.Type == "m.room.name" && e.Content["name"] != "Members" {
				t.Errorf("kicked bob sees name %v", e.Content)
			}
		}
		if got := members(bob, ""); got[bob.UserID] != "leave" {
			t.Errorf("kicked bob's /members = %v", got)
		}
	})
}

// GET /timestamp_to_event.
func TestTimestampToEvent(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		eve := hs.Register(t, "eve", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "private_chat"})
		e1 := send(t, alice, roomID, "m.room.message", msg("one"))
		time.Sleep(5 * time.Millisecond)
		mid := time.Now().UnixMilli()
		time.Sleep(5 * time.Millisecond)
		e2 := send(t, alice, roomID, "m.room.message", msg("two"))
		path := func(ts int64, dir string) string {
			return c1 + "/rooms/" + url.PathEscape(roomID) + fmt.Sprintf("/timestamp_to_event?ts=%d&dir=%s", ts, dir)
		}
		if r := hstest.MustOK(t, alice.Do(t, "GET", path(mid, "f"), nil)); r["event_id"] != e2 || r["origin_server_ts"] == nil {
			t.Errorf("forwards from the middle = %v, want %s", r, e2)
		}
		if r := hstest.MustOK(t, alice.Do(t, "GET", path(mid, "b"), nil)); r["event_id"] != e1 {
			t.Errorf("backwards from the middle = %v, want %s", r, e1)
		}
		hstest.MustErr(t, alice.Do(t, "GET", path(time.Now().Add(time.Hour).UnixMilli(), "f"), nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, alice.Do(t, "GET", path(mid, "x"), nil), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, alice.Do(t, "GET", c1+"/rooms/"+url.PathEscape(roomID)+"/timestamp_to_event?dir=f", nil), 400, "M_MISSING_PARAM")
		hstest.MustErr(t, alice.Do(t, "GET", c1+"/rooms/"+url.PathEscape(roomID)+"/timestamp_to_event?ts=1", nil), 400, "M_MISSING_PARAM")
		hstest.MustErr(t, alice.Do(t, "GET", c1+"/rooms/"+url.PathEscape(roomID)+"/timestamp_to_event?ts=abc&dir=f", nil), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, eve.Do(t, "GET", path(mid, "f"), nil), 403, "M_FORBIDDEN")
	})
}

// Guests read the rooms they may (client-server API, "Guest access"); a
// former member who forgot a room reads nothing more of it.
func TestTimelineGuestsAndForgotten(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{Guests: true}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		r := hs.Anon().Do(t, "POST", c3+"/register?kind=guest", map[string]any{})
		guest := hs.Anon().WithToken(hstest.Str(t, hstest.MustOK(t, r), "access_token"))
		pub := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		putState(t, alice, pub, "m.room.history_visibility", "", map[string]any{"history_visibility": "world_readable"})
		e := send(t, alice, pub, "m.room.message", msg("hello guests"))
		if got := bodies(getPage(t, guest, pub, "dir=b").Chunk); !slices.Equal(got, []string{"hello guests"}) {
			t.Errorf("guest reads %v", got)
		}
		getEv(t, guest, pub, e)
		hstest.MustOK(t, guest.Do(t, "GET", roomPath(pub, "/members"), nil))
		hstest.MustOK(t, guest.Do(t, "GET", relationsPath(pub, e, ""), nil))
		hstest.MustErr(t, guest.Do(t, "GET", roomPath(pub, "/joined_members"), nil), 403, "M_GUEST_ACCESS_FORBIDDEN")
		hstest.MustErr(t, guest.Do(t, "GET", c1+"/rooms/"+url.PathEscape(pub)+"/threads", nil), 403, "M_GUEST_ACCESS_FORBIDDEN")
		hstest.MustErr(t, guest.Do(t, "POST", roomPath(pub, "/report"), map[string]any{"reason": "x"}), 403, "M_GUEST_ACCESS_FORBIDDEN")

		priv := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		join(t, bob, priv)
		send(t, alice, priv, "m.room.message", msg("seen"))
		hstest.MustErr(t, guest.Do(t, "GET", messagesPath(priv, "dir=b"), nil), 403, "M_FORBIDDEN")
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(priv, "/leave"), map[string]any{}))
		if got := bodies(getPage(t, bob, priv, "dir=b").Chunk); !slices.Equal(got, []string{"seen"}) {
			t.Errorf("bob after leaving reads %v", got)
		}
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(priv, "/forget"), map[string]any{}))
		hstest.MustErr(t, bob.Do(t, "GET", messagesPath(priv, "dir=b"), nil), 403, "M_FORBIDDEN")
		hstest.MustErr(t, bob.Do(t, "GET", roomPath(priv, "/state"), nil), 403, "M_FORBIDDEN")
	})
}

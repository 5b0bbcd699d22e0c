package client_test

import (
	"net/url"
	"strings"
	"testing"

	"polder.dev/polder/internal/hstest"
)

func ruleIDs(t *testing.T, c *hstest.Client, kind string) []string {
	t.Helper()
	g := hstest.MustOK(t, c.Do(t, "GET", c3+"/pushrules/", nil))["global"].(map[string]any)
	var out []string
	for _, r := range g[kind].([]any) {
		out = append(out, r.(map[string]any)["rule_id"].(string))
	}
	return out
}

func userRuleIDs(t *testing.T, c *hstest.Client, kind string) string {
	var out []string
	for _, id := range ruleIDs(t, c, kind) {
		if !strings.HasPrefix(id, ".") {
			out = append(out, id)
		}
	}
	return strings.Join(out, ",")
}

// The push rules API (client-server API, "Push Rules: API"): CRUD,
// ordering, enabled and actions, the spec's errors, and m.push_rules in
// /sync.
func TestPushRulesAPI(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		rules := c3 + "/pushrules/global/"
		notify := map[string]any{"actions": []any{"notify"}}

		// The defaults, with the user's ID in them.
		g := hstest.MustOK(t, alice.Do(t, "GET", rules, nil))
		if len(g["override"].([]any)) != 10 || len(g["underride"].([]any)) != 5 {
			t.Errorf("default rules: %v", g)
		}
		r := hstest.MustOK(t, alice.Do(t, "GET", rules+"override/.m.rule.is_user_mention", nil))
		if c := r["conditions"].([]any)[0].(map[string]any); c["value"] != alice.UserID || c["key"] != `content.m\.mentions.user_ids` {
			t.Errorf("is_user_mention = %v", r)
		}
		s0 := doSync(t, alice, "")

		// Create and order.
		for _, id := range []string{"a", "b", "c"} {
			hstest.MustOK(t, alice.Do(t, "PUT", rules+"override/"+id, map[string]any{"actions": []any{"notify"},
				"conditions": []any{map[string]any{"kind": "event_match", "key": "content.body", "pattern": id}}}))
		}
		if got := userRuleIDs(t, alice, "override"); got != "c,b,a" {
			t.Errorf("new rules first: %s", got)
		}
		if ids := ruleIDs(t, alice, "override"); ids[0] != ".m.rule.master" {
			t.Errorf("master is not first: %v", ids)
		}
		hstest.MustOK(t, alice.Do(t, "PUT", rules+"override/d?before=a", notify))
		hstest.MustOK(t, alice.Do(t, "PUT", rules+"override/e?after=c", notify))
		if got := userRuleIDs(t, alice, "override"); got != "c,e,b,d,a" {
			t.Errorf("before/after: %s", got)
		}
		// Content, room and sender rules.
		hstest.MustOK(t, alice.Do(t, "PUT", rules+"content/cake", map[string]any{"pattern": "cake*lie", "actions": []any{"notify", map[string]any{"set_tweak": "sound", "value": "cakealarm.wav"}}}))
		room := "!dj234r78wl45Gh4D:matrix.org"
		hstest.MustOK(t, alice.Do(t, "PUT", rules+"room/"+url.PathEscape(room), map[string]any{"actions": []any{}}))
		hstest.MustOK(t, alice.Do(t, "PUT", rules+"sender/"+url.PathEscape("@spambot:matrix.org"), map[string]any{"actions": []any{}}))
		cr := hstest.MustOK(t, alice.Do(t, "GET", rules+"content/cake", nil))
		if cr["pattern"] != "cake*lie" || cr["enabled"] != true || cr["default"] != false {
			t.Errorf("content rule = %v", cr)
		}
		if got := ruleIDs(t, alice, "room"); len(got) != 1 || got[0] != room {
			t.Errorf("room rules = %v", got)
		}

		// enabled and actions, on user and default rules.
		hstest.MustOK(t, alice.Do(t, "PUT", rules+"underride/.m.rule.message/enabled", map[string]any{"enabled": false}))
		if e := hstest.MustOK(t, alice.Do(t, "GET", rules+"underride/.m.rule.message/enabled", nil)); e["enabled"] != false {
			t.Errorf("enabled = %v", e)
		}
		hstest.MustOK(t, alice.Do(t, "PUT", rules+"override/a/actions", map[string]any{"actions": []any{}}))
		if a := hstest.MustOK(t, alice.Do(t, "GET", rules+"override/a/actions", nil)); len(a["actions"].([]any)) != 0 {
			t.Errorf("actions = %v", a)
		}
		hstest.MustOK(t, alice.Do(t, "PUT", rules+"override/.m.rule.tombstone/actions", map[string]any{"actions": []any{"notify"}}))

		// Delete.
		hstest.MustOK(t, alice.Do(t, "DELETE", rules+"override/b", nil))
		if got := userRuleIDs(t, alice, "override"); got != "c,e,d,a" {
			t.Errorf("after delete: %s", got)
		}

		// Errors.
		for _, tc := range []struct {
			name, method, path string
			body               any
			status             int
			code               string
		}{
			{"get missing", "GET", rules + "override/nope", nil, 404, "M_NOT_FOUND"},
			{"delete missing", "DELETE", rules + "override/nope", nil, 404, "M_NOT_FOUND"},
			{"delete default", "DELETE", rules + "override/.m.rule.master", nil, 400, "M_UNKNOWN"},
			{"put default", "PUT", rules + "override/.m.rule.custom", notify, 400, "M_UNKNOWN"},
			{"enabled missing", "PUT", rules + "override/nope/enabled", map[string]any{"enabled": true}, 404, "M_NOT_FOUND"},
			{"actions missing", "PUT", rules + "override/nope/actions", notify, 404, "M_NOT_FOUND"},
			{"before missing", "PUT", rules + "override/f?before=nope", notify, 404, "M_NOT_FOUND"},
			{"before a default", "PUT", rules + "override/f?before=.m.rule.master", notify, 400, "M_INVALID_PARAM"},
			{"bad kind", "PUT", rules + "sideways/f", notify, 400, "M_INVALID_PARAM"},
			{"bad scope", "GET", c3 + "/pushrules/device/override/a", nil, 400, "M_INVALID_PARAM"},
			{"content without pattern", "PUT", rules + "content/f", notify, 400, "M_INVALID_PARAM"},
			{"room rule not a room", "PUT", rules + "room/f", notify, 400, "M_INVALID_PARAM"},
			{"sender rule not a user", "PUT", rules + "sender/f", notify, 400, "M_INVALID_PARAM"},
			{"no actions", "PUT", rules + "override/f", map[string]any{}, 400, "M_INVALID_PARAM"},
			{"bad action", "PUT", rules + "override/f", map[string]any{"actions": []any{1}}, 400, "M_INVALID_PARAM"},
			{"enabled not given", "PUT", rules + "override/a/enabled", map[string]any{}, 400, "M_MISSING_PARAM"},
			{"unknown attribute", "GET", rules + "override/a/colour", nil, 404, "M_UNRECOGNIZED"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				hstest.MustErr(t, alice.Do(t, tc.method, tc.path, tc.body), tc.status, tc.code)
			})
		}

		// The rules are m.push_rules account data in /sync, and survive a
		// restart.
		s1 := doSync(t, alice, syncSince(s0.NextBatch))
		found := false
		if s1.AccountData != nil {
			for _, e := range s1.AccountData.Events {
				if e.Type == "m.push_rules" {
					found = true
					g := e.Content["global"].(map[string]any)
					if len(g["content"].([]any)) != 1 || len(g["override"].([]any)) != 14 {
						t.Errorf("m.push_rules in sync = %v", g)
					}
				}
			}
		}
		if !found {
			t.Errorf("no m.push_rules in the sync after changes")
		}
		hs.Restart(t)
		if got := userRuleIDs(t, alice, "override"); got != "c,e,d,a" {
			t.Errorf("after restart: %s", got)
		}
		if e := hstest.MustOK(t, alice.Do(t, "GET", rules+"underride/.m.rule.message/enabled", nil)); e["enabled"] != false {
			t.Errorf("after restart: enabled = %v", e)
		}
		hstest.MustErr(t, alice.Do(t, "PUT", c3+"/user/"+url.PathEscape(alice.UserID)+"/account_data/m.push_rules", map[string]any{}), 405, "M_BAD_JSON")
	})
}

// User rules change what notifies: a room rule silences a room, a
// content rule highlights a word.
func TestPushRulesEvaluated(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		quiet := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		loud := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		for _, r := range []string{quiet, loud} {
			hstest.MustOK(t, bob.Do(t, "POST", roomPath(r, "/join"), nil))
		}
		rules := c3 + "/pushrules/global/"
		hstest.MustOK(t, alice.Do(t, "PUT", rules+"room/"+url.PathEscape(quiet), map[string]any{"actions": []any{}}))
		hstest.MustOK(t, alice.Do(t, "PUT", rules+"content/cake", map[string]any{"pattern": "cake", "actions": []any{"notify", map[string]any{"set_tweak": "highlight"}}}))
		sendText(t, bob, quiet, "shh")
		sendText(t, bob, quiet, "cake?") // content rules come before room rules
		sendText(t, bob, loud, "hello")
		sendText(t, bob, loud, "cupcakes are not cake-free")
		s := doSync(t, alice, "")
		if q := s.join(quiet).Unread; q.Notifications != 1 || q.Highlights != 1 {
			t.Errorf("quiet room: %+v, want 1/1", *q)
		}
		if l := s.join(loud).Unread; l.Notifications != 2 || l.Highlights != 1 {
			t.Errorf("loud room: %+v, want 2/1", *l)
		}
	})
}

// Unread counts after a conversation with mentions and threads, cleared
// by unthreaded and threaded receipts.
func TestPushUnreadThreads(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		carol := hs.Register(t, "carol", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), nil))
		hstest.MustOK(t, carol.Do(t, "POST", roomPath(roomID, "/join"), nil))
		mention := func(c *hstest.Client, body string, thread string) string {
			m := map[string]any{"msgtype": "m.text", "body": body, "m.mentions": map[string]any{"user_ids": []string{alice.UserID}}}
			if thread != "" {
				m["m.relates_to"] = map[string]any{"rel_type": "m.thread", "event_id": thread}
			}
			return syncSend(t, c, roomID, "m.room.message", m)
		}
		inThread := func(c *hstest.Client, body, root string) string {
			return syncSend(t, c, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": body,
				"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
		}
		root := sendText(t, bob, roomID, "root")                 // main 1
		mention(bob, "hey", "")                                  // main 2, h1
		t1 := inThread(bob, "t1", root)                          // thread 1
		t2 := mention(carol, "t2", root)                         // thread 2, h1
		syncSend(t, carol, roomID, "m.reaction", map[string]any{ // nothing
			"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": t1, "key": "x"}})
		last := sendText(t, carol, roomID, "main again") // main 3
		split := syncFilter(map[string]any{"room": map[string]any{"timeline": map[string]any{"unread_thread_notifications": true}}})
		check := func(what string, main, mainH, thr, thrH int) {
			t.Helper()
			jr := doSync(t, alice, split).join(roomID)
			tc := jr.UnreadThreads[root]
			if jr.Unread.Notifications != main || jr.Unread.Highlights != mainH || tc.Notifications != thr || tc.Highlights != thrH {
				t.Errorf("%s: main %+v, threads %v; want main %d/%d, thread %d/%d", what, *jr.Unread, jr.UnreadThreads, main, mainH, thr, thrH)
			}
			all := doSync(t, alice, "").join(roomID)
			if all.Unread.Notifications != main+thr || all.Unread.Highlights != mainH+thrH || all.UnreadThreads != nil {
				t.Errorf("%s unsplit: %+v %v", what, *all.Unread, all.UnreadThreads)
			}
		}
		check("start", 3, 1, 2, 1)
		receipt := func(eventID, thread string) {
			body := map[string]any{}
			if thread != "" {
				body["thread_id"] = thread
			}
			hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/receipt/m.read/"+url.PathEscape(eventID)), body))
		}
		receipt(t1, root)
		check("thread receipt on t1", 3, 1, 1, 1)
		receipt(last, "main")
		check("main receipt", 0, 0, 1, 1)
		receipt(t2, root)
		check("thread read", 0, 0, 0, 0)
		mention(bob, "again", root)
		sendText(t, bob, roomID, "and main")
		check("new", 1, 0, 1, 1)
		// An unthreaded receipt clears everything before it.
		receipt(sendText(t, bob, roomID, "the newest"), "")
		check("unthreaded receipt", 0, 0, 0, 0)
	})
}

package push_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/push"
)

const me = id.UserID("@alice:hs")

func mustEvent(tb testing.TB, raw string) *push.Event {
	tb.Helper()
	ev, err := push.ParseEvent([]byte(raw))
	if err != nil {
		tb.Fatalf("ParseEvent(%s): %v", raw, err)
	}
	return ev
}

func msg(content string) string {
	return `{"type":"m.room.message","sender":"@bob:hs","room_id":"!r:hs","content":` + content + `}`
}

// TestDefaultRules checks each predefined rule (client-server API,
// "Predefined Rules") against events it must and must not match.
func TestDefaultRules(t *testing.T) {
	group := &push.Room{MemberCount: 5, SenderPower: 0}
	dm := &push.Room{MemberCount: 2, SenderPower: 0}
	mod := &push.Room{MemberCount: 5, SenderPower: 50}
	for _, tc := range []struct {
		name      string
		ev        string
		room      *push.Room
		rule      string // "" for no match
		notify    bool
		highlight bool
	}{
		{"message in a group", msg(`{"msgtype":"m.text","body":"hi"}`), group, ".m.rule.message", true, false},
		{"message in a 1:1", msg(`{"msgtype":"m.text","body":"hi"}`), dm, ".m.rule.room_one_to_one", true, false},
		{"notice", msg(`{"msgtype":"m.notice","body":"bot"}`), group, ".m.rule.suppress_notices", false, false},
		{"notice mentioning me still suppressed (suppress_notices comes first)", msg(`{"msgtype":"m.notice","body":"x","m.mentions":{"user_ids":["@alice:hs"]}}`), group, ".m.rule.suppress_notices", false, false},
		{"invite for me", `{"type":"m.room.member","state_key":"@alice:hs","sender":"@bob:hs","content":{"membership":"invite"}}`, group, ".m.rule.invite_for_me", true, false},
		{"invite for someone else", `{"type":"m.room.member","state_key":"@carol:hs","sender":"@bob:hs","content":{"membership":"invite"}}`, group, ".m.rule.member_event", false, false},
		{"join", `{"type":"m.room.member","state_key":"@bob:hs","sender":"@bob:hs","content":{"membership":"join"}}`, group, ".m.rule.member_event", false, false},
		{"user mention", msg(`{"msgtype":"m.text","body":"hey","m.mentions":{"user_ids":["@alice:hs"]}}`), group, ".m.rule.is_user_mention", true, true},
		{"mention of another", msg(`{"msgtype":"m.text","body":"hey","m.mentions":{"user_ids":["@carol:hs"]}}`), group, ".m.rule.message", true, false},
		{"name in body without m.mentions (legacy rules removed in v1.17)", msg(`{"msgtype":"m.text","body":"alice: hi"}`), group, ".m.rule.message", true, false},
		{"room mention by a moderator", msg(`{"msgtype":"m.text","body":"@room","m.mentions":{"room":true}}`), mod, ".m.rule.is_room_mention", true, true},
		{"room mention without power", msg(`{"msgtype":"m.text","body":"@room","m.mentions":{"room":true}}`), group, ".m.rule.message", true, false},
		{"room mention as a string", msg(`{"msgtype":"m.text","body":"@room","m.mentions":{"room":"true"}}`), mod, ".m.rule.message", true, false},
		{"tombstone", `{"type":"m.room.tombstone","state_key":"","sender":"@bob:hs","content":{"replacement_room":"!n:hs"}}`, group, ".m.rule.tombstone", true, true},
		{"tombstone with a state key", `{"type":"m.room.tombstone","state_key":"x","sender":"@bob:hs","content":{}}`, group, "", false, false},
		{"reaction", `{"type":"m.reaction","sender":"@bob:hs","content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$x","key":"👍"}}}`, group, ".m.rule.reaction", false, false},
		{"server ACL", `{"type":"m.room.server_acl","state_key":"","sender":"@bob:hs","content":{"allow":["*"]}}`, group, ".m.rule.room.server_acl", false, false},
		{"edit", msg(`{"msgtype":"m.text","body":"* hi","m.new_content":{"body":"hi"},"m.relates_to":{"rel_type":"m.replace","event_id":"$x"}}`), group, ".m.rule.suppress_edits", false, false},
		{"edit adding a mention is suppressed too", msg(`{"msgtype":"m.text","body":"* hi","m.mentions":{"user_ids":["@alice:hs"]},"m.relates_to":{"rel_type":"m.replace","event_id":"$x"}}`), group, ".m.rule.is_user_mention", true, true},
		{"call invite", `{"type":"m.call.invite","sender":"@bob:hs","content":{}}`, group, ".m.rule.call", true, false},
		{"encrypted in a 1:1", `{"type":"m.room.encrypted","sender":"@bob:hs","content":{"algorithm":"m.megolm.v1.aes-sha2"}}`, dm, ".m.rule.encrypted_room_one_to_one", true, false},
		{"encrypted in a group", `{"type":"m.room.encrypted","sender":"@bob:hs","content":{"algorithm":"m.megolm.v1.aes-sha2"}}`, group, ".m.rule.encrypted", true, false},
		{"sticker: no rule", `{"type":"m.sticker","sender":"@bob:hs","content":{"body":"x"}}`, group, "", false, false},
		{"topic: no rule", `{"type":"m.room.topic","state_key":"","sender":"@bob:hs","content":{"topic":"x"}}`, group, "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := push.Evaluate(push.Defaults(), mustEvent(t, tc.ev), tc.room, &push.Member{UserID: me, DisplayName: "Alice"})
			got := ""
			if res.Rule != nil {
				got = res.Rule.ID
			}
			if got != tc.rule || res.Notify != tc.notify || res.Highlight != tc.highlight {
				t.Errorf("Evaluate = %q notify=%v highlight=%v, want %q notify=%v highlight=%v", got, res.Notify, res.Highlight, tc.rule, tc.notify, tc.highlight)
			}
		})
	}
}

// The edit case above: .m.rule.is_user_mention comes before
// .m.rule.suppress_edits in the spec's order, as in Synapse.

func TestDefaultRulesOrder(t *testing.T) {
	want := map[push.Kind][]string{
		push.Override: {".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event", ".m.rule.is_user_mention",
			".m.rule.is_room_mention", ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl", ".m.rule.suppress_edits"},
		push.Underride: {".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"},
	}
	for _, k := range push.Kinds {
		var got []string
		for _, r := range push.Defaults().Rules(k) {
			got = append(got, r.ID)
			if !r.Default {
				t.Errorf("%s is not marked default", r.ID)
			}
			if r.Enabled != (r.ID != ".m.rule.master") {
				t.Errorf("%s enabled = %v", r.ID, r.Enabled)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want[k]) {
			t.Errorf("%s rules = %v, want %v", k, got, want[k])
		}
	}
	var rs map[string][]map[string]any
	if err := json.Unmarshal(push.DefaultRules(me), &rs); err != nil {
		t.Fatalf("DefaultRules: %v", err)
	}
	if c := rs["override"][0]["conditions"]; c == nil {
		t.Errorf(".m.rule.master has no conditions array: %v", rs["override"][0])
	}
	if !strings.Contains(string(push.DefaultRules(me)), `"pattern":"@alice:hs"`) || !strings.Contains(string(push.DefaultRules(me)), `"value":"@alice:hs"`) {
		t.Errorf("DefaultRules does not name the user: %s", push.DefaultRules(me))
	}
}

func cond(tb testing.TB, raw string) *push.Ruleset {
	tb.Helper()
	var c push.Condition
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		tb.Fatalf("condition %s: %v", raw, err)
	}
	rs, err := push.Defaults().Put(push.Override, "test", push.NewRule{Actions: []json.RawMessage{json.RawMessage(`"notify"`), json.RawMessage(`{"set_tweak":"sound","value":"test"}`)}, Conditions: []*push.Condition{&c}}, "", "")
	if err != nil {
		tb.Fatalf("Put: %v", err)
	}
	// Nothing else may match: disable the defaults' underride rules.
	for _, r := range push.Defaults().Rules(push.Underride) {
		rs, _ = rs.SetEnabled(push.Underride, r.ID, false)
	}
	return rs
}

// TestConditions checks every condition kind (client-server API,
// "Conditions"), with the spec's own examples.
func TestConditions(t *testing.T) {
	room := &push.Room{MemberCount: 10, SenderPower: 50, Notifications: map[string]int64{"room": 50, "high": 100}}
	topic := func(v string) string {
		return `{"type":"m.room.topic","state_key":"","sender":"@bob:hs","content":{"topic":` + v + `}}`
	}
	body := func(v string) string { return msg(`{"body":` + v + `}`) }
	for _, tc := range []struct {
		name  string
		cond  string
		ev    string
		match bool
	}{
		// event_match: glob on the whole value, case-insensitive.
		{"glob spec example", `{"kind":"event_match","key":"content.topic","pattern":"lunc?*"}`, topic(`"Lunch plans"`), true},
		{"glob LUNCH", `{"kind":"event_match","key":"content.topic","pattern":"lunc?*"}`, topic(`"LUNCH"`), true},
		{"glob leading space", `{"kind":"event_match","key":"content.topic","pattern":"lunc?*"}`, topic(`" lunch"`), false},
		{"glob ? needs a character", `{"kind":"event_match","key":"content.topic","pattern":"lunc?*"}`, topic(`"lunc"`), false},
		{"glob null", `{"kind":"event_match","key":"content.topic","pattern":"lunc?*"}`, topic(`null`), false},
		{"glob * on absent key", `{"kind":"event_match","key":"content.nothing","pattern":"*"}`, topic(`"x"`), false},
		{"glob * on a number", `{"kind":"event_match","key":"content.topic","pattern":"*"}`, topic(`5`), false},
		{"glob * on empty string", `{"kind":"event_match","key":"content.topic","pattern":"*"}`, topic(`""`), true},
		{"whole value, not a substring", `{"kind":"event_match","key":"content.topic","pattern":"lunch"}`, topic(`"lunch plans"`), false},
		{"literal case-insensitive (Unicode)", `{"kind":"event_match","key":"content.topic","pattern":"ÉTÉ"}`, topic(`"été"`), true},
		{"type", `{"kind":"event_match","key":"type","pattern":"m.room.*"}`, topic(`"x"`), true},
		{"sender", `{"kind":"event_match","key":"sender","pattern":"@bob:*"}`, topic(`"x"`), true},
		{"room_id", `{"kind":"event_match","key":"room_id","pattern":"!r:hs"}`, body(`"x"`), true},
		{"state_key empty pattern", `{"kind":"event_match","key":"state_key","pattern":""}`, topic(`"x"`), true},
		{"state_key absent", `{"kind":"event_match","key":"state_key","pattern":"*"}`, body(`"x"`), false},
		{"regexp characters are literal", `{"kind":"event_match","key":"content.topic","pattern":"a.c"}`, topic(`"abc"`), false},
		// content.body: any substring at word boundaries.
		{"body spec example", `{"kind":"event_match","key":"content.body","pattern":"ex*ple"}`, body(`"An example event."`), true},
		{"body exple", `{"kind":"event_match","key":"content.body","pattern":"ex*ple"}`, body(`"exple"`), true},
		{"body spanning words", `{"kind":"event_match","key":"content.body","pattern":"ex*ple"}`, body(`"An exciting triple-whammy"`), true},
		{"body inside a word", `{"kind":"event_match","key":"content.body","pattern":"cake"}`, body(`"cupcakes"`), false},
		{"body underscore is a word character", `{"kind":"event_match","key":"content.body","pattern":"cake"}`, body(`"my_cake"`), false},
		{"body punctuation is a boundary", `{"kind":"event_match","key":"content.body","pattern":"cake"}`, body(`"cake!"`), true},
		{"body across lines", `{"kind":"event_match","key":"content.body","pattern":"a*b"}`, body(`"a\nb"`), true},
		// Dotted paths with escapes.
		{"escaped dot", `{"kind":"event_property_is","key":"content.m\\.federate","value":true}`, `{"type":"m.room.create","state_key":"","content":{"m.federate":true}}`, true},
		{"unescaped dot does not find a dotted key", `{"kind":"event_property_is","key":"content.m.federate","value":true}`, `{"type":"m.room.create","state_key":"","content":{"m.federate":true}}`, false},
		{"unescaped dot finds nesting", `{"kind":"event_property_is","key":"content.m.federate","value":true}`, `{"type":"m.room.create","state_key":"","content":{"m":{"federate":true}}}`, true},
		{"escaped backslash", `{"kind":"event_property_is","key":"content.a\\\\b","value":1}`, `{"type":"x","content":{"a\\b":1}}`, true},
		{"escaped backslash then dot separates", `{"kind":"event_property_is","key":"content.a\\\\.b","value":1}`, `{"type":"x","content":{"a\\":{"b":1}}}`, true},
		{"other backslashes are literal", `{"kind":"event_property_is","key":"content.a\\b","value":1}`, `{"type":"x","content":{"a\\b":1}}`, true},
		// event_property_is: exact, no casts.
		{"is true", `{"kind":"event_property_is","key":"content.m\\.federate","value":true}`, `{"type":"x","content":{"m.federate":true}}`, true},
		{"is not the string true", `{"kind":"event_property_is","key":"content.m\\.federate","value":true}`, `{"type":"x","content":{"m.federate":"true"}}`, false},
		{"is not 1", `{"kind":"event_property_is","key":"content.m\\.federate","value":true}`, `{"type":"x","content":{"m.federate":1}}`, false},
		{"is integer", `{"kind":"event_property_is","key":"content.n","value":42}`, `{"type":"x","content":{"n":42}}`, true},
		{"is integer not string", `{"kind":"event_property_is","key":"content.n","value":42}`, `{"type":"x","content":{"n":"42"}}`, false},
		{"is null", `{"kind":"event_property_is","key":"content.n","value":null}`, `{"type":"x","content":{"n":null}}`, true},
		{"is null not absent", `{"kind":"event_property_is","key":"content.n","value":null}`, `{"type":"x","content":{}}`, false},
		{"is string exact case", `{"kind":"event_property_is","key":"content.s","value":"Abc"}`, `{"type":"x","content":{"s":"abc"}}`, false},
		{"is not an object", `{"kind":"event_property_is","key":"content.o","value":{}}`, `{"type":"x","content":{"o":{}}}`, false},
		{"is not a float", `{"kind":"event_property_is","key":"content.n","value":1.5}`, `{"type":"x","content":{"n":1.5}}`, false},
		// event_property_contains.
		{"contains spec example", `{"kind":"event_property_contains","key":"content.alt_aliases","value":"#myroom:example.com"}`, `{"type":"m.room.canonical_alias","state_key":"","content":{"alt_aliases":["#somewhere:example.org","#myroom:example.com"]}}`, true},
		{"contains no partial values", `{"kind":"event_property_contains","key":"content.alt_aliases","value":":example.com"}`, `{"type":"x","content":{"alt_aliases":["#myroom:example.com"]}}`, false},
		{"contains not an array", `{"kind":"event_property_contains","key":"content.a","value":"x"}`, `{"type":"x","content":{"a":"x"}}`, false},
		{"contains ignores compound values", `{"kind":"event_property_contains","key":"content.a","value":1}`, `{"type":"x","content":{"a":[[1],{"a":1},1]}}`, true},
		{"contains exact type", `{"kind":"event_property_contains","key":"content.a","value":1}`, `{"type":"x","content":{"a":["1",true]}}`, false},
		// contains_display_name: word boundaries, case-insensitive.
		{"display name", `{"kind":"contains_display_name"}`, body(`"hello alice!"`), true},
		{"display name case", `{"kind":"contains_display_name"}`, body(`"ALICE?"`), true},
		{"display name inside a word", `{"kind":"contains_display_name"}`, body(`"malice"`), false},
		{"display name no body", `{"kind":"contains_display_name"}`, topic(`"alice"`), false},
		// room_member_count.
		{"count bare", `{"kind":"room_member_count","is":"10"}`, body(`"x"`), true},
		{"count ==", `{"kind":"room_member_count","is":"==10"}`, body(`"x"`), true},
		{"count == other", `{"kind":"room_member_count","is":"==9"}`, body(`"x"`), false},
		{"count <", `{"kind":"room_member_count","is":"<10"}`, body(`"x"`), false},
		{"count <11", `{"kind":"room_member_count","is":"<11"}`, body(`"x"`), true},
		{"count >", `{"kind":"room_member_count","is":">9"}`, body(`"x"`), true},
		{"count >10", `{"kind":"room_member_count","is":">10"}`, body(`"x"`), false},
		{"count <=", `{"kind":"room_member_count","is":"<=10"}`, body(`"x"`), true},
		{"count >=", `{"kind":"room_member_count","is":">=11"}`, body(`"x"`), false},
		{"count invalid", `{"kind":"room_member_count","is":"ten"}`, body(`"x"`), false},
		{"count missing", `{"kind":"room_member_count"}`, body(`"x"`), false},
		// sender_notification_permission.
		{"permission room", `{"kind":"sender_notification_permission","key":"room"}`, body(`"x"`), true},
		{"permission higher key", `{"kind":"sender_notification_permission","key":"high"}`, body(`"x"`), false},
		{"permission unknown key needs 50", `{"kind":"sender_notification_permission","key":"other"}`, body(`"x"`), true},
		// Unknown kinds never match.
		{"unknown kind", `{"kind":"org.example.whatever"}`, body(`"x"`), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := cond(t, tc.cond)
			res := push.Evaluate(rs, mustEvent(t, tc.ev), room, &push.Member{UserID: me, DisplayName: "Alice"})
			got := res.Rule != nil && res.Rule.ID == "test"
			if got != tc.match {
				rule := "none"
				if res.Rule != nil {
					rule = res.Rule.ID
				}
				t.Errorf("condition %s on %s: matched %v (rule %s), want %v", tc.cond, tc.ev, got, rule, tc.match)
			}
		})
	}
}

func TestKindsAndActions(t *testing.T) {
	ev := mustEvent(t, msg(`{"msgtype":"m.text","body":"I like cake"}`))
	room := &push.Room{MemberCount: 5}
	m := &push.Member{UserID: me}
	notify := []json.RawMessage{json.RawMessage(`"notify"`)}
	none := []json.RawMessage{}
	pat := "cake"
	rs, err := push.Defaults().Put(push.Content, "cake", push.NewRule{Actions: append(notify, json.RawMessage(`{"set_tweak":"highlight"}`)), Pattern: &pat}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if r := push.Evaluate(rs, ev, room, m); r.Rule == nil || r.Rule.ID != "cake" || !r.Highlight {
		t.Errorf("content rule: got %+v", r)
	}
	// A room rule silences the room, but content rules come first.
	rs2, _ := rs.Put(push.RoomKind, "!r:hs", push.NewRule{Actions: none}, "", "")
	if r := push.Evaluate(rs2, ev, room, m); r.Rule.ID != "cake" {
		t.Errorf("content before room: got %s", r.Rule.ID)
	}
	rs3, _ := push.Defaults().Put(push.RoomKind, "!r:hs", push.NewRule{Actions: none}, "", "")
	if r := push.Evaluate(rs3, ev, room, m); r.Rule.ID != "!r:hs" || r.Notify {
		t.Errorf("room rule: got %s notify=%v", r.Rule.ID, r.Notify)
	}
	rs4, _ := push.Defaults().Put(push.Sender, "@bob:hs", push.NewRule{Actions: []json.RawMessage{json.RawMessage(`"dont_notify"`)}}, "", "")
	if r := push.Evaluate(rs4, ev, room, m); r.Rule.ID != "@bob:hs" || r.Notify {
		t.Errorf("sender rule with the historical dont_notify: got %s notify=%v", r.Rule.ID, r.Notify)
	}
	// The master rule, enabled, beats everything.
	rs5, _ := rs.SetEnabled(push.Override, ".m.rule.master", true)
	if r := push.Evaluate(rs5, ev, room, m); r.Rule.ID != ".m.rule.master" || r.Notify {
		t.Errorf("master: got %s", r.Rule.ID)
	}
	// highlight with value false does not highlight.
	rs6, _ := push.Defaults().SetActions(push.Underride, ".m.rule.message", []json.RawMessage{json.RawMessage(`"notify"`), json.RawMessage(`{"set_tweak":"highlight","value":false}`)})
	if r := push.Evaluate(rs6, ev, room, m); !r.Notify || r.Highlight {
		t.Errorf("highlight false: got %+v", r)
	}
	// Disabled rules never match.
	rs7, _ := push.Defaults().SetEnabled(push.Underride, ".m.rule.message", false)
	if r := push.Evaluate(rs7, ev, room, m); r.Rule != nil {
		t.Errorf("disabled: got %s", r.Rule.ID)
	}
}

func TestRulesetChanges(t *testing.T) {
	notify := []json.RawMessage{json.RawMessage(`"notify"`)}
	ids := func(rs *push.Ruleset, k push.Kind) string {
		var out []string
		for _, r := range rs.Rules(k) {
			if !r.Default {
				out = append(out, r.ID)
			}
		}
		return strings.Join(out, ",")
	}
	rs := push.Defaults()
	var err error
	for _, id := range []string{"a", "b", "c"} {
		if rs, err = rs.Put(push.Override, id, push.NewRule{Actions: notify}, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := ids(rs, push.Override); got != "c,b,a" {
		t.Errorf("new rules go first: %s", got)
	}
	if rs.Rules(push.Override)[0].ID != ".m.rule.master" {
		t.Errorf("master is not first")
	}
	rs, _ = rs.Put(push.Override, "d", push.NewRule{Actions: notify}, "a", "")
	rs, _ = rs.Put(push.Override, "e", push.NewRule{Actions: notify}, "", "c")
	if got := ids(rs, push.Override); got != "c,e,b,d,a" {
		t.Errorf("before/after: %s", got)
	}
	rs, _ = rs.Put(push.Override, "c", push.NewRule{Actions: notify}, "", "a")
	if got := ids(rs, push.Override); got != "e,b,d,a,c" {
		t.Errorf("move after: %s", got)
	}
	for _, tc := range []struct {
		name string
		err  error
		fn   func() error
	}{
		{"put default", push.ErrDefaultRule, func() error { _, err := rs.Put(push.Override, ".x", push.NewRule{Actions: notify}, "", ""); return err }},
		{"delete default", push.ErrDefaultRule, func() error { _, err := rs.Delete(push.Override, ".m.rule.master"); return err }},
		{"delete missing", push.ErrNoRule, func() error { _, err := rs.Delete(push.Override, "zz"); return err }},
		{"before missing", push.ErrNoRule, func() error {
			_, err := rs.Put(push.Override, "f", push.NewRule{Actions: notify}, "zz", "")
			return err
		}},
		{"enable missing", push.ErrNoRule, func() error { _, err := rs.SetEnabled(push.Content, "a", true); return err }},
	} {
		if err := tc.fn(); !errors.Is(err, tc.err) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.err)
		}
	}
	var inv *push.InvalidError
	if _, err := rs.Put(push.Override, "a/b", push.NewRule{Actions: notify}, "", ""); !errors.As(err, &inv) {
		t.Errorf("slash in rule ID: got %v", err)
	}
	if _, err := rs.Put(push.Content, "p", push.NewRule{Actions: notify}, "", ""); !errors.As(err, &inv) {
		t.Errorf("content rule without pattern: got %v", err)
	}
	if _, err := rs.Put(push.Override, "x", push.NewRule{Actions: notify}, ".m.rule.master", ""); !errors.As(err, &inv) {
		t.Errorf("before a default rule: got %v", err)
	}
	// The account data round trip keeps user rules, order and changes to
	// default rules.
	rs, _ = rs.SetEnabled(push.Underride, ".m.rule.message", false)
	rs, _ = rs.SetActions(push.Override, ".m.rule.tombstone", notify)
	ad, err := rs.AccountData(me)
	if err != nil {
		t.Fatal(err)
	}
	back, err := push.Load(ad)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := ids(back, push.Override); got != "e,b,d,a,c" {
		t.Errorf("round trip order: %s", got)
	}
	if r, _ := back.Get(push.Underride, ".m.rule.message"); r.Enabled {
		t.Errorf("round trip lost the disabled default")
	}
	if r, _ := back.Get(push.Override, ".m.rule.tombstone"); len(r.Actions) != 1 {
		t.Errorf("round trip lost the actions: %s", r.Actions)
	}
	a1, _ := back.AccountData(me)
	if string(a1) != string(ad) {
		t.Errorf("round trip changed the rules:\n%s\n%s", ad, a1)
	}
}

// BenchmarkEvaluate1000 is the evaluation of one message for a room of
// 1,000 local members with the default rules (the event decoded once).
func BenchmarkEvaluate1000(b *testing.B) {
	room := &push.Room{MemberCount: 1000, SenderPower: 0, Notifications: map[string]int64{"room": 50}}
	members := make([]*push.Member, 1000)
	for i := range members {
		members[i] = &push.Member{UserID: id.UserID(fmt.Sprintf("@user%d:hs", i)), DisplayName: fmt.Sprintf("User %d", i)}
	}
	raw := []byte(msg(`{"msgtype":"m.text","body":"hello everyone, how are you today?","m.mentions":{"user_ids":["@user7:hs"]}}`))
	b.ReportAllocs()
	for b.Loop() {
		ev, err := push.ParseEvent(raw)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, m := range members {
			if push.Evaluate(push.Defaults(), ev, room, m).Notify {
				n++
			}
		}
		if n != 1000 {
			b.Fatalf("notified %d", n)
		}
	}
}

package sync_test

import (
	"encoding/json"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/sync"
)

func TestParseFilterErrors(t *testing.T) {
	for _, tc := range []struct {
		name, filter, code string
	}{
		{"not JSON", `{"room":`, "M_NOT_JSON"},
		{"not an object", `[1]`, "M_BAD_JSON"},
		{"room not an object", `{"room":1}`, "M_BAD_JSON"},
		{"types not strings", `{"room":{"timeline":{"types":[1]}}}`, "M_BAD_JSON"},
		{"limit not a number", `{"room":{"timeline":{"limit":"5"}}}`, "M_BAD_JSON"},
		{"limit zero", `{"room":{"timeline":{"limit":0}}}`, "M_INVALID_PARAM"},
		{"limit fractional", `{"presence":{"limit":1.5}}`, "M_INVALID_PARAM"},
		{"bad sender", `{"room":{"state":{"senders":["alice"]}}}`, "M_INVALID_PARAM"},
		{"bad room", `{"room":{"rooms":["#alias:hs"]}}`, "M_INVALID_PARAM"},
		{"bad event_format", `{"event_format":"xml"}`, "M_INVALID_PARAM"},
		{"lazy not a boolean", `{"room":{"state":{"lazy_load_members":"yes"}}}`, "M_BAD_JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sync.ParseFilter([]byte(tc.filter))
			if e, ok := mxerr.As(err); !ok || e.Code != tc.code {
				t.Errorf("ParseFilter(%s) = %v, want %s", tc.filter, err, tc.code)
			}
		})
	}
}

func TestParseFilter(t *testing.T) {
	f, err := sync.ParseFilter([]byte(`{
		"event_fields": ["type", "content.body"], "event_format": "federation",
		"presence": {"not_types": ["*"]},
		"account_data": {"types": ["m.push_rules"], "limit": 3.0},
		"room": {
			"rooms": ["!a:hs", "!b:hs"], "not_rooms": ["!b:hs"], "include_leave": true,
			"timeline": {"limit": 500, "types": ["m.room.*"], "not_senders": ["@spam:hs"], "unread_thread_notifications": true},
			"state": {"lazy_load_members": true, "include_redundant_members": true, "contains_url": false},
			"unknown": {"kept": "out"}
		},
		"x.extension": 1
	}`))
	if err != nil {
		t.Fatalf("ParseFilter: %v", err)
	}
	if !f.Federation || !slices.Equal(f.EventFields, []string{"type", "content.body"}) {
		t.Errorf("event_format/fields = %v %v", f.Federation, f.EventFields)
	}
	if f.AccountData.Limit != 3 || f.Presence.MatchType("m.presence") {
		t.Errorf("account_data limit %d; presence not_types * should exclude m.presence", f.AccountData.Limit)
	}
	if got := f.TimelineLimit(); got != sync.MaxTimelineLimit {
		t.Errorf("TimelineLimit = %d, want the cap %d", got, sync.MaxTimelineLimit)
	}
	if (&sync.Filter{}).TimelineLimit() != sync.DefaultTimelineLimit {
		t.Errorf("default TimelineLimit is not %d", sync.DefaultTimelineLimit)
	}
	rf := f.Room
	if !rf.IncludeLeave || !rf.IncludesRoom("!a:hs") || rf.IncludesRoom("!b:hs") || rf.IncludesRoom("!c:hs") {
		t.Errorf("room lists: include_leave %v, a %v b %v c %v", rf.IncludeLeave, rf.IncludesRoom("!a:hs"), rf.IncludesRoom("!b:hs"), rf.IncludesRoom("!c:hs"))
	}
	if !rf.State.LazyLoadMembers || !rf.State.IncludeRedundantMembers || !rf.Timeline.UnreadThreadNotifications {
		t.Errorf("flags = %+v %+v", rf.State, rf.Timeline)
	}
	tl := rf.Timeline
	for _, tc := range []struct {
		typ    string
		sender id.UserID
		want   bool
	}{
		{"m.room.message", "@a:hs", true},
		{"m.room.member", "@a:hs", true},
		{"m.reaction", "@a:hs", false},
		{"m.room.message", "@spam:hs", false},
	} {
		if got := tl.Match("!a:hs", tc.typ, tc.sender, []byte(`{}`)); got != tc.want {
			t.Errorf("timeline.Match(%s, %s) = %v, want %v", tc.typ, tc.sender, got, tc.want)
		}
	}
	st := rf.State
	if st.Match("!a:hs", "m.room.avatar", "@a:hs", []byte(`{"url":"mxc://hs/x"}`)) {
		t.Errorf("contains_url false kept an event with a url")
	}
	if !st.Match("!a:hs", "m.room.name", "@a:hs", []byte(`{"name":"x"}`)) {
		t.Errorf("contains_url false dropped an event without url")
	}
	if !st.Match("!a:hs", "m.room.name", "@a:hs", []byte(`{"url":5}`)) {
		t.Errorf("a url that is not a string counts as no url")
	}
}

func TestFilterMatching(t *testing.T) {
	f := sync.EventFilter{Types: []string{"m.*", "org.example.exact"}, NotTypes: []string{"m.room.secret*"},
		Senders: []id.UserID{"@a:hs", "@b:hs"}, NotSenders: []id.UserID{"@b:hs"}}
	for _, tc := range []struct {
		typ    string
		sender id.UserID
		want   bool
	}{
		{"m.room.message", "@a:hs", true},
		{"org.example.exact", "@a:hs", true},
		{"org.example.exactly", "@a:hs", false},
		{"m.room.secret.thing", "@a:hs", false},
		{"m.room.message", "@b:hs", false}, // not_senders wins
		{"m.room.message", "@c:hs", false},
		{"m.typing", "", true}, // ephemeral events have no sender
	} {
		if got := f.Match(tc.typ, tc.sender); got != tc.want {
			t.Errorf("Match(%s, %q) = %v, want %v", tc.typ, tc.sender, got, tc.want)
		}
	}
	var empty sync.EventFilter
	if !empty.Match("anything", "@x:hs") {
		t.Errorf("the empty filter drops events")
	}
	none := sync.EventFilter{Types: []string{}}
	if none.Match("m.room.message", "@x:hs") {
		t.Errorf("an empty types list lets events through")
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "m.room.message", true},
		{"m.*", "m.room.message", true},
		{"m.*", "org.m.x", false},
		{"*.message", "m.room.message", true},
		{"m.*.message", "m.room.message", true},
		{"m.*.message", "m.message", false},
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"a*b*c", "abbbc", true},
		{"a*b*c", "acb", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
	} {
		if got := sync.Glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func TestEventFields(t *testing.T) {
	if got := sync.SplitPath(`content.m\.relates_to.a\\b\x`); !slices.Equal(got, []string{"content", "m.relates_to", `a\b\x`}) {
		t.Errorf("SplitPath = %q", got)
	}
	ev := json.RawMessage(`{"type":"m.room.message","sender":"@a:hs","content":{"body":"hi","msgtype":"m.text","m.relates_to":{"rel_type":"x"}},"unsigned":{"age":1}}`)
	for _, tc := range []struct {
		paths []string
		want  string
	}{
		{nil, string(ev)},
		{[]string{"type", "content.body"}, `{"content":{"body":"hi"},"type":"m.room.message"}`},
		{[]string{"content", "content.body"}, `{"content":{"body":"hi","msgtype":"m.text","m.relates_to":{"rel_type":"x"}}}`},
		{[]string{`content.m\.relates_to.rel_type`}, `{"content":{"m.relates_to":{"rel_type":"x"}}}`},
		{[]string{"sender.deeper", "missing"}, `{}`},
		{[]string{}, `{}`},
	} {
		if got := string(sync.ApplyFields(tc.paths, ev)); got != tc.want {
			t.Errorf("fields %q: got %s, want %s", tc.paths, got, tc.want)
		}
	}
}

func TestLazyCache(t *testing.T) {
	c := sync.NewLazyCache()
	const u, d, r, m = id.UserID("@a:hs"), id.DeviceID("D"), id.RoomID("!r:hs"), id.UserID("@m:hs")
	c.Record(u, d, 10, r, m, "$e1")
	if c.Known(u, d, r, m, "$e1", 9) {
		t.Errorf("known before the client acknowledged the response")
	}
	if !c.Known(u, d, r, m, "$e1", 10) || !c.Known(u, d, r, m, "$e1", 20) {
		t.Errorf("not known after the client synced from the response")
	}
	if c.Known(u, d, r, m, "$e2", 20) {
		t.Errorf("a changed member event is known")
	}
	if c.Known(u, "OTHER", r, m, "$e1", 20) {
		t.Errorf("known on another device")
	}
	// Sent again later: the earlier acknowledgement stands.
	c.Record(u, d, 30, r, m, "$e1")
	if !c.Known(u, d, r, m, "$e1", 15) {
		t.Errorf("re-sending forgot the earlier acknowledgement")
	}
}

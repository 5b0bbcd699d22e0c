package room

import (
	"encoding/json"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

// The spec's example of "Ordering of children within a space".
func TestSortChildrenSpecExample(t *testing.T) {
	events := []struct {
		stateKey string
		ts       int64
		content  string
	}{
		{"!b:example.org", 1640341000000, `{"order":" ","via":["example.org"]}`},
		{"!a:example.org", 1640141000000, `{"order":"aaaa","via":["example.org"]}`},
		{"!c:example.org", 1640841000000, `{"order":"first","via":["example.org"]}`},
		{"!e:example.org", 1640641000000, `{"via":["example.org"]}`},
		{"!d:example.org", 1640741000000, `{"via":["example.org"]}`},
	}
	var cs []child
	for _, e := range events {
		c, ok := childOf(e.stateKey, []byte(e.content), "@alice:example.org", e.ts)
		if !ok {
			t.Fatalf("childOf(%s) = invalid", e.stateKey)
		}
		cs = append(cs, c)
	}
	sortChildren(cs)
	var got []id.RoomID
	for _, c := range cs {
		got = append(got, c.roomID)
	}
	want := []id.RoomID{"!b:example.org", "!a:example.org", "!c:example.org", "!e:example.org", "!d:example.org"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sortChildren = %v, want %v", got, want)
		}
	}
}

// Same order and timestamp: by room ID; invalid orders count as none.
func TestSortChildrenTies(t *testing.T) {
	mk := func(roomID, content string, ts int64) child {
		c, ok := childOf(roomID, []byte(content), "@a:x", ts)
		if !ok {
			t.Fatalf("childOf(%s, %s) = invalid", roomID, content)
		}
		return c
	}
	cs := []child{
		mk("!z:x", `{"via":["x"],"order":"same"}`, 5),
		mk("!y:x", `{"via":["x"],"order":"same"}`, 5),
		mk("!bad:x", `{"via":["x"],"order":"caf\u00e9"}`, 1),                    // not ASCII: no order
		mk("!long:x", `{"via":["x"],"order":"`+strings.Repeat("a", 51)+`"}`, 0), // too long: no order
		mk("!num:x", `{"via":["x"],"order":5}`, 2),
	}
	sortChildren(cs)
	want := []id.RoomID{"!y:x", "!z:x", "!long:x", "!bad:x", "!num:x"}
	for i, c := range cs {
		if c.roomID != want[i] {
			t.Fatalf("order %d = %s, want %s", i, c.roomID, want[i])
		}
	}
}

func TestChildOf(t *testing.T) {
	for _, tc := range []struct {
		name, stateKey, content string
		ok, suggested           bool
	}{
		{"valid", "!a:x", `{"via":["x"]}`, true, false},
		{"suggested", "!a:x", `{"via":["x"],"suggested":true}`, true, true},
		{"suggested not a bool", "!a:x", `{"via":["x"],"suggested":"true"}`, true, false},
		{"no via", "!a:x", `{}`, false, false},
		{"empty via", "!a:x", `{"via":[]}`, false, false},
		{"via not a list", "!a:x", `{"via":"x"}`, false, false},
		{"via with a number", "!a:x", `{"via":["x",1]}`, false, false},
		{"state key not a room", "a:x", `{"via":["x"]}`, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := childOf(tc.stateKey, []byte(tc.content), "@a:x", 1)
			if ok != tc.ok || c.suggested != tc.suggested {
				t.Fatalf("childOf(%s) = ok %v suggested %v, want %v %v", tc.content, ok, c.suggested, tc.ok, tc.suggested)
			}
			if !ok {
				return
			}
			var e map[string]any
			if err := json.Unmarshal(c.stripped, &e); err != nil || e["type"] != TypeSpaceChild || e["state_key"] != tc.stateKey || e["origin_server_ts"] != float64(1) || e["sender"] != "@a:x" {
				t.Fatalf("stripped = %s", c.stripped)
			}
		})
	}
}

func TestPageToken(t *testing.T) {
	tok := pageToken{Root: "!s:x", Suggested: true, MaxDepth: -1, N: 7, Nonce: nonce()}
	got, err := parsePageToken(tok.String())
	if err != nil || got != tok {
		t.Fatalf("parsePageToken(%s) = %+v, %v; want %+v", tok, got, err, tok)
	}
	for _, bad := range []string{"x", "!!!", "e30", tok.String() + "x"} {
		if _, err := parsePageToken(bad); err == nil {
			t.Errorf("parsePageToken(%q) = nil error", bad)
		}
	}
}

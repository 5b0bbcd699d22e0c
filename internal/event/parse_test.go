package event_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
)

// ref is an entry of prev_events or auth_events in the room version's form.
func ref(v id.RoomVersion, seed string) any {
	e := fakeEventID(v, seed)
	if versionNumber(v) <= 2 {
		return []any{string(e), map[string]any{}}
	}
	return string(e)
}

func refs(v id.RoomVersion, n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = ref(v, fmt.Sprint("e", i))
	}
	return out
}

// TestParse runs format checks against a valid message event of each room
// version, changed by each case. Each case names the rule it tests; ok says
// in which versions the changed event is still valid.
func TestParse(t *testing.T) {
	all := func(int) bool { return true }
	none := func(int) bool { return false }
	upTo := func(max int) func(int) bool { return func(n int) bool { return n <= max } }
	from := func(min int) func(int) bool { return func(n int) bool { return n >= min } }
	long := strings.Repeat("a", 256)

	tests := []struct {
		name string
		f    func(m map[string]any, v id.RoomVersion)
		ok   func(n int) bool
	}{
		{"unchanged event is valid", func(map[string]any, id.RoomVersion) {}, all},
		{"unknown top-level keys are kept as data", func(m map[string]any, _ id.RoomVersion) { m["x_custom"] = []any{1} }, all},
		{"origin is allowed", func(m map[string]any, _ id.RoomVersion) { m["origin"] = "origin.example" }, all},
		{"depth 0 is in range", func(m map[string]any, _ id.RoomVersion) { m["depth"] = 0 }, all},
		{"state_key makes a state event", func(m map[string]any, _ id.RoomVersion) { m["state_key"] = "" }, all},
		{"20 prev_events is the limit", func(m map[string]any, v id.RoomVersion) { m["prev_events"] = refs(v, 20) }, all},
		{"10 auth_events is the limit", func(m map[string]any, v id.RoomVersion) { m["auth_events"] = refs(v, 10) }, all},
		{"255-byte type is the limit", func(m map[string]any, _ id.RoomVersion) { m["type"] = long[:255] }, all},
		{"sender with port and IPv6 server name", func(m map[string]any, _ id.RoomVersion) { m["sender"] = "@a:[::1]:8448" }, all},
		{"event_id is not part of the v3+ format", func(m map[string]any, _ id.RoomVersion) { m["event_id"] = "$anything:origin.example" }, upTo(2)},

		// Required fields (PDU schemas: pdu_base required, room_id, event_id in v1–2).
		{"sender is required", func(m map[string]any, _ id.RoomVersion) { delete(m, "sender") }, none},
		{"origin_server_ts is required", func(m map[string]any, _ id.RoomVersion) { delete(m, "origin_server_ts") }, none},
		{"type is required", func(m map[string]any, _ id.RoomVersion) { delete(m, "type") }, none},
		{"content is required", func(m map[string]any, _ id.RoomVersion) { delete(m, "content") }, none},
		{"depth is required", func(m map[string]any, _ id.RoomVersion) { delete(m, "depth") }, none},
		{"hashes is required", func(m map[string]any, _ id.RoomVersion) { delete(m, "hashes") }, none},
		{"signatures is required", func(m map[string]any, _ id.RoomVersion) { delete(m, "signatures") }, none},
		{"prev_events is required", func(m map[string]any, _ id.RoomVersion) { delete(m, "prev_events") }, none},
		{"auth_events is required", func(m map[string]any, _ id.RoomVersion) { delete(m, "auth_events") }, none},
		{"room_id is required", func(m map[string]any, _ id.RoomVersion) { delete(m, "room_id") }, none},
		{"event_id is required in v1–2", func(m map[string]any, _ id.RoomVersion) { delete(m, "event_id") }, from(3)},

		// Types.
		{"sender must be a string", func(m map[string]any, _ id.RoomVersion) { m["sender"] = 1 }, none},
		{"type must be a string", func(m map[string]any, _ id.RoomVersion) { m["type"] = []any{} }, none},
		{"content must be an object", func(m map[string]any, _ id.RoomVersion) { m["content"] = "x" }, none},
		{"depth must be an integer", func(m map[string]any, _ id.RoomVersion) { m["depth"] = "5" }, none},
		{"depth must not be a float", func(m map[string]any, _ id.RoomVersion) { m["depth"] = json.Number("5.0") }, none},
		{"origin_server_ts must be an integer", func(m map[string]any, _ id.RoomVersion) { m["origin_server_ts"] = "1" }, none},
		{"hashes must be an object", func(m map[string]any, _ id.RoomVersion) { m["hashes"] = []any{} }, none},
		{"signatures must be an object", func(m map[string]any, _ id.RoomVersion) { m["signatures"] = "x" }, none},
		{"signatures of a server must be an object", func(m map[string]any, _ id.RoomVersion) { m["signatures"] = map[string]any{"s": "x"} }, none},
		{"a signature must be a string", func(m map[string]any, _ id.RoomVersion) {
			m["signatures"] = map[string]any{"s": map[string]any{"ed25519:1": 5}}
		}, none},
		{"state_key must be a string", func(m map[string]any, _ id.RoomVersion) { m["state_key"] = nil }, none},
		{"room_id must be a string", func(m map[string]any, _ id.RoomVersion) { m["room_id"] = 5 }, none},
		{"prev_events must be an array", func(m map[string]any, _ id.RoomVersion) { m["prev_events"] = map[string]any{} }, none},
		{"prev_events entries must be event IDs", func(m map[string]any, _ id.RoomVersion) { m["prev_events"] = []any{5} }, none},
		{"unsigned that is not an object is dropped", func(m map[string]any, _ id.RoomVersion) { m["unsigned"] = 5 }, all},
		{"float in unsigned only up to v5", func(m map[string]any, _ id.RoomVersion) {
			m["unsigned"] = map[string]any{"age": json.Number("1.5")}
		}, upTo(5)},
		{"top-level redacts must be a string up to v10", func(m map[string]any, _ id.RoomVersion) { m["redacts"] = 5 }, from(11)},

		// Size limits (client-server API, "Size limits").
		{"sender over 255 bytes", func(m map[string]any, _ id.RoomVersion) { m["sender"] = "@" + long + ":x" }, none},
		{"type over 255 bytes", func(m map[string]any, _ id.RoomVersion) { m["type"] = long }, none},
		{"state_key over 255 bytes", func(m map[string]any, _ id.RoomVersion) { m["state_key"] = long }, none},
		{"room_id over 255 bytes", func(m map[string]any, _ id.RoomVersion) { m["room_id"] = "!" + long + ":x" }, none},
		{"event_id over 255 bytes in v1–2", func(m map[string]any, _ id.RoomVersion) { m["event_id"] = "$" + long + ":x" }, none},
		{"event over 65536 bytes", func(m map[string]any, _ id.RoomVersion) {
			m["content"] = map[string]any{"body": strings.Repeat("x", event.MaxSize)}
		}, none},
		{"big unsigned is not counted", func(m map[string]any, _ id.RoomVersion) {
			m["unsigned"] = map[string]any{"x": strings.Repeat("x", event.MaxSize)}
		}, all},
		{"21 prev_events", func(m map[string]any, v id.RoomVersion) { m["prev_events"] = refs(v, 21) }, none},
		{"11 auth_events", func(m map[string]any, v id.RoomVersion) { m["auth_events"] = refs(v, 11) }, none},

		// Depth range (pdu_v1 "less than 2^63 - 1", depth_v6 "2^53 - 1").
		{"negative depth", func(m map[string]any, _ id.RoomVersion) { m["depth"] = -1 }, none},
		{"depth 2^53 - 1", func(m map[string]any, _ id.RoomVersion) { m["depth"] = json.Number("9007199254740991") }, all},
		{"depth 2^53 only up to v5", func(m map[string]any, _ id.RoomVersion) { m["depth"] = json.Number("9007199254740992") }, upTo(5)},
		{"depth 2^63 - 1 only up to v5", func(m map[string]any, _ id.RoomVersion) { m["depth"] = json.Number("9223372036854775807") }, upTo(5)},
		{"depth 2^63 never", func(m map[string]any, _ id.RoomVersion) { m["depth"] = json.Number("9223372036854775808") }, none},

		// Canonical JSON strictness (v1 "Canonical JSON" vs v6 "Canonical JSON").
		{"float in content only up to v5", func(m map[string]any, _ id.RoomVersion) {
			m["content"] = map[string]any{"x": json.Number("1.5")}
		}, upTo(5)},
		{"integral float in content only up to v5", func(m map[string]any, _ id.RoomVersion) {
			m["content"] = map[string]any{"x": json.Number("1e3")}
		}, upTo(5)},
		{"big integer in content only up to v5", func(m map[string]any, _ id.RoomVersion) {
			m["content"] = map[string]any{"x": json.Number("123456789012345678901234567890")}
		}, upTo(5)},

		// Identifier formats.
		{"sender without sigil", func(m map[string]any, _ id.RoomVersion) { m["sender"] = "alice:origin.example" }, none},
		{"sender without server", func(m map[string]any, _ id.RoomVersion) { m["sender"] = "@alice" }, none},
		{"sender with empty localpart", func(m map[string]any, _ id.RoomVersion) { m["sender"] = "@:origin.example" }, none},
		{"sender with invalid server name", func(m map[string]any, _ id.RoomVersion) { m["sender"] = "@alice:bad_host!" }, none},
		{"sender with bad port", func(m map[string]any, _ id.RoomVersion) { m["sender"] = "@alice:host:123456" }, none},
		{"room_id without sigil", func(m map[string]any, _ id.RoomVersion) { m["room_id"] = "room:origin.example" }, none},
		{"room_id without domain before v12", func(m map[string]any, _ id.RoomVersion) { m["room_id"] = "!room" }, none},
		{"v12 room_id must be a create event hash", func(m map[string]any, _ id.RoomVersion) { m["room_id"] = "!room:origin.example" }, upTo(11)},
		{"v1–2 event_id needs a domain", func(m map[string]any, _ id.RoomVersion) { m["event_id"] = "$abc" }, none},
		{"v1–2 prev_events entries are pairs", func(m map[string]any, v id.RoomVersion) {
			m["prev_events"] = []any{string(fakeEventID(v, "x"))}
		}, from(3)},
		{"v1–2 pair with three elements", func(m map[string]any, v id.RoomVersion) {
			m["prev_events"] = []any{[]any{string(fakeEventID(v, "x")), map[string]any{}, 1}}
		}, none},
		{"v1–2 pair hash may be anything", func(m map[string]any, v id.RoomVersion) {
			if versionNumber(v) <= 2 {
				m["prev_events"] = []any{[]any{string(fakeEventID(v, "x")), map[string]any{"sha256": "abc"}}}
			}
		}, all},
		{"hash event ID too short", func(m map[string]any, v id.RoomVersion) {
			m["auth_events"] = []any{ref(v, "x"), "$abc"}
		}, none},
		{"v3 event IDs use the standard alphabet", func(m map[string]any, v id.RoomVersion) {
			if versionNumber(v) >= 3 {
				m["prev_events"] = []any{"$" + strings.Repeat("-", 42) + "A"}
			}
		}, func(n int) bool { return n != 3 }},
		{"v4+ event IDs use the URL-safe alphabet", func(m map[string]any, v id.RoomVersion) {
			if versionNumber(v) >= 3 {
				m["prev_events"] = []any{"$" + strings.Repeat("+", 42) + "A"}
			}
		}, upTo(3)},
		{"hash event ID last character has spare bits", func(m map[string]any, v id.RoomVersion) {
			if versionNumber(v) >= 3 {
				m["prev_events"] = []any{"$" + strings.Repeat("A", 42) + "B"}
			}
		}, upTo(2)},
	}
	for _, v := range allVersions {
		base := mustNew(t, v, protoMessage(v)).JSON()
		for _, tt := range tests {
			t.Run("v"+string(v)+"/"+tt.name, func(t *testing.T) {
				raw := mutate(t, base, func(m map[string]any) { tt.f(m, v) })
				_, err := event.Parse(v, raw)
				want := tt.ok(versionNumber(v))
				if want && err != nil {
					t.Errorf("Parse(v%s) error: %v", v, err)
				}
				if !want && !errors.Is(err, event.ErrInvalid) {
					t.Errorf("Parse(v%s) error = %v, want ErrInvalid", v, err)
				}
			})
		}
	}
}

func TestParseRawErrors(t *testing.T) {
	tests := []struct {
		name, raw string
	}{
		{"empty", ``},
		{"not JSON", `{"type":`},
		{"not an object", `[1,2]`},
		{"string", `"event"`},
		{"duplicate key", `{"type":"a","type":"b"}`},
		{"invalid UTF-8", "{\"type\":\"\xff\"}"},
		{"trailing data", `{} {}`},
	}
	for _, v := range allVersions {
		for _, tt := range tests {
			t.Run("v"+string(v)+"/"+tt.name, func(t *testing.T) {
				if _, err := event.Parse(v, []byte(tt.raw)); !errors.Is(err, event.ErrInvalid) {
					t.Errorf("Parse(v%s, %q) error = %v, want ErrInvalid", v, tt.raw, err)
				}
			})
		}
	}
}

// TestParseV12 covers the v12 rules of MSC4291 on raw events.
func TestParseV12(t *testing.T) {
	create := mustNew(t, "12", event.Proto{
		Type: event.TypeCreate, StateKey: ptr(""), Sender: "@alice:origin.example",
		Content: []byte(`{"room_version":"12"}`), PrevEvents: []id.EventID{}, AuthEvents: []id.EventID{},
		Depth: 1, OriginServerTS: 1,
	})
	tests := []struct {
		name string
		f    func(m map[string]any)
		ok   bool
	}{
		{"create event without room_id", func(map[string]any) {}, true},
		{"create event with room_id", func(m map[string]any) { m["room_id"] = string(create.RoomID()) }, false},
		{"create event with old-style room_id", func(m map[string]any) { m["room_id"] = "!r:origin.example" }, false},
		{"m.room.create message event has no room_id either", func(m map[string]any) { delete(m, "state_key") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := event.Parse("12", mutate(t, create.JSON(), tt.f))
			if tt.ok && err != nil {
				t.Errorf("Parse error: %v", err)
			}
			if !tt.ok && !errors.Is(err, event.ErrInvalid) {
				t.Errorf("Parse error = %v, want ErrInvalid", err)
			}
			if tt.ok && p != nil && string(p.RoomID()) != "!"+string(p.EventID()[1:]) {
				t.Errorf("RoomID() = %s, want ! + EventID() %s", p.RoomID(), p.EventID())
			}
		})
	}
	msg := protoMessage("12")
	msg.RoomID = create.RoomID()
	raw := mustNew(t, "12", msg).JSON()
	withCreate := mutate(t, raw, func(m map[string]any) {
		m["auth_events"] = []any{string(fakeEventID("12", "pl")), string(create.EventID())}
	})
	if _, err := event.Parse("12", withCreate); !errors.Is(err, event.ErrInvalid) {
		t.Errorf("Parse(v12 auth_events with the create event) error = %v, want ErrInvalid", err)
	}
}

func TestValidServerName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"example.org", true}, {"example.org:8448", true}, {"1.2.3.4", true}, {"1.2.3.4:1", true},
		{"[::1]", true}, {"[1234:5678::abcd]:443", true}, {"localhost", true}, {"a-b.c", true},
		{"", false}, {":80", false}, {"example.org:", false}, {"example.org:123456", false},
		{"exa mple.org", false}, {"under_score", false}, {"[::1", false}, {"[]", false},
		{"[::g]", false}, {"host:80:80", false}, {strings.Repeat("a", 256), false},
	}
	for _, tt := range tests {
		if got := event.ValidServerName(tt.name); got != tt.ok {
			t.Errorf("ValidServerName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
)

// redactionBase is an event with every top-level key the algorithms name
// and some they do not.
func redactionBase(typ string, content map[string]any) map[string]any {
	return map[string]any{
		"event_id":         "$ev:origin.example",
		"type":             typ,
		"room_id":          "!r:origin.example",
		"sender":           "@a:origin.example",
		"state_key":        "",
		"content":          content,
		"hashes":           map[string]any{"sha256": "abc"},
		"signatures":       map[string]any{"origin.example": map[string]any{"ed25519:1": "sig"}},
		"depth":            7,
		"prev_events":      []any{"$p"},
		"prev_state":       []any{},
		"auth_events":      []any{"$a"},
		"origin":           "origin.example",
		"origin_server_ts": 1234,
		"membership":       "join",
		"unsigned":         map[string]any{"age": 1},
		"redacts":          "$target",
		"x_custom":         true,
	}
}

// TestRedact checks the redaction algorithm of each room version. Each case
// names the rule of the "Redactions" section it tests and gives the content
// kept in each group of versions.
func TestRedact(t *testing.T) {
	memberContent := map[string]any{
		"membership": "join", "displayname": "A", "avatar_url": "mxc://x/y", "reason": "r",
		"join_authorised_via_users_server": "@b:origin.example",
		"third_party_invite":               map[string]any{"display_name": "a@x", "signed": map[string]any{"mxid": "@a:origin.example", "token": "t"}},
	}
	powerLevels := map[string]any{
		"ban": 50, "events": map[string]any{"m.room.name": 50}, "events_default": 0, "invite": 0, "kick": 50,
		"redact": 50, "state_default": 50, "users": map[string]any{"@a:origin.example": 100}, "users_default": 0,
		"notifications": map[string]any{"room": 50}, "historical": 100,
	}
	type want struct {
		upTo    int // the last version this content applies to
		content map[string]any
	}
	tests := []struct {
		name    string
		typ     string
		content map[string]any
		want    []want // ordered by upTo
	}{
		{"v1: m.room.member keeps membership; v9: and join_authorised_via_users_server; v11: and third_party_invite.signed",
			event.TypeMember, memberContent, []want{
				{8, map[string]any{"membership": "join"}},
				{10, map[string]any{"membership": "join", "join_authorised_via_users_server": "@b:origin.example"}},
				{12, map[string]any{"membership": "join", "join_authorised_via_users_server": "@b:origin.example",
					"third_party_invite": map[string]any{"signed": map[string]any{"mxid": "@a:origin.example", "token": "t"}}}},
			}},
		{"v11: third_party_invite without signed is kept empty",
			event.TypeMember, map[string]any{"membership": "invite", "third_party_invite": map[string]any{"display_name": "x"}}, []want{
				{10, map[string]any{"membership": "invite"}},
				{12, map[string]any{"membership": "invite", "third_party_invite": map[string]any{}}},
			}},
		{"v11: third_party_invite that is not an object is removed",
			event.TypeMember, map[string]any{"membership": "invite", "third_party_invite": "x"}, []want{
				{12, map[string]any{"membership": "invite"}},
			}},
		{"v1: m.room.create keeps creator; v11: keeps all content",
			event.TypeCreate, map[string]any{"creator": "@a:origin.example", "room_version": "1", "m.federate": false, "predecessor": map[string]any{"room_id": "!old:x"}}, []want{
				{10, map[string]any{"creator": "@a:origin.example"}},
				{12, map[string]any{"creator": "@a:origin.example", "room_version": "1", "m.federate": false, "predecessor": map[string]any{"room_id": "!old:x"}}},
			}},
		{"v1: m.room.join_rules keeps join_rule; v8: and allow",
			event.TypeJoinRules, map[string]any{"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": "!s:x"}}, "other": 1}, []want{
				{7, map[string]any{"join_rule": "restricted"}},
				{12, map[string]any{"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": "!s:x"}}}},
			}},
		{"v1: m.room.power_levels keeps ban events events_default kick redact state_default users users_default; v11: and invite",
			event.TypePowerLevels, powerLevels, []want{
				{10, map[string]any{"ban": 50, "events": map[string]any{"m.room.name": 50}, "events_default": 0, "kick": 50,
					"redact": 50, "state_default": 50, "users": map[string]any{"@a:origin.example": 100}, "users_default": 0}},
				{12, map[string]any{"ban": 50, "events": map[string]any{"m.room.name": 50}, "events_default": 0, "invite": 0, "kick": 50,
					"redact": 50, "state_default": 50, "users": map[string]any{"@a:origin.example": 100}, "users_default": 0}},
			}},
		{"v1: m.room.aliases keeps aliases; v6: keeps nothing",
			event.TypeAliases, map[string]any{"aliases": []any{"#a:x"}, "other": 1}, []want{
				{5, map[string]any{"aliases": []any{"#a:x"}}},
				{12, map[string]any{}},
			}},
		{"v1: m.room.history_visibility keeps history_visibility",
			event.TypeHistoryVisibility, map[string]any{"history_visibility": "shared", "other": 1}, []want{
				{12, map[string]any{"history_visibility": "shared"}},
			}},
		{"v1: m.room.redaction keeps no content; v11: keeps redacts",
			event.TypeRedaction, map[string]any{"redacts": "$target", "reason": "spam"}, []want{
				{10, map[string]any{}},
				{12, map[string]any{"redacts": "$target"}},
			}},
		{"v1: other event types keep no content (message)",
			"m.room.message", map[string]any{"body": "secret", "msgtype": "m.text"}, []want{{12, map[string]any{}}}},
		{"v1: other event types keep no content (name)",
			"m.room.name", map[string]any{"name": "n"}, []want{{12, map[string]any{}}}},
		{"v1: other event types keep no content (encryption)",
			"m.room.encryption", map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}, []want{{12, map[string]any{}}}},
	}
	for _, tt := range tests {
		for _, v := range allVersions {
			t.Run(tt.name+"/v"+string(v), func(t *testing.T) {
				n := versionNumber(v)
				var wantContent map[string]any
				for _, w := range tt.want {
					if n <= w.upTo {
						wantContent = w.content
						break
					}
				}
				in := redactionBase(tt.typ, tt.content)
				exp := redactionBase(tt.typ, wantContent)
				// Top-level keys: v1 keeps the list below; v11 no longer
				// keeps prev_state, origin and membership. unsigned, the
				// top-level redacts and unknown keys are never kept.
				delete(exp, "unsigned")
				delete(exp, "redacts")
				delete(exp, "x_custom")
				if n >= 11 {
					delete(exp, "prev_state")
					delete(exp, "origin")
					delete(exp, "membership")
				}
				raw, _ := json.Marshal(in)
				wantRaw, _ := json.Marshal(exp)
				want, err := cjson.Canonical(wantRaw)
				if err != nil {
					t.Fatal(err)
				}
				got, err := event.Redact(v, raw)
				if err != nil {
					t.Fatalf("Redact(v%s) error: %v", v, err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("Redact(v%s)\n got %s\nwant %s", v, got, want)
				}
			})
		}
	}
}

func TestRedactEdgeCases(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"missing content becomes {}", `{"type":"m.room.message","sender":"@a:x"}`, `{"content":{},"sender":"@a:x","type":"m.room.message"}`},
		{"content that is not an object becomes {}", `{"type":"m.room.member","content":[1]}`, `{"content":{},"type":"m.room.member"}`},
		{"missing type keeps no content", `{"content":{"membership":"join"}}`, `{"content":{}}`},
		{"escaped key names are canonicalised first", `{"type":"m.room.member","content":{"members\u0068ip":"join","x":1}}`, `{"content":{"membership":"join"},"type":"m.room.member"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := event.Redact("10", []byte(tt.in))
			if err != nil || string(got) != tt.want {
				t.Errorf("Redact(%s) = %s, %v, want %s", tt.in, got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{`[1]`, `{`, `"x"`} {
		if _, err := event.Redact("10", []byte(bad)); !errors.Is(err, event.ErrInvalid) {
			t.Errorf("Redact(%s) error = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := event.Redact("99", []byte(`{}`)); !errors.Is(err, event.ErrUnsupportedVersion) {
		t.Errorf("Redact(v99) error = %v, want ErrUnsupportedVersion", err)
	}
}

// TestRedactedPDU checks that a redacted event keeps its ID, still verifies,
// and redacting twice changes nothing.
func TestRedactedPDU(t *testing.T) {
	for _, v := range allVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			p := protoMessage(v)
			p.Type, p.StateKey = event.TypeMember, ptr("@alice:origin.example")
			p.Content = []byte(`{"membership":"join","displayname":"Alice"}`)
			pdu := mustNew(t, v, p)
			red := pdu.Redacted()
			if red.EventID() != pdu.EventID() || red.RoomID() != pdu.RoomID() || red.ReferenceHash() != pdu.ReferenceHash() {
				t.Errorf("Redacted() changed the IDs: %s %s", red.EventID(), red.RoomID())
			}
			if string(red.Content()) != `{"membership":"join"}` {
				t.Errorf("Redacted().Content() = %s", red.Content())
			}
			if err := red.VerifySignatures(specKeys(t)); err != nil {
				t.Errorf("Redacted().VerifySignatures() error: %v", err)
			}
			if !errors.Is(red.VerifyContentHash(), event.ErrHashMismatch) {
				t.Errorf("Redacted().VerifyContentHash() = %v, want ErrHashMismatch", red.VerifyContentHash())
			}
			again, err := event.Redact(v, red.JSON())
			if err != nil || !bytes.Equal(again, red.JSON()) {
				t.Errorf("Redact(Redacted()) = %s, %v, want it unchanged", again, err)
			}
			reparsed, err := event.Parse(v, red.JSON())
			if err != nil || reparsed.EventID() != pdu.EventID() {
				t.Errorf("Parse(Redacted().JSON()) = %v, %v, want event ID %s", reparsed, err, pdu.EventID())
			}
		})
	}
}

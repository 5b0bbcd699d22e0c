package event_test

import (
	"bytes"
	"encoding/base64"
	jsonv2 "encoding/json/v2"
	"testing"
	"time"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
)

// The tests in this file compare this package with mautrix-go v0.31.0's
// federation/pdu (pdu.PDU for room versions 3+, pdu.RoomV1PDU for 1 and 2)
// on events built by New for every room version. Where the two differ the
// case says why; the test fails if a listed difference disappears, so the
// list stays true.

type compareCase struct {
	name  string
	proto func(v id.RoomVersion) event.Proto
	// differs returns why mautrix computes another reference hash (and so
	// event ID and redaction) in room version n, or "" if it must agree.
	differs func(n int) string
	// hashDiffers is like differs for the content hash.
	hashDiffers func(n int) string
}

func never(int) string { return "" }

// v1Refs explains the content hash difference of every v1–2 event with
// prev_events or auth_events.
func v1Refs(n int) string {
	if n <= 2 {
		// New writes [event_id, {}] as Synapse does; mautrix decodes the
		// hash object into Hashes{SHA256 jsonbytes.UnpaddedBytes} and
		// writes it back as {"sha256":""}, so what it hashes is not the
		// event that was received.
		return "mautrix rewrites the {} hashes of v1–2 prev_events/auth_events as {\"sha256\":\"\"}"
	}
	return ""
}

func compareCases() []compareCase {
	withType := func(typ string, stateKey *string, content string) func(v id.RoomVersion) event.Proto {
		return func(v id.RoomVersion) event.Proto {
			p := protoMessage(v)
			p.Type, p.StateKey, p.Content = typ, stateKey, []byte(content)
			return p
		}
	}
	return []compareCase{
		{"message", protoMessage, v1Refs, v1Refs},
		{"member join via authorising user", withType(event.TypeMember, ptr("@alice:origin.example"),
			`{"membership":"join","displayname":"Alice","join_authorised_via_users_server":"@admin:resident.example"}`), v1Refs, v1Refs},
		{"member invite with third_party_invite.signed", withType(event.TypeMember, ptr("@bob:origin.example"),
			`{"membership":"invite","third_party_invite":{"display_name":"b","signed":{"mxid":"@bob:origin.example","token":"t","signatures":{}}}}`), v1Refs, v1Refs},
		{"member invite with third_party_invite without signed", withType(event.TypeMember, ptr("@bob:origin.example"),
			`{"membership":"invite","third_party_invite":{"display_name":"b"}}`), func(n int) string {
			if n >= 11 {
				// v11 "allows the signed key of the third_party_invite key".
				// Synapse's prune_event_dict (and this package) keep
				// third_party_invite as {} when it has no signed; mautrix
				// copies the path third_party_invite.signed only and so
				// drops third_party_invite.
				return "mautrix drops a third_party_invite without signed; Synapse and we keep {}"
			}
			return v1Refs(n)
		}, v1Refs},
		{"create", func(v id.RoomVersion) event.Proto {
			p := withType(event.TypeCreate, ptr(""), `{"creator":"@alice:origin.example","room_version":"5","m.federate":true,"type":"m.space"}`)(v)
			p.PrevEvents, p.AuthEvents = []id.EventID{}, []id.EventID{}
			if versionNumber(v) >= 12 {
				p.RoomID = ""
			}
			return p
		}, never, never},
		{"join rules with allow", withType(event.TypeJoinRules, ptr(""),
			`{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!space:origin.example"}]}`), v1Refs, v1Refs},
		{"power levels", withType(event.TypePowerLevels, ptr(""),
			`{"ban":50,"events":{"m.room.name":50},"events_default":0,"invite":0,"kick":50,"notifications":{"room":50},"redact":50,"state_default":50,"users":{"@alice:origin.example":100},"users_default":0}`), v1Refs, v1Refs},
		{"aliases", withType(event.TypeAliases, ptr("origin.example"), `{"aliases":["#a:origin.example"]}`), v1Refs, v1Refs},
		{"history visibility", withType(event.TypeHistoryVisibility, ptr(""), `{"history_visibility":"shared","x":1}`), v1Refs, v1Refs},
		{"topic", withType("m.room.topic", ptr(""), `{"topic":"hello"}`), v1Refs, v1Refs},
		{"redaction", func(v id.RoomVersion) event.Proto {
			p := withType(event.TypeRedaction, nil, `{"reason":"spam"}`)(v)
			p.Redacts = fakeEventID(v, "target")
			return p
		}, func(n int) string {
			if n <= 10 {
				// The v1 redaction algorithm lists the top-level keys to
				// keep and redacts is not among them (Synapse's
				// prune_event_dict agrees); mautrix keeps the top-level
				// redacts of m.room.redaction events up to v10, so its
				// reference hashes, event IDs and signatures of redaction
				// events differ from the spec's.
				return "mautrix keeps the top-level redacts of v1–10 redaction events through redaction"
			}
			return ""
		}, v1Refs},
	}
}

func TestCompareMautrix(t *testing.T) {
	spec := mustSpecKey(t)
	getKey := func(server string, keyID id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
		if server == "origin.example" && keyID == spec.KeyID() {
			return id.SigningKey(spec.PublicBase64()), farFuture, nil
		}
		return "", time.Time{}, nil
	}
	for _, c := range compareCases() {
		for _, v := range allVersions {
			n := versionNumber(v)
			t.Run(c.name+"/v"+string(v), func(t *testing.T) {
				ours := mustNew(t, v, c.proto(v))
				var theirs interface {
					CalculateContentHash() ([32]byte, error)
					GetReferenceHash(id.RoomVersion) ([32]byte, error)
					GetEventID(id.RoomVersion) (id.EventID, error)
					VerifySignature(id.RoomVersion, string, pdu.GetKeyFunc) error
				}
				var redact func() any
				if n <= 2 {
					var p pdu.RoomV1PDU
					if err := jsonv2.Unmarshal(ours.JSON(), &p); err != nil {
						t.Fatalf("mautrix unmarshal: %v", err)
					}
					theirs, redact = &p, func() any { return p.Clone().Redact(v) }
				} else {
					var p pdu.PDU
					if err := jsonv2.Unmarshal(ours.JSON(), &p); err != nil {
						t.Fatalf("mautrix unmarshal: %v", err)
					}
					theirs, redact = &p, func() any { return p.Clone().Redact(v) }
				}

				why := c.differs(n)
				hashWhy := c.hashDiffers(n)
				check := func(what string, same bool, reason string) {
					t.Helper()
					switch {
					case reason == "" && !same:
						t.Errorf("%s differs from mautrix", what)
					case reason != "" && same:
						t.Errorf("%s agrees with mautrix, but a difference is listed: %s", what, reason)
					}
				}

				ch, err := theirs.CalculateContentHash()
				if err != nil {
					t.Fatalf("mautrix CalculateContentHash: %v", err)
				}
				check("content hash", ch == ours.ContentHash(), hashWhy)

				refWhy := why
				if refWhy == "" {
					refWhy = hashWhy // the reference hash covers the hashes
				}
				ref, err := theirs.GetReferenceHash(v)
				if err != nil {
					t.Fatalf("mautrix GetReferenceHash: %v", err)
				}
				check("reference hash", ref == ours.ReferenceHash(), refWhy)
				if n >= 3 {
					eid, err := theirs.GetEventID(v)
					if err != nil {
						t.Fatalf("mautrix GetEventID: %v", err)
					}
					check("event ID", eid == ours.EventID(), refWhy)
				}

				red, err := canonicaljson.Marshal(redact())
				if err != nil {
					t.Fatalf("mautrix redact: %v", err)
				}
				check("redaction", bytes.Equal(red, ours.Redacted().JSON()), refWhy)

				// mautrix accepts our signatures unless it signs other bytes.
				sigErr := theirs.VerifySignature(v, "origin.example", getKey)
				check("signature", sigErr == nil, refWhy)
			})
		}
	}
}

// TestCompareMautrixV12RoomID compares the room ID derived from a v12
// create event.
func TestCompareMautrixV12RoomID(t *testing.T) {
	create := mustNew(t, "12", event.Proto{
		Type: event.TypeCreate, StateKey: ptr(""), Sender: "@alice:origin.example",
		Content: []byte(`{"room_version":"12","additional_creators":["@bob:x"]}`), PrevEvents: []id.EventID{}, AuthEvents: []id.EventID{},
		Depth: 1, OriginServerTS: 1,
	})
	var p pdu.PDU
	if err := jsonv2.Unmarshal(create.JSON(), &p); err != nil {
		t.Fatal(err)
	}
	roomID, err := p.GetRoomID()
	if err != nil || roomID != create.RoomID() {
		t.Errorf("mautrix GetRoomID() = %s, %v, want %s", roomID, err, create.RoomID())
	}
	ref := create.ReferenceHash()
	if want := "!" + base64.RawURLEncoding.EncodeToString(ref[:]); string(create.RoomID()) != want {
		t.Errorf("RoomID() = %s, want %s", create.RoomID(), want)
	}
}

// TestCompareMautrixRaw compares events with top-level keys that New does
// not write.
//
// Not compared: a v3+ event carrying event_id, which Parse rejects (as
// Synapse does). Its reference hash would differ anyway: every version's
// redaction algorithm keeps event_id, while mautrix's PDU type has no
// event_id field and drops it with the other unknown keys.
func TestCompareMautrixRaw(t *testing.T) {
	spec := mustSpecKey(t)
	tests := []struct {
		name    string
		f       func(m map[string]any)
		differs func(n int) string
	}{
		{"origin", func(m map[string]any) { m["origin"] = "origin.example" }, v1Refs},
		{"unknown key", func(m map[string]any) { m["x_custom"] = 1 }, v1Refs},
	}
	for _, tt := range tests {
		for _, v := range allVersions {
			n := versionNumber(v)
			t.Run(tt.name+"/v"+string(v), func(t *testing.T) {
				raw := mutate(t, mustNew(t, v, protoMessage(v)).JSON(), tt.f)
				signed, err := event.HashAndSign(v, raw, "origin.example", spec)
				if err != nil {
					t.Fatal(err)
				}
				ours, err := event.Parse(v, signed)
				if err != nil {
					t.Fatalf("Parse error: %v", err)
				}
				var ref [32]byte
				if n <= 2 {
					var p pdu.RoomV1PDU
					if err := jsonv2.Unmarshal(signed, &p); err != nil {
						t.Fatal(err)
					}
					ref, err = p.GetReferenceHash(v)
				} else {
					var p pdu.PDU
					if err := jsonv2.Unmarshal(signed, &p); err != nil {
						t.Fatal(err)
					}
					ref, err = p.GetReferenceHash(v)
				}
				if err != nil {
					t.Fatal(err)
				}
				same := ref == ours.ReferenceHash()
				if why := tt.differs(n); why == "" && !same {
					t.Errorf("reference hash differs from mautrix")
				} else if why != "" && same {
					t.Errorf("reference hash agrees with mautrix, but a difference is listed: %s", why)
				}
			})
		}
	}

	// Room versions 1–5 allow floats. mautrix's canonical JSON rejects
	// them, so it cannot hash such events at all; this package hashes them
	// as Synapse does (cjson.Legacy).
	for _, v := range allVersions[:5] {
		raw := mutate(t, mustNew(t, v, protoMessage(v)).JSON(), func(m map[string]any) {
			m["content"] = map[string]any{"n": 1.5}
		})
		if _, err := event.Parse(v, raw); err != nil {
			t.Errorf("Parse(v%s, float content) error: %v", v, err)
		}
		var p pdu.PDU
		if err := jsonv2.Unmarshal(raw, &p); err == nil {
			if _, err := p.CalculateContentHash(); err == nil {
				t.Errorf("mautrix now hashes v%s events with floats: recheck its output against cjson.Legacy", v)
			}
		}
	}
}

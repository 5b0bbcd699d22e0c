package event

import (
	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
)

// Redact applies the redaction algorithm of the room version to the event
// raw and returns the redacted event as canonical JSON. It only needs raw to
// be a JSON object (it is also used on events that failed other checks);
// a content that is missing or not an object becomes {}. Signatures are
// kept; unsigned is removed like every other key not listed.
//
// The algorithm is in each room version's "Redactions" section:
//
//   - v1–5 (v1 "Redactions"): top-level keys kept are event_id, type,
//     room_id, sender, state_key, content, hashes, signatures, depth,
//     prev_events, prev_state, auth_events, origin, origin_server_ts,
//     membership. Content keys kept: m.room.member membership;
//     m.room.create creator; m.room.join_rules join_rule;
//     m.room.power_levels ban, events, events_default, kick, redact,
//     state_default, users, users_default; m.room.aliases aliases;
//     m.room.history_visibility history_visibility.
//   - v6–7 (v6 "Redactions"): as v1 without m.room.aliases.
//   - v8: m.room.join_rules also keeps allow.
//   - v9–10 (v9 "Redactions"): m.room.member also keeps
//     join_authorised_via_users_server.
//   - v11–12 (v11 "Redactions"): top-level prev_state, origin and membership
//     are no longer kept; m.room.create keeps all of content;
//     m.room.power_levels also keeps invite; m.room.member also keeps the
//     signed key of third_party_invite; m.room.redaction keeps redacts.
//
// The top-level redacts of redaction events before v11 is not in the list,
// so it is removed, as Synapse's prune_event_dict does too.
//
// Errors wrap ErrInvalid (not JSON, not an object) or ErrUnsupportedVersion.
func Redact(version id.RoomVersion, raw []byte) ([]byte, error) {
	r, err := rulesFor(version)
	if err != nil {
		return nil, err
	}
	canon, err := cjson.Append(make([]byte, 0, len(raw)), raw, r.jsonMode())
	if err != nil {
		return nil, invalidf("%w", err)
	}
	if canon[0] != '{' {
		return nil, invalidf("not a JSON object")
	}
	var typ string
	if v, ok := cjson.Get(canon, "type"); ok {
		typ, _ = cjson.Unquote(v)
	}
	if c, ok := cjson.Get(canon, "content"); !ok || c[0] != '{' {
		canon = cjson.Set(nil, canon, "content", []byte("{}"))
	}
	return appendRedacted(make([]byte, 0, len(canon)), r, typ, canon, true), nil
}

// Redacted returns the event redacted by the algorithm of its room version.
// Its ID, room ID and reference hash are those of the original.
func (p *PDU) Redacted() *PDU {
	red := appendRedacted(make([]byte, 0, len(p.raw)), p.rules, p.typ, p.raw, true)
	q, err := parseCanonical(p.rules, red, &p.refHash)
	if err != nil {
		// A valid event stays valid when redacted: every required field is
		// kept, and nothing grows.
		panic("event: redacted event invalid: " + err.Error())
	}
	return q
}

// appendRedacted appends the redacted form of the canonical event core to
// dst. It keeps signatures if keepSigs; without them the result is what is
// hashed for the reference hash and signed.
func appendRedacted(dst []byte, r *rules, typ string, core []byte, keepSigs bool) []byte {
	dst = append(dst, '{')
	n := 0
	for k, v := range cjson.Members(core) {
		switch string(k) {
		case "auth_events", "depth", "event_id", "hashes", "origin_server_ts",
			"prev_events", "room_id", "sender", "state_key", "type":
		case "content":
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `"content":`...)
			dst = appendRedactedContent(dst, r, typ, v)
			n++
			continue
		case "signatures":
			if !keepSigs {
				continue
			}
		case "membership", "origin", "prev_state":
			if r.v11Redaction {
				continue
			}
		default:
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(append(append(append(dst, '"'), k...), '"', ':'), v...)
		n++
	}
	return append(dst, '}')
}

// appendRedactedContent appends the redacted content of an event of type typ.
func appendRedactedContent(dst []byte, r *rules, typ string, content []byte) []byte {
	if len(content) == 0 || content[0] != '{' {
		return append(dst, "{}"...)
	}
	var keep func(key string) bool
	switch typ {
	case TypeMember:
		keep = func(k string) bool {
			return k == "membership" ||
				r.authorisedVia && k == "join_authorised_via_users_server" ||
				r.v11Redaction && k == "third_party_invite"
		}
	case TypeCreate:
		if r.v11Redaction {
			return append(dst, content...)
		}
		keep = func(k string) bool { return k == "creator" }
	case TypeJoinRules:
		keep = func(k string) bool { return k == "join_rule" || r.joinRulesAllow && k == "allow" }
	case TypePowerLevels:
		keep = func(k string) bool {
			switch k {
			case "ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default":
				return true
			case "invite":
				return r.v11Redaction
			}
			return false
		}
	case TypeAliases:
		keep = func(k string) bool { return r.aliasesRedaction && k == "aliases" }
	case TypeHistoryVisibility:
		keep = func(k string) bool { return k == "history_visibility" }
	case TypeRedaction:
		keep = func(k string) bool { return r.v11Redaction && k == "redacts" }
	default:
		return append(dst, "{}"...)
	}
	dst = append(dst, '{')
	n := 0
	for k, v := range cjson.Members(content) {
		if !keep(string(k)) {
			continue
		}
		if typ == TypeMember && string(k) == "third_party_invite" {
			// v11: "it allows the signed key of the third_party_invite key".
			// Like Synapse, an object keeps only signed (or becomes {}); any
			// other value is dropped.
			if v[0] != '{' {
				continue
			}
			if signed, ok := cjson.Get(v, "signed"); ok {
				v = append(append([]byte(`{"signed":`), signed...), '}')
			} else {
				v = []byte("{}")
			}
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(append(append(append(dst, '"'), k...), '"', ':'), v...)
		n++
	}
	return append(dst, '}')
}

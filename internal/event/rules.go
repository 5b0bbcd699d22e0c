package event

import (
	"fmt"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
)

// idFormat is how a room version writes event IDs.
type idFormat uint8

const (
	// idServer is "$opaque:domain", chosen by the sender and carried in the
	// event (room versions 1 and 2, "Event IDs").
	idServer idFormat = iota
	// idBase64 is "$" + unpadded standard base64 of the reference hash
	// (room version 3).
	idBase64
	// idURLBase64 is "$" + unpadded URL-safe base64 of the reference hash
	// (room versions 4 and later).
	idURLBase64
)

// rules are the parts of a room version that this package needs. Each field
// names the room version text that introduced it.
type rules struct {
	version id.RoomVersion
	ids     idFormat
	// legacyJSON: "Servers MUST NOT strictly enforce the JSON format"
	// (room versions 1–5, "Canonical JSON"); numbers are checked and
	// written in cjson.Legacy mode.
	legacyJSON bool
	// maxDepth is 2^63-1 up to v5 and 2^53-1 from v6 (depth_v6.yaml:
	// "Must be less than the maximum value for an integer (2^53 - 1)").
	maxDepth int64
	// enforceKeyValidity: signing keys must be valid at origin_server_ts
	// (v5+, "Signing key validity period").
	enforceKeyValidity bool
	// aliasesRedaction: m.room.aliases keeps "aliases" (v1–5; removed in
	// v6 "Redactions").
	aliasesRedaction bool
	// joinRulesAllow: m.room.join_rules keeps "allow" (v8+).
	joinRulesAllow bool
	// authorisedVia: m.room.member keeps "join_authorised_via_users_server"
	// (v9+; v8 introduced the key but did not protect it).
	authorisedVia bool
	// restrictedJoins: joins may carry join_authorised_via_users_server,
	// whose server must sign them (v8+, auth rule "If content has a
	// join_authorised_via_users_server key").
	restrictedJoins bool
	// v11Redaction: the v11 redaction algorithm (MSC2176, MSC3821,
	// MSC3989): top-level origin, membership and prev_state are no longer
	// kept; m.room.create keeps all of content; m.room.power_levels keeps
	// invite; m.room.member keeps third_party_invite.signed;
	// m.room.redaction keeps redacts.
	v11Redaction bool
	// redactsInContent: m.room.redaction carries redacts in content (v11+).
	redactsInContent bool
	// createRoomID: the create event has no room_id and the room ID is
	// derived from its reference hash (v12, MSC4291); the create event is not
	// listed in auth_events.
	createRoomID bool
}

// MaxDepth is the greatest depth an event may have (the largest integer
// canonical JSON allows). A room already at it sends its next events at
// it (server-server API, PDU "depth").
const MaxDepth = 1<<53 - 1

var versionRules = func() map[id.RoomVersion]*rules {
	m := make(map[id.RoomVersion]*rules, 12)
	for v := 1; v <= 12; v++ {
		r := &rules{
			version:            id.RoomVersion(fmt.Sprint(v)),
			legacyJSON:         v <= 5,
			maxDepth:           MaxDepth,
			enforceKeyValidity: v >= 5,
			aliasesRedaction:   v <= 5,
			joinRulesAllow:     v >= 8,
			authorisedVia:      v >= 9,
			restrictedJoins:    v >= 8,
			v11Redaction:       v >= 11,
			redactsInContent:   v >= 11,
			createRoomID:       v >= 12,
		}
		switch {
		case v <= 2:
			r.ids = idServer
		case v == 3:
			r.ids = idBase64
		default:
			r.ids = idURLBase64
		}
		if v <= 5 {
			r.maxDepth = 1<<63 - 1
		}
		m[r.version] = r
	}
	return m
}()

// rulesFor returns the rules of a supported room version (1 to 12).
func rulesFor(version id.RoomVersion) (*rules, error) {
	r, ok := versionRules[version]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnsupportedVersion, version)
	}
	return r, nil
}

// SupportedVersions lists the room versions this package handles, "1"
// to "12", for make_join's ver parameters.
func SupportedVersions() []id.RoomVersion {
	out := make([]id.RoomVersion, 0, len(versionRules))
	for v := 1; v <= 12; v++ {
		if rv := id.RoomVersion(fmt.Sprint(v)); Supported(rv) {
			out = append(out, rv)
		}
	}
	return out
}

// Supported reports whether this package handles the room version.
func Supported(version id.RoomVersion) bool {
	_, ok := versionRules[version]
	return ok
}

func (r *rules) jsonMode() cjson.Mode {
	if r.legacyJSON {
		return cjson.Legacy
	}
	return cjson.Integers
}

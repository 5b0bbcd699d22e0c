package event

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Parse reads an event of a room of the given version as it comes over
// federation and checks that it complies with the version's event format
// (server-server API, "Checks performed on receipt of a PDU", step 1). It
// does not check hashes, signatures or authorization.
//
// The checks are: the JSON is valid, and strictly canonical from room
// version 6; the required fields are present with the right types (sender,
// origin_server_ts, type, content, depth, hashes, signatures, prev_events,
// auth_events, room_id except on v12 create events, event_id in v1–2 and
// not from v3);
// the event is at most MaxSize bytes as canonical JSON; sender, room_id and
// event_id are at most 255 bytes and well-formed, type and state_key at most
// 255 bytes; depth is in [0, 2^63-1] (v1–5) or [0, 2^53-1] (v6+); there are
// at most 20 prev_events and 10 auth_events, each an event ID of the
// version's format; in v12 the create event has no room_id, other events have
// a room ID of the v12 form, and auth_events does not list the create event.
//
// unsigned is kept apart (Unsigned) and is not part of JSON(). The size
// limit (client-server API, "Size limits") is applied to the event without
// it: any server that relays an event may change unsigned, so counting it
// would let a relay make a valid event invalid. For the same reason an
// unsigned that is not an object is dropped. Its JSON must still be valid
// (and, from v6, hold only integers): that is checked with the rest.
//
// Errors wrap ErrInvalid, or ErrUnsupportedVersion. Parse never panics.
func Parse(version id.RoomVersion, raw []byte) (*PDU, error) {
	r, err := rulesFor(version)
	if err != nil {
		return nil, err
	}
	canon, err := cjson.Append(make([]byte, 0, len(raw)), raw, r.jsonMode())
	if err != nil {
		return nil, invalidf("%w", err)
	}
	return parseCanonical(r, canon, nil)
}

// fields that Parse saw, as bits.
const (
	hasAuthEvents = 1 << iota
	hasContent
	hasDepth
	hasEventID
	hasHashes
	hasTS
	hasPrevEvents
	hasRoomID
	hasSender
	hasSignatures
	hasType
)

// parseCanonical parses an event already in canonical JSON. refHash, if not
// nil, is the event's reference hash, already computed by the caller.
func parseCanonical(r *rules, canon []byte, refHash *[32]byte) (*PDU, error) {
	if len(canon) == 0 || canon[0] != '{' {
		return nil, invalidf("not a JSON object")
	}
	p := &PDU{rules: r, raw: canon}
	if u, ok := cjson.Get(canon, "unsigned"); ok {
		// An unsigned that is not an object is dropped, as Synapse's
		// _strip_unsigned_values does: relays may change unsigned, so it
		// must not make the event invalid.
		if u[0] == '{' {
			p.unsigned = bytes.Clone(u)
		}
		p.raw = cjson.Without(make([]byte, 0, len(canon)), canon, "unsigned")
	}
	if len(p.raw) > MaxSize {
		return nil, invalidf("event is %d bytes, more than %d", len(p.raw), MaxSize)
	}

	var (
		seen       int
		topRedacts []byte
		err        error
	)
	for k, v := range cjson.Members(p.raw) {
		switch string(k) {
		case "auth_events":
			seen |= hasAuthEvents
			p.auth, err = parseRefs(r, v, "auth_events", MaxAuthEvents)
		case "content":
			seen |= hasContent
			if v[0] != '{' {
				err = invalidf("content is not an object")
			}
			p.content = v
		case "depth":
			seen |= hasDepth
			p.depth, err = parseInt(v, "depth")
			if err == nil && (p.depth < 0 || p.depth > r.maxDepth) {
				err = invalidf("depth %d out of range [0, %d]", p.depth, r.maxDepth)
			}
		case "event_id":
			seen |= hasEventID
			if r.ids == idServer {
				var s string
				s, err = parseString(v, "event_id", MaxIDSize)
				if err == nil {
					err = checkEventID(r, s)
				}
				p.eventID = id.EventID(s)
			} else {
				// v3 "Event format": "When events are sent over federation,
				// the event_id field is no longer included." Synapse cannot
				// build such an event (FrozenEventV2 asserts it has no
				// event_id), so accepting it would split the room.
				err = invalidf("event_id is not part of the event format of room version %s", r.version)
			}
		case "hashes":
			seen |= hasHashes
			if v[0] != '{' {
				err = invalidf("hashes is not an object")
			}
		case "origin_server_ts":
			seen |= hasTS
			p.ts, err = parseInt(v, "origin_server_ts")
		case "prev_events":
			seen |= hasPrevEvents
			p.prev, err = parseRefs(r, v, "prev_events", MaxPrevEvents)
		case "redacts":
			topRedacts = v
		case "room_id":
			seen |= hasRoomID
			var s string
			s, err = parseString(v, "room_id", MaxIDSize)
			p.roomID = id.RoomID(s)
		case "sender":
			seen |= hasSender
			var s string
			s, err = parseString(v, "sender", MaxIDSize)
			if err == nil {
				err = checkUserID(s)
			}
			p.sender = id.UserID(s)
		case "signatures":
			seen |= hasSignatures
			err = checkSignatures(v)
			p.signatures = v
		case "state_key":
			var s string
			s, err = parseString(v, "state_key", MaxKeySize)
			p.stateKey = &s
		case "type":
			seen |= hasType
			p.typ, err = parseString(v, "type", MaxKeySize)
		}
		if err != nil {
			return nil, err
		}
	}

	required := hasAuthEvents | hasContent | hasDepth | hasHashes | hasTS | hasPrevEvents | hasSender | hasSignatures | hasType
	if r.ids == idServer {
		required |= hasEventID
	}
	isCreate := p.typ == TypeCreate
	if !r.createRoomID || !isCreate {
		required |= hasRoomID
	}
	if missing := required &^ seen; missing != 0 {
		return nil, invalidf("missing required field %s", fieldName(missing))
	}

	// Redacts: top-level up to v10, content.redacts from v11.
	if p.typ == TypeRedaction {
		src := topRedacts
		if r.redactsInContent {
			src, _ = cjson.Get(p.content, "redacts")
		}
		if src != nil {
			s, err := cjson.Unquote(src)
			if err == nil {
				p.redacts = id.EventID(s)
			} else if !r.redactsInContent {
				return nil, invalidf("redacts is not a string")
			}
			// From v11 a non-string content.redacts is content like any
			// other: the event is valid and redacts nothing.
		}
	} else if topRedacts != nil && !r.redactsInContent && topRedacts[0] != '"' {
		return nil, invalidf("redacts is not a string")
	}

	if refHash != nil {
		p.refHash = *refHash
	} else {
		p.refHash = referenceHash(r, p.typ, p.raw)
	}
	if r.ids != idServer {
		p.eventID = hashID('$', r, p.refHash)
	}

	if r.createRoomID {
		if isCreate {
			if seen&hasRoomID != 0 {
				return nil, invalidf("m.room.create event has a room_id in room version %s", r.version)
			}
			p.roomID = id.RoomID(hashID('!', r, p.refHash))
		} else {
			if !isHashID(string(p.roomID), '!', r.ids) {
				return nil, invalidf("room_id %q is not a room ID of room version %s", p.roomID, r.version)
			}
			createID := id.EventID("$" + string(p.roomID[1:]))
			for _, a := range p.auth {
				if a == createID {
					return nil, invalidf("auth_events lists the m.room.create event %s", createID)
				}
			}
		}
	} else if err := checkRoomID(string(p.roomID)); err != nil {
		return nil, err
	}
	return p, nil
}

func fieldName(bits int) string {
	names := []string{"auth_events", "content", "depth", "event_id", "hashes", "origin_server_ts", "prev_events", "room_id", "sender", "signatures", "type"}
	for i, n := range names {
		if bits&(1<<i) != 0 {
			return n
		}
	}
	return "?"
}

// parseString decodes a JSON string of at most max bytes.
func parseString(v []byte, field string, max int) (string, error) {
	s, err := cjson.Unquote(v)
	if err != nil {
		return "", invalidf("%s is not a string", field)
	}
	if len(s) > max {
		return "", invalidf("%s is %d bytes, more than %d", field, len(s), max)
	}
	return s, nil
}

// parseInt decodes a JSON integer that fits in an int64. In legacy mode a
// float is written with '.' or 'e' and is rejected here.
func parseInt(v []byte, field string) (int64, error) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, invalidf("%s is not an integer in the int64 range: %.40s", field, v)
	}
	return n, nil
}

// parseRefs decodes prev_events or auth_events: a list of event IDs, or in
// room versions 1 and 2 a list of [event ID, hashes] pairs.
func parseRefs(r *rules, v []byte, field string, max int) ([]id.EventID, error) {
	if v[0] != '[' {
		return nil, invalidf("%s is not an array", field)
	}
	ids := make([]id.EventID, 0, 4)
	for e := range cjson.Elements(v) {
		if len(ids) == max {
			return nil, invalidf("%s has more than %d entries", field, max)
		}
		if r.ids == idServer {
			// [event_id, {"sha256": ...}]. The hash is not checked by
			// anyone (Synapse sends {}), so any second element is accepted.
			n := 0
			var first []byte
			for x := range cjson.Elements(e) {
				if n == 0 {
					first = x
				}
				n++
			}
			if e[0] != '[' || n != 2 {
				return nil, invalidf("%s entry %.80s is not an [event_id, hashes] pair", field, e)
			}
			e = first
		}
		s, err := cjson.Unquote(e)
		if err != nil {
			return nil, invalidf("%s entry %.80s is not a string", field, e)
		}
		if err := checkEventID(r, s); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		ids = append(ids, id.EventID(s))
	}
	return ids, nil
}

// checkEventID checks an event ID against the format of the room version
// (rooms/v1 "Event IDs", v3 and v4 "Event IDs", appendix "Event IDs").
func checkEventID(r *rules, s string) error {
	if r.ids != idServer {
		if !isHashID(s, '$', r.ids) {
			return invalidf("event ID %q is not a reference hash ID of room version %s", s, r.version)
		}
		return nil
	}
	if len(s) > MaxIDSize {
		return invalidf("event ID %.40q… is longer than %d bytes", s, MaxIDSize)
	}
	if err := checkSigilDomain(s, '$'); err != nil {
		return invalidf("event ID %q: %w", s, err)
	}
	return nil
}

// checkUserID checks the grammar of a user ID as far as the event format
// needs it: "@", a non-empty localpart, ":" and a valid server name (whose
// signature the event needs). Historical localparts are allowed.
func checkUserID(s string) error {
	if err := checkSigilDomain(s, '@'); err != nil {
		return invalidf("sender %q: %w", s, err)
	}
	return nil
}

// checkRoomID checks a room ID of room versions 1–11: "!opaque:domain".
func checkRoomID(s string) error {
	if len(s) < 3 || s[0] != '!' {
		return invalidf("room_id %q does not start with '!'", s)
	}
	i := strings.IndexByte(s, ':')
	if i < 2 || i == len(s)-1 {
		return invalidf("room_id %q is not of the form !opaque:domain", s)
	}
	return nil
}

// checkSigilDomain checks "<sigil>localpart:servername" with a non-empty
// localpart and a valid server name after the first colon.
func checkSigilDomain(s string, sigil byte) error {
	if len(s) == 0 || s[0] != sigil {
		return fmt.Errorf("does not start with %q", sigil)
	}
	i := 1
	for i < len(s) && s[i] != ':' {
		i++
	}
	if i == 1 || i >= len(s) {
		return fmt.Errorf("not of the form %clocalpart:domain", sigil)
	}
	if !ValidServerName(s[i+1:]) {
		return fmt.Errorf("invalid server name %q", s[i+1:])
	}
	return nil
}

// ValidServerName checks the grammar of a server name (appendix "Server
// Name"): a DNS name or IPv4 address, or an IPv6 literal in brackets,
// optionally followed by ":" and a port of 1 to 5 digits.
func ValidServerName(s string) bool {
	if len(s) == 0 || len(s) > 255 {
		return false
	}
	host := s
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 3 || end > 46 {
			return false
		}
		for _, c := range []byte(s[1:end]) {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
				return false
			}
		}
		host, s = "", s[end+1:]
	} else {
		i := strings.IndexByte(s, ':')
		if i >= 0 {
			host, s = s[:i], s[i:]
		} else {
			s = ""
		}
		if host == "" {
			return false
		}
		for _, c := range []byte(host) {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.') {
				return false
			}
		}
	}
	if s == "" {
		return true
	}
	if s[0] != ':' || len(s) < 2 || len(s) > 6 {
		return false
	}
	for _, c := range []byte(s[1:]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// checkSignatures checks that signatures is an object of objects of
// strings.
func checkSignatures(v []byte) error {
	if v[0] != '{' {
		return invalidf("signatures is not an object")
	}
	for server, sigs := range cjson.Members(v) {
		if sigs[0] != '{' {
			return invalidf("signatures of %s is not an object", server)
		}
		for keyID, sig := range cjson.Members(sigs) {
			if sig[0] != '"' {
				return invalidf("signature %s of %s is not a string", keyID, server)
			}
		}
	}
	return nil
}

const (
	stdAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	urlAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)

var stdIndex, urlIndex = alphabetIndex(stdAlphabet), alphabetIndex(urlAlphabet)

func alphabetIndex(a string) (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := range len(a) {
		t[a[i]] = int8(i)
	}
	return t
}

// isHashID reports whether s is sigil + the 43-character unpadded base64 of
// a 32-byte hash in the alphabet of the format. The last character carries
// 4 bits, so its two low bits must be zero.
func isHashID(s string, sigil byte, f idFormat) bool {
	if len(s) != 44 || s[0] != sigil {
		return false
	}
	idx := &urlIndex
	if f == idBase64 {
		idx = &stdIndex
	}
	for i := 1; i < 44; i++ {
		if idx[s[i]] < 0 {
			return false
		}
	}
	return idx[s[43]]&3 == 0
}

// ParseStored parses an event this server stored itself: raw must be the
// canonical JSON that JSON() returned (possibly redacted since). It skips
// re-encoding but checks everything Parse checks.
func ParseStored(version id.RoomVersion, raw []byte) (*PDU, error) {
	r, err := rulesFor(version)
	if err != nil {
		return nil, err
	}
	return parseCanonical(r, raw, nil)
}

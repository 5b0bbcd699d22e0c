package event

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/keys"
)

// Proto is an event before it has hashes, signatures and an ID.
type Proto struct {
	Type     string
	StateKey *string // nil for a message event
	Sender   id.UserID
	// RoomID is required, except for the m.room.create event of a room
	// version 12 room, which must not have one (its room ID is derived).
	RoomID id.RoomID
	// Content is a JSON object; nil means {}.
	Content    []byte
	PrevEvents []id.EventID
	AuthEvents []id.EventID
	Depth      int64
	// OriginServerTS in milliseconds; 0 means now.
	OriginServerTS int64
	// Redacts is the event an m.room.redaction redacts. Up to room version
	// 10 it is written as the top-level redacts; from version 11 as
	// content.redacts, unless Content already has one.
	Redacts id.EventID
}

// New builds a local event of a room of the given version from proto: it
// writes the event as canonical JSON, adds the content hash, signs it as
// serverName with key and computes its ID. In room versions 1 and 2 the
// event ID is "$" + 18 random characters + ":" + serverName, and
// prev_events and auth_events are written as [ID, {}] pairs, as Synapse
// writes them (no one checks those hashes).
//
// The result is checked as Parse checks received events; errors wrap
// ErrInvalid or ErrUnsupportedVersion.
func New(version id.RoomVersion, proto Proto, serverName string, key *keys.SigningKey) (*PDU, error) {
	r, err := rulesFor(version)
	if err != nil {
		return nil, err
	}
	content := proto.Content
	if content == nil {
		content = []byte("{}")
	}
	buf := make([]byte, 0, 512+len(content))

	// The members in canonical (sorted) order.
	buf = append(buf, `{"auth_events":`...)
	buf = appendRefs(buf, r, proto.AuthEvents)
	buf = append(buf, `,"content":`...)
	contentStart := len(buf)
	buf, err = cjson.Append(buf, content, r.jsonMode())
	if err != nil {
		return nil, invalidf("content: %w", err)
	}
	if buf[contentStart] != '{' {
		return nil, invalidf("content is not an object")
	}
	if r.redactsInContent && proto.Redacts != "" {
		if _, ok := cjson.Get(buf[contentStart:], "redacts"); !ok {
			c := cjson.Set(nil, buf[contentStart:], "redacts", cjson.AppendString(nil, string(proto.Redacts)))
			buf = append(buf[:contentStart], c...)
		}
	}
	buf = append(buf, `,"depth":`...)
	buf = strconv.AppendInt(buf, proto.Depth, 10)
	if r.ids == idServer {
		buf = append(buf, `,"event_id":`...)
		buf = cjson.AppendString(buf, "$"+randomString(18)+":"+serverName)
	}
	ts := proto.OriginServerTS
	if ts == 0 {
		ts = time.Now().UnixMilli()
	}
	buf = append(buf, `,"origin_server_ts":`...)
	buf = strconv.AppendInt(buf, ts, 10)
	buf = append(buf, `,"prev_events":`...)
	buf = appendRefs(buf, r, proto.PrevEvents)
	if !r.redactsInContent && proto.Redacts != "" {
		buf = append(buf, `,"redacts":`...)
		buf = cjson.AppendString(buf, string(proto.Redacts))
	}
	if proto.RoomID != "" {
		buf = append(buf, `,"room_id":`...)
		buf = cjson.AppendString(buf, string(proto.RoomID))
	}
	buf = append(buf, `,"sender":`...)
	buf = cjson.AppendString(buf, string(proto.Sender))
	if proto.StateKey != nil {
		buf = append(buf, `,"state_key":`...)
		buf = cjson.AppendString(buf, *proto.StateKey)
	}
	buf = append(buf, `,"type":`...)
	buf = cjson.AppendString(buf, proto.Type)
	buf = append(buf, '}')

	// Content hash, then the signature over the redacted event, which is
	// also the input of the reference hash.
	sum := sha256.Sum256(buf)
	hashes := make([]byte, 0, 60)
	hashes = append(hashes, `{"sha256":"`...)
	hashes = base64.RawStdEncoding.AppendEncode(hashes, sum[:])
	hashes = append(hashes, `"}`...)
	core := cjson.Set(make([]byte, 0, len(buf)+len(hashes)+160), buf, "hashes", hashes)

	red := getBuf()
	*red = appendRedacted((*red)[:0], r, proto.Type, core, false)
	sig := key.Sign(*red)
	ref := sha256.Sum256(*red)
	putBuf(red)
	core, err = keys.AddSignature(core, serverName, key.KeyID(), sig)
	if err != nil {
		return nil, invalidf("add signature: %w", err)
	}
	return parseCanonical(r, core, &ref)
}

// appendRefs writes prev_events or auth_events in the room version's form.
func appendRefs(buf []byte, r *rules, ids []id.EventID) []byte {
	buf = append(buf, '[')
	for i, e := range ids {
		if i > 0 {
			buf = append(buf, ',')
		}
		if r.ids == idServer {
			buf = append(buf, '[')
			buf = cjson.AppendString(buf, string(e))
			buf = append(buf, ",{}]"...)
		} else {
			buf = cjson.AppendString(buf, string(e))
		}
	}
	return append(buf, ']')
}

const idChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomString returns n random letters.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	for i := range b {
		b[i] = idChars[int(b[i])%len(idChars)]
	}
	return string(b)
}

package event_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/eventauth"
	"polder.dev/polder/internal/keys"
)

// PDU implements what the authorization rules read of an event.
var _ eventauth.Event = (*event.PDU)(nil)

var allVersions = []id.RoomVersion{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}

func versionNumber(v id.RoomVersion) int {
	var n int
	fmt.Sscan(string(v), &n)
	return n
}

func mustSpecKey(tb testing.TB) *keys.SigningKey {
	tb.Helper()
	k, err := keys.Load("testdata/signing/spec.key")
	if err != nil {
		tb.Fatalf("Load(spec key) error: %v", err)
	}
	return k
}

// fakeEventID returns a well-formed event ID of the room version's format.
func fakeEventID(v id.RoomVersion, seed string) id.EventID {
	sum := sha256.Sum256([]byte(seed))
	switch versionNumber(v) {
	case 1, 2:
		return id.EventID("$" + base64.RawURLEncoding.EncodeToString(sum[:6]) + ":origin.example")
	case 3:
		return id.EventID("$" + base64.RawStdEncoding.EncodeToString(sum[:]))
	default:
		return id.EventID("$" + base64.RawURLEncoding.EncodeToString(sum[:]))
	}
}

// fakeRoomID returns a well-formed room ID of the room version's format.
func fakeRoomID(v id.RoomVersion) id.RoomID {
	if versionNumber(v) >= 12 {
		sum := sha256.Sum256([]byte("create"))
		return id.RoomID("!" + base64.RawURLEncoding.EncodeToString(sum[:]))
	}
	return id.RoomID("!room:origin.example")
}

func ptr(s string) *string { return &s }

// protoMessage is a typical message event in a room of version v.
func protoMessage(v id.RoomVersion) event.Proto {
	return event.Proto{
		Type:           "m.room.message",
		Sender:         "@alice:origin.example",
		RoomID:         fakeRoomID(v),
		Content:        []byte(`{"msgtype":"m.text","body":"Hello there, how is the weather in Zürich today? 🌦","m.mentions":{}}`),
		PrevEvents:     []id.EventID{fakeEventID(v, "prev")},
		AuthEvents:     []id.EventID{fakeEventID(v, "pl"), fakeEventID(v, "member")},
		Depth:          42,
		OriginServerTS: 1732180000000,
	}
}

func mustNew(tb testing.TB, v id.RoomVersion, p event.Proto) *event.PDU {
	tb.Helper()
	pdu, err := event.New(v, p, "origin.example", mustSpecKey(tb))
	if err != nil {
		tb.Fatalf("New(v%s, %s) error: %v", v, p.Type, err)
	}
	return pdu
}

// mutate decodes the event JSON, applies f and re-encodes it (numbers are
// kept as written).
func mutate(tb testing.TB, raw []byte, f func(m map[string]any)) []byte {
	tb.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		tb.Fatalf("decode %s: %v", raw, err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		tb.Fatalf("encode: %v", err)
	}
	return out
}

func mustCanonical(tb testing.TB, raw []byte) []byte {
	tb.Helper()
	c, err := cjson.CanonicalLegacy(raw)
	if err != nil {
		tb.Fatalf("CanonicalLegacy(%s) error: %v", raw, err)
	}
	return c
}

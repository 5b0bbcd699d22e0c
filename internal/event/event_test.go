package event_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/keys"
)

// TestSpecEventSigning runs the "Event Signing" vectors of the appendix
// "Cryptographic Test Vectors". The events carry "origin", which only the
// redaction algorithm of v1–10 keeps, so they hold for those versions and
// must give another signature from v11.
func TestSpecEventSigning(t *testing.T) {
	k := mustSpecKey(t)
	ins, _ := filepath.Glob("testdata/signing/*.in.json")
	if len(ins) == 0 {
		t.Fatal("no vectors in testdata/signing")
	}
	for _, in := range ins {
		input, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		wantRaw, err := os.ReadFile(strings.TrimSuffix(in, ".in.json") + ".out.json")
		if err != nil {
			t.Fatal(err)
		}
		want := mustCanonical(t, wantRaw)
		for _, v := range allVersions {
			t.Run(filepath.Base(in)+"/v"+string(v), func(t *testing.T) {
				got, err := event.HashAndSign(v, input, "domain", k)
				if err != nil {
					t.Fatalf("HashAndSign error: %v", err)
				}
				if versionNumber(v) <= 10 && !bytes.Equal(got, want) {
					t.Errorf("HashAndSign(v%s)\n got %s\nwant %s", v, got, want)
				}
				if versionNumber(v) >= 11 && bytes.Equal(got, want) {
					t.Errorf("HashAndSign(v%s) = spec output, want another signature (origin is not kept from v11)", v)
				}
				sig, _ := keys.Signature(want, "domain", "ed25519:1")
				gotSig, _ := keys.Signature(got, "domain", "ed25519:1")
				if versionNumber(v) <= 10 && sig != gotSig {
					t.Errorf("signature = %s, want %s", gotSig, sig)
				}
			})
		}
	}
}

// TestNewParseRoundTrip builds an event of each kind in each room version,
// parses its JSON back and checks every accessor.
func TestNewParseRoundTrip(t *testing.T) {
	for _, v := range allVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			p := protoMessage(v)
			p.StateKey = ptr("")
			p.Type = "m.room.topic"
			p.Content = []byte(`{"topic":"x"}`)
			built := mustNew(t, v, p)
			parsed, err := event.Parse(v, built.JSON())
			if err != nil {
				t.Fatalf("Parse(New(...).JSON()) error: %v", err)
			}
			if parsed.EventID() != built.EventID() || parsed.RoomID() != p.RoomID ||
				parsed.Type() != p.Type || parsed.StateKey() == nil || *parsed.StateKey() != "" ||
				parsed.Sender() != p.Sender || string(parsed.Content()) != `{"topic":"x"}` ||
				len(parsed.PrevEventIDs()) != 1 || parsed.PrevEventIDs()[0] != p.PrevEvents[0] ||
				len(parsed.AuthEventIDs()) != 2 || parsed.AuthEventIDs()[1] != p.AuthEvents[1] ||
				parsed.Depth() != 42 || parsed.OriginServerTS() != 1732180000000 ||
				parsed.Redacts() != "" || parsed.RoomVersion() != v || !parsed.IsState() {
				t.Errorf("Parse(New(...)) = %+v, fields differ from the proto", parsed)
			}
			if !bytes.Equal(parsed.JSON(), built.JSON()) {
				t.Errorf("JSON differs after round trip:\n%s\n%s", parsed.JSON(), built.JSON())
			}
			if parsed.ReferenceHash() != built.ReferenceHash() {
				t.Error("ReferenceHash differs after round trip")
			}
			if err := parsed.VerifyContentHash(); err != nil {
				t.Errorf("VerifyContentHash() error: %v", err)
			}
			wantIDLen := 44
			if versionNumber(v) <= 2 {
				wantIDLen = len("$") + 18 + len(":origin.example")
			}
			if len(parsed.EventID()) != wantIDLen {
				t.Errorf("EventID() = %s, want %d bytes", parsed.EventID(), wantIDLen)
			}
		})
	}
}

// TestEventIDFormat checks the event ID of each format against the
// reference hash (rooms v3 and v4 "Event IDs").
func TestEventIDFormat(t *testing.T) {
	for _, v := range allVersions {
		pdu := mustNew(t, v, protoMessage(v))
		ref := pdu.ReferenceHash()
		var want string
		switch n := versionNumber(v); {
		case n <= 2:
			if !strings.HasPrefix(string(pdu.EventID()), "$") || !strings.HasSuffix(string(pdu.EventID()), ":origin.example") {
				t.Errorf("v%s EventID() = %s, want $opaque:origin.example", v, pdu.EventID())
			}
			continue
		case n == 3:
			want = "$" + base64.RawStdEncoding.EncodeToString(ref[:])
		default:
			want = "$" + base64.RawURLEncoding.EncodeToString(ref[:])
		}
		if string(pdu.EventID()) != want {
			t.Errorf("v%s EventID() = %s, want %s", v, pdu.EventID(), want)
		}
	}
	// A known v3 ID with '/' and '+' shows the standard alphabet; v4 the URL-safe one.
	raw := []byte(`{"auth_events":[],"content":{"n":29},"depth":1,"hashes":{"sha256":"x"},"origin_server_ts":0,"prev_events":[],"room_id":"!r:x","sender":"@a:x","signatures":{},"type":"t"}`)
	for n := 0; n < 200; n++ {
		r := bytes.Replace(raw, []byte(`"n":29`), []byte(`"n":`+strings.Repeat("1", n%15+1)), 1)
		p3, err3 := event.Parse("3", r)
		p4, err4 := event.Parse("4", r)
		if err3 != nil || err4 != nil {
			t.Fatalf("Parse errors: %v, %v", err3, err4)
		}
		conv := strings.NewReplacer("+", "-", "/", "_").Replace(string(p3.EventID()))
		if conv != string(p4.EventID()) {
			t.Fatalf("v3 ID %s and v4 ID %s differ beyond the alphabet", p3.EventID(), p4.EventID())
		}
	}
}

// TestV12RoomID checks MSC4291: the create event has no room_id, the room ID
// is "!" + URL-safe base64 of its reference hash, and later events may not
// list it in auth_events.
func TestV12RoomID(t *testing.T) {
	create := mustNew(t, "12", event.Proto{
		Type: event.TypeCreate, StateKey: ptr(""), Sender: "@alice:origin.example",
		Content: []byte(`{"room_version":"12"}`), PrevEvents: []id.EventID{}, AuthEvents: []id.EventID{},
		Depth: 1, OriginServerTS: 1,
	})
	ref := create.ReferenceHash()
	want := id.RoomID("!" + base64.RawURLEncoding.EncodeToString(ref[:]))
	if create.RoomID() != want || string(create.EventID()) != "$"+string(want[1:]) {
		t.Errorf("create RoomID() = %s, EventID() = %s, want %s and $%s", create.RoomID(), create.EventID(), want, want[1:])
	}
	if _, ok := getField(create.JSON(), "room_id"); ok {
		t.Errorf("v12 create event has a room_id: %s", create.JSON())
	}
	member := mustNew(t, "12", event.Proto{
		Type: event.TypeMember, StateKey: ptr("@alice:origin.example"), Sender: "@alice:origin.example",
		RoomID: create.RoomID(), Content: []byte(`{"membership":"join"}`),
		PrevEvents: []id.EventID{create.EventID()}, AuthEvents: []id.EventID{}, Depth: 2, OriginServerTS: 2,
	})
	if member.RoomID() != create.RoomID() {
		t.Errorf("member RoomID() = %s, want %s", member.RoomID(), create.RoomID())
	}
	bad := event.Proto{
		Type: event.TypeMember, StateKey: ptr("@alice:origin.example"), Sender: "@alice:origin.example",
		RoomID: create.RoomID(), Content: []byte(`{"membership":"join"}`),
		PrevEvents: []id.EventID{create.EventID()}, AuthEvents: []id.EventID{create.EventID()}, Depth: 2, OriginServerTS: 2,
	}
	if _, err := event.New("12", bad, "origin.example", mustSpecKey(t)); !errors.Is(err, event.ErrInvalid) {
		t.Errorf("New(v12 with the create event in auth_events) error = %v, want ErrInvalid", err)
	}
	withRoom := event.Proto{
		Type: event.TypeCreate, StateKey: ptr(""), Sender: "@alice:origin.example", RoomID: "!r:origin.example",
		Content: []byte(`{}`), PrevEvents: []id.EventID{}, AuthEvents: []id.EventID{}, Depth: 1,
	}
	if _, err := event.New("12", withRoom, "origin.example", mustSpecKey(t)); !errors.Is(err, event.ErrInvalid) {
		t.Errorf("New(v12 create with room_id) error = %v, want ErrInvalid", err)
	}
	// In v11 the create event needs a room_id.
	withRoom.Content = []byte(`{"room_version":"11"}`)
	if p := mustNew(t, "11", withRoom); p.RoomID() != "!r:origin.example" {
		t.Errorf("v11 create RoomID() = %s, want !r:origin.example", p.RoomID())
	}
	withRoom.RoomID = ""
	if _, err := event.New("11", withRoom, "origin.example", mustSpecKey(t)); !errors.Is(err, event.ErrInvalid) {
		t.Errorf("New(v11 create without room_id) error = %v, want ErrInvalid", err)
	}
}

func getField(raw []byte, key string) (json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, false
	}
	v, ok := m[key]
	return v, ok
}

func TestRedacts(t *testing.T) {
	target := id.EventID("$target")
	for _, v := range allVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			target := fakeEventID(v, string(target))
			p := protoMessage(v)
			p.Type = event.TypeRedaction
			p.Content = []byte(`{"reason":"spam"}`)
			p.Redacts = target
			pdu := mustNew(t, v, p)
			if pdu.Redacts() != target {
				t.Errorf("Redacts() = %q, want %q", pdu.Redacts(), target)
			}
			_, top := getField(pdu.JSON(), "redacts")
			content, _ := getField(pdu.Content(), "redacts")
			if versionNumber(v) <= 10 && (!top || content != nil) {
				t.Errorf("v%s redaction %s: want top-level redacts only", v, pdu.JSON())
			}
			if versionNumber(v) >= 11 && (top || content == nil) {
				t.Errorf("v%s redaction %s: want content.redacts only", v, pdu.JSON())
			}
			// Other event types never report Redacts.
			m := protoMessage(v)
			m.Redacts = target
			if got := mustNew(t, v, m).Redacts(); got != "" {
				t.Errorf("message Redacts() = %q, want \"\"", got)
			}
		})
	}
}

func TestUnsigned(t *testing.T) {
	pdu := mustNew(t, "10", protoMessage("10"))
	if pdu.Unsigned() != nil {
		t.Errorf("Unsigned() = %s, want nil", pdu.Unsigned())
	}
	withU, err := pdu.WithUnsigned([]byte(`{"age": 5}`))
	if err != nil {
		t.Fatalf("WithUnsigned error: %v", err)
	}
	full, _ := withU.MarshalJSON()
	parsed, err := event.Parse("10", full)
	if err != nil {
		t.Fatalf("Parse(with unsigned) error: %v", err)
	}
	if string(parsed.Unsigned()) != `{"age":5}` || !bytes.Equal(parsed.JSON(), pdu.JSON()) || parsed.EventID() != pdu.EventID() {
		t.Errorf("Parse(with unsigned): Unsigned() = %s, JSON changed = %v, ID changed = %v",
			parsed.Unsigned(), !bytes.Equal(parsed.JSON(), pdu.JSON()), parsed.EventID() != pdu.EventID())
	}
	if _, err := pdu.WithUnsigned([]byte(`[1]`)); !errors.Is(err, event.ErrInvalid) {
		t.Errorf("WithUnsigned([1]) error = %v, want ErrInvalid", err)
	}
	if err := parsed.VerifyContentHash(); err != nil {
		t.Errorf("VerifyContentHash with unsigned present: %v", err)
	}
}

func TestUnsupportedVersion(t *testing.T) {
	for _, v := range []id.RoomVersion{"", "0", "13", "org.matrix.msc1234"} {
		if _, err := event.Parse(v, []byte(`{}`)); !errors.Is(err, event.ErrUnsupportedVersion) {
			t.Errorf("Parse(%q) error = %v, want ErrUnsupportedVersion", v, err)
		}
		if event.Supported(v) {
			t.Errorf("Supported(%q) = true", v)
		}
	}
}

func TestStripped(t *testing.T) {
	p := protoMessage("11")
	p.Type, p.StateKey, p.Content = "m.room.name", ptr(""), []byte(`{"name":"The \"room\""}`)
	pdu := mustNew(t, "11", p)
	got, err := pdu.Stripped()
	want := `{"content":{"name":"The \"room\""},"sender":"@alice:origin.example","state_key":"","type":"m.room.name"}`
	if err != nil || string(got) != want {
		t.Errorf("Stripped() = %s, %v, want %s", got, err, want)
	}
	msg := mustNew(t, "11", protoMessage("11"))
	if _, err := msg.Stripped(); !errors.Is(err, event.ErrNotState) {
		t.Errorf("Stripped(message) error = %v, want ErrNotState", err)
	}
	list := event.StrippedState([]*event.PDU{pdu, msg, pdu})
	if string(list) != "["+want+","+want+"]" {
		t.Errorf("StrippedState = %s", list)
	}
}

package event_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
)

// FuzzParse checks that Parse never panics and that what it accepts is
// consistent: canonical, stable under re-parsing and redaction.
func FuzzParse(f *testing.F) {
	for _, v := range allVersions {
		p := protoMessage(v)
		f.Add(uint8(versionNumber(v)), mustNew(f, v, p).JSON())
		p.Type, p.StateKey, p.Content = event.TypeMember, ptr("@a:origin.example"), []byte(`{"membership":"invite","third_party_invite":{"signed":{"a":1}}}`)
		f.Add(uint8(versionNumber(v)), mustNew(f, v, p).JSON())
		p.Type, p.StateKey, p.Content, p.Redacts = event.TypeRedaction, nil, []byte(`{}`), fakeEventID(v, "x")
		f.Add(uint8(versionNumber(v)), mustNew(f, v, p).JSON())
	}
	f.Add(uint8(12), mustNew(f, "12", event.Proto{Type: event.TypeCreate, StateKey: ptr(""), Sender: "@a:b",
		Content: []byte(`{}`), PrevEvents: []id.EventID{}, AuthEvents: []id.EventID{}, Depth: 1, OriginServerTS: 1}).JSON())
	f.Add(uint8(1), []byte(`{"content":{"n":1.5},"unsigned":{"age":1}}`))
	f.Add(uint8(6), []byte(`[]`))
	f.Add(uint8(3), []byte(`{"prev_events":[["$a:b",{}]]}`))

	f.Fuzz(func(t *testing.T, vn uint8, raw []byte) {
		v := allVersions[int(vn)%len(allVersions)]
		p, err := event.Parse(v, raw)
		if err != nil {
			return
		}
		mode := cjson.Integers
		if versionNumber(v) <= 5 {
			mode = cjson.Legacy
		}
		if c, err := cjson.Append(nil, p.JSON(), mode); err != nil || !bytes.Equal(c, p.JSON()) {
			t.Fatalf("JSON() is not canonical: %s (%v)", p.JSON(), err)
		}
		full, _ := p.MarshalJSON()
		again, err := event.Parse(v, full)
		if err != nil {
			t.Fatalf("Parse(Parse(x).MarshalJSON()) error: %v", err)
		}
		if again.EventID() != p.EventID() || again.RoomID() != p.RoomID() || !bytes.Equal(again.JSON(), p.JSON()) || !bytes.Equal(again.Unsigned(), p.Unsigned()) {
			t.Fatalf("re-parse changed the event: %s vs %s", again.JSON(), p.JSON())
		}
		red := p.Redacted()
		if red.EventID() != p.EventID() {
			t.Fatalf("Redacted() changed the event ID")
		}
		viaRaw, err := event.Redact(v, p.JSON())
		if err != nil || !bytes.Equal(viaRaw, red.JSON()) {
			t.Fatalf("Redact(JSON()) = %s, %v; Redacted().JSON() = %s", viaRaw, err, red.JSON())
		}
		if redParsed, err := event.Parse(v, red.JSON()); err != nil || redParsed.EventID() != p.EventID() {
			t.Fatalf("Parse(Redacted().JSON()) = %v, want event ID %s", err, p.EventID())
		}
		if s, err := p.Stripped(); err == nil && !json.Valid(s) {
			t.Fatalf("Stripped() = %s, not JSON", s)
		}
		_ = p.VerifyContentHash()
		_ = p.VerifySignatures(specKeys(t))
		_ = p.SigningServers()
	})
}

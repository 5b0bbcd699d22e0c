package cjson_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"maunium.net/go/mautrix/crypto/canonicaljson"

	"polder.dev/polder/internal/cjson"
)

// The tests and benchmarks in this file compare cjson with mautrix-go's
// crypto/canonicaljson (v0.31.0, its encoding/json/v2 implementation, which
// is what builds with Go ≥ 1.27). They are test-only: cjson itself imports
// the standard library only.

// messageEvent is a typical m.room.message PDU as a remote server sends it
// (keys in no particular order, some whitespace).
const messageEvent = `{
  "type": "m.room.message",
  "sender": "@alice:example.org",
  "room_id": "!jEsUZKDJdhlrceRyVU:example.org",
  "origin_server_ts": 1732180000000,
  "depth": 1234,
  "content": {"msgtype": "m.text", "body": "Hello there, how is the weather in Zürich today? 🌦", "m.mentions": {}, "format": "org.matrix.custom.html", "formatted_body": "Hello <b>there</b>, how is the weather in Zürich today? 🌦"},
  "prev_events": ["$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"],
  "auth_events": ["$acR1l0raoZnm60CBwAVgqbZqoO-mYU81xysh1u7XcJk", "$CD66HAED5npg6074c6pDtLKalHjVfYb2q4Q3LZgrW6o", "$Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ"],
  "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
  "signatures": {"example.org": {"ed25519:a_abcd": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},
  "unsigned": {"age_ts": 1732180000000}
}`

// powerLevels is a large state event: a power levels event with 1,000 users.
func powerLevels() []byte {
	var b strings.Builder
	b.WriteString(`{"type":"m.room.power_levels","state_key":"","sender":"@admin:example.org","content":{"users_default":0,"events":{"m.room.name":50,"m.room.power_levels":100},"users":{`)
	for i := range 1000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"@user%04d:server%d.example.org":%d`, 1000-i, i%7, i%101)
	}
	b.WriteString(`},"ban":50,"kick":50}}`)
	return []byte(b.String())
}

func TestCompareMautrix(t *testing.T) {
	inputs := []string{
		messageEvent, string(powerLevels()),
		`{}`, `[]`, `{"b":{"d":1,"c":[{"z":1,"y":"\u0041"}]},"a":"\/"}`,
		`{"\ud83d\udc31": "meow", "\ud800\udc00": {"\ud800\udc00": "hmm1", "\uFFFF": "meowo1", "\uEFFF": "meowo2"}, "\uf123": "woof"}`,
		`{"\"":4,"\\":5,"\n":3,"\r":2,"\u0000":1}`,
		`{"a": -0, "b": 1e10, "c": 1.0, "d": 9007199254740991}`,
		`"\u0008\u0009\u000A\u000B\u000C\u000D\u000E\u000F\u001F"`,
		`"\u007f\u2028"`,
	}
	for i, in := range inputs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			ours, err := cjson.Canonical([]byte(in))
			if err != nil {
				t.Fatalf("cjson.Canonical error: %v", err)
			}
			theirs, err := canonicaljson.CanonicalJSON([]byte(in))
			if err != nil {
				t.Fatalf("canonicaljson.CanonicalJSON error: %v", err)
			}
			if !bytes.Equal(ours, theirs) {
				t.Errorf("cjson.Canonical(%.60q)\n= %s\nmautrix canonicaljson\n= %s", in, ours, theirs)
			}
		})
	}
}

func benchInputs() map[string][]byte {
	msg := []byte(messageEvent)
	canonMsg, _ := cjson.Canonical(msg)
	return map[string][]byte{
		"message":           msg,
		"message-canonical": canonMsg,
		"power-levels-1000": powerLevels(),
	}
}

func BenchmarkCanonical(b *testing.B) {
	for name, in := range benchInputs() {
		b.Run(name+"/cjson", func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			var dst []byte
			for b.Loop() {
				var err error
				dst, err = cjson.Append(dst[:0], in, cjson.Strict)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/mautrix", func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := canonicaljson.CanonicalJSON(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMarshal(b *testing.B) {
	var v map[string]any
	if err := json.Unmarshal([]byte(messageEvent), &v); err != nil {
		b.Fatal(err)
	}
	b.Run("cjson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cjson.Marshal(v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mautrix", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := canonicaljson.Marshal(v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

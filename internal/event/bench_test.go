package event_test

import (
	"crypto/ed25519"
	jsonv2 "encoding/json/v2"
	"os"
	"strings"
	"testing"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/federation/pdu"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/keys"
)

// The benchmarks use a typical m.room.message of a room version 11 room
// (about 700 bytes) and compare with mautrix-go's federation/pdu where it
// has the same operation.

const benchVersion = "11"

// BenchmarkHashAndSign builds, hashes and signs one message event.
func BenchmarkHashAndSign(b *testing.B) {
	k := mustSpecKey(b)
	proto := protoMessage(benchVersion)
	b.Run("polder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := event.New(benchVersion, proto, "origin.example", k); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mautrix", func(b *testing.B) {
		// The same event without hashes and signatures, as mautrix's PDU.
		var base pdu.PDU
		if err := jsonv2.Unmarshal(mustNew(b, benchVersion, proto).JSON(), &base); err != nil {
			b.Fatal(err)
		}
		base.Hashes, base.Signatures = nil, nil
		priv := ed25519Private(k)
		b.ReportAllocs()
		for b.Loop() {
			p := base.Clone()
			if err := p.Sign(benchVersion, "origin.example", k.KeyID(), priv); err != nil {
				b.Fatal(err)
			}
			if _, err := p.GetEventID(benchVersion); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	raw := mustNew(b, benchVersion, protoMessage(benchVersion)).JSON()
	b.Run("polder", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := event.Parse(benchVersion, raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mautrix", func(b *testing.B) {
		// Unmarshal and event ID: what Parse does, without its checks.
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			var p pdu.PDU
			if err := jsonv2.Unmarshal(raw, &p); err != nil {
				b.Fatal(err)
			}
			if _, err := p.GetEventID(benchVersion); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEventID(b *testing.B) {
	p := mustNew(b, benchVersion, protoMessage(benchVersion))
	b.Run("polder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = event.ComputeReferenceHash(p)
		}
	})
	b.Run("mautrix", func(b *testing.B) {
		var m pdu.PDU
		if err := jsonv2.Unmarshal(p.JSON(), &m); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.GetEventID(benchVersion); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRedact(b *testing.B) {
	proto := protoMessage(benchVersion)
	proto.Type, proto.StateKey = event.TypeMember, ptr("@alice:origin.example")
	proto.Content = []byte(`{"membership":"join","displayname":"Alice","avatar_url":"mxc://origin.example/abc","join_authorised_via_users_server":"@admin:origin.example"}`)
	p := mustNew(b, benchVersion, proto)
	b.Run("polder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = p.Redacted()
		}
	})
	b.Run("polder-raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := event.Redact(benchVersion, p.JSON()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("mautrix", func(b *testing.B) {
		var m pdu.PDU
		if err := jsonv2.Unmarshal(p.JSON(), &m); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := canonicaljson.Marshal(m.Clone().Redact(benchVersion)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerifySignatures(b *testing.B) {
	p := mustNew(b, benchVersion, protoMessage(benchVersion))
	getKey := specKeys(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := p.VerifySignatures(getKey); err != nil {
			b.Fatal(err)
		}
	}
}

// ed25519Private reads the private half of the spec key from its file, for
// mautrix's Sign.
func ed25519Private(k interface{ Version() string }) ed25519.PrivateKey {
	data, err := os.ReadFile("testdata/signing/spec.key")
	if err != nil {
		panic(err)
	}
	seed, err := keys.DecodeBase64(strings.Fields(string(data))[2])
	if err != nil {
		panic(err)
	}
	return ed25519.NewKeyFromSeed(seed)
}

package keys_test

import (
	"testing"

	"polder.dev/polder/internal/keys"
)

// A request body of the size of a typical signed federation object.
var benchObj = []byte(`{"method":"PUT","uri":"/_matrix/federation/v1/send/1732180000000","origin":"origin.example","destination":"dest.example","content":{"pdus":[],"edus":[{"edu_type":"m.typing","content":{"room_id":"!r:origin.example","user_id":"@a:origin.example","typing":true}}]}}`)

func BenchmarkSignJSON(b *testing.B) {
	k := mustSpecKey(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := keys.SignJSON(benchObj, "origin.example", k); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyJSON(b *testing.B) {
	k := mustSpecKey(b)
	signed, err := keys.SignJSON(benchObj, "origin.example", k)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := keys.VerifyJSON(signed, "origin.example", k.KeyID(), k.Public()); err != nil {
			b.Fatal(err)
		}
	}
}

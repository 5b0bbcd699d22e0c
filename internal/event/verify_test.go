package event_test

import (
	"errors"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/keys"
)

// keyRing is a KeyFunc over a fixed set of keys.
type keyRing map[string]map[id.KeyID]event.VerifyKey

func (r keyRing) get(server string, keyID id.KeyID) (event.VerifyKey, error) {
	if k, ok := r[server][keyID]; ok {
		return k, nil
	}
	return event.VerifyKey{}, event.ErrKeyNotFound
}

var farFuture = time.UnixMilli(1 << 50)

// specKeys knows the spec key as origin.example's ed25519:1.
func specKeys(tb testing.TB) event.KeyFunc {
	k := mustSpecKey(tb)
	return keyRing{"origin.example": {k.KeyID(): {Key: k.Public(), ValidUntil: farFuture}}}.get
}

func mustKey(tb testing.TB, version string) *keys.SigningKey {
	tb.Helper()
	k, err := keys.Generate(version)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestVerifySignatures(t *testing.T) {
	spec := mustSpecKey(t)
	other := mustKey(t, "other")
	for _, v := range allVersions {
		n := versionNumber(v)
		pdu := mustNew(t, v, protoMessage(v))
		ts := time.UnixMilli(pdu.OriginServerTS())
		withOther, err := pdu.Sign("origin.example", other)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name    string
			pdu     *event.PDU
			ring    keyRing
			wantErr error // nil: valid
		}{
			{"signed by the sender's server", pdu, keyRing{"origin.example": {"ed25519:1": {spec.Public(), farFuture}}}, nil},
			{"unknown second key is skipped", withOther, keyRing{"origin.example": {"ed25519:1": {spec.Public(), farFuture}}}, nil},
			{"second known key must verify too", withOther, keyRing{"origin.example": {
				"ed25519:1": {spec.Public(), farFuture}, "ed25519:other": {spec.Public(), farFuture}}}, event.ErrSignature},
			{"no known key", pdu, keyRing{}, event.ErrSignature},
			{"wrong public key", pdu, keyRing{"origin.example": {"ed25519:1": {other.Public(), farFuture}}}, event.ErrSignature},
			{"key valid until origin_server_ts", pdu, keyRing{"origin.example": {"ed25519:1": {spec.Public(), ts}}}, nil},
		}
		expired := keyRing{"origin.example": {"ed25519:1": {spec.Public(), ts.Add(-time.Millisecond)}}}
		if n >= 5 {
			tests = append(tests, struct {
				name    string
				pdu     *event.PDU
				ring    keyRing
				wantErr error
			}{"v5: key expired before origin_server_ts is skipped", pdu, expired, event.ErrSignature})
		} else {
			tests = append(tests, struct {
				name    string
				pdu     *event.PDU
				ring    keyRing
				wantErr error
			}{"v1–4: key validity is not enforced", pdu, expired, nil})
		}
		for _, tt := range tests {
			t.Run("v"+string(v)+"/"+tt.name, func(t *testing.T) {
				err := tt.pdu.VerifySignatures(tt.ring.get)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
					t.Errorf("VerifySignatures() = %v, want %v", err, tt.wantErr)
				}
			})
		}
	}
}

func TestVerifySignaturesTampered(t *testing.T) {
	for _, v := range allVersions {
		pdu := mustNew(t, v, protoMessage(v))
		// Message content is not covered by the signature, only by the hash.
		body := mutate(t, pdu.JSON(), func(m map[string]any) { m["content"] = map[string]any{"body": "changed"} })
		p, err := event.Parse(v, body)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.VerifySignatures(specKeys(t)); err != nil {
			t.Errorf("v%s changed content: VerifySignatures() = %v, want nil", v, err)
		}
		if err := p.VerifyContentHash(); !errors.Is(err, event.ErrHashMismatch) {
			t.Errorf("v%s changed content: VerifyContentHash() = %v, want ErrHashMismatch", v, err)
		}
		// The type is covered by the signature.
		typ := mutate(t, pdu.JSON(), func(m map[string]any) { m["type"] = "m.room.other" })
		if p, err = event.Parse(v, typ); err != nil {
			t.Fatal(err)
		}
		if err := p.VerifySignatures(specKeys(t)); !errors.Is(err, event.ErrSignature) {
			t.Errorf("v%s changed type: VerifySignatures() = %v, want ErrSignature", v, err)
		}
	}
}

func TestVerifySignaturesKeyFuncError(t *testing.T) {
	pdu := mustNew(t, "10", protoMessage("10"))
	boom := errors.New("fetch failed")
	err := pdu.VerifySignatures(func(string, id.KeyID) (event.VerifyKey, error) { return event.VerifyKey{}, boom })
	if !errors.Is(err, boom) || errors.Is(err, event.ErrSignature) {
		t.Errorf("VerifySignatures(failing KeyFunc) = %v, want the KeyFunc's error", err)
	}
}

// TestSigningServers checks which servers must sign (server-server API,
// "Validating hashes and signatures on received events").
func TestSigningServers(t *testing.T) {
	resident := mustKey(t, "res")
	ring := keyRing{
		"origin.example":   {"ed25519:1": {mustSpecKey(t).Public(), farFuture}},
		"resident.example": {resident.KeyID(): {resident.Public(), farFuture}},
	}
	for _, v := range allVersions {
		n := versionNumber(v)
		t.Run("v"+string(v)+"/third party invite needs no signature from the sender's server", func(t *testing.T) {
			p := protoMessage(v)
			p.Type, p.StateKey, p.Sender = event.TypeMember, ptr("@bob:origin.example"), "@alice:resident.example"
			p.Content = []byte(`{"membership":"invite","third_party_invite":{"display_name":"b","signed":{}}}`)
			pdu := mustNew(t, v, p) // signed by origin.example only
			wantServers := 0
			if n <= 2 {
				wantServers = 1 // the event ID's server, origin.example
			}
			if got := pdu.SigningServers(); len(got) != wantServers {
				t.Errorf("SigningServers() = %v, want %d servers", got, wantServers)
			}
			if err := pdu.VerifySignatures(ring.get); err != nil {
				t.Errorf("VerifySignatures() = %v", err)
			}
		})
		t.Run("v"+string(v)+"/plain invite needs the sender's server", func(t *testing.T) {
			p := protoMessage(v)
			p.Type, p.StateKey, p.Sender = event.TypeMember, ptr("@bob:origin.example"), "@alice:resident.example"
			p.Content = []byte(`{"membership":"invite"}`)
			pdu := mustNew(t, v, p)
			if err := pdu.VerifySignatures(ring.get); !errors.Is(err, event.ErrSignature) {
				t.Errorf("VerifySignatures() = %v, want ErrSignature", err)
			}
		})
		t.Run("v"+string(v)+"/restricted join needs the authorising server from v8", func(t *testing.T) {
			p := protoMessage(v)
			p.Type, p.StateKey = event.TypeMember, ptr("@alice:origin.example")
			p.Content = []byte(`{"membership":"join","join_authorised_via_users_server":"@admin:resident.example"}`)
			pdu := mustNew(t, v, p)
			err := pdu.VerifySignatures(ring.get)
			if n >= 8 && !errors.Is(err, event.ErrSignature) {
				t.Errorf("VerifySignatures(without resident signature) = %v, want ErrSignature", err)
			}
			if n < 8 && err != nil {
				t.Errorf("VerifySignatures(v%s) = %v, want nil", v, err)
			}
			signed, err := pdu.Sign("resident.example", resident)
			if err != nil {
				t.Fatal(err)
			}
			if signed.EventID() != pdu.EventID() {
				t.Errorf("Sign changed the event ID: %s → %s", pdu.EventID(), signed.EventID())
			}
			if err := signed.VerifySignatures(ring.get); err != nil {
				t.Errorf("VerifySignatures(with resident signature) = %v", err)
			}
		})
		if n <= 2 {
			t.Run("v"+string(v)+"/event ID server must sign too", func(t *testing.T) {
				p := protoMessage(v)
				p.Sender = "@alice:resident.example"
				pdu := mustNew(t, v, p) // event ID on origin.example, signed by it
				if err := pdu.VerifySignatures(ring.get); !errors.Is(err, event.ErrSignature) {
					t.Errorf("VerifySignatures(without sender signature) = %v, want ErrSignature", err)
				}
				signed, _ := pdu.Sign("resident.example", resident)
				if err := signed.VerifySignatures(ring.get); err != nil {
					t.Errorf("VerifySignatures(both) = %v", err)
				}
			})
		}
	}
}

func TestSignSizeLimit(t *testing.T) {
	p := protoMessage("10")
	// Leave room for less than one more signature.
	body := make([]byte, event.MaxSize-900)
	for i := range body {
		body[i] = 'x'
	}
	p.Content = []byte(`{"body":"` + string(body) + `"}`)
	pdu := mustNew(t, "10", p)
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		pdu, err = pdu.Sign("origin.example", mustKey(t, "k"+string(rune('a'+i))))
	}
	if !errors.Is(err, event.ErrInvalid) {
		t.Errorf("Sign past MaxSize error = %v, want ErrInvalid", err)
	}
}

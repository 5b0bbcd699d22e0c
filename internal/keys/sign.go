package keys

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
)

var (
	// ErrNotObject is returned when the JSON to sign or verify is not an
	// object, or its signatures member is malformed.
	ErrNotObject = errors.New("not a JSON object")
	// ErrNoSignature is returned by VerifyJSON when the object holds no
	// signature by the server with the key.
	ErrNoSignature = errors.New("no signature")
	// ErrBadSignature is returned by VerifyJSON when the signature does not
	// decode or does not verify.
	ErrBadSignature = errors.New("bad signature")
)

// SignJSON signs the JSON object obj as serverName with key (spec appendix
// "Signing Details"): it removes signatures and unsigned, signs the canonical
// JSON of the rest, and returns obj in canonical form with the signature
// added to its existing signatures and its unsigned kept.
//
// It returns a *cjson.SyntaxError if obj is not strict canonical JSON
// material, or ErrNotObject.
func SignJSON(obj []byte, serverName string, key *SigningKey) ([]byte, error) {
	canon, err := cjson.Canonical(obj)
	if err != nil {
		return nil, err
	}
	if canon[0] != '{' {
		return nil, ErrNotObject
	}
	sig := key.Sign(cjson.Without(make([]byte, 0, len(canon)), canon, "signatures", "unsigned"))
	return AddSignature(canon, serverName, key.KeyID(), sig)
}

// AddSignature returns the canonical JSON object obj with sig set as the
// signature of serverName with keyID in its signatures member, creating or
// extending it.
//
// It returns ErrNotObject if obj is not an object or its signatures member
// or the entry for serverName is not an object.
func AddSignature(obj []byte, serverName string, keyID id.KeyID, sig []byte) ([]byte, error) {
	if len(obj) == 0 || obj[0] != '{' {
		return nil, ErrNotObject
	}
	sigs, ok := cjson.Get(obj, "signatures")
	if !ok {
		sigs = []byte("{}")
	} else if sigs[0] != '{' {
		return nil, fmt.Errorf("signatures: %w", ErrNotObject)
	}
	var encName []byte
	encName = cjson.AppendString(encName, serverName)
	server, ok := cjson.Get(sigs, string(encName[1:len(encName)-1]))
	if !ok {
		server = []byte("{}")
	} else if server[0] != '{' {
		return nil, fmt.Errorf("signatures of %s: %w", serverName, ErrNotObject)
	}
	b64 := make([]byte, 0, base64.RawStdEncoding.EncodedLen(len(sig))+2)
	b64 = append(b64, '"')
	b64 = base64.RawStdEncoding.AppendEncode(b64, sig)
	b64 = append(b64, '"')
	server = cjson.Set(nil, server, string(keyID), b64)
	sigs = cjson.Set(nil, sigs, serverName, server)
	return cjson.Set(make([]byte, 0, len(obj)+len(b64)+64), obj, "signatures", sigs), nil
}

// Signature returns the base64 signature of serverName with keyID in the
// canonical JSON object obj, and whether there is one.
func Signature(obj []byte, serverName string, keyID id.KeyID) (string, bool) {
	sigs, ok := cjson.Get(obj, "signatures")
	if !ok {
		return "", false
	}
	enc := cjson.AppendString(nil, serverName)
	server, ok := cjson.Get(sigs, string(enc[1:len(enc)-1]))
	if !ok {
		return "", false
	}
	encID := cjson.AppendString(nil, string(keyID))
	v, ok := cjson.Get(server, string(encID[1:len(encID)-1]))
	if !ok {
		return "", false
	}
	s, err := cjson.Unquote(v)
	return s, err == nil
}

// VerifyJSON checks that the JSON object obj carries a valid signature by
// serverName with the key keyID whose public half is pub (spec appendix
// "Checking for a Signature").
//
// It returns ErrNoSignature if there is no such signature, ErrBadSignature
// if it does not verify, and a *cjson.SyntaxError or ErrNotObject for
// malformed input.
func VerifyJSON(obj []byte, serverName string, keyID id.KeyID, pub ed25519.PublicKey) error {
	canon, err := cjson.Canonical(obj)
	if err != nil {
		return err
	}
	if canon[0] != '{' {
		return ErrNotObject
	}
	return VerifyCanonical(canon, serverName, keyID, pub)
}

// VerifyCanonical is VerifyJSON for an object already in canonical form
// (for example in the legacy mode of room versions 1–5).
func VerifyCanonical(canon []byte, serverName string, keyID id.KeyID, pub ed25519.PublicKey) error {
	sig, ok := Signature(canon, serverName, keyID)
	if !ok {
		return fmt.Errorf("%w from %s with %s", ErrNoSignature, serverName, keyID)
	}
	return VerifySignature(cjson.Without(make([]byte, 0, len(canon)), canon, "signatures", "unsigned"), sig, pub)
}

// VerifySignature checks the base64 ed25519 signature sig of msg by pub.
// It returns ErrBadSignature if it does not.
func VerifySignature(msg []byte, sig string, pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key is %d bytes", ErrBadSignature, len(pub))
	}
	raw, err := DecodeBase64(sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature does not decode", ErrBadSignature)
	}
	if !ed25519.Verify(pub, msg, raw) {
		return fmt.Errorf("%w: ed25519 verification failed", ErrBadSignature)
	}
	return nil
}

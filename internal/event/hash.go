package event

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/keys"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= 2*MaxSize {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

// referenceHash computes the reference hash of the canonical event core
// (server-server API, "Calculating the reference hash for an event"):
// redact, remove signatures and unsigned, SHA-256 of the canonical JSON.
func referenceHash(r *rules, typ string, core []byte) [32]byte {
	buf := getBuf()
	*buf = appendRedacted((*buf)[:0], r, typ, core, false)
	sum := sha256.Sum256(*buf)
	putBuf(buf)
	return sum
}

// contentHash computes the content hash of the canonical event core
// (server-server API, "Calculating the content hash for an event"): remove
// unsigned, signatures and hashes, SHA-256 of the canonical JSON.
func contentHash(core []byte) [32]byte {
	buf := getBuf()
	*buf = cjson.Without((*buf)[:0], core, "hashes", "signatures", "unsigned")
	sum := sha256.Sum256(*buf)
	putBuf(buf)
	return sum
}

// hashID writes a reference hash as an ID of the room version's format with
// the given sigil: '$' for event IDs, '!' for v12 room IDs.
func hashID(sigil byte, r *rules, hash [32]byte) id.EventID {
	var b [44]byte
	b[0] = sigil
	if r.ids == idBase64 {
		base64.RawStdEncoding.Encode(b[1:], hash[:])
	} else {
		base64.RawURLEncoding.Encode(b[1:], hash[:])
	}
	return id.EventID(b[:])
}

// ContentHash computes the event's content hash.
func (p *PDU) ContentHash() [32]byte { return contentHash(p.raw) }

// VerifyContentHash checks the event's hashes.sha256 against its content
// hash (server-server API, "Validating hashes and signatures on received
// events"). If it fails the event must be replaced by its redacted form
// (Redacted) before it is processed further. It returns an error wrapping
// ErrInvalid if hashes.sha256 is missing, ErrHashMismatch if it differs.
func (p *PDU) VerifyContentHash() error {
	hashes, _ := cjson.Get(p.raw, "hashes")
	v, ok := cjson.Get(hashes, "sha256")
	if !ok {
		return invalidf("hashes has no sha256")
	}
	s, err := cjson.Unquote(v)
	if err != nil {
		return invalidf("hashes.sha256 is not a string")
	}
	claimed, err := keys.DecodeBase64(s)
	if err != nil || len(claimed) != sha256.Size {
		return invalidf("hashes.sha256 is not base64 of 32 bytes")
	}
	sum := p.ContentHash()
	if subtle.ConstantTimeCompare(claimed, sum[:]) != 1 {
		return ErrHashMismatch
	}
	return nil
}

package event

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/keys"
)

var (
	// ErrKeyNotFound is returned by a KeyFunc that does not know a key. The
	// signature made with it is skipped.
	ErrKeyNotFound = errors.New("signing key not found")
	// ErrSignature is wrapped by VerifySignatures errors about missing or
	// bad signatures. Such events are dropped (server-server API, "Checks
	// performed on receipt of a PDU", step 2).
	ErrSignature = errors.New("event signature check failed")
)

// VerifyKey is a server's public signing key as a KeyFunc returns it.
type VerifyKey struct {
	Key ed25519.PublicKey
	// ValidUntil is the key's valid_until_ts (or expired_ts for an old
	// key), already capped by the caller as the spec asks (room version 5,
	// "Signing key validity period"). From room version 5 a key is only
	// used for events whose origin_server_ts is not after it; the zero
	// time is never valid there.
	ValidUntil time.Time
}

// KeyFunc returns the public key serverName published as keyID. It returns
// an error wrapping ErrKeyNotFound if the key is unknown; any other error
// stops the verification and is returned as is (a fetch may be retried).
// Verification itself does no I/O: keys should be fetched beforehand.
type KeyFunc func(serverName string, keyID id.KeyID) (VerifyKey, error)

// signingBytes is what a server signs for an event: its redacted form
// without signatures or unsigned, as canonical JSON (server-server API,
// "Adding hashes and signatures to outgoing events"). It is the same input
// as the reference hash's.
func (p *PDU) signingBytes(dst []byte) []byte {
	return appendRedacted(dst, p.rules, p.typ, p.raw, false)
}

// Sign returns a copy of the event with a signature by serverName with key
// added to its signatures. It returns an error wrapping ErrInvalid if the
// signed event would exceed MaxSize.
func (p *PDU) Sign(serverName string, key *keys.SigningKey) (*PDU, error) {
	buf := getBuf()
	*buf = p.signingBytes((*buf)[:0])
	sig := key.Sign(*buf)
	putBuf(buf)
	raw, err := keys.AddSignature(p.raw, serverName, key.KeyID(), sig)
	if err != nil {
		return nil, invalidf("add signature: %w", err)
	}
	if len(raw) > MaxSize {
		return nil, invalidf("signed event is %d bytes, more than %d", len(raw), MaxSize)
	}
	q := *p
	q.raw = raw
	q.content, _ = cjson.Get(raw, "content")
	q.signatures, _ = cjson.Get(raw, "signatures")
	return &q, nil
}

// SigningServers returns the servers whose signatures the event needs
// (server-server API, "Validating hashes and signatures on received
// events", and Synapse's reading of it):
//
//   - the sender's server, unless the event is an invite through a third
//     party invite (m.room.member, membership invite, with
//     content.third_party_invite), which another server may send;
//   - in room versions 1 and 2, the server of the event ID if it differs;
//   - from room version 8, for a join with
//     content.join_authorised_via_users_server, that user's server (auth rule
//     "If the event is not validly signed by the homeserver of the user ID
//     denoted by the key, reject"; eventauth cannot see signatures, so it
//     is checked here).
func (p *PDU) SigningServers() []string {
	servers := make([]string, 0, 2)
	add := func(s string) {
		for _, have := range servers {
			if have == s {
				return
			}
		}
		servers = append(servers, s)
	}
	membership := ""
	if p.typ == TypeMember {
		if v, ok := cjson.Get(p.content, "membership"); ok {
			membership, _ = cjson.Unquote(v)
		}
	}
	_, thirdParty := cjson.Get(p.content, "third_party_invite")
	if !(membership == "invite" && thirdParty) {
		add(domainOf(string(p.sender)))
	}
	if p.rules.ids == idServer {
		add(domainOf(string(p.eventID)))
	}
	if p.rules.restrictedJoins && membership == "join" {
		if v, ok := cjson.Get(p.content, "join_authorised_via_users_server"); ok {
			if u, err := cjson.Unquote(v); err == nil && checkUserID(u) == nil {
				add(domainOf(u))
			}
		}
	}
	return servers
}

// domainOf returns what follows the first colon of an ID.
func domainOf(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[i+1:]
	}
	return ""
}

// VerifySignatures checks the event's signatures (server-server API,
// "Validating hashes and signatures on received events"; appendix
// "Checking for a Signature"). For each server in SigningServers, every
// ed25519 signature made with a key that getKey knows (and, from room
// version 5, that was valid at origin_server_ts) must verify, and at least
// one must. Signatures with unknown keys or algorithms are skipped.
//
// The signed bytes are those of the redacted event, so this succeeds on a
// redacted copy too. It returns an error wrapping ErrSignature, or the error
// of getKey.
func (p *PDU) VerifySignatures(getKey KeyFunc) error {
	buf := getBuf()
	defer putBuf(buf)
	*buf = p.signingBytes((*buf)[:0])
	msg := *buf
	ts := time.UnixMilli(p.ts)
	for _, server := range p.SigningServers() {
		enc := cjson.AppendString(nil, server)
		sigs, ok := cjson.Get(p.signatures, string(enc[1:len(enc)-1]))
		if !ok {
			return fmt.Errorf("%w: no signatures from %s", ErrSignature, server)
		}
		verified := 0
		for k, v := range cjson.Members(sigs) {
			keyID, err := cjson.Unquote(append(append([]byte{'"'}, k...), '"'))
			if err != nil || !strings.HasPrefix(keyID, keys.Algorithm+":") {
				continue
			}
			vk, err := getKey(server, id.KeyID(keyID))
			if errors.Is(err, ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("key %s of %s: %w", keyID, server, err)
			}
			if p.rules.enforceKeyValidity && vk.ValidUntil.Before(ts) {
				continue
			}
			sig, err := cjson.Unquote(v)
			if err != nil {
				return fmt.Errorf("%w: signature %s of %s is not a string", ErrSignature, keyID, server)
			}
			if err := keys.VerifySignature(msg, sig, vk.Key); err != nil {
				return fmt.Errorf("%w: %s of %s: %w", ErrSignature, keyID, server, err)
			}
			verified++
		}
		if verified == 0 {
			return fmt.Errorf("%w: no signature from %s with a known valid key", ErrSignature, server)
		}
	}
	return nil
}

// HashAndSign adds the content hash and a signature by serverName with key
// to the event JSON raw, as the server-server API's "Adding hashes and
// signatures to outgoing events" does: hashes is replaced by the content
// hash, the event is redacted by the room version's algorithm and signed,
// and the signature is added to the existing signatures. unsigned is kept.
// The result is canonical JSON; it is not checked against the event format
// (Parse does that). It is for events made elsewhere, such as the template
// of make_join; New builds local events.
//
// Errors wrap ErrInvalid (not a JSON object) or ErrUnsupportedVersion.
func HashAndSign(version id.RoomVersion, raw []byte, serverName string, key *keys.SigningKey) ([]byte, error) {
	r, err := rulesFor(version)
	if err != nil {
		return nil, err
	}
	canon, err := cjson.Append(make([]byte, 0, len(raw)), raw, r.jsonMode())
	if err != nil {
		return nil, invalidf("%w", err)
	}
	if canon[0] != '{' {
		return nil, invalidf("not a JSON object")
	}
	unsigned, hasUnsigned := cjson.Get(canon, "unsigned")
	core := cjson.Without(make([]byte, 0, len(canon)+200), canon, "unsigned")
	sum := contentHash(core)
	hashes := append([]byte(`{"sha256":"`), base64.RawStdEncoding.EncodeToString(sum[:])...)
	hashes = append(hashes, `"}`...)
	core = cjson.Set(nil, core, "hashes", hashes)

	var typ string
	if v, ok := cjson.Get(core, "type"); ok {
		typ, _ = cjson.Unquote(v)
	}
	buf := getBuf()
	*buf = appendRedacted((*buf)[:0], r, typ, core, false)
	sig := key.Sign(*buf)
	putBuf(buf)
	core, err = keys.AddSignature(core, serverName, key.KeyID(), sig)
	if err != nil {
		return nil, invalidf("add signature: %w", err)
	}
	if hasUnsigned {
		core = cjson.Set(nil, core, "unsigned", unsigned)
	}
	return core, nil
}

package eventauth

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json/jsontext"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
)

type tpiContent struct {
	PublicKey  jsontext.Value `json:"public_key"`
	PublicKeys jsontext.Value `json:"public_keys"`
}

// checkThirdPartyInvite applies the invite sub-rule for content with a
// third_party_invite (v1 5.3.1, v6 4.3.1, v8 4.4.1, v12 5.4.1).
func (c *checker) checkThirdPartyInvite(target id.UserID, mc memberContent) error {
	if m := c.membership(target); m == membershipBan {
		return c.reject(RuleInvite3PIDBanned, "")
	}
	tpi, _ := object(mc.ThirdPartyInvite)
	signedRaw := tpi["signed"]
	signed, ok := object(signedRaw)
	if !ok {
		return c.reject(RuleInvite3PIDNoSigned, "")
	}
	mxid, ok1 := str(signed["mxid"])
	token, ok2 := str(signed["token"])
	if !ok1 || !ok2 {
		return c.reject(RuleInvite3PIDSignedFields, "")
	}
	if mxid != string(target) {
		return c.reject(RuleInvite3PIDMXID, "mxid %s, state_key %s", mxid, target)
	}
	invite := c.auth(typeThirdPartyInvite, token)
	if invite == nil {
		return c.reject(RuleInvite3PIDNoEvent, "token %q", token)
	}
	if invite.Sender() != c.sender {
		return c.reject(RuleInvite3PIDSender, "sender %s, m.room.third_party_invite sender %s", c.sender, invite.Sender())
	}
	if verifySigned(c.n, signedRaw, signed, invite.Content()) {
		return nil
	}
	return c.reject(RuleInvite3PIDSignature, "")
}

// verifySigned reports whether any signature in signed verifies with any
// public key of the m.room.third_party_invite content: "public_key", or
// "public_key" of an entry of "public_keys". The signed JSON is signed as
// any JSON object (appendix "Signing Details"): its canonical form without
// "signatures" and "unsigned" (canonical JSON of room version n: legacy up
// to v5). Signatures of algorithms other than ed25519 are ignored
// ("Checking for a Signature", step 2).
func verifySigned(n int, raw jsontext.Value, signed map[string]jsontext.Value, inviteContent []byte) bool {
	keys := publicKeys(inviteContent)
	if len(keys) == 0 {
		return false
	}
	servers, ok := object(signed["signatures"])
	if !ok {
		return false
	}
	mode := cjson.Strict
	if n <= 5 {
		mode = cjson.Legacy
	}
	canonical, err := cjson.Append(nil, raw, mode)
	if err != nil {
		return false
	}
	canonical = cjson.Without(nil, canonical, "signatures", "unsigned")
	for _, perServer := range servers {
		sigs, ok := object(perServer)
		if !ok {
			continue
		}
		for keyID, v := range sigs {
			if !strings.HasPrefix(keyID, "ed25519:") {
				continue
			}
			s, ok := str(v)
			if !ok {
				continue
			}
			sig, ok := decodeBase64(s)
			if !ok || len(sig) != ed25519.SignatureSize {
				continue
			}
			for _, k := range keys {
				if ed25519.Verify(k, canonical, sig) {
					return true
				}
			}
		}
	}
	return false
}

func publicKeys(content []byte) []ed25519.PublicKey {
	c := decode[tpiContent](content)
	var keys []ed25519.PublicKey
	add := func(v jsontext.Value) {
		s, ok := str(v)
		if !ok {
			return
		}
		if k, ok := decodeBase64(s); ok && len(k) == ed25519.PublicKeySize {
			keys = append(keys, ed25519.PublicKey(k))
		}
	}
	add(c.PublicKey)
	list, _ := array(c.PublicKeys)
	for _, item := range list {
		if m, ok := object(item); ok {
			add(m["public_key"])
		}
	}
	return keys
}

// decodeBase64 decodes unpadded base64 in the standard or URL-safe alphabet
// (m.room.third_party_invite schema: public_key), tolerating padding.
func decodeBase64(s string) ([]byte, bool) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, true
	}
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, true
	}
	return nil, false
}

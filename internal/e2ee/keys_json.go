package e2ee

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// The JSON of keys: the server reads the few members it must check and
// otherwise keeps objects as uploaded (canonical), adding stored
// signatures and unsigned.device_display_name when it hands them out.

// deviceKeysHead is what the server reads of a device_keys object.
type deviceKeysHead struct {
	UserID   id.UserID         `json:"user_id"`
	DeviceID id.DeviceID       `json:"device_id"`
	Keys     map[string]string `json:"keys"`
}

// crossSigningHead is what the server reads of a cross-signing key.
type crossSigningHead struct {
	UserID id.UserID         `json:"user_id"`
	Usage  []string          `json:"usage"`
	Keys   map[string]string `json:"keys"`
}

// canonicalObject returns raw as canonical JSON, which must be an object.
func canonicalObject(raw []byte, what string) ([]byte, error) {
	c, err := cjson.Canonical(raw)
	if err != nil {
		return nil, mxerr.BadJSON("%s: %v", what, err)
	}
	if len(c) == 0 || c[0] != '{' {
		return nil, mxerr.BadJSON("%s must be an object", what)
	}
	return c, nil
}

// signedPart is the canonical object without signatures and unsigned: what
// a signature covers, and what two copies of one key must share.
func signedPart(canon []byte) []byte {
	return cjson.Without(make([]byte, 0, len(canon)), canon, "signatures", "unsigned")
}

// sameKey reports whether two canonical key objects are the same key
// (their signatures and unsigned aside).
func sameKey(a, b []byte) bool { return bytes.Equal(signedPart(a), signedPart(b)) }

// ed25519Key decodes an unpadded base64 ed25519 public key.
func ed25519Key(b64 string) (ed25519.PublicKey, error) {
	raw, err := keys.DecodeBase64(b64)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("not an ed25519 public key")
	}
	return ed25519.PublicKey(raw), nil
}

// onlyKey returns the name (after "ed25519:") and public key of the one
// key of a cross-signing key.
func (h crossSigningHead) onlyKey() (string, ed25519.PublicKey, error) {
	if len(h.Keys) != 1 {
		return "", nil, fmt.Errorf("a cross-signing key must have exactly one key, not %d", len(h.Keys))
	}
	for k, v := range h.Keys {
		name, ok := strings.CutPrefix(k, "ed25519:")
		if !ok || name == "" {
			return "", nil, fmt.Errorf("key %q is not an ed25519 key", k)
		}
		pub, err := ed25519Key(v)
		if err != nil {
			return "", nil, fmt.Errorf("key %q: %v", k, err)
		}
		return name, pub, nil
	}
	panic("unreachable")
}

// withExtras returns the key object canon with sigs added to its
// signatures and, when name is not "", unsigned.device_display_name set.
func withExtras(canon []byte, sigs []store.Signature, name string) (json.RawMessage, error) {
	if len(sigs) == 0 && name == "" {
		return json.RawMessage(canon), nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(canon, &obj); err != nil {
		return nil, fmt.Errorf("stored key: %w", err)
	}
	if obj == nil {
		return nil, errors.New("stored key: not an object")
	}
	if len(sigs) > 0 {
		all := map[string]map[string]json.RawMessage{}
		if s, ok := obj["signatures"]; ok {
			if err := json.Unmarshal(s, &all); err != nil {
				all = map[string]map[string]json.RawMessage{}
			}
		}
		for _, s := range sigs {
			m := all[string(s.SignerUser)]
			if m == nil {
				m = map[string]json.RawMessage{}
				all[string(s.SignerUser)] = m
			}
			b, _ := json.Marshal(s.Signature)
			m[s.SignerKey] = b
		}
		b, err := json.Marshal(all)
		if err != nil {
			return nil, err
		}
		obj["signatures"] = b
	}
	if name != "" {
		unsigned := map[string]json.RawMessage{}
		if u, ok := obj["unsigned"]; ok {
			if err := json.Unmarshal(u, &unsigned); err != nil {
				unsigned = map[string]json.RawMessage{}
			}
		}
		b, _ := json.Marshal(name)
		unsigned["device_display_name"] = b
		b, err := json.Marshal(unsigned)
		if err != nil {
			return nil, err
		}
		obj["unsigned"] = b
	}
	return json.Marshal(obj)
}

// failure is an entry of a failures map.
func failure(code, format string, a ...any) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"errcode": code, "error": fmt.Sprintf(format, a...)})
	return b
}

// isObject reports whether raw is a JSON object.
func isObject(raw json.RawMessage) bool {
	b := bytes.TrimLeft(raw, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

// present reports whether raw holds a JSON value other than null.
func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

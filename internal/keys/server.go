package keys

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
)

// OldKey is a key the server used to sign with and no longer does. It stays
// published in old_verify_keys so that old events can still be verified.
type OldKey struct {
	KeyID   id.KeyID
	Public  ed25519.PublicKey
	Expired time.Time // when the server stopped using it
}

// ServerKeysResponse returns the signed body of GET /_matrix/key/v2/server
// (server-server API, "Publishing Keys"): server_name, verify_keys holding
// current, old_verify_keys holding old (an empty object if none),
// valid_until_ts, and signatures by current. The body is canonical JSON.
//
// validUntil should be a short time ahead (Synapse publishes one day, and
// readers cap it at seven days, room version 5 "Signing key validity
// period").
func ServerKeysResponse(serverName string, current *SigningKey, old []OldKey, validUntil time.Time) ([]byte, error) {
	if current == nil {
		return nil, errors.New("server keys: no current key")
	}
	type verifyKey struct {
		Key string `json:"key"`
	}
	type oldVerifyKey struct {
		ExpiredTS int64  `json:"expired_ts"`
		Key       string `json:"key"`
	}
	oldKeys := make(map[id.KeyID]oldVerifyKey, len(old))
	for _, k := range old {
		if len(k.Public) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("server keys: old key %s is %d bytes", k.KeyID, len(k.Public))
		}
		if k.KeyID == current.KeyID() {
			return nil, fmt.Errorf("server keys: old key %s is also the current key", k.KeyID)
		}
		oldKeys[k.KeyID] = oldVerifyKey{
			ExpiredTS: k.Expired.UnixMilli(),
			Key:       base64.RawStdEncoding.EncodeToString(k.Public),
		}
	}
	body, err := cjson.Marshal(struct {
		OldVerifyKeys map[id.KeyID]oldVerifyKey `json:"old_verify_keys"`
		ServerName    string                    `json:"server_name"`
		ValidUntilTS  int64                     `json:"valid_until_ts"`
		VerifyKeys    map[id.KeyID]verifyKey    `json:"verify_keys"`
	}{
		OldVerifyKeys: oldKeys,
		ServerName:    serverName,
		ValidUntilTS:  validUntil.UnixMilli(),
		VerifyKeys:    map[id.KeyID]verifyKey{current.KeyID(): {Key: current.PublicBase64()}},
	})
	if err != nil {
		return nil, fmt.Errorf("server keys: %w", err)
	}
	return SignJSON(body, serverName, current)
}

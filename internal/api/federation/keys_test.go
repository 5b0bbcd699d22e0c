package federation_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/store/storetest"
)

// serverKeys is the body of GET /_matrix/key/v2/server (server-server API,
// "Publishing Keys").
type serverKeys struct {
	ServerName    string                            `json:"server_name"`
	ValidUntilTS  int64                             `json:"valid_until_ts"`
	VerifyKeys    map[id.KeyID]struct{ Key string } `json:"verify_keys"`
	OldVerifyKeys map[id.KeyID]json.RawMessage      `json:"old_verify_keys"`
	Signatures    map[string]map[id.KeyID]string    `json:"signatures"`
}

// fetchKeys gets path, checks the body is signed by the key it publishes
// (spec appendix "Checking for a Signature"), and returns it.
func fetchKeys(t *testing.T, hs *hstest.Server, path string) (serverKeys, id.KeyID, ed25519.PublicKey) {
	t.Helper()
	r := hs.Anon().Do(t, "GET", path, nil)
	hstest.MustOK(t, r)
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q, want application/json", path, ct)
	}
	// Polder sends canonical JSON, so that what it signed is what is sent.
	if canon, err := cjson.Canonical(r.Body); err != nil || !bytes.Equal(canon, r.Body) {
		t.Errorf("GET %s: body is not canonical JSON (err %v):\n got %s\nwant %s", path, err, r.Body, canon)
	}
	k := hstest.Decode[serverKeys](t, r)
	if k.ServerName != hs.ServerName() {
		t.Errorf("server_name = %q, want %q", k.ServerName, hs.ServerName())
	}
	now := time.Now()
	if until := time.UnixMilli(k.ValidUntilTS); !until.After(now) || until.After(now.Add(7*24*time.Hour)) {
		t.Errorf("valid_until_ts = %v, want in the next 7 days (room v5: readers cap it at 7 days)", until)
	}
	if k.OldVerifyKeys == nil {
		t.Errorf("old_verify_keys missing; want an object")
	}
	if len(k.VerifyKeys) != 1 {
		t.Fatalf("verify_keys = %v, want exactly one key", k.VerifyKeys)
	}
	var keyID id.KeyID
	var pub ed25519.PublicKey
	for kid, v := range k.VerifyKeys {
		keyID = kid
		if !strings.HasPrefix(string(kid), "ed25519:") {
			t.Errorf("key ID %q, want ed25519:<version>", kid)
		}
		raw, err := keys.DecodeBase64(v.Key)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			t.Fatalf("verify_keys[%s].key = %q: not a base64 ed25519 key (%v)", kid, v.Key, err)
		}
		pub = raw
	}
	if err := keys.VerifyJSON(r.Body, hs.ServerName(), keyID, pub); err != nil {
		t.Errorf("VerifyJSON(GET %s body, %s, %s): %v", path, hs.ServerName(), keyID, err)
	}
	if len(k.Signatures) != 1 || len(k.Signatures[hs.ServerName()]) != 1 {
		t.Errorf("signatures = %v, want one, by %s", k.Signatures, hs.ServerName())
	}
	// A changed body no longer verifies.
	tampered := bytes.Replace(r.Body, []byte(`"valid_until_ts":`), []byte(`"valid_until_ts":9`), 1)
	if err := keys.VerifyJSON(tampered, hs.ServerName(), keyID, pub); err == nil {
		t.Errorf("VerifyJSON accepted a tampered body")
	}
	return k, keyID, pub
}

// GET /_matrix/key/v2/server: the key on disk, correctly signed, and the same
// after a restart.
func TestServerKeys(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		_, keyID, pub := fetchKeys(t, hs, "/_matrix/key/v2/server")

		t.Run("the published key is the one in the data dir", func(t *testing.T) {
			k, err := keys.Load(filepath.Join(hs.Config.DataDir, "signing.key"))
			if err != nil {
				t.Fatalf("keys.Load: %v", err)
			}
			if k.KeyID() != keyID || !k.Public().Equal(pub) {
				t.Errorf("published %s %x; the key file holds %s %x", keyID, pub, k.KeyID(), k.Public())
			}
		})
		t.Run("deprecated /server/{keyId} gives the same keys", func(t *testing.T) {
			_, kid, p := fetchKeys(t, hs, "/_matrix/key/v2/server/"+string(keyID))
			if kid != keyID || !p.Equal(pub) {
				t.Errorf("GET /_matrix/key/v2/server/%s published %s, want %s", keyID, kid, keyID)
			}
		})
		t.Run("same key after a restart", func(t *testing.T) {
			hs.Restart(t)
			_, kid, p := fetchKeys(t, hs, "/_matrix/key/v2/server")
			if kid != keyID || !p.Equal(pub) {
				t.Errorf("after restart: key %s %x, want %s %x", kid, p, keyID, pub)
			}
		})
	})
}

// Two servers have different keys.
func TestServerKeysDiffer(t *testing.T) {
	t.Parallel()
	sqlite := storetest.Engines(t)[0]
	hs1 := hstest.Start(t, sqlite, hstest.Options{})
	hs2 := hstest.Start(t, sqlite, hstest.Options{ServerName: "hs2.polder.test"})
	_, _, p1 := fetchKeys(t, hs1, "/_matrix/key/v2/server")
	_, _, p2 := fetchKeys(t, hs2, "/_matrix/key/v2/server")
	if p1.Equal(p2) {
		t.Errorf("two servers publish the same key %x", p1)
	}
}

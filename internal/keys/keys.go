// Package keys owns the server's ed25519 signing keys and the signing of JSON
// (spec appendix "Signing JSON"): key generation, the key file, SignJSON and
// VerifyJSON, and the signed body of GET /_matrix/key/v2/server.
//
// It also holds the cache of other servers' verify keys (cache.go), which
// does no network I/O either: it receives its fetch and store functions
// from its caller. It imports cjson, mautrix-go's id package and
// x/sync/singleflight only, and may be imported by event, store,
// federation, api and server.
package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"maunium.net/go/mautrix/id"
)

// Algorithm is the only signing algorithm Matrix defines.
const Algorithm = "ed25519"

// SigningKey is an ed25519 signing key and its version. Its zero value is not
// usable; make one with Generate, FromSeed or Parse.
type SigningKey struct {
	version string
	priv    ed25519.PrivateKey
}

// Generate returns a new random signing key. An empty version picks a random
// one of the form "a_XXXX", as Synapse does.
func Generate(version string) (*SigningKey, error) {
	if version == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("generate key version: %w", err)
		}
		// Raw URL base64 may contain '-', which key versions must not.
		version = "a_" + strings.ReplaceAll(base64.RawURLEncoding.EncodeToString(b[:]), "-", "_")
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	return FromSeed(version, seed)
}

// FromSeed returns the signing key with the given version and 32-byte seed.
func FromSeed(version string, seed []byte) (*SigningKey, error) {
	if err := ValidateVersion(version); err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	return &SigningKey{version: version, priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// ValidateVersion checks a key version against the spec's [a-zA-Z0-9_]
// (server-server API, "Publishing Keys", verify_keys).
func ValidateVersion(version string) error {
	if version == "" {
		return errors.New("empty key version")
	}
	for _, c := range []byte(version) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("key version %q has characters outside [a-zA-Z0-9_]", version)
		}
	}
	return nil
}

// Version is the key's version, e.g. "a_AbCd".
func (k *SigningKey) Version() string { return k.version }

// KeyID is the key's identifier, "ed25519:<version>".
func (k *SigningKey) KeyID() id.KeyID { return id.KeyID(Algorithm + ":" + k.version) }

// Public returns the public half of the key.
func (k *SigningKey) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

// PublicBase64 returns the public key in unpadded base64, as verify_keys
// publishes it.
func (k *SigningKey) PublicBase64() string {
	return base64.RawStdEncoding.EncodeToString(k.Public())
}

// Sign returns the ed25519 signature of msg.
func (k *SigningKey) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// String returns the key ID only, so that logging a key never shows its
// secret.
func (k *SigningKey) String() string { return string(k.KeyID()) }

// Encode returns the key in the Synapse key file format, one line:
// "ed25519 <version> <unpadded base64 seed>\n".
func (k *SigningKey) Encode() []byte {
	var b bytes.Buffer
	b.WriteString(Algorithm + " " + k.version + " ")
	b.WriteString(base64.RawStdEncoding.EncodeToString(k.priv.Seed()))
	b.WriteByte('\n')
	return b.Bytes()
}

// Parse reads a key in the Synapse key file format. Surrounding whitespace
// is ignored and the seed may be padded or not. Files with more than one
// key are rejected.
func Parse(data []byte) (*SigningKey, error) {
	line := strings.TrimSpace(string(data))
	if strings.ContainsAny(line, "\r\n") {
		return nil, errors.New("key file holds more than one line; only one key is supported")
	}
	parts := strings.Fields(line)
	if len(parts) != 3 {
		return nil, fmt.Errorf("key file has %d fields, want 3 (algorithm, version, seed)", len(parts))
	}
	if parts[0] != Algorithm {
		return nil, fmt.Errorf("unsupported key algorithm %q", parts[0])
	}
	seed, err := DecodeBase64(parts[2])
	if err != nil {
		return nil, fmt.Errorf("decode key seed: %w", err)
	}
	return FromSeed(parts[1], seed)
}

// Load reads the key file at path.
func Load(path string) (*SigningKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// Save writes k to path with mode 0600, atomically: a temporary file in the
// same directory is written, synced and renamed over path.
func Save(path string, k *SigningKey) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("save key: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("save key: %w", err)
	}
	if _, err := f.Write(k.Encode()); err != nil {
		f.Close()
		return fmt.Errorf("save key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save key: %w", err)
	}
	return nil
}

// LoadOrGenerate loads the key file at path, or generates a key with a
// random version and saves it there if the file does not exist.
func LoadOrGenerate(path string) (*SigningKey, error) {
	k, err := Load(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	if k, err = Generate(""); err != nil {
		return nil, err
	}
	if err := Save(path, k); err != nil {
		return nil, err
	}
	return k, nil
}

// DecodeBase64 decodes standard base64 with or without padding, as the spec
// asks decoders to accept (appendix "Unpadded Base64").
func DecodeBase64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

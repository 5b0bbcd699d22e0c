package keys_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/keys"
)

func mustSpecKey(tb testing.TB) *keys.SigningKey {
	tb.Helper()
	k, err := keys.Load("testdata/spec.key")
	if err != nil {
		tb.Fatalf("Load(testdata/spec.key) error: %v", err)
	}
	return k
}

func mustCanonical(tb testing.TB, raw []byte) []byte {
	tb.Helper()
	c, err := cjson.Canonical(raw)
	if err != nil {
		tb.Fatalf("Canonical(%s) error: %v", raw, err)
	}
	return c
}

// TestSpecJSONSigning runs the "JSON Signing" vectors of the spec appendix
// "Cryptographic Test Vectors".
func TestSpecJSONSigning(t *testing.T) {
	k := mustSpecKey(t)
	if k.KeyID() != "ed25519:1" {
		t.Fatalf("KeyID() = %s, want ed25519:1", k.KeyID())
	}
	ins, _ := filepath.Glob("testdata/*.in.json")
	if len(ins) == 0 {
		t.Fatal("no vectors in testdata")
	}
	for _, in := range ins {
		t.Run(filepath.Base(in), func(t *testing.T) {
			input, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			wantRaw, err := os.ReadFile(strings.TrimSuffix(in, ".in.json") + ".out.json")
			if err != nil {
				t.Fatal(err)
			}
			want := mustCanonical(t, wantRaw)
			got, err := keys.SignJSON(input, "domain", k)
			if err != nil {
				t.Fatalf("SignJSON error: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("SignJSON(%s)\n got %s\nwant %s", input, got, want)
			}
			if err := keys.VerifyJSON(wantRaw, "domain", "ed25519:1", k.Public()); err != nil {
				t.Errorf("VerifyJSON(spec output) error: %v", err)
			}
		})
	}
}

func TestSignJSONKeepsSignaturesAndUnsigned(t *testing.T) {
	k := mustSpecKey(t)
	other, err := keys.Generate("other")
	if err != nil {
		t.Fatal(err)
	}
	in := []byte(`{"unsigned":{"age_ts":1},"signatures":{"elsewhere":{"ed25519:x":"abc"}},"b":2,"a":1}`)
	once, err := keys.SignJSON(in, "domain", k)
	if err != nil {
		t.Fatalf("SignJSON error: %v", err)
	}
	twice, err := keys.SignJSON(once, "domain", other)
	if err != nil {
		t.Fatalf("SignJSON (second key) error: %v", err)
	}
	var v struct {
		Unsigned   map[string]int               `json:"unsigned"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(twice, &v); err != nil {
		t.Fatal(err)
	}
	if v.Unsigned["age_ts"] != 1 {
		t.Errorf("unsigned lost: %s", twice)
	}
	if v.Signatures["elsewhere"]["ed25519:x"] != "abc" || v.Signatures["domain"]["ed25519:1"] == "" || v.Signatures["domain"]["ed25519:other"] == "" {
		t.Errorf("signatures not merged: %s", twice)
	}
	// Both signatures verify, even after unsigned changes.
	changed := cjson.Set(nil, twice, "unsigned", []byte(`{"age":99}`))
	for _, kk := range []*keys.SigningKey{k, other} {
		if err := keys.VerifyJSON(changed, "domain", kk.KeyID(), kk.Public()); err != nil {
			t.Errorf("VerifyJSON(%s) error: %v", kk.KeyID(), err)
		}
	}
}

func TestVerifyJSONFailures(t *testing.T) {
	k := mustSpecKey(t)
	signed, err := keys.SignJSON([]byte(`{"one":1,"two":"Two"}`), "domain", k)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := keys.Generate("x")
	tests := []struct {
		name    string
		obj     []byte
		server  string
		keyID   id.KeyID
		pub     ed25519.PublicKey
		wantErr error
	}{
		{"tampered value", bytes.Replace(signed, []byte(`"one":1`), []byte(`"one":2`), 1), "domain", "ed25519:1", k.Public(), keys.ErrBadSignature},
		{"added member", cjson.Set(nil, signed, "three", []byte("3")), "domain", "ed25519:1", k.Public(), keys.ErrBadSignature},
		{"wrong public key", signed, "domain", "ed25519:1", otherKey.Public(), keys.ErrBadSignature},
		{"short public key", signed, "domain", "ed25519:1", k.Public()[:10], keys.ErrBadSignature},
		{"other server", signed, "elsewhere", "ed25519:1", k.Public(), keys.ErrNoSignature},
		{"other key id", signed, "domain", "ed25519:2", k.Public(), keys.ErrNoSignature},
		{"no signatures", []byte(`{"one":1}`), "domain", "ed25519:1", k.Public(), keys.ErrNoSignature},
		{"signature not base64", []byte(`{"signatures":{"domain":{"ed25519:1":"!!!"}}}`), "domain", "ed25519:1", k.Public(), keys.ErrBadSignature},
		{"signature wrong length", []byte(`{"signatures":{"domain":{"ed25519:1":"AAAA"}}}`), "domain", "ed25519:1", k.Public(), keys.ErrBadSignature},
		{"not an object", []byte(`[1]`), "domain", "ed25519:1", k.Public(), keys.ErrNotObject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := keys.VerifyJSON(tt.obj, tt.server, tt.keyID, tt.pub)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("VerifyJSON(%s) = %v, want %v", tt.obj, err, tt.wantErr)
			}
		})
	}
	if err := keys.VerifyJSON([]byte(`{"a":1.5}`), "domain", "ed25519:1", k.Public()); err == nil {
		t.Error("VerifyJSON(float) = nil, want error")
	}
	// A padded signature is accepted (appendix "Unpadded Base64": decoders
	// SHOULD accept padding).
	sig, _ := keys.Signature(signed, "domain", "ed25519:1")
	padded := bytes.Replace(signed, []byte(sig), []byte(sig+"=="), 1)
	if err := keys.VerifyJSON(padded, "domain", "ed25519:1", k.Public()); err != nil {
		t.Errorf("VerifyJSON(padded signature) error: %v", err)
	}
}

func TestSignJSONErrors(t *testing.T) {
	k := mustSpecKey(t)
	for _, in := range []string{`[1]`, `"x"`, `{`, `{"a":0.5}`, `{"signatures":1}`, `{"signatures":{"domain":"x"}}`} {
		if got, err := keys.SignJSON([]byte(in), "domain", k); err == nil {
			t.Errorf("SignJSON(%s) = %s, want error", in, got)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signing.key")
	k, err := keys.LoadOrGenerate(path)
	if err != nil {
		t.Fatalf("LoadOrGenerate(new) error: %v", err)
	}
	if err := keys.ValidateVersion(k.Version()); err != nil || !strings.HasPrefix(k.Version(), "a_") {
		t.Errorf("generated version %q: %v", k.Version(), err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", st.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	fields := strings.Fields(string(data))
	if len(fields) != 3 || fields[0] != "ed25519" || fields[1] != k.Version() || strings.Contains(fields[2], "=") || !strings.HasSuffix(string(data), "\n") || strings.Count(string(data), "\n") != 1 {
		t.Errorf("key file = %q, want one line \"ed25519 <version> <unpadded seed>\"", data)
	}
	again, err := keys.LoadOrGenerate(path)
	if err != nil {
		t.Fatalf("LoadOrGenerate(existing) error: %v", err)
	}
	if again.KeyID() != k.KeyID() || !again.Public().Equal(k.Public()) {
		t.Errorf("reloaded key %s differs from saved %s", again.KeyID(), k.KeyID())
	}
	if s := k.String(); strings.Contains(s, fields[2]) {
		t.Errorf("String() = %q leaks the seed", s)
	}
}

func TestParse(t *testing.T) {
	seed := base64.RawStdEncoding.EncodeToString(make([]byte, 32))
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"synapse line", "ed25519 a_AbCd " + seed + "\n", true},
		{"padded seed", "ed25519 1 " + seed + "=", true},
		{"crlf", "ed25519 1 " + seed + "\r\n", true},
		{"two keys", "ed25519 1 " + seed + "\ned25519 2 " + seed + "\n", false},
		{"wrong algorithm", "curve25519 1 " + seed, false},
		{"bad version", "ed25519 a-b " + seed, false},
		{"short seed", "ed25519 1 AAAA", false},
		{"bad base64", "ed25519 1 ****", false},
		{"missing field", "ed25519 " + seed, false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := keys.Parse([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Errorf("Parse(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}

func TestServerKeysResponse(t *testing.T) {
	k := mustSpecKey(t)
	oldPub := make(ed25519.PublicKey, ed25519.PublicKeySize)
	validUntil := time.UnixMilli(1652262000000)
	body, err := keys.ServerKeysResponse("domain", k, []keys.OldKey{{KeyID: "ed25519:0ld", Public: oldPub, Expired: time.UnixMilli(1532645052628)}}, validUntil)
	if err != nil {
		t.Fatalf("ServerKeysResponse error: %v", err)
	}
	if c := mustCanonical(t, body); !bytes.Equal(c, body) {
		t.Errorf("ServerKeysResponse body is not canonical: %s", body)
	}
	var v struct {
		ServerName string `json:"server_name"`
		VerifyKeys map[string]struct {
			Key string `json:"key"`
		} `json:"verify_keys"`
		OldVerifyKeys map[string]struct {
			Key       string `json:"key"`
			ExpiredTS int64  `json:"expired_ts"`
		} `json:"old_verify_keys"`
		ValidUntilTS int64 `json:"valid_until_ts"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	if v.ServerName != "domain" || v.ValidUntilTS != 1652262000000 ||
		v.VerifyKeys["ed25519:1"].Key != k.PublicBase64() ||
		v.OldVerifyKeys["ed25519:0ld"].ExpiredTS != 1532645052628 || v.OldVerifyKeys["ed25519:0ld"].Key != base64.RawStdEncoding.EncodeToString(oldPub) {
		t.Errorf("ServerKeysResponse = %s, fields wrong", body)
	}
	if err := keys.VerifyJSON(body, "domain", k.KeyID(), k.Public()); err != nil {
		t.Errorf("VerifyJSON(ServerKeysResponse) error: %v", err)
	}
	empty, err := keys.ServerKeysResponse("domain", k, nil, validUntil)
	if err != nil || !bytes.Contains(empty, []byte(`"old_verify_keys":{}`)) {
		t.Errorf("ServerKeysResponse(no old keys) = %s, %v, want old_verify_keys {}", empty, err)
	}
	if _, err := keys.ServerKeysResponse("domain", k, []keys.OldKey{{KeyID: k.KeyID(), Public: oldPub}}, validUntil); err == nil {
		t.Error("ServerKeysResponse(old key = current key) = nil error, want error")
	}
}

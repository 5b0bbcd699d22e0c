package federation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/api/federation"
	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/store/storetest"
)

const (
	notaryName = "notary.test"
	queried    = "queried.test"
)

// notary is a federation API serving the notary endpoints, with a key
// cache whose fetches reach a fake queried.test.
type notary struct {
	url     string
	key     *keys.SigningKey // the notary's
	remote  *keys.SigningKey // queried.test's
	mu      sync.Mutex
	fetches int
}

func newNotary(t *testing.T) *notary {
	t.Helper()
	n := &notary{}
	var err error
	if n.key, err = keys.Generate("n1"); err != nil {
		t.Fatal(err)
	}
	if n.remote, err = keys.Generate("q1"); err != nil {
		t.Fatal(err)
	}
	fetch := func(_ context.Context, server string) ([]byte, error) {
		if server != queried {
			return nil, errors.New("connection refused")
		}
		n.mu.Lock()
		n.fetches++
		n.mu.Unlock()
		return keys.ServerKeysResponse(queried, n.remote, nil, time.Now().Add(time.Hour))
	}
	// No pause between fetches (RetryAfter), so that a query for keys
	// valid longer than the cached ones fetches at once.
	cache := keys.NewCache(keys.CacheConfig{ServerName: notaryName, Key: n.key, Fetch: fetch, RetryAfter: time.Nanosecond})
	a := federation.New(federation.Config{ServerName: notaryName, Version: "test", Keys: cache}, n.key, slog.New(slog.DiscardHandler))
	rt := api.NewRouter()
	a.Routes(rt)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	n.url = srv.URL
	return n
}

func (n *notary) fetchCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fetches
}

// query sends a request and returns the status and the server_keys.
func (n *notary) query(t *testing.T, method, path, body string) (int, []json.RawMessage, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, n.url+path, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, raw
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	var out struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.ServerKeys == nil {
		t.Fatalf("%s %s: body %s: want {\"server_keys\": [...]} (%v)", method, path, raw, err)
	}
	return resp.StatusCode, out.ServerKeys, raw
}

// checkSigned checks that a key response is for server, signed by it with
// serverKey and by the notary.
func (n *notary) checkSigned(t *testing.T, resp []byte, server string, serverKey *keys.SigningKey) {
	t.Helper()
	var k struct {
		ServerName string `json:"server_name"`
	}
	json.Unmarshal(resp, &k)
	if k.ServerName != server {
		t.Errorf("server_name %q, want %q", k.ServerName, server)
	}
	if err := keys.VerifyJSON(resp, server, serverKey.KeyID(), serverKey.Public()); err != nil {
		t.Errorf("the response is not signed by %s: %v", server, err)
	}
	if err := keys.VerifyJSON(resp, notaryName, n.key.KeyID(), n.key.Public()); err != nil {
		t.Errorf("the response is not signed by the notary: %v", err)
	}
}

func TestNotaryQuery(t *testing.T) {
	n := newNotary(t)

	t.Run("POST", func(t *testing.T) {
		status, got, raw := n.query(t, "POST", "/_matrix/key/v2/query",
			`{"server_keys":{"queried.test":{"ed25519:q1":{"minimum_valid_until_ts":1}},"notary.test":{},"down.test":{}}}`)
		if status != 200 {
			t.Fatalf("POST /_matrix/key/v2/query = %d %s", status, raw)
		}
		if len(got) != 2 {
			t.Fatalf("server_keys = %s, want queried.test's and notary.test's (down.test left out)", raw)
		}
		byServer := map[string][]byte{}
		for _, r := range got {
			var k struct {
				ServerName string `json:"server_name"`
			}
			json.Unmarshal(r, &k)
			byServer[k.ServerName] = r
		}
		n.checkSigned(t, byServer[queried], queried, n.remote)
		n.checkSigned(t, byServer[notaryName], notaryName, n.key)
	})
	t.Run("GET", func(t *testing.T) {
		status, got, raw := n.query(t, "GET", "/_matrix/key/v2/query/queried.test", "")
		if status != 200 || len(got) != 1 {
			t.Fatalf("GET /_matrix/key/v2/query/queried.test = %d %s, want one response", status, raw)
		}
		n.checkSigned(t, got[0], queried, n.remote)
		if c := n.fetchCount(); c != 1 {
			t.Errorf("fetches of queried.test = %d, want 1 (cached)", c)
		}
	})
	t.Run("minimum_valid_until_ts beyond the cached validity", func(t *testing.T) {
		// queried.test's keys are valid for an hour: asking for two makes
		// the notary fetch them again.
		later := time.Now().Add(2 * time.Hour).UnixMilli()
		_, got, _ := n.query(t, "GET", "/_matrix/key/v2/query/queried.test?minimum_valid_until_ts="+itoa(later), "")
		if len(got) != 1 {
			t.Fatalf("got %d responses, want 1 (what there is)", len(got))
		}
		if c := n.fetchCount(); c != 2 {
			t.Errorf("fetches of queried.test = %d, want 2", c)
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		_, got, raw := n.query(t, "POST", "/_matrix/key/v2/query", `{"server_keys":{"queried.test":{"ed25519:nope":{}}}}`)
		if len(got) != 0 {
			t.Errorf("server_keys for an unpublished key = %s, want none", raw)
		}
	})
	t.Run("nothing asked", func(t *testing.T) {
		_, _, raw := n.query(t, "POST", "/_matrix/key/v2/query", `{"server_keys":{}}`)
		if !bytes.Equal(raw, []byte(`{"server_keys":[]}`)) {
			t.Errorf("body = %s, want an empty server_keys array", raw)
		}
	})
	for _, tt := range []struct{ name, method, path, body, code string }{
		{"POST not JSON", "POST", "/_matrix/key/v2/query", `{`, "M_NOT_JSON"},
		{"GET bad minimum_valid_until_ts", "GET", "/_matrix/key/v2/query/queried.test?minimum_valid_until_ts=soon", "", "M_INVALID_PARAM"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, _, raw := n.query(t, tt.method, tt.path, tt.body)
			if status != 400 || !strings.Contains(string(raw), tt.code) {
				t.Errorf("%s %s = %d %s, want 400 %s", tt.method, tt.path, status, raw, tt.code)
			}
		})
	}
}

func itoa(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestNotaryOwnKeys asks a running server for its own keys through the
// notary endpoint.
func TestNotaryOwnKeys(t *testing.T) {
	hs := hstest.Start(t, storetest.Engines(t)[0], hstest.Options{})
	r := hs.Anon().Do(t, "POST", "/_matrix/key/v2/query", map[string]any{
		"server_keys": map[string]any{hs.ServerName(): map[string]any{}},
	})
	hstest.MustOK(t, r)
	var out struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil || len(out.ServerKeys) != 1 {
		t.Fatalf("server_keys = %s, want one response", r.Body)
	}
	var k struct {
		ServerName string                            `json:"server_name"`
		VerifyKeys map[id.KeyID]struct{ Key string } `json:"verify_keys"`
	}
	json.Unmarshal(out.ServerKeys[0], &k)
	if k.ServerName != hs.ServerName() || len(k.VerifyKeys) != 1 {
		t.Fatalf("response %s, want %s's one key", out.ServerKeys[0], hs.ServerName())
	}
	for kid, v := range k.VerifyKeys {
		pub, err := keys.DecodeBase64(v.Key)
		if err != nil {
			t.Fatal(err)
		}
		if err := keys.VerifyJSON(out.ServerKeys[0], hs.ServerName(), kid, pub); err != nil {
			t.Errorf("own key response does not verify: %v", err)
		}
	}
}

// TestNotaryOverFederation asks hs2 for hs1's keys: hs2's key cache fetches
// them from hs1 with the federation client (harness resolver, TLS with the
// harness CA), and answers them signed by both.
func TestNotaryOverFederation(t *testing.T) {
	f := hstest.NewFederation(t, hstest.Options{}, "hs1.polder.test", "hs2.polder.test")
	resp, err := f.HTTPClient().Post("https://hs2.polder.test/_matrix/key/v2/query", "application/json",
		strings.NewReader(`{"server_keys":{"hs1.polder.test":{}}}`))
	if err != nil {
		t.Fatalf("POST https://hs2.polder.test/_matrix/key/v2/query: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(raw, &out) != nil || len(out.ServerKeys) != 1 {
		t.Fatalf("POST /_matrix/key/v2/query = %d %s, want hs1's keys", resp.StatusCode, raw)
	}
	// Both signatures verify with the keys each server publishes itself.
	for _, name := range []string{"hs1.polder.test", "hs2.polder.test"} {
		kid, pub := ownKey(t, f.HTTPClient(), name)
		if err := keys.VerifyJSON(out.ServerKeys[0], name, kid, pub); err != nil {
			t.Errorf("hs1's keys as hs2 answers them: signature of %s: %v", name, err)
		}
	}
}

// ownKey returns the one key a server publishes at /_matrix/key/v2/server.
func ownKey(t *testing.T, c *http.Client, name string) (id.KeyID, []byte) {
	t.Helper()
	resp, err := c.Get("https://" + name + "/_matrix/key/v2/server")
	if err != nil {
		t.Fatalf("GET https://%s/_matrix/key/v2/server: %v", name, err)
	}
	defer resp.Body.Close()
	var k struct {
		VerifyKeys map[id.KeyID]struct{ Key string } `json:"verify_keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&k); err != nil || len(k.VerifyKeys) != 1 {
		t.Fatalf("keys of %s: %v %+v", name, err, k)
	}
	for kid, v := range k.VerifyKeys {
		pub, err := keys.DecodeBase64(v.Key)
		if err != nil {
			t.Fatal(err)
		}
		return kid, pub
	}
	return "", nil
}

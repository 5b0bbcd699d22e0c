package federation_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/mxerr"
)

func TestParseXMatrix(t *testing.T) {
	full := federation.XMatrix{Origin: "origin.hs.example.com", Destination: "destination.hs.example.com", Key: "ed25519:key1", Sig: "ABCDEF+/="}
	noDest := full
	noDest.Destination = ""
	tests := []struct {
		name   string
		header string
		want   federation.XMatrix
	}{
		{"spec example", `X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF+/="`, full},
		{"unquoted, colons allowed", `X-Matrix origin=origin.hs.example.com,destination=destination.hs.example.com,key=ed25519:key1,sig=ABCDEF+/=`, full},
		{"spaces and tabs around commas", "X-Matrix   origin=\"origin.hs.example.com\" ,\tdestination=destination.hs.example.com , key=\"ed25519:key1\",\t sig=\"ABCDEF+/=\"", full},
		{"spaces around =", `X-Matrix origin = "origin.hs.example.com", destination= destination.hs.example.com, key ="ed25519:key1", sig="ABCDEF+/="`, full},
		{"names and scheme case insensitive, any order", `x-matrix SIG="ABCDEF+/=",Key="ed25519:key1",DESTINATION="destination.hs.example.com",Origin="origin.hs.example.com"`, full},
		{"backslash escapes", `X-Matrix origin="origin.hs.\example.com",destination="destination.hs.example.com",key="ed25519:\key1",sig="ABCDEF+/="`, full},
		{"unknown parameters ignored", `X-Matrix origin="origin.hs.example.com",extra="a, \"quoted\" b",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF+/=",other=x`, full},
		{"empty list elements", `X-Matrix ,origin="origin.hs.example.com",,destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF+/=",`, full},
		{"no destination (before v1.3)", `X-Matrix origin=origin.hs.example.com,key="ed25519:key1",sig="ABCDEF+/="`, noDest},
		{"origin with port", `X-Matrix origin="hs.example.com:8448",key="ed25519:key1",sig="ABCDEF+/="`,
			federation.XMatrix{Origin: "hs.example.com:8448", Key: "ed25519:key1", Sig: "ABCDEF+/="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := federation.ParseXMatrix(tt.header)
			if err != nil {
				t.Fatalf("ParseXMatrix(%s): %v", tt.header, err)
			}
			if got != tt.want {
				t.Errorf("ParseXMatrix(%s) = %+v, want %+v", tt.header, got, tt.want)
			}
			// What String writes parses back the same.
			again, err := federation.ParseXMatrix(got.String())
			if err != nil || again != got {
				t.Errorf("ParseXMatrix(%s) = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}

	bad := []struct{ name, header string }{
		{"empty", ``},
		{"other scheme", `Bearer abc`},
		{"no space after scheme", `X-Matrix,origin=a.example,key=ed25519:k,sig=s`},
		{"no origin", `X-Matrix key="ed25519:key1",sig="ABC"`},
		{"no key", `X-Matrix origin="a.example",sig="ABC"`},
		{"no sig", `X-Matrix origin="a.example",key="ed25519:key1"`},
		{"empty sig", `X-Matrix origin="a.example",key="ed25519:key1",sig=""`},
		{"origin twice", `X-Matrix origin="a.example",origin="b.example",key="ed25519:key1",sig="ABC"`},
		{"unterminated quote", `X-Matrix origin="a.example,key="ed25519:key1",sig="ABC`},
		{"no value", `X-Matrix origin,key="ed25519:key1",sig="ABC"`},
		{"junk after a value", `X-Matrix origin="a.example" junk,key="ed25519:key1",sig="ABC"`},
		{"bad origin", `X-Matrix origin="a example",key="ed25519:key1",sig="ABC"`},
		{"bad destination", `X-Matrix origin="a.example",destination="b/c",key="ed25519:key1",sig="ABC"`},
		{"name not a token", `X-Matrix orig(in="a.example",key="ed25519:key1",sig="ABC"`},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.name, func(t *testing.T) {
			if got, err := federation.ParseXMatrix(tt.header); err == nil {
				t.Errorf("ParseXMatrix(%s) = %+v, want an error", tt.header, got)
			}
		})
	}
}

// keyOf is a key func that knows one server's key.
func keyOf(server string, k *keys.SigningKey) func(context.Context, string, id.KeyID) (ed25519.PublicKey, error) {
	return func(_ context.Context, s string, keyID id.KeyID) (ed25519.PublicKey, error) {
		if s != server || keyID != k.KeyID() {
			return nil, fmt.Errorf("%w: %s of %s", keys.ErrKeyNotFound, keyID, s)
		}
		return k.Public(), nil
	}
}

func mustKey(tb testing.TB, version string) *keys.SigningKey {
	tb.Helper()
	k, err := keys.Generate(version)
	if err != nil {
		tb.Fatalf("keys.Generate: %v", err)
	}
	return k
}

// signedRequest returns a request as a server receives it (RequestURI
// set), signed by origin for destination.
func signedRequest(tb testing.TB, method, target string, body []byte, origin, destination string, k *keys.SigningKey) *http.Request {
	tb.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(string(body)))
	if err := federation.SignRequest(r, body, origin, destination, k); err != nil {
		tb.Fatalf("SignRequest: %v", err)
	}
	return r
}

func TestSignAndVerifyRequest(t *testing.T) {
	const origin, us = "origin.example", "dest.example"
	k := mustKey(t, "k1")
	other := mustKey(t, "k1")
	body := []byte(`{"pdus": [{"content": {"n": 1.5, "b": "x"}}], "edus": []}`)
	target := "/_matrix/federation/v1/send/txn%2F1?x=a%20b&y=%24c"
	ctx := context.Background()

	r := signedRequest(t, "PUT", target, body, origin, us, k)
	if h := r.Header.Get("Authorization"); !strings.HasPrefix(h, `X-Matrix origin="origin.example",destination="dest.example",key="ed25519:k1",sig="`) {
		t.Errorf("Authorization = %s, want the spec's form", h)
	}
	got, err := federation.VerifyRequest(ctx, r, body, us, keyOf(origin, k))
	if err != nil || got != origin {
		t.Fatalf("VerifyRequest(signed request) = %q, %v; want %q", got, err, origin)
	}
	// Whitespace and member order of the body do not matter: the content
	// is signed as canonical JSON.
	reordered := []byte(`{"edus":[],"pdus":[{"content":{"b":"x","n":1.5}}]}`)
	if _, err := federation.VerifyRequest(ctx, r, reordered, us, keyOf(origin, k)); err != nil {
		t.Errorf("VerifyRequest with the body re-encoded: %v", err)
	}
	// A GET without a body.
	g := signedRequest(t, "GET", "/_matrix/federation/v1/event/%24ev%3Aorigin.example", nil, origin, us, k)
	if _, err := federation.VerifyRequest(ctx, g, nil, us, keyOf(origin, k)); err != nil {
		t.Errorf("VerifyRequest(GET): %v", err)
	}
	// A request built in process (no RequestURI) is checked on its URL.
	inproc, _ := http.NewRequest("PUT", "https://dest.example"+target, nil)
	federation.SignRequest(inproc, body, origin, us, k)
	if _, err := federation.VerifyRequest(ctx, inproc, body, us, keyOf(origin, k)); err != nil {
		t.Errorf("VerifyRequest(in-process request): %v", err)
	}
	// Older servers send no destination but sign it.
	old := signedRequest(t, "PUT", target, body, origin, us, k)
	x, _ := federation.ParseXMatrix(old.Header.Get("Authorization"))
	x.Destination = ""
	old.Header.Set("Authorization", x.String())
	if _, err := federation.VerifyRequest(ctx, old, body, us, keyOf(origin, k)); err != nil {
		t.Errorf("VerifyRequest without destination in the header: %v", err)
	}

	tamper := []struct {
		name   string
		r      func() *http.Request
		body   []byte
		keyFor func(context.Context, string, id.KeyID) (ed25519.PublicKey, error)
		code   string
	}{
		{"no header", func() *http.Request { return httptest.NewRequest("PUT", target, nil) }, body, keyOf(origin, k), "M_UNAUTHORIZED"},
		{"malformed header", func() *http.Request {
			r := httptest.NewRequest("PUT", target, nil)
			r.Header.Set("Authorization", `X-Matrix origin=`)
			return r
		}, body, keyOf(origin, k), "M_UNAUTHORIZED"},
		{"body changed", func() *http.Request { return signedRequest(t, "PUT", target, body, origin, us, k) },
			[]byte(`{"pdus": [], "edus": []}`), keyOf(origin, k), "M_UNAUTHORIZED"},
		{"body dropped", func() *http.Request { return signedRequest(t, "PUT", target, body, origin, us, k) },
			nil, keyOf(origin, k), "M_UNAUTHORIZED"},
		{"body not JSON", func() *http.Request { return signedRequest(t, "PUT", target, body, origin, us, k) },
			[]byte(`{"pdus":`), keyOf(origin, k), "M_NOT_JSON"},
		{"method changed", func() *http.Request {
			r := signedRequest(t, "PUT", target, body, origin, us, k)
			r.Method = "POST"
			return r
		}, body, keyOf(origin, k), "M_UNAUTHORIZED"},
		{"query changed", func() *http.Request {
			r := signedRequest(t, "PUT", target, body, origin, us, k)
			r2 := httptest.NewRequest("PUT", strings.Replace(target, "x=a", "x=b", 1), nil)
			r2.Header = r.Header
			return r2
		}, body, keyOf(origin, k), "M_UNAUTHORIZED"},
		{"for another destination", func() *http.Request { return signedRequest(t, "PUT", target, body, origin, "other.example", k) },
			body, keyOf(origin, k), "M_UNAUTHORIZED"},
		{"destination removed from a request for another", func() *http.Request {
			r := signedRequest(t, "PUT", target, body, origin, "other.example", k)
			x, _ := federation.ParseXMatrix(r.Header.Get("Authorization"))
			x.Destination = ""
			r.Header.Set("Authorization", x.String())
			return r
		}, body, keyOf(origin, k), "M_UNAUTHORIZED"},
		{"signed by another key", func() *http.Request { return signedRequest(t, "PUT", target, body, origin, us, other) },
			body, keyOf(origin, k), "M_UNAUTHORIZED"},
		{"origin claimed by another server", func() *http.Request {
			r := signedRequest(t, "PUT", target, body, "evil.example", us, k)
			x, _ := federation.ParseXMatrix(r.Header.Get("Authorization"))
			x.Origin = origin
			r.Header.Set("Authorization", x.String())
			return r
		}, body, keyOf(origin, k), "M_UNAUTHORIZED"},
		{"unknown key", func() *http.Request { return signedRequest(t, "PUT", target, body, origin, us, k) },
			body, keyOf("someone.else", k), "M_UNAUTHORIZED"},
		{"garbage signature", func() *http.Request {
			r := signedRequest(t, "PUT", target, body, origin, us, k)
			x, _ := federation.ParseXMatrix(r.Header.Get("Authorization"))
			x.Sig = "AAAA"
			r.Header.Set("Authorization", x.String())
			return r
		}, body, keyOf(origin, k), "M_UNAUTHORIZED"},
		{"other algorithm", func() *http.Request {
			r := signedRequest(t, "PUT", target, body, origin, us, k)
			x, _ := federation.ParseXMatrix(r.Header.Get("Authorization"))
			x.Key = "curve25519:k1"
			r.Header.Set("Authorization", x.String())
			return r
		}, body, keyOf(origin, k), "M_UNAUTHORIZED"},
	}
	for _, tt := range tamper {
		t.Run(tt.name, func(t *testing.T) {
			got, err := federation.VerifyRequest(ctx, tt.r(), tt.body, us, tt.keyFor)
			mx, ok := mxerr.As(err)
			if !ok || mx.Code != tt.code {
				t.Fatalf("VerifyRequest = %q, %v; want %s", got, err, tt.code)
			}
			if tt.code == "M_UNAUTHORIZED" && mx.HTTPStatus() != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", mx.HTTPStatus())
			}
		})
	}

	t.Run("context ends during the key lookup", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		key := func(ctx context.Context, _ string, _ id.KeyID) (ed25519.PublicKey, error) {
			cancel()
			return nil, ctx.Err()
		}
		_, err := federation.VerifyRequest(ctx, signedRequest(t, "PUT", target, body, origin, us, k), body, us, key)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("VerifyRequest = %v, want context.Canceled", err)
		}
		if _, ok := mxerr.As(err); ok {
			t.Errorf("VerifyRequest = %v, an mxerr; want the context's error", err)
		}
	})
}

package client_test

import (
	"crypto/sha256"
	"net/url"
	"strings"
	"testing"
	"time"

	"polder.dev/polder/internal/hstest"
)

const userinfoPath = "/_matrix/federation/v1/openid/userinfo?access_token="

func openIDPath(userID string) string {
	return c3 + "/user/" + url.PathEscape(userID) + "/openid/request_token"
}

// POST /user/{userId}/openid/request_token and the federation API's GET
// /openid/userinfo that a third party exchanges its token at (client-server
// and server-server API "OpenID").
func TestOpenID(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "password-alice")
		bob := hs.Register(t, "bob", "password-bob")

		r := hstest.MustOK(t, alice.Do(t, "POST", openIDPath(alice.UserID), map[string]any{}))
		tok := hstest.Str(t, r, "access_token")
		if r["token_type"] != "Bearer" || r["matrix_server_name"] != hs.ServerName() || r["expires_in"] != 3600.0 {
			t.Errorf("POST request_token = %v, want a Bearer token of %s for 3600 s", r, hs.ServerName())
		}
		// An empty body is taken as {}.
		bobTok := hstest.Str(t, hstest.MustOK(t, bob.Do(t, "POST", openIDPath(bob.UserID), nil)), "access_token")

		t.Run("request_token refused", func(t *testing.T) {
			for _, c := range []struct {
				name    string
				client  *hstest.Client
				path    string
				body    any
				status  int
				errcode string
			}{
				{"for another user", alice, openIDPath(bob.UserID), map[string]any{}, 403, "M_FORBIDDEN"},
				{"for a user of another server", alice, openIDPath("@alice:elsewhere.polder.test"), map[string]any{}, 403, "M_FORBIDDEN"},
				{"without an access token", hs.Anon(), openIDPath(alice.UserID), map[string]any{}, 401, "M_MISSING_TOKEN"},
				{"with an OpenID token as access token", alice.WithToken(tok), openIDPath(alice.UserID), map[string]any{}, 401, "M_UNKNOWN_TOKEN"},
				{"with a body that is not JSON", alice, openIDPath(alice.UserID), "{nope", 400, "M_NOT_JSON"},
			} {
				t.Run(c.name, func(t *testing.T) {
					hstest.MustErr(t, c.client.Do(t, "POST", c.path, c.body), c.status, c.errcode)
				})
			}
		})

		// A token issued an hour ago, written as the server writes them
		// (SHA-256 of the token).
		const expired = "pdo_expired"
		h := sha256.Sum256([]byte(expired))
		if err := hs.DB().CreateOpenIDToken(t.Context(), h[:], "alice", time.Now().Add(-time.Second).UnixMilli()); err != nil {
			t.Fatalf("CreateOpenIDToken(expired): %v", err)
		}

		t.Run("userinfo", func(t *testing.T) {
			for _, c := range []struct {
				name    string
				token   string
				sub     string // "" wants the error
				status  int
				errcode string
			}{
				{"alice's token", tok, alice.UserID, 200, ""},
				{"bob's token", bobTok, bob.UserID, 200, ""},
				{"unknown token", "pdo_unknown", "", 401, "M_UNKNOWN_TOKEN"},
				{"expired token", expired, "", 401, "M_UNKNOWN_TOKEN"},
				{"an access token", alice.AccessToken, "", 401, "M_UNKNOWN_TOKEN"},
				{"no token", "", "", 401, "M_MISSING_TOKEN"},
			} {
				t.Run(c.name, func(t *testing.T) {
					// Not X-Matrix signed: third parties call it as is.
					r := hs.Anon().Do(t, "GET", userinfoPath+url.QueryEscape(c.token), nil)
					if c.sub == "" {
						hstest.MustErr(t, r, c.status, c.errcode)
						return
					}
					if got := hstest.MustOK(t, r); got["sub"] != c.sub || len(got) != 1 {
						t.Errorf("GET userinfo with %s = %v, want {sub: %s}", c.name, got, c.sub)
					}
				})
			}
		})

		t.Run("the token is good for nothing else", func(t *testing.T) {
			hstest.MustErr(t, alice.WithToken(tok).Whoami(t), 401, "M_UNKNOWN_TOKEN")
			if !strings.HasPrefix(tok, "pdo_") {
				t.Errorf("OpenID token %q: want the pdo_ prefix that tells it apart from access tokens", tok)
			}
		})
	})
}

package user_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
	"polder.dev/polder/internal/user"
)

func TestOpenIDTokens(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s, _ := newService(t, db)
		now := time.UnixMilli(1_700_000_000_000)
		user.SetClock(s, func() time.Time { return now })

		whoami := func(name string) user.Identity {
			t.Helper()
			sess, err := s.CreateUser(ctx, name, "", "", false, "", true)
			if err != nil {
				t.Fatalf("CreateUser(%s): %v", name, err)
			}
			who, err := s.Authenticate(ctx, sess.AccessToken, "", "")
			if err != nil {
				t.Fatalf("Authenticate(%s): %v", name, err)
			}
			return who
		}
		alice, bob := whoami("alice"), whoami("bob")

		_, err := s.RequestOpenIDToken(ctx, alice, bob.UserID)
		wantErr(t, "RequestOpenIDToken(alice for bob)", err, http.StatusForbidden, "M_FORBIDDEN")

		tok, err := s.RequestOpenIDToken(ctx, alice, alice.UserID)
		if err != nil {
			t.Fatalf("RequestOpenIDToken(alice): %v", err)
		}
		if tok.TokenType != "Bearer" || tok.MatrixServerName != "hs" || tok.ExpiresIn != 3600 || !strings.HasPrefix(tok.AccessToken, "pdo_") {
			t.Errorf("RequestOpenIDToken(alice) = %+v; want a pdo_ Bearer token of hs for 3600 s", tok)
		}
		if _, err := s.Authenticate(ctx, tok.AccessToken, "", ""); err == nil {
			t.Errorf("Authenticate(OpenID token): got nil, want M_UNKNOWN_TOKEN (it is good for the OpenID API only)")
		}
		bobTok, err := s.RequestOpenIDToken(ctx, bob, bob.UserID)
		if err != nil {
			t.Fatalf("RequestOpenIDToken(bob): %v", err)
		}

		for _, c := range []struct {
			name  string
			at    time.Duration // after the tokens were issued
			token string
			want  id.UserID // "" wants M_UNKNOWN_TOKEN
		}{
			{"fresh", 0, tok.AccessToken, alice.UserID},
			{"unknown", 0, "pdo_nope", ""},
			{"empty", 0, "", ""},
			{"a second before expiry", time.Hour - time.Second, tok.AccessToken, alice.UserID},
			{"at expiry", time.Hour, tok.AccessToken, ""},
		} {
			t.Run(c.name, func(t *testing.T) {
				clock := now
				user.SetClock(s, func() time.Time { return clock.Add(c.at) })
				defer user.SetClock(s, func() time.Time { return now })
				got, err := s.OpenIDUserInfo(ctx, c.token)
				if c.want == "" {
					wantErr(t, "OpenIDUserInfo("+c.name+")", err, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
					return
				}
				if err != nil || got != c.want {
					t.Errorf("OpenIDUserInfo(%s) = %q, %v; want %q", c.name, got, err, c.want)
				}
			})
		}

		// A deactivated user's tokens are refused at once.
		if err := s.Deactivate(ctx, bob.Localpart); err != nil {
			t.Fatalf("Deactivate(bob): %v", err)
		}
		_, err = s.OpenIDUserInfo(ctx, bobTok.AccessToken)
		wantErr(t, "OpenIDUserInfo(deactivated bob's token)", err, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")

		// Pruning deletes expired tokens only.
		if n, err := s.ExpireOpenIDTokens(ctx); err != nil || n != 0 {
			t.Errorf("ExpireOpenIDTokens before expiry = %d, %v; want 0", n, err)
		}
		user.SetClock(s, func() time.Time { return now.Add(time.Hour) })
		if n, err := s.ExpireOpenIDTokens(ctx); err != nil || n != 2 {
			t.Errorf("ExpireOpenIDTokens at expiry = %d, %v; want 2", n, err)
		}
		user.SetClock(s, func() time.Time { return now })
		if _, err := s.OpenIDUserInfo(ctx, tok.AccessToken); err == nil {
			t.Errorf("OpenIDUserInfo(pruned token): got nil, want M_UNKNOWN_TOKEN")
		} else if errors.Is(err, store.ErrNotFound) {
			t.Errorf("OpenIDUserInfo(pruned token): got the store's ErrNotFound, want M_UNKNOWN_TOKEN")
		}
	})
}

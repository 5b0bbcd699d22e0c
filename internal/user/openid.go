package user

import (
	"context"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// OpenIDTokenLifetime is how long an OpenID token is good for. The spec's
// example answer has expires_in 3600, as Synapse does.
const OpenIDTokenLifetime = time.Hour

// OpenIDToken is the answer to POST /user/{userId}/openid/request_token
// (client-server API "OpenID", definitions/openid_token.yaml).
type OpenIDToken struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"` // always Bearer
	MatrixServerName string `json:"matrix_server_name"`
	ExpiresIn        int64  `json:"expires_in"` // seconds
}

// RequestOpenIDToken is POST /user/{userId}/openid/request_token: a token
// that a third-party service exchanges at GET
// /_matrix/federation/v1/openid/userinfo for who's user ID, and that is good
// for nothing else. Errors: M_FORBIDDEN when userID is not who, and store
// errors.
func (s *Service) RequestOpenIDToken(ctx context.Context, who Identity, userID id.UserID) (OpenIDToken, error) {
	if who.UserID != userID {
		return OpenIDToken{}, mxerr.Forbidden("Cannot request OpenID tokens for other users")
	}
	tok := newToken("pdo_")
	h := hashToken(tok)
	if err := s.db.CreateOpenIDToken(ctx, h[:], who.Localpart, s.now().Add(OpenIDTokenLifetime).UnixMilli()); err != nil {
		return OpenIDToken{}, fmt.Errorf("store openid token: %w", err)
	}
	return OpenIDToken{
		AccessToken:      tok,
		TokenType:        "Bearer",
		MatrixServerName: s.cfg.ServerName,
		ExpiresIn:        int64(OpenIDTokenLifetime / time.Second),
	}, nil
}

// OpenIDUserInfo is GET /_matrix/federation/v1/openid/userinfo: the user
// an OpenID token was issued to (server-server API "OpenID"). Errors:
// M_UNKNOWN_TOKEN (401) for a token that is unknown, expired or whose
// owner has been deactivated, and store errors.
func (s *Service) OpenIDUserInfo(ctx context.Context, token string) (id.UserID, error) {
	h := hashToken(token)
	t, err := s.db.OpenIDToken(ctx, h[:])
	if errors.Is(err, store.ErrNotFound) {
		return "", mxerr.UnknownToken(false, "Access token unknown or expired")
	}
	if err != nil {
		return "", fmt.Errorf("look up openid token: %w", err)
	}
	if t.Deactivated || s.now().UnixMilli() >= t.ExpiresTS {
		return "", mxerr.UnknownToken(false, "Access token unknown or expired")
	}
	return s.UserID(t.Localpart), nil
}

// ExpireOpenIDTokens deletes the OpenID tokens that have expired (Run does
// this periodically) and returns how many it deleted.
func (s *Service) ExpireOpenIDTokens(ctx context.Context) (int64, error) {
	return s.db.ExpireOpenIDTokens(ctx, s.now().UnixMilli())
}

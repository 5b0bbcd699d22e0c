package user

import (
	"context"
	"errors"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// identifierLocalpart returns the local user an identifier names. A full
// user ID must be on this server. Errors: M_UNKNOWN for unsupported
// identifier types, M_FORBIDDEN for users elsewhere.
func (s *Service) identifierLocalpart(ident *Identifier, legacyUser string) (string, error) {
	user := legacyUser
	if ident != nil {
		switch ident.Type {
		case "m.id.user":
			user = ident.User
		case "m.id.thirdparty", "m.id.phone":
			return "", mxerr.Forbidden("Login with third-party identifiers is not supported")
		default:
			return "", mxerr.Unknown("Unknown identifier type %q", ident.Type).WithStatus(400)
		}
	}
	if user == "" {
		return "", mxerr.MissingParam("identifier.user is required")
	}
	if strings.HasPrefix(user, "@") {
		lp, server, err := id.UserID(user).Parse()
		if err != nil {
			return "", mxerr.InvalidParam("bad user ID %q", user)
		}
		if server != s.cfg.ServerName {
			return "", mxerr.Forbidden("User %s is not on this server", user)
		}
		user = lp
	}
	return strings.ToLower(user), nil
}

// checkPasswordLogin checks a user's password. Errors: M_FORBIDDEN for a
// wrong user or password (the same answer for both), M_USER_DEACTIVATED.
func (s *Service) checkPasswordLogin(ctx context.Context, localpart, password string) error {
	a, err := s.db.Account(ctx, localpart)
	if errors.Is(err, store.ErrNotFound) {
		// Spend the time a hash comparison takes, so that timing does not
		// tell which users exist.
		passwordMatches(s.dummyHash(), password)
		return mxerr.Forbidden("Invalid username or password")
	}
	if err != nil {
		return err
	}
	if !passwordMatches(a.PasswordHash, password) {
		// Deactivation wipes the password, so a deactivated account lands
		// here too: the answer does not reveal which accounts are deactivated.
		return mxerr.Forbidden("Invalid username or password")
	}
	if a.Deactivated {
		return mxerr.UserDeactivated("This account has been deactivated")
	}
	return nil
}

// dummyHash is a hash of a random password at the configured cost.
func (s *Service) dummyHash() string {
	s.dummyOnce.Do(func() {
		h, err := bcrypt.GenerateFromPassword([]byte(newToken("")), s.cfg.PasswordHashCost)
		if err == nil {
			s.dummy = string(h)
		}
	})
	return s.dummy
}

// LoginRequest is the body of POST /login.
type LoginRequest struct {
	Type                     string      `json:"type"`
	Identifier               *Identifier `json:"identifier"`
	User                     string      `json:"user"`
	Password                 string      `json:"password"`
	Token                    string      `json:"token"`
	DeviceID                 string      `json:"device_id"`
	InitialDeviceDisplayName string      `json:"initial_device_display_name"`
	RefreshToken             bool        `json:"refresh_token"`
}

// Login logs a user in (spec: POST /login) with m.login.password or
// m.login.token. Errors: M_FORBIDDEN for bad credentials, M_UNKNOWN for an
// unknown login type, M_USER_DEACTIVATED.
func (s *Service) Login(ctx context.Context, req LoginRequest, ip, agent string) (Session, error) {
	var lp string
	switch req.Type {
	case "m.login.password":
		var err error
		if lp, err = s.identifierLocalpart(req.Identifier, req.User); err != nil {
			return Session{}, err
		}
		if err := s.checkPasswordLogin(ctx, lp, req.Password); err != nil {
			return Session{}, err
		}
	case "m.login.token":
		if req.Token == "" {
			return Session{}, mxerr.MissingParam("token is required")
		}
		h := hashToken(req.Token)
		var err error
		lp, err = s.db.ConsumeLoginToken(ctx, h[:])
		if errors.Is(err, store.ErrNotFound) {
			return Session{}, mxerr.Forbidden("Invalid or expired login token")
		}
		if err != nil {
			return Session{}, err
		}
		a, err := s.db.Account(ctx, lp)
		if err != nil {
			return Session{}, err
		}
		if a.Deactivated {
			return Session{}, mxerr.UserDeactivated("This account has been deactivated")
		}
	case "":
		return Session{}, mxerr.MissingParam("type is required")
	default:
		return Session{}, mxerr.Unknown("Unknown login type %q", req.Type).WithStatus(400)
	}
	if len(req.DeviceID) > 255 || len(req.InitialDeviceDisplayName) > 1000 {
		return Session{}, mxerr.InvalidParam("device_id or initial_device_display_name is too long")
	}
	sess, ns := s.newSession(lp, req.DeviceID, req.InitialDeviceDisplayName, req.RefreshToken, ip, agent)
	if err := s.db.CreateSession(ctx, ns); err != nil {
		return Session{}, err
	}
	s.toks.forget(lp, string(sess.DeviceID))
	return sess, nil
}

// LoginTokenLifetime is how long a token from /login/get_token is valid.
const LoginTokenLifetime = 2 * time.Minute

// NewLoginToken issues a one-time m.login.token token for the user (spec:
// POST /login/get_token; the caller has done UIA).
func (s *Service) NewLoginToken(ctx context.Context, who Identity) (string, time.Duration, error) {
	tok := newToken("pdl_")
	h := hashToken(tok)
	if err := s.db.CreateLoginToken(ctx, h[:], who.Localpart, s.now().Add(LoginTokenLifetime).UnixMilli()); err != nil {
		return "", 0, err
	}
	return tok, LoginTokenLifetime, nil
}

package user

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// RegisterRequest is the body of POST /register.
type RegisterRequest struct {
	Auth                     json.RawMessage `json:"auth"`
	Username                 string          `json:"username"`
	Password                 string          `json:"password"`
	DeviceID                 string          `json:"device_id"`
	InitialDeviceDisplayName string          `json:"initial_device_display_name"`
	InhibitLogin             bool            `json:"inhibit_login"`
	RefreshToken             bool            `json:"refresh_token"`
	Type                     string          `json:"type"` // legacy; ignored
}

// RegistrationFlows are the UIA flows of open registration.
func (s *Service) RegistrationFlows() [][]string {
	if s.cfg.RegistrationRequiresToken {
		return [][]string{{StageRegistrationToken}}
	}
	return [][]string{{StageDummy}}
}

// Register creates an account (spec: POST /register). kind is "user" or
// "guest". Username checks come before UIA, as the spec requires. Errors:
// M_FORBIDDEN when registration is closed, M_INVALID_USERNAME,
// M_USER_IN_USE, the UIA 401, M_WEAK_PASSWORD.
func (s *Service) Register(ctx context.Context, kind string, req RegisterRequest, ip, agent string) (Session, error) {
	switch kind {
	case "", "user":
	case "guest":
		return s.registerGuest(ctx, req, ip, agent)
	default:
		return Session{}, mxerr.InvalidParam("kind must be user or guest")
	}
	if !s.cfg.EnableRegistration {
		return Session{}, mxerr.Forbidden("Registration is disabled")
	}
	lp := ""
	if req.Username != "" {
		var err error
		if lp, err = s.ParseLocalpart(req.Username); err != nil {
			return Session{}, err
		}
		if taken, err := s.db.AccountExists(ctx, lp); err != nil {
			return Session{}, err
		} else if taken {
			return Session{}, mxerr.UserInUse("User ID already taken")
		}
	}
	if req.Password != "" {
		if err := checkPassword(req.Password); err != nil {
			return Session{}, err
		}
	}
	if len(req.DeviceID) > 255 || len(req.InitialDeviceDisplayName) > 1000 {
		return Session{}, mxerr.InvalidParam("device_id or initial_device_display_name is too long")
	}
	session, err := s.AuthenticateUIA(ctx, UIA{Operation: "register", Flows: s.RegistrationFlows()}, req.Auth)
	if err != nil {
		return Session{}, err
	}
	if lp == "" {
		lp = strings.ToLower(randomString(12, "abcdefghijklmnopqrstuvwxyz0123456789"))
		if lp[0] >= '0' && lp[0] <= '9' {
			lp = "u" + lp
		}
	}
	return s.create(ctx, store.Account{Localpart: lp}, req.Password, lp, session, !req.InhibitLogin, req, ip, agent)
}

func (s *Service) registerGuest(ctx context.Context, req RegisterRequest, ip, agent string) (Session, error) {
	if !s.cfg.AllowGuestAccess {
		return Session{}, mxerr.Forbidden("Guest access is disabled")
	}
	// Spec: for guests every field but initial_device_display_name is
	// ignored, and the server picks the device ID.
	lp := randomString(12, "0123456789")
	g := RegisterRequest{InitialDeviceDisplayName: req.InitialDeviceDisplayName}
	return s.create(ctx, store.Account{Localpart: lp, IsGuest: true}, "", lp, "", true, g, ip, agent)
}

// create stores the account and, if login, its first device and tokens.
func (s *Service) create(ctx context.Context, a store.Account, password, displayName, uiaSession string, login bool, req RegisterRequest, ip, agent string) (Session, error) {
	if password != "" {
		h, err := s.hashPassword(password)
		if err != nil {
			return Session{}, err
		}
		a.PasswordHash = h
	}
	var sess Session
	var ns *store.NewSession
	if login {
		var n store.NewSession
		sess, n = s.newSession(a.Localpart, req.DeviceID, req.InitialDeviceDisplayName, req.RefreshToken, ip, agent)
		ns = &n
	} else {
		sess.UserID = s.UserID(a.Localpart)
	}
	err := s.db.CompleteRegistration(ctx, a, displayName, uiaSession, ns)
	if errors.Is(err, store.ErrConflict) {
		return Session{}, mxerr.UserInUse("User ID already taken")
	}
	if err != nil {
		return Session{}, err
	}
	s.log.Info("registered user", "user_id", sess.UserID, "guest", a.IsGuest, "admin", a.IsAdmin)
	return sess, nil
}

// UsernameAvailable checks a username (spec: GET /register/available).
// Errors: M_INVALID_USERNAME, M_USER_IN_USE.
func (s *Service) UsernameAvailable(ctx context.Context, username string) error {
	lp, err := s.ParseLocalpart(username)
	if err != nil {
		return err
	}
	taken, err := s.db.AccountExists(ctx, lp)
	if err != nil {
		return err
	}
	if taken {
		return mxerr.UserInUse("User ID already taken")
	}
	return nil
}

// RegistrationTokenValid says whether a registration token can be used
// (spec: GET /register/m.login.registration_token/validity).
func (s *Service) RegistrationTokenValid(ctx context.Context, token string) (bool, error) {
	if !s.cfg.EnableRegistration {
		// Spec: 403 M_FORBIDDEN when registration is disabled.
		return false, mxerr.Forbidden("Registration is disabled")
	}
	t, err := s.db.RegistrationToken(ctx, token)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return t.Valid(s.now().UnixMilli()), nil
}

// CreateUser creates an account directly (command line, admin APIs).
// With login, it also creates a device and returns its tokens.
func (s *Service) CreateUser(ctx context.Context, username, password, displayName string, admin bool, userType string, login bool) (Session, error) {
	lp, err := s.ParseLocalpart(username)
	if err != nil {
		return Session{}, err
	}
	if displayName == "" {
		displayName = lp
	}
	return s.create(ctx, store.Account{Localpart: lp, IsAdmin: admin, UserType: userType}, password, displayName, "", login, RegisterRequest{}, "", "")
}

// SharedSecretNonce issues a nonce for shared-secret registration (Synapse
// admin API: GET /_synapse/admin/v1/register). Errors: M_FORBIDDEN when no
// shared secret is configured.
func (s *Service) SharedSecretNonce(ctx context.Context) (string, error) {
	if s.cfg.RegistrationSharedSecret == "" {
		return "", mxerr.Forbidden("Shared secret registration is not enabled")
	}
	nonce := randomString(32, "abcdefghijklmnopqrstuvwxyz0123456789")
	if err := s.db.CreateNonce(ctx, nonce, s.now().Add(time.Minute).UnixMilli()); err != nil {
		return "", err
	}
	return nonce, nil
}

// SharedSecretRequest is the body of POST /_synapse/admin/v1/register.
type SharedSecretRequest struct {
	Nonce        string `json:"nonce"`
	Username     string `json:"username"`
	DisplayName  string `json:"displayname"`
	Password     string `json:"password"`
	Admin        bool   `json:"admin"`
	UserType     string `json:"user_type"`
	MAC          string `json:"mac"`
	InhibitLogin bool   `json:"inhibit_login"`
}

// RegisterSharedSecret creates a user for an admin tool that knows the
// shared secret. The MAC is Synapse's: HMAC-SHA1 keyed with the secret over
// nonce, username, password and "admin"/"notadmin" (and the user type, if
// any), separated by NUL bytes. Errors: M_FORBIDDEN for a bad MAC or no
// secret, M_UNKNOWN for an unknown nonce, M_INVALID_USERNAME, M_USER_IN_USE.
func (s *Service) RegisterSharedSecret(ctx context.Context, req SharedSecretRequest) (Session, error) {
	if s.cfg.RegistrationSharedSecret == "" {
		return Session{}, mxerr.Forbidden("Shared secret registration is not enabled")
	}
	for name, v := range map[string]string{"nonce": req.Nonce, "username": req.Username, "password": req.Password, "mac": req.MAC} {
		if v == "" {
			return Session{}, mxerr.MissingParam("%s is required", name)
		}
	}
	mac := hmac.New(sha1.New, []byte(s.cfg.RegistrationSharedSecret))
	admin := "notadmin"
	if req.Admin {
		admin = "admin"
	}
	fmt.Fprintf(mac, "%s\x00%s\x00%s\x00%s", req.Nonce, req.Username, req.Password, admin)
	if req.UserType != "" {
		fmt.Fprintf(mac, "\x00%s", req.UserType)
	}
	want := mac.Sum(nil)
	got, err := hex.DecodeString(req.MAC)
	if err != nil || !hmac.Equal(got, want) {
		return Session{}, mxerr.Forbidden("HMAC incorrect")
	}
	if err := s.db.ConsumeNonce(ctx, req.Nonce); errors.Is(err, store.ErrNotFound) {
		return Session{}, mxerr.Unknown("unrecognised nonce").WithStatus(400)
	} else if err != nil {
		return Session{}, err
	}
	return s.CreateUser(ctx, req.Username, req.Password, req.DisplayName, req.Admin, req.UserType, !req.InhibitLogin)
}

// Package user owns local accounts, devices, access and refresh tokens,
// login, registration and user-interactive authentication (spec:
// client-server API, "Client Authentication" and "Account registration and
// management"). It holds the rules; SQL lives in store and HTTP in
// api/client.
//
// Imported by api/client and server.
package user

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/store"
)

// Config is what the user service needs of the server's settings.
type Config struct {
	ServerName                string
	EnableRegistration        bool
	RegistrationRequiresToken bool
	AllowGuestAccess          bool
	RegistrationSharedSecret  string
	PasswordHashCost          int
	AccessTokenLifetime       time.Duration
	// RemoteProfile looks up profiles of users of other servers
	// (remote_profile.go); nil answers such lookups with a 502.
	RemoteProfile RemoteProfileFunc
	// OnDevicesDeleted is called after devices of a local user were
	// deleted (logout, device deletion, deactivation); devices nil means
	// all of the user's. The E2EE service drops their keys and messages
	// and reports the change. Its error is logged: the deletion stands.
	OnDevicesDeleted func(ctx context.Context, user id.UserID, devices []id.DeviceID) error
	// OnDeactivated is called after an account was deactivated (after
	// OnDevicesDeleted): the E2EE service deletes its key backups.
	OnDeactivated func(ctx context.Context, user id.UserID) error
	// OnDeviceRenamed is called after a device's display name changed.
	OnDeviceRenamed func(ctx context.Context, user id.UserID, device id.DeviceID) error
}

// Service is the account service.
type Service struct {
	db *store.DB
	// notify wakes /sync when account data changes.
	notify *notify.Notifier
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	toks   tokenCache
	seen   seenBuffer
	// remoteProfiles caches other servers' answers to profile lookups.
	remoteProfiles remoteProfileCache

	dummyOnce sync.Once
	dummy     string
}

// New returns the service. n wakes /sync on account data changes.
func New(cfg Config, db *store.DB, n *notify.Notifier, log *slog.Logger) *Service {
	if cfg.PasswordHashCost == 0 {
		cfg.PasswordHashCost = 12
	}
	if cfg.AccessTokenLifetime == 0 {
		cfg.AccessTokenLifetime = 5 * time.Minute
	}
	return &Service{db: db, notify: n, cfg: cfg, log: log, now: time.Now, toks: tokenCache{m: map[[32]byte]cachedToken{}}, seen: seenBuffer{m: map[deviceKey]seen{}}}
}

// Identity is who an access token authenticates.
type Identity struct {
	UserID    id.UserID
	Localpart string
	DeviceID  id.DeviceID
	IsAdmin   bool
	IsGuest   bool
	tokenHash [32]byte
}

// UserID returns the full user ID of a local localpart.
func (s *Service) UserID(localpart string) id.UserID {
	return id.NewUserID(localpart, s.cfg.ServerName)
}

// ServerName is the server's name.
func (s *Service) ServerName() string { return s.cfg.ServerName }

func hashToken(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// newToken returns a fresh random token with a prefix that says what it is
// (so that leaked tokens are easy to recognise, e.g. by secret scanners).
func newToken(prefix string) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

const tokenCacheTTL = 30 * time.Second

// tokenCache keeps recent token lookups so that most requests need no
// database read. Entries expire after tokenCacheTTL so that a token revoked
// by another process sharing the database stops working soon; this process
// invalidates its own revocations at once.
type tokenCache struct {
	mu sync.Mutex
	m  map[[32]byte]cachedToken
}

type cachedToken struct {
	owner store.TokenOwner
	at    time.Time
}

func (c *tokenCache) get(h [32]byte, now time.Time) (store.TokenOwner, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[h]
	if !ok || now.Sub(e.at) > tokenCacheTTL {
		return store.TokenOwner{}, false
	}
	return e.owner, true
}

func (c *tokenCache) put(h [32]byte, o store.TokenOwner, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) > 100_000 {
		clear(c.m)
	}
	c.m[h] = cachedToken{owner: o, at: now}
}

// forget drops every cached token of the user (all devices when deviceID is "").
func (c *tokenCache) forget(localpart, deviceID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.m {
		if e.owner.Localpart == localpart && (deviceID == "" || e.owner.DeviceID == deviceID) {
			delete(c.m, h)
		}
	}
}

// Authenticate returns the identity of an access token. Errors are
// M_UNKNOWN_TOKEN (soft_logout for an expired token) and store errors.
func (s *Service) Authenticate(ctx context.Context, token, ip, agent string) (Identity, error) {
	h := hashToken(token)
	now := s.now()
	o, ok := s.toks.get(h, now)
	if !ok {
		var err error
		o, err = s.db.AccessToken(ctx, h[:])
		if errors.Is(err, store.ErrNotFound) {
			return Identity{}, mxerr.UnknownToken(false, "Unknown access token")
		}
		if err != nil {
			return Identity{}, fmt.Errorf("look up access token: %w", err)
		}
		if o.PrevRefreshHash != nil {
			// First use of a refreshed token: the refresh token it
			// replaced is revoked now (spec: "Refreshing access tokens").
			if err := s.db.RevokeReplacedRefresh(ctx, h[:], o.PrevRefreshHash); err != nil {
				return Identity{}, fmt.Errorf("revoke replaced refresh token: %w", err)
			}
			o.PrevRefreshHash = nil
		}
		s.toks.put(h, o, now)
	}
	if o.Deactivated {
		return Identity{}, mxerr.UnknownToken(false, "This account has been deactivated")
	}
	if o.ExpiresTS != 0 && now.UnixMilli() >= o.ExpiresTS {
		return Identity{}, mxerr.UnknownToken(true, "Access token has expired")
	}
	s.seen.record(o.Localpart, o.DeviceID, now, ip, agent)
	return Identity{
		UserID:    s.UserID(o.Localpart),
		Localpart: o.Localpart,
		DeviceID:  id.DeviceID(o.DeviceID),
		IsAdmin:   o.IsAdmin,
		IsGuest:   o.IsGuest,
		tokenHash: h,
	}, nil
}

// Session is what a successful login or registration returns.
type Session struct {
	UserID       id.UserID
	DeviceID     id.DeviceID
	AccessToken  string
	RefreshToken string
	ExpiresIn    time.Duration // 0: the access token does not expire
}

// newSession makes the tokens of a login; the caller stores them.
func (s *Service) newSession(localpart, deviceID, displayName string, refresh bool, ip, agent string) (Session, store.NewSession) {
	if deviceID == "" {
		deviceID = newDeviceID()
	}
	sess := Session{UserID: s.UserID(localpart), DeviceID: id.DeviceID(deviceID), AccessToken: newToken("pdr_")}
	ah := hashToken(sess.AccessToken)
	ns := store.NewSession{Localpart: localpart, DeviceID: deviceID, DisplayName: displayName, AccessHash: ah[:], IP: ip, Agent: agent}
	if refresh {
		sess.RefreshToken = newToken("pdf_")
		rh := hashToken(sess.RefreshToken)
		ns.RefreshHash = rh[:]
		sess.ExpiresIn = s.cfg.AccessTokenLifetime
		ns.ExpiresTS = s.now().Add(s.cfg.AccessTokenLifetime).UnixMilli()
	}
	return sess, ns
}

// Refresh exchanges a refresh token for new tokens (spec: POST /refresh).
// Errors: M_UNKNOWN_TOKEN for an unknown or revoked refresh token.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (Session, error) {
	old := hashToken(refreshToken)
	sess := Session{AccessToken: newToken("pdr_"), RefreshToken: newToken("pdf_"), ExpiresIn: s.cfg.AccessTokenLifetime}
	ah, rh := hashToken(sess.AccessToken), hashToken(sess.RefreshToken)
	lp, dev, err := s.db.Refresh(ctx, old[:], ah[:], s.now().Add(s.cfg.AccessTokenLifetime).UnixMilli(), rh[:])
	if errors.Is(err, store.ErrNotFound) {
		return Session{}, mxerr.UnknownToken(false, "Unknown refresh token")
	}
	if err != nil {
		return Session{}, err
	}
	s.toks.forget(lp, dev)
	sess.UserID, sess.DeviceID = s.UserID(lp), id.DeviceID(dev)
	return sess, nil
}

// Logout deletes the device of the identity's token, with all its tokens.
func (s *Service) Logout(ctx context.Context, who Identity) error {
	_, _, err := s.db.DeleteAccessTokenDevice(ctx, who.tokenHash[:])
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.toks.forget(who.Localpart, string(who.DeviceID))
	s.devicesDeleted(ctx, who.UserID, []id.DeviceID{who.DeviceID})
	return nil
}

// LogoutAll deletes every device of the user.
func (s *Service) LogoutAll(ctx context.Context, who Identity) error {
	if err := s.db.DeleteAllDevices(ctx, who.Localpart, ""); err != nil {
		return err
	}
	s.toks.forget(who.Localpart, "")
	s.devicesDeleted(ctx, who.UserID, nil)
	return nil
}

// devicesDeleted runs the OnDevicesDeleted hook on a context the client
// going away does not cancel.
func (s *Service) devicesDeleted(ctx context.Context, user id.UserID, devices []id.DeviceID) {
	if s.cfg.OnDevicesDeleted == nil {
		return
	}
	if err := s.cfg.OnDevicesDeleted(context.WithoutCancel(ctx), user, devices); err != nil {
		s.log.Warn("clean up after deleting devices", "user_id", user, "err", err)
	}
}

// seenBuffer collects last-seen updates in memory; Flush writes them. A
// device's last-seen time need not be exact to the second, and writing it on
// every request would put a write on every read.
type seenBuffer struct {
	mu sync.Mutex
	m  map[deviceKey]seen
}

type deviceKey struct{ localpart, deviceID string }

type seen struct {
	ts        int64
	ip, agent string
}

func (b *seenBuffer) record(localpart, deviceID string, now time.Time, ip, agent string) {
	b.mu.Lock()
	b.m[deviceKey{localpart, deviceID}] = seen{now.UnixMilli(), ip, agent}
	b.mu.Unlock()
}

// FlushLastSeen writes buffered last-seen times of devices.
func (s *Service) FlushLastSeen(ctx context.Context) error {
	s.seen.mu.Lock()
	m := s.seen.m
	s.seen.m = map[deviceKey]seen{}
	s.seen.mu.Unlock()
	for k, v := range m {
		if err := s.db.TouchDevice(ctx, k.localpart, k.deviceID, v.ts, v.ip, v.agent); err != nil {
			return err
		}
	}
	return nil
}

// Run does the service's background work until ctx ends: flushing
// last-seen times, expiring stale UIA sessions and pruning expired OpenID
// tokens (openid.go).
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return s.FlushLastSeen(context.WithoutCancel(ctx))
		case <-t.C:
			if err := s.FlushLastSeen(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("flush device last-seen times", "err", err)
			}
			if _, err := s.db.ExpireUIASessions(ctx, s.now().Add(-uiaSessionLifetime).UnixMilli()); err != nil && ctx.Err() == nil {
				s.log.Warn("expire UIA sessions", "err", err)
			}
			if _, err := s.ExpireOpenIDTokens(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("expire OpenID tokens", "err", err)
			}
		}
	}
}

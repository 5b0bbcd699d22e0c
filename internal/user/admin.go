package user

import (
	"context"
	"errors"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// What a server admin may do to any local account, for the Synapse admin
// API (api/client/admin_users.go). The caller has checked that the
// requester is an admin.

// LocalUser returns the localpart of a local user ID, without checking
// that the account exists. Errors: M_INVALID_PARAM for a malformed user ID
// or one of another server (Synapse answers 400 for those too).
func (s *Service) LocalUser(u id.UserID) (string, error) {
	if _, _, err := u.Parse(); err != nil || !strings.HasPrefix(string(u), "@") {
		return "", mxerr.InvalidParam("Invalid user ID %q", u)
	}
	if u.Homeserver() != s.cfg.ServerName {
		return "", mxerr.InvalidParam("Can only manage local users")
	}
	return u.Localpart(), nil
}

// AdminUsers lists accounts (see store.AdminUserQuery; the server name is
// filled in) and how many match in all.
func (s *Service) AdminUsers(ctx context.Context, q store.AdminUserQuery) ([]store.AdminUser, int, error) {
	q.ServerName = s.cfg.ServerName
	return s.db.AdminUsers(ctx, q)
}

// AdminUser returns an account with its profile. Errors: M_NOT_FOUND.
func (s *Service) AdminUser(ctx context.Context, localpart string) (store.AdminUser, error) {
	u, err := s.db.AdminUser(ctx, localpart)
	if errors.Is(err, store.ErrNotFound) {
		return u, mxerr.NotFound("User not found")
	}
	return u, err
}

// ResetPassword sets a user's password as an admin; with logoutDevices
// every device of the user is logged out. Errors: M_NOT_FOUND,
// M_WEAK_PASSWORD and the like from the password rules.
func (s *Service) ResetPassword(ctx context.Context, localpart, newPassword string, logoutDevices bool) error {
	if err := checkPassword(newPassword); err != nil {
		return err
	}
	h, err := s.hashPassword(newPassword)
	if err != nil {
		return err
	}
	if err := s.db.SetPassword(ctx, localpart, h); errors.Is(err, store.ErrNotFound) {
		return mxerr.NotFound("User not found")
	} else if err != nil {
		return err
	}
	if logoutDevices {
		if err := s.db.DeleteAllDevices(ctx, localpart, ""); err != nil {
			return err
		}
		s.toks.forget(localpart, "")
		s.devicesDeleted(ctx, s.UserID(localpart), nil)
	}
	s.log.Info("admin reset password", "user_id", s.UserID(localpart), "logout_devices", logoutDevices)
	return nil
}

// Reactivate lets a deactivated account log in again (with a password set
// by ResetPassword: deactivation removed the old one). Errors:
// M_NOT_FOUND.
func (s *Service) Reactivate(ctx context.Context, localpart string) error {
	err := s.db.Reactivate(ctx, localpart)
	if errors.Is(err, store.ErrNotFound) {
		return mxerr.NotFound("User not found")
	}
	if err == nil {
		s.toks.forget(localpart, "")
		s.log.Info("reactivated user", "user_id", s.UserID(localpart))
	}
	return err
}

// SetUserType sets or, with "", clears a user's type (bot, support…).
// Errors: M_NOT_FOUND.
func (s *Service) SetUserType(ctx context.Context, localpart, userType string) error {
	err := s.db.SetUserType(ctx, localpart, userType)
	if errors.Is(err, store.ErrNotFound) {
		return mxerr.NotFound("User not found")
	}
	return err
}

// AdminIdentity is the identity an admin acts as to change a user's own
// settings (its profile): the user itself, on no device.
func (s *Service) AdminIdentity(localpart string) Identity {
	return Identity{UserID: s.UserID(localpart), Localpart: localpart}
}

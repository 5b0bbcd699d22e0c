package user

import (
	"context"
	"errors"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// ReauthUIA is the UIA that an operation on an existing account requires:
// the user proves their password again.
func (s *Service) ReauthUIA(op string, who Identity) UIA {
	return UIA{Operation: op, Flows: [][]string{{StagePassword}}, Who: &who}
}

// ChangePassword sets a new password (spec: POST /account/password; the
// caller has done UIA). With logoutDevices, every other device is logged out.
func (s *Service) ChangePassword(ctx context.Context, who Identity, newPassword string, logoutDevices bool) error {
	h, err := s.hashPassword(newPassword)
	if err != nil {
		return err
	}
	if err := s.db.SetPassword(ctx, who.Localpart, h); err != nil {
		return err
	}
	if logoutDevices {
		devs, err := s.db.Devices(ctx, who.Localpart)
		if err != nil {
			return err
		}
		if err := s.db.DeleteAllDevices(ctx, who.Localpart, string(who.DeviceID)); err != nil {
			return err
		}
		s.toks.forget(who.Localpart, "")
		var gone []id.DeviceID
		for _, d := range devs {
			if d.DeviceID != string(who.DeviceID) {
				gone = append(gone, id.DeviceID(d.DeviceID))
			}
		}
		if len(gone) > 0 {
			s.devicesDeleted(ctx, who.UserID, gone)
		}
	}
	return nil
}

// Deactivate deactivates the account (spec: POST /account/deactivate; the
// caller has done UIA): it can no longer log in, its devices and tokens are
// gone, and its user ID is never reused.
func (s *Service) Deactivate(ctx context.Context, localpart string) error {
	if err := s.db.Deactivate(ctx, localpart); err != nil {
		return err
	}
	s.toks.forget(localpart, "")
	s.devicesDeleted(ctx, s.UserID(localpart), nil)
	if s.cfg.OnDeactivated != nil {
		if err := s.cfg.OnDeactivated(context.WithoutCancel(ctx), s.UserID(localpart)); err != nil {
			s.log.Warn("clean up after deactivating an account", "user_id", s.UserID(localpart), "err", err)
		}
	}
	s.log.Info("deactivated user", "user_id", s.UserID(localpart))
	return nil
}

// Devices lists the user's devices.
func (s *Service) Devices(ctx context.Context, localpart string) ([]store.Device, error) {
	return s.db.Devices(ctx, localpart)
}

// Device returns one device. Errors: M_NOT_FOUND.
func (s *Service) Device(ctx context.Context, localpart, deviceID string) (store.Device, error) {
	d, err := s.db.Device(ctx, localpart, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return d, mxerr.NotFound("Unknown device")
	}
	return d, err
}

// RenameDevice sets a device's display name. Errors: M_NOT_FOUND.
func (s *Service) RenameDevice(ctx context.Context, localpart, deviceID, name string) error {
	if len(name) > 1000 {
		return mxerr.InvalidParam("display_name is too long")
	}
	err := s.db.SetDeviceDisplayName(ctx, localpart, deviceID, name)
	if errors.Is(err, store.ErrNotFound) {
		return mxerr.NotFound("Unknown device")
	}
	if err == nil && s.cfg.OnDeviceRenamed != nil {
		if herr := s.cfg.OnDeviceRenamed(context.WithoutCancel(ctx), s.UserID(localpart), id.DeviceID(deviceID)); herr != nil {
			s.log.Warn("report a renamed device", "user_id", s.UserID(localpart), "err", herr)
		}
	}
	return err
}

// DeleteDevices deletes devices and their tokens (the caller has done UIA).
func (s *Service) DeleteDevices(ctx context.Context, localpart string, deviceIDs []string) error {
	if err := s.db.DeleteDevices(ctx, localpart, deviceIDs); err != nil {
		return err
	}
	devs := make([]id.DeviceID, len(deviceIDs))
	for i, d := range deviceIDs {
		s.toks.forget(localpart, d)
		devs[i] = id.DeviceID(d)
	}
	s.devicesDeleted(ctx, s.UserID(localpart), devs)
	return nil
}

// Account returns a local account. Errors: M_NOT_FOUND.
func (s *Service) Account(ctx context.Context, localpart string) (store.Account, error) {
	a, err := s.db.Account(ctx, localpart)
	if errors.Is(err, store.ErrNotFound) {
		return a, mxerr.NotFound("Unknown user")
	}
	return a, err
}

// SetAdmin grants or revokes server admin. Errors: M_NOT_FOUND.
func (s *Service) SetAdmin(ctx context.Context, localpart string, admin bool) error {
	err := s.db.SetAdmin(ctx, localpart, admin)
	if errors.Is(err, store.ErrNotFound) {
		return mxerr.NotFound("Unknown user")
	}
	s.toks.forget(localpart, "")
	return err
}

package e2ee

// STUB (helper A replaces this file): device keys, one-time and fallback
// keys, cross-signing keys and signatures.

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
)

// KeyCounts returns the device's unclaimed one-time keys per algorithm and
// the algorithms of its unused fallback keys (sync.OneTimeKeys).
func (s *Service) KeyCounts(ctx context.Context, user id.UserID, device id.DeviceID) (map[string]int, []string, error) {
	return nil, nil, nil
}

// DeviceRenamed reports a local device's new display name to the user's
// rooms and their servers.
func (s *Service) DeviceRenamed(ctx context.Context, user id.UserID, device id.DeviceID) error {
	return nil
}

// keysDevicesDeleted deletes the keys of deleted devices (nil: all of the
// user's) and reports the change.
func (s *Service) keysDevicesDeleted(ctx context.Context, user id.UserID, devices []id.DeviceID) error {
	return nil
}

// LocalUserDevices answers GET /_matrix/federation/v1/user/devices/{userId}
// for a local user.
func (s *Service) LocalUserDevices(ctx context.Context, user id.UserID) (*federation.UserDevicesResponse, error) {
	return &federation.UserDevicesResponse{UserID: user, Devices: []federation.UserDevice{}}, nil
}

// QueryLocal answers POST /_matrix/federation/v1/user/keys/query for local
// users.
func (s *Service) QueryLocal(ctx context.Context, req federation.UserKeysQueryRequest) (*federation.UserKeysQueryResponse, error) {
	return &federation.UserKeysQueryResponse{DeviceKeys: map[id.UserID]map[id.DeviceID]json.RawMessage{}}, nil
}

// ClaimLocal answers POST /_matrix/federation/v1/user/keys/claim for local
// users.
func (s *Service) ClaimLocal(ctx context.Context, req federation.UserKeysClaimRequest) (*federation.UserKeysClaimResponse, error) {
	return &federation.UserKeysClaimResponse{}, nil
}

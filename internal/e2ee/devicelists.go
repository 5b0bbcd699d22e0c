package e2ee

// STUB (helper A replaces this file): the device list stream.

import (
	"context"

	"maunium.net/go/mautrix/id"
)

// DeviceListChanges returns the users sharing a room with user whose
// devices changed in (from, to], and those who no longer share one
// (sync.DeviceLists).
func (s *Service) DeviceListChanges(ctx context.Context, user id.UserID, from, to int64) (changed, left []id.UserID, err error) {
	return nil, nil, nil
}

// markDeviceListChanged records, at a new stream position, that the
// devices or cross-signing keys of users changed (local or remote users),
// and wakes the syncs of the users who share a room with them.
func (s *Service) markDeviceListChanged(ctx context.Context, users ...id.UserID) error {
	return nil
}

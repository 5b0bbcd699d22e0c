package e2ee

// STUB (helper C replaces this file): send-to-device messages.

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
)

// ToDevice returns the messages for the device up to stream position to,
// in order; the messages up to since were delivered and are deleted
// (sync.ToDevice).
func (s *Service) ToDevice(ctx context.Context, user id.UserID, device id.DeviceID, since, to int64) ([]json.RawMessage, error) {
	return nil, nil
}

// ReceiveToDevice delivers an m.direct_to_device EDU from origin.
func (s *Service) ReceiveToDevice(ctx context.Context, origin string, m federation.DirectToDevice) error {
	return nil
}

// toDeviceDevicesDeleted deletes the messages waiting for deleted devices
// (nil: all of the user's).
func (s *Service) toDeviceDevicesDeleted(ctx context.Context, user id.UserID, devices []id.DeviceID) error {
	return nil
}

package e2ee

// Dehydrated devices (MSC3814, unstable prefix
// /_matrix/client/unstable/org.matrix.msc3814.v1). A user has at most one:
// a device without access tokens whose keys others can query and claim
// and to which they send room keys; a later login of the user reads its
// to-device messages and then replaces it.
//
// As in Synapse (and as the MSC says): the dehydrated device is an
// ordinary row of the devices table, so it is listed by GET /devices,
// its keys are in /keys/query, and DELETE /devices/{id}, POST
// /delete_devices, /logout/all and deactivation delete it like any other
// device. Reading its messages deletes none of them (MSC3814: "the server
// should *not* delete any to-device messages delivered in previous
// batches", so that an aborted rehydration can be started again); they go
// with the device when it is replaced or deleted.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// DehydratedDevice is the answer to GET .../dehydrated_device.
type DehydratedDevice struct {
	DeviceID   id.DeviceID     `json:"device_id"`
	DeviceData json.RawMessage `json:"device_data"`
}

// Dehydrate is the body of PUT .../dehydrated_device.
type Dehydrate struct {
	DeviceID    id.DeviceID
	DeviceData  json.RawMessage // an object with a string algorithm
	DisplayName string          // initial_device_display_name; "" none
	// Keys are the device's device_keys (required), one_time_keys and
	// fallback_keys, as for /keys/upload.
	Keys UploadRequest
}

// DehydratedEvents is a batch of a dehydrated device's to-device messages.
type DehydratedEvents struct {
	Events []json.RawMessage `json:"events"`
	// NextBatch asks for the messages after these; it is left out when
	// there are no more (no events).
	NextBatch string `json:"next_batch,omitempty"`
}

// PutDehydratedDevice creates the user's dehydrated device with its keys,
// replacing (deleting) the previous one, and returns its ID.
//
// Errors: M_MISSING_PARAM without device_id or device_keys; M_BAD_JSON when
// device_data is not an object with a string algorithm; M_INVALID_PARAM
// when device_id is one of the user's ordinary devices; those of
// UploadKeys for the keys (the device is deleted again then).
func (s *Service) PutDehydratedDevice(ctx context.Context, user id.UserID, d Dehydrate) (id.DeviceID, error) {
	if d.DeviceID == "" {
		return "", mxerr.MissingParam("device_id is required")
	}
	var data struct {
		Algorithm *string `json:"algorithm"`
	}
	if !isObject(d.DeviceData) || json.Unmarshal(d.DeviceData, &data) != nil || data.Algorithm == nil {
		return "", mxerr.BadJSON("device_data must be an object with a string algorithm")
	}
	if len(d.Keys.DeviceKeys) == 0 || string(d.Keys.DeviceKeys) == "null" {
		return "", mxerr.MissingParam("device_keys is required")
	}
	// Checked here too, before the previous device is replaced: a client's
	// mistake should not cost the user its dehydrated device.
	var head struct {
		UserID   id.UserID   `json:"user_id"`
		DeviceID id.DeviceID `json:"device_id"`
	}
	if !isObject(d.Keys.DeviceKeys) || json.Unmarshal(d.Keys.DeviceKeys, &head) != nil {
		return "", mxerr.BadJSON("device_keys must be an object")
	}
	if head.UserID != user || head.DeviceID != d.DeviceID {
		return "", mxerr.InvalidParam("device_keys must be those of %s's device %s", user, d.DeviceID)
	}
	lp := user.Localpart()
	old, err := s.db.PutDehydratedDevice(ctx, lp, string(d.DeviceID), d.DisplayName, d.DeviceData)
	if errors.Is(err, store.ErrConflict) {
		return "", mxerr.InvalidParam("%s is the ID of one of your devices", d.DeviceID)
	}
	if err != nil {
		return "", fmt.Errorf("store dehydrated device: %w", err)
	}
	// The previous device is gone: its keys and messages go after it
	// (when it had the same ID, before the new keys arrive).
	if old != "" {
		if err := s.DevicesDeleted(ctx, user, []id.DeviceID{id.DeviceID(old)}); err != nil {
			return "", fmt.Errorf("clean up after the previous dehydrated device: %w", err)
		}
	}
	if _, err := s.UploadKeys(ctx, user, d.DeviceID, d.Keys); err != nil {
		// No dehydrated device without keys: others could not encrypt to it.
		if _, derr := s.db.DeleteDehydratedDevice(ctx, lp); derr == nil {
			if derr := s.DevicesDeleted(ctx, user, []id.DeviceID{d.DeviceID}); derr != nil {
				s.log.Warn("clean up after a dehydrated device refused", "user_id", user, "device_id", d.DeviceID, "err", derr)
			}
		} else if !errors.Is(derr, store.ErrNotFound) {
			s.log.Warn("delete a dehydrated device whose keys were refused", "user_id", user, "device_id", d.DeviceID, "err", derr)
		}
		return "", err
	}
	return d.DeviceID, nil
}

// DehydratedDevice returns the user's dehydrated device. Returns
// M_NOT_FOUND when there is none.
func (s *Service) DehydratedDevice(ctx context.Context, user id.UserID) (*DehydratedDevice, error) {
	d, err := s.db.DehydratedDevice(ctx, user.Localpart())
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.NotFound("No dehydrated device available")
	}
	if err != nil {
		return nil, fmt.Errorf("read dehydrated device: %w", err)
	}
	return &DehydratedDevice{DeviceID: id.DeviceID(d.DeviceID), DeviceData: d.DeviceData}, nil
}

// DeleteDehydratedDevice deletes the user's dehydrated device and returns
// its ID. Returns M_NOT_FOUND when there is none.
func (s *Service) DeleteDehydratedDevice(ctx context.Context, user id.UserID) (id.DeviceID, error) {
	dev, err := s.db.DeleteDehydratedDevice(ctx, user.Localpart())
	if errors.Is(err, store.ErrNotFound) {
		return "", mxerr.NotFound("No dehydrated device available")
	}
	if err != nil {
		return "", fmt.Errorf("delete dehydrated device: %w", err)
	}
	if err := s.DevicesDeleted(context.WithoutCancel(ctx), user, []id.DeviceID{id.DeviceID(dev)}); err != nil {
		return "", fmt.Errorf("clean up after the dehydrated device: %w", err)
	}
	return id.DeviceID(dev), nil
}

// DehydratedEventsLimit bounds a batch of DehydratedDeviceEvents.
const DehydratedEventsLimit = 1000

// DehydratedDeviceEvents returns up to limit to-device messages of the
// user's dehydrated device after the batch token since ("" from the
// first), in the format of /sync's to_device.events. NextBatch is the
// token after the last message returned, or since when there was none.
// Nothing is deleted (see the file comment).
//
// Errors: M_FORBIDDEN when device is not the user's dehydrated device (or
// there is none; MSC3814 and Synapse); M_INVALID_PARAM for a malformed
// token.
func (s *Service) DehydratedDeviceEvents(ctx context.Context, user id.UserID, device id.DeviceID, since string, limit int) (*DehydratedEvents, error) {
	d, err := s.db.DehydratedDevice(ctx, user.Localpart())
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.Forbidden("No dehydrated device exists")
	}
	if err != nil {
		return nil, fmt.Errorf("read dehydrated device: %w", err)
	}
	if id.DeviceID(d.DeviceID) != device {
		return nil, mxerr.Forbidden("You may only fetch messages for your dehydrated device")
	}
	var after int64
	if since != "" {
		if after, err = strconv.ParseInt(since, 10, 64); err != nil || after < 0 {
			return nil, mxerr.InvalidParam("next_batch %q is not a token this server gave", since)
		}
	}
	limit = min(max(limit, 1), DehydratedEventsLimit)
	msgs, err := s.db.ToDeviceAfter(ctx, string(user), string(device), after, limit)
	if err != nil {
		return nil, err
	}
	out := &DehydratedEvents{Events: make([]json.RawMessage, 0, len(msgs)), NextBatch: strconv.FormatInt(after, 10)}
	for _, m := range msgs {
		ev, err := json.Marshal(struct {
			Content json.RawMessage `json:"content"`
			Sender  string          `json:"sender"`
			Type    string          `json:"type"`
		}{m.Content, m.Sender, m.Type})
		if err != nil {
			return nil, fmt.Errorf("encode to-device message: %w", err)
		}
		out.Events = append(out.Events, ev)
		out.NextBatch = strconv.FormatInt(m.Pos, 10)
	}
	if len(out.Events) == 0 {
		// No next_batch says "no more": matrix-js-sdk fetches batches
		// while the answer has one (it would loop forever otherwise).
		out.NextBatch = ""
	}
	return out, nil
}

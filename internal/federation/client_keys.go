package federation

import (
	"context"
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"
)

// End-to-end encryption over federation (server-server API, "End-to-End
// Encryption"): key queries and claims for users of another server, and
// the EDUs that carry device list changes, cross-signing key changes and
// to-device messages.

// UserKeysQueryRequest is the body of POST /_matrix/federation/v1/user/keys/query:
// per user, the devices wanted (empty: all).
type UserKeysQueryRequest struct {
	DeviceKeys map[id.UserID][]id.DeviceID `json:"device_keys"`
}

// UserKeysQueryResponse is its answer. Device keys are the signed JSON
// objects the devices uploaded, with unsigned.device_display_name added;
// cross-signing keys are the signed key objects.
type UserKeysQueryResponse struct {
	DeviceKeys      map[id.UserID]map[id.DeviceID]json.RawMessage `json:"device_keys"`
	MasterKeys      map[id.UserID]json.RawMessage                 `json:"master_keys,omitempty"`
	SelfSigningKeys map[id.UserID]json.RawMessage                 `json:"self_signing_keys,omitempty"`
}

// UserKeysClaimRequest is the body of POST /_matrix/federation/v1/user/keys/claim:
// per user and device, the algorithm of the one-time key wanted.
type UserKeysClaimRequest struct {
	OneTimeKeys map[id.UserID]map[id.DeviceID]string `json:"one_time_keys"`
}

// UserKeysClaimResponse is its answer: per user and device, "algorithm:key_id"
// → the signed key object.
type UserKeysClaimResponse struct {
	OneTimeKeys map[id.UserID]map[id.DeviceID]map[string]json.RawMessage `json:"one_time_keys"`
}

// DeviceListUpdate is the content of an m.device_list_update EDU.
type DeviceListUpdate struct {
	UserID            id.UserID       `json:"user_id"`
	DeviceID          id.DeviceID     `json:"device_id"`
	DeviceDisplayName string          `json:"device_display_name,omitempty"`
	StreamID          int64           `json:"stream_id"`
	PrevID            []int64         `json:"prev_id"`
	Deleted           bool            `json:"deleted,omitempty"`
	Keys              json.RawMessage `json:"keys,omitempty"`
}

// SigningKeyUpdate is the content of an m.signing_key_update EDU.
type SigningKeyUpdate struct {
	UserID         id.UserID       `json:"user_id"`
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

// DirectToDevice is the content of an m.direct_to_device EDU: messages of
// one type from one sender, per user and device ("*": every device).
type DirectToDevice struct {
	Sender    id.UserID                                     `json:"sender"`
	Type      string                                        `json:"type"`
	MessageID string                                        `json:"message_id"`
	Messages  map[id.UserID]map[id.DeviceID]json.RawMessage `json:"messages"`
}

// UserKeysQuery sends POST /_matrix/federation/v1/user/keys/query.
func (c *Client) UserKeysQuery(ctx context.Context, dest string, req UserKeysQueryRequest) (*UserKeysQueryResponse, error) {
	var out UserKeysQueryResponse
	if err := c.Do(ctx, dest, http.MethodPost, v1+"/user/keys/query", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UserKeysClaim sends POST /_matrix/federation/v1/user/keys/claim.
func (c *Client) UserKeysClaim(ctx context.Context, dest string, req UserKeysClaimRequest) (*UserKeysClaimResponse, error) {
	var out UserKeysClaimResponse
	if err := c.Do(ctx, dest, http.MethodPost, v1+"/user/keys/claim", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

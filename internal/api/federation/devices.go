package federation

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
)

// Device lists and keys (server-server API, "Device Management",
// "End-to-End Encryption"). End-to-end encryption is not served yet: the
// device list carries no keys, and key queries and claims find none.

// GET /_matrix/federation/v1/user/devices/{userId}
//
// A local user's devices with their display names. stream_id is 0: no
// m.device_list_update EDUs are sent yet for later ones to follow.
func (a *API) userDevices(w http.ResponseWriter, r *http.Request) error {
	user, server, err := userOf(r.PathValue("userId"))
	if err != nil {
		return err
	}
	if server != a.cfg.ServerName {
		return mxerr.InvalidParam("User %s is not a user of this server", user)
	}
	devs, err := a.svc.Users.Devices(r.Context(), user.Localpart())
	if err != nil {
		return err
	}
	out := federation.UserDevicesResponse{UserID: user, Devices: make([]federation.UserDevice, 0, len(devs))}
	for _, d := range devs {
		out.Devices = append(out.Devices, federation.UserDevice{DeviceID: id.DeviceID(d.DeviceID), DeviceDisplayName: d.DisplayName})
	}
	return api.OK(w, out)
}

// POST /_matrix/federation/v1/user/keys/query
//
// No device or cross-signing keys are known yet.
func (a *API) userKeysQuery(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	return api.OK(w, map[string]any{"device_keys": map[string]any{}})
}

// POST /_matrix/federation/v1/user/keys/claim
//
// No one-time keys are known yet.
func (a *API) userKeysClaim(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	return api.OK(w, map[string]any{"one_time_keys": map[string]any{}})
}

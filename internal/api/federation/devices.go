package federation

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
)

// Device lists and keys (server-server API, "Device Management",
// "End-to-End Encryption"): local users' devices and keys, from the E2EE
// service.

// GET /_matrix/federation/v1/user/devices/{userId}
func (a *API) userDevices(w http.ResponseWriter, r *http.Request) error {
	user, server, err := userOf(r.PathValue("userId"))
	if err != nil {
		return err
	}
	if server != a.cfg.ServerName {
		return mxerr.InvalidParam("User %s is not a user of this server", user)
	}
	if a.svc.E2EE == nil {
		return api.OK(w, federation.UserDevicesResponse{UserID: user, Devices: []federation.UserDevice{}})
	}
	out, err := a.svc.E2EE.LocalUserDevices(r.Context(), user)
	if err != nil {
		return err
	}
	return api.OK(w, out)
}

// POST /_matrix/federation/v1/user/keys/query
func (a *API) userKeysQuery(w http.ResponseWriter, r *http.Request) error {
	var req federation.UserKeysQueryRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if a.svc.E2EE == nil {
		return api.OK(w, federation.UserKeysQueryResponse{DeviceKeys: map[id.UserID]map[id.DeviceID]json.RawMessage{}})
	}
	out, err := a.svc.E2EE.QueryLocal(r.Context(), req)
	if err != nil {
		return err
	}
	return api.OK(w, out)
}

// POST /_matrix/federation/v1/user/keys/claim
func (a *API) userKeysClaim(w http.ResponseWriter, r *http.Request) error {
	var req federation.UserKeysClaimRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if a.svc.E2EE == nil {
		return api.OK(w, federation.UserKeysClaimResponse{OneTimeKeys: map[id.UserID]map[id.DeviceID]map[string]json.RawMessage{}})
	}
	out, err := a.svc.E2EE.ClaimLocal(r.Context(), req)
	if err != nil {
		return err
	}
	return api.OK(w, out)
}

package client

import (
	"encoding/json"
	"net/http"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

type deviceJSON struct {
	DeviceID    string  `json:"device_id"`
	DisplayName *string `json:"display_name,omitempty"`
	LastSeenIP  *string `json:"last_seen_ip,omitempty"`
	LastSeenTS  *int64  `json:"last_seen_ts,omitempty"`
}

func toDeviceJSON(d store.Device) deviceJSON {
	out := deviceJSON{DeviceID: d.DeviceID}
	if d.DisplayName != "" {
		out.DisplayName = &d.DisplayName
	}
	if d.LastSeenIP != "" {
		out.LastSeenIP = &d.LastSeenIP
	}
	if d.LastSeenTS != 0 {
		out.LastSeenTS = &d.LastSeenTS
	}
	return out
}

// GET /_matrix/client/v3/devices
func (a *API) listDevices(w http.ResponseWriter, r *http.Request) error {
	devs, err := a.users.Devices(r.Context(), Who(r).Localpart)
	if err != nil {
		return err
	}
	out := make([]deviceJSON, len(devs))
	for i, d := range devs {
		out[i] = toDeviceJSON(d)
	}
	return api.OK(w, map[string]any{"devices": out})
}

// GET /_matrix/client/v3/devices/{deviceId}
func (a *API) getDevice(w http.ResponseWriter, r *http.Request) error {
	d, err := a.users.Device(r.Context(), Who(r).Localpart, r.PathValue("deviceId"))
	if err != nil {
		return err
	}
	return api.OK(w, toDeviceJSON(d))
}

// PUT /_matrix/client/v3/devices/{deviceId}
func (a *API) putDevice(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	who := Who(r)
	dev := r.PathValue("deviceId")
	if req.DisplayName == nil {
		if _, err := a.users.Device(r.Context(), who.Localpart, dev); err != nil {
			return err
		}
		return api.OK(w, struct{}{})
	}
	if err := a.users.RenameDevice(r.Context(), who.Localpart, dev, *req.DisplayName); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// DELETE /_matrix/client/v3/devices/{deviceId}
func (a *API) deleteDevice(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Auth json.RawMessage `json:"auth"`
	}
	if err := api.DecodeOptionalJSON(r, &req); err != nil {
		return err
	}
	who := Who(r)
	dev := r.PathValue("deviceId")
	if _, err := a.users.Device(r.Context(), who.Localpart, dev); err != nil {
		return err
	}
	return a.deleteDevicesUIA(w, r, req.Auth, []string{dev})
}

// POST /_matrix/client/v3/delete_devices
func (a *API) deleteDevices(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Auth    json.RawMessage `json:"auth"`
		Devices []string        `json:"devices"`
	}
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Devices == nil {
		return mxerr.MissingParam("devices is required")
	}
	return a.deleteDevicesUIA(w, r, req.Auth, req.Devices)
}

func (a *API) deleteDevicesUIA(w http.ResponseWriter, r *http.Request, auth json.RawMessage, devices []string) error {
	who := Who(r)
	sess, err := a.users.AuthenticateUIA(r.Context(), a.users.ReauthUIA("delete_devices", who), auth)
	if err != nil {
		return err
	}
	if err := a.users.DeleteDevices(r.Context(), who.Localpart, devices); err != nil {
		return err
	}
	a.users.EndUIA(r.Context(), sess)
	return api.OK(w, struct{}{})
}

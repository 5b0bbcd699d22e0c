package client

import (
	"encoding/json"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/e2ee"
	"polder.dev/polder/internal/mxerr"
)

// dehydratedPrefix is MSC3814's unstable prefix.
const dehydratedPrefix = "/_matrix/client/unstable/org.matrix.msc3814.v1"

// dehydratedRoutes registers the MSC3814 routes. The events route is a
// POST with next_batch in the body (the MSC and what clients send today);
// the GET with next_batch (or Synapse's from) in the query, from a later
// draft of the MSC, is served too.
func (a *API) dehydratedRoutes(rt *api.Router) {
	const c = dehydratedPrefix + "/dehydrated_device"
	rt.Handle("PUT "+c, a.authed(a.putDehydratedDevice))
	rt.Handle("GET "+c, a.authed(a.getDehydratedDevice))
	rt.Handle("DELETE "+c, a.authed(a.deleteDehydratedDevice))
	rt.Handle("POST "+c+"/{deviceId}/events", a.authed(a.dehydratedDeviceEvents))
	rt.Handle("GET "+c+"/{deviceId}/events", a.authed(a.dehydratedDeviceEvents))
}

// PUT /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device
func (a *API) putDehydratedDevice(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		DeviceID     id.DeviceID                `json:"device_id"`
		DeviceData   json.RawMessage            `json:"device_data"`
		DisplayName  string                     `json:"initial_device_display_name"`
		DeviceKeys   json.RawMessage            `json:"device_keys"`
		OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
		FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
	}
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	dev, err := a.svc.E2EE.PutDehydratedDevice(r.Context(), Who(r).UserID, e2ee.Dehydrate{
		DeviceID: req.DeviceID, DeviceData: req.DeviceData, DisplayName: req.DisplayName,
		Keys: e2ee.UploadRequest{DeviceKeys: req.DeviceKeys, OneTimeKeys: req.OneTimeKeys, FallbackKeys: req.FallbackKeys},
	})
	if err != nil {
		return err
	}
	return api.OK(w, map[string]id.DeviceID{"device_id": dev})
}

// GET /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device
func (a *API) getDehydratedDevice(w http.ResponseWriter, r *http.Request) error {
	d, err := a.svc.E2EE.DehydratedDevice(r.Context(), Who(r).UserID)
	if err != nil {
		return err
	}
	return api.OK(w, d)
}

// DELETE /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device
func (a *API) deleteDehydratedDevice(w http.ResponseWriter, r *http.Request) error {
	dev, err := a.svc.E2EE.DeleteDehydratedDevice(r.Context(), Who(r).UserID)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]id.DeviceID{"device_id": dev})
}

// POST /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{deviceId}/events
// GET /_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/{deviceId}/events
//
// ?limit= caps the batch (default 100, as Synapse).
func (a *API) dehydratedDeviceEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var since string
	if r.Method == http.MethodPost {
		var req struct {
			NextBatch *string `json:"next_batch"`
		}
		if err := api.DecodeOptionalJSON(r, &req); err != nil {
			return err
		}
		if req.NextBatch != nil {
			since = *req.NextBatch
		}
	} else if since = q.Get("next_batch"); since == "" {
		since = q.Get("from")
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return mxerr.InvalidParam("limit must be a positive integer")
		}
		limit = n
	}
	res, err := a.svc.E2EE.DehydratedDeviceEvents(r.Context(), Who(r).UserID, id.DeviceID(r.PathValue("deviceId")), since, limit)
	if err != nil {
		return err
	}
	return api.OK(w, res)
}

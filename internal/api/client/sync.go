package client

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/sync"
)

// maxSyncTimeout caps a long-poll's timeout parameter.
const maxSyncTimeout = 5 * time.Minute

// syncRoutes registers /sync and the filter routes.
func (a *API) syncRoutes(rt *api.Router) {
	const c = "/_matrix/client"
	rt.Handle("GET "+c+"/v3/sync", a.guestOK(a.sync))
	rt.Handle("POST "+c+"/v3/user/{userId}/filter", a.authed(a.uploadFilter))
	rt.Handle("GET "+c+"/v3/user/{userId}/filter/{filterId}", a.authed(a.getFilter))
}

// GET /_matrix/client/v3/sync
//
// Query parameters: since, filter (an ID or inline JSON), full_state,
// set_presence, timeout (ms) and use_state_after (client-server API,
// "Syncing"). Malformed parameters are 400 M_INVALID_PARAM.
func (a *API) sync(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	who := Who(r)
	req := sync.Request{
		User:        who.UserID,
		Device:      who.DeviceID,
		Since:       q.Get("since"),
		Filter:      q.Get("filter"),
		SetPresence: q.Get("set_presence"),
	}
	var err error
	if req.FullState, err = boolParam(q.Get("full_state"), "full_state"); err != nil {
		return err
	}
	if req.UseStateAfter, err = boolParam(q.Get("use_state_after"), "use_state_after"); err != nil {
		return err
	}
	if t := q.Get("timeout"); t != "" {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			return mxerr.InvalidParam("timeout must be an integer number of milliseconds")
		}
		req.Timeout = min(time.Duration(max(ms, 0))*time.Millisecond, maxSyncTimeout)
	}
	resp, err := a.svc.Sync.Sync(r.Context(), req)
	if err != nil {
		return err
	}
	// Written by the response itself: an initial sync is megabytes of
	// events that encoding/json would check and copy again.
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(resp.AppendJSON(make([]byte, 0, resp.Size())))
	return err
}

// boolParam parses a boolean query parameter: "true" or "false", absent is
// false.
func boolParam(v, name string) (bool, error) {
	switch v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, mxerr.InvalidParam("%s must be true or false", name)
}

// POST /_matrix/client/v3/user/{userId}/filter
func (a *API) uploadFilter(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	fid, err := a.users.UploadFilter(r.Context(), Who(r), id.UserID(r.PathValue("userId")), body)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]string{"filter_id": fid})
}

// GET /_matrix/client/v3/user/{userId}/filter/{filterId}
func (a *API) getFilter(w http.ResponseWriter, r *http.Request) error {
	f, err := a.users.GetFilter(r.Context(), Who(r), id.UserID(r.PathValue("userId")), r.PathValue("filterId"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(f)
	return err
}

package client

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/sync"
)

// slidingSyncRoutes registers simplified sliding sync (MSC4186).
func (a *API) slidingSyncRoutes(rt *api.Router) {
	rt.Handle("POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync", a.authed(a.slidingSync))
}

// POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync
//
// Simplified sliding sync (MSC4186; internal/sync/sliding.go). pos,
// timeout and conn_id may be in the body (the MSC) or the query string
// (Synapse, matrix-js-sdk, matrix-rust-sdk); the query string wins.
// Errors: 400 M_UNKNOWN_POS for an unknown or expired pos, M_NOT_JSON,
// M_BAD_JSON and M_INVALID_PARAM for a bad request.
func (a *API) slidingSync(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	req, err := sync.ParseSlidingRequest(body)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if v := q.Get("pos"); v != "" {
		req.Pos = v
	}
	if v := q.Get("conn_id"); v != "" {
		req.ConnID = v
	}
	if v := q.Get("set_presence"); v != "" {
		req.SetPresence = v
	}
	if t := q.Get("timeout"); t != "" {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil {
			return mxerr.InvalidParam("timeout must be an integer number of milliseconds")
		}
		req.Timeout = time.Duration(max(ms, 0)) * time.Millisecond
	}
	req.Timeout = min(req.Timeout, maxSyncTimeout)
	who := Who(r)
	req.User, req.Device = who.UserID, who.DeviceID
	resp, err := a.svc.Sync.SlidingSync(r.Context(), req)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(resp)
}

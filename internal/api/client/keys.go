package client

import (
	"encoding/json"
	"net/http"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/e2ee"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
)

// End-to-end encryption keys (client-server API, "End-to-End Encryption"
// and "Cross-signing"). Guests may use them, as in Synapse: they can join
// encrypted rooms.

// keysRoutes registers the key routes: upload, query, claim, changes,
// cross-signing.
func (a *API) keysRoutes(rt *api.Router) {
	const c = "/_matrix/client"
	rt.Handle("POST "+c+"/v3/keys/upload", a.guestOK(a.keysUpload))
	rt.Handle("POST "+c+"/v3/keys/query", a.guestOK(a.keysQuery))
	rt.Handle("POST "+c+"/v3/keys/claim", a.guestOK(a.keysClaim))
	rt.Handle("GET "+c+"/v3/keys/changes", a.guestOK(a.keysChanges))
	rt.Handle("POST "+c+"/v3/keys/device_signing/upload", a.guestOK(a.deviceSigningUpload))
	rt.Handle("POST "+c+"/unstable/keys/device_signing/upload", a.guestOK(a.deviceSigningUpload))
	rt.Handle("POST "+c+"/v3/keys/signatures/upload", a.guestOK(a.signaturesUpload))
}

// POST /_matrix/client/v3/keys/upload
func (a *API) keysUpload(w http.ResponseWriter, r *http.Request) error {
	var req e2ee.UploadRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	who := Who(r)
	counts, err := a.svc.E2EE.UploadKeys(r.Context(), who.UserID, who.DeviceID, req)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"one_time_key_counts": counts})
}

// timeoutOf reads a request's timeout in milliseconds (0: the default).
func timeoutOf(ms *int64) time.Duration {
	if ms == nil || *ms <= 0 {
		return 0
	}
	return min(time.Duration(*ms)*time.Millisecond, time.Minute)
}

// checkUsers refuses user IDs that do not parse.
func checkUsers[T any](m map[id.UserID]T) error {
	for u := range m {
		if _, _, err := u.Parse(); err != nil {
			return mxerr.InvalidParam("%q is not a user ID", u)
		}
	}
	return nil
}

// POST /_matrix/client/v3/keys/query
func (a *API) keysQuery(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		DeviceKeys map[id.UserID][]id.DeviceID `json:"device_keys"`
		Timeout    *int64                      `json:"timeout"`
	}
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.DeviceKeys == nil {
		return mxerr.MissingParam("device_keys is required")
	}
	if err := checkUsers(req.DeviceKeys); err != nil {
		return err
	}
	out, err := a.svc.E2EE.Query(r.Context(), Who(r).UserID, req.DeviceKeys, timeoutOf(req.Timeout))
	if err != nil {
		return err
	}
	return api.OK(w, out)
}

// POST /_matrix/client/v3/keys/claim
func (a *API) keysClaim(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		OneTimeKeys map[id.UserID]map[id.DeviceID]string `json:"one_time_keys"`
		Timeout     *int64                               `json:"timeout"`
	}
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.OneTimeKeys == nil {
		return mxerr.MissingParam("one_time_keys is required")
	}
	if err := checkUsers(req.OneTimeKeys); err != nil {
		return err
	}
	out, err := a.svc.E2EE.Claim(r.Context(), req.OneTimeKeys, timeoutOf(req.Timeout))
	if err != nil {
		return err
	}
	return api.OK(w, out)
}

// GET /_matrix/client/v3/keys/changes
//
// from and to are sync tokens; to is optional (Synapse ignores it and
// answers up to now).
func (a *API) keysChanges(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	fromStr := q.Get("from")
	if fromStr == "" {
		return mxerr.MissingParam("from is required")
	}
	from, err := room.ParseToken(fromStr)
	if err != nil || from.Topological {
		return mxerr.InvalidParam("from is not a sync token")
	}
	to := int64(-1)
	if s := q.Get("to"); s != "" {
		t, err := room.ParseToken(s)
		if err != nil || t.Topological {
			return mxerr.InvalidParam("to is not a sync token")
		}
		to = t.Stream
	}
	changed, left, err := a.svc.E2EE.KeyChanges(r.Context(), Who(r).UserID, from.Stream, to)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"changed": changed, "left": left})
}

// POST /_matrix/client/v3/keys/device_signing/upload
//
// User-interactive authentication is asked for only when the upload would
// replace keys (spec v1.11, MSC3967).
func (a *API) deviceSigningUpload(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		e2ee.CrossSigningUpload
		Auth json.RawMessage `json:"auth"`
	}
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	who := Who(r)
	need, err := a.svc.E2EE.CrossSigningNeedsAuth(r.Context(), who.UserID, req.CrossSigningUpload)
	if err != nil {
		return err
	}
	var sess string
	if need {
		if sess, err = a.users.AuthenticateUIA(r.Context(), a.users.ReauthUIA("device_signing_upload", who), req.Auth); err != nil {
			return err
		}
	}
	if err := a.svc.E2EE.UploadCrossSigningKeys(r.Context(), who.UserID, req.CrossSigningUpload); err != nil {
		return err
	}
	if sess != "" {
		a.users.EndUIA(r.Context(), sess)
	}
	return api.OK(w, struct{}{})
}

// POST /_matrix/client/v3/keys/signatures/upload
func (a *API) signaturesUpload(w http.ResponseWriter, r *http.Request) error {
	var req map[id.UserID]map[string]json.RawMessage
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if err := checkUsers(req); err != nil {
		return err
	}
	failures, err := a.svc.E2EE.UploadSignatures(r.Context(), Who(r).UserID, req)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"failures": failures})
}

package client

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
)

// presenceUserParam parses the {userId} path parameter: M_INVALID_PARAM
// if it is not a user ID.
func presenceUserParam(r *http.Request) (id.UserID, error) {
	u := id.UserID(r.PathValue("userId"))
	if _, _, err := u.Parse(); err != nil {
		return "", mxerr.InvalidParam("Invalid user ID %q", u)
	}
	return u, nil
}

// GET /_matrix/client/v3/presence/{userId}/status
func (a *API) getPresence(w http.ResponseWriter, r *http.Request) error {
	user, err := presenceUserParam(r)
	if err != nil {
		return err
	}
	p, err := a.svc.Presence.GetFor(r.Context(), Who(r).UserID, user)
	if err != nil {
		return err
	}
	return api.OK(w, p.Content(a.svc.Presence.Now()))
}

// PUT /_matrix/client/v3/presence/{userId}/status
//
// Body {"presence": "online" | "unavailable" | "offline", "status_msg": "…"}.
func (a *API) putPresence(w http.ResponseWriter, r *http.Request) error {
	who := Who(r)
	if id.UserID(r.PathValue("userId")) != who.UserID {
		return mxerr.Forbidden("Can only set your own presence state")
	}
	var body struct {
		Presence  *string `json:"presence"`
		StatusMsg *string `json:"status_msg"`
	}
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.Presence == nil {
		return mxerr.BadJSON("presence is required")
	}
	msg := ""
	if body.StatusMsg != nil {
		msg = *body.StatusMsg
	}
	if err := a.svc.Presence.Set(r.Context(), who.UserID, *body.Presence, msg); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

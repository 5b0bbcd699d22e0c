package client

import (
	"context"
	"encoding/json"
	"net/http"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/user"
)

// GET /_matrix/client/v3/profile/{userId}
func (a *API) getProfile(w http.ResponseWriter, r *http.Request) error {
	p, err := a.users.Profile(r.Context(), userIDParam(r))
	if err != nil {
		return err
	}
	return api.OK(w, p)
}

// GET /_matrix/client/v3/profile/{userId}/{keyName}
func (a *API) getProfileField(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("keyName")
	v, err := a.users.ProfileField(r.Context(), userIDParam(r), key)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]json.RawMessage{key: v})
}

// PUT /_matrix/client/v3/profile/{userId}/{keyName}
func (a *API) putProfileField(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("keyName")
	var body map[string]json.RawMessage
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	v, ok := body[key]
	if !ok {
		return mxerr.MissingParam("The body must have a %q member", key)
	}
	who := Who(r)
	changed, err := a.users.SetProfileField(r.Context(), who, userIDParam(r), key, v)
	if err != nil {
		return err
	}
	if changed {
		a.propagateProfile(r, key)
	}
	return api.OK(w, map[string]any{})
}

// DELETE /_matrix/client/v3/profile/{userId}/{keyName}
func (a *API) deleteProfileField(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("keyName")
	changed, err := a.users.DeleteProfileField(r.Context(), Who(r), userIDParam(r), key)
	if err != nil {
		return err
	}
	if changed {
		a.propagateProfile(r, key)
	}
	return api.OK(w, map[string]any{})
}

// propagateProfile sends, after a change of the display name or avatar,
// new join events carrying them in every room the user is joined to
// (client-server API, "Events on Change of Profile Information"). The
// profile change stands even if a room refuses the event: it is logged,
// not returned.
func (a *API) propagateProfile(r *http.Request, key string) {
	if key != user.FieldDisplayName && key != user.FieldAvatarURL {
		return
	}
	who := Who(r)
	// Finish even if the client goes away: a half-propagated profile
	// would show the old name in some rooms.
	if err := a.svc.Rooms.RefreshProfile(context.WithoutCancel(r.Context()), who.UserID); err != nil {
		a.log.Warn("profile change not propagated to every room", "user_id", who.UserID, "err", err)
	}
}

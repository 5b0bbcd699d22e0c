package client

import (
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/directory"
	"polder.dev/polder/internal/mxerr"
)

// directoryRoutes registers aliases, the public room directory, profiles,
// the user directory and search.
func (a *API) directoryRoutes(rt *api.Router) {
	const c = "/_matrix/client"
	// Room aliases (directory_aliases.go).
	rt.Handle("PUT "+c+"/v3/directory/room/{roomAlias}", a.authed(a.putRoomAlias))
	rt.Handle("GET "+c+"/v3/directory/room/{roomAlias}", a.public(a.getRoomAlias))
	rt.Handle("DELETE "+c+"/v3/directory/room/{roomAlias}", a.authed(a.deleteRoomAlias))
	rt.Handle("GET "+c+"/v3/rooms/{roomId}/aliases", a.guestOK(a.roomAliases))

	// Published room directory (this file).
	rt.Handle("GET "+c+"/v3/directory/list/room/{roomId}", a.public(a.getRoomVisibility))
	rt.Handle("PUT "+c+"/v3/directory/list/room/{roomId}", a.guestOK(a.putRoomVisibility))
	rt.Handle("GET "+c+"/v3/publicRooms", a.public(a.getPublicRooms))
	rt.Handle("POST "+c+"/v3/publicRooms", a.guestOK(a.postPublicRooms))

	// Profiles (profile.go). Synapse lets anyone read local profiles.
	rt.Handle("GET "+c+"/v3/profile/{userId}", a.public(a.getProfile))
	rt.Handle("GET "+c+"/v3/profile/{userId}/{keyName}", a.public(a.getProfileField))
	rt.Handle("PUT "+c+"/v3/profile/{userId}/{keyName}", a.guestOK(a.putProfileField))
	rt.Handle("DELETE "+c+"/v3/profile/{userId}/{keyName}", a.guestOK(a.deleteProfileField))

	// User directory (directory_users.go) and search (search.go).
	rt.Handle("POST "+c+"/v3/user_directory/search", a.authed(a.searchUserDirectory))
	rt.Handle("POST "+c+"/v3/search", a.authed(a.search))
}

// GET /_matrix/client/v3/directory/list/room/{roomId}
func (a *API) getRoomVisibility(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	v, err := a.svc.Directory.Visibility(r.Context(), roomID)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"visibility": v})
}

// PUT /_matrix/client/v3/directory/list/room/{roomId}
func (a *API) putRoomVisibility(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	var body struct {
		Visibility string `json:"visibility"`
	}
	if err := api.DecodeOptionalJSON(r, &body); err != nil {
		return err
	}
	if err := a.svc.Directory.SetVisibility(r.Context(), Who(r), roomID, body.Visibility); err != nil {
		return err
	}
	return api.OK(w, map[string]any{})
}

// GET /_matrix/client/v3/publicRooms
func (a *API) getPublicRooms(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	req := directory.PublicRoomsRequest{Since: q.Get("since"), Server: q.Get("server")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return mxerr.InvalidParam("limit must be an integer")
		}
		req.Limit = &n
	}
	return a.publicRooms(w, r, req)
}

// POST /_matrix/client/v3/publicRooms
func (a *API) postPublicRooms(w http.ResponseWriter, r *http.Request) error {
	var req directory.PublicRoomsRequest
	if err := api.DecodeOptionalJSON(r, &req); err != nil {
		return err
	}
	req.Server = r.URL.Query().Get("server")
	return a.publicRooms(w, r, req)
}

func (a *API) publicRooms(w http.ResponseWriter, r *http.Request, req directory.PublicRoomsRequest) error {
	out, err := a.svc.Directory.PublicRooms(r.Context(), req)
	if err != nil {
		return err
	}
	return api.OK(w, out)
}

// userIDParam reads the {userId} path parameter.
func userIDParam(r *http.Request) id.UserID { return id.UserID(r.PathValue("userId")) }

package client

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
)

// PUT /_matrix/client/v3/directory/room/{roomAlias}
func (a *API) putRoomAlias(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		RoomID *id.RoomID `json:"room_id"`
	}
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.RoomID == nil {
		return mxerr.MissingParam("room_id is required")
	}
	if err := a.svc.Directory.CreateAlias(r.Context(), Who(r), r.PathValue("roomAlias"), *body.RoomID); err != nil {
		return err
	}
	return api.OK(w, map[string]any{})
}

// GET /_matrix/client/v3/directory/room/{roomAlias}
func (a *API) getRoomAlias(w http.ResponseWriter, r *http.Request) error {
	roomID, servers, err := a.svc.Directory.ResolveAlias(r.Context(), r.PathValue("roomAlias"))
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"room_id": roomID, "servers": servers})
}

// DELETE /_matrix/client/v3/directory/room/{roomAlias}
func (a *API) deleteRoomAlias(w http.ResponseWriter, r *http.Request) error {
	if err := a.svc.Directory.DeleteAlias(r.Context(), Who(r), r.PathValue("roomAlias")); err != nil {
		return err
	}
	return api.OK(w, map[string]any{})
}

// GET /_matrix/client/v3/rooms/{roomId}/aliases
func (a *API) roomAliases(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	as, err := a.svc.Directory.RoomAliases(r.Context(), Who(r), roomID)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"aliases": as})
}

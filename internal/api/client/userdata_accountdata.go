package client

import (
	"encoding/json"
	"io"
	"net/http"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
)

// GET /_matrix/client/v3/user/{userId}/account_data/{type}
// GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
func (a *API) getAccountData(w http.ResponseWriter, r *http.Request) error {
	c, err := a.users.GetAccountData(r.Context(), Who(r), id.UserID(r.PathValue("userId")),
		id.RoomID(r.PathValue("roomId")), r.PathValue("type"))
	if err != nil {
		return err
	}
	return api.OK(w, json.RawMessage(c))
}

// PUT /_matrix/client/v3/user/{userId}/account_data/{type}
// PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
func (a *API) putAccountData(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if err := a.users.PutAccountData(r.Context(), Who(r), id.UserID(r.PathValue("userId")),
		id.RoomID(r.PathValue("roomId")), r.PathValue("type"), body); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags
func (a *API) getTags(w http.ResponseWriter, r *http.Request) error {
	tags, err := a.users.Tags(r.Context(), Who(r), id.UserID(r.PathValue("userId")), id.RoomID(r.PathValue("roomId")))
	if err != nil {
		return err
	}
	return api.OK(w, map[string]json.RawMessage{"tags": tags})
}

// PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}
func (a *API) putTag(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	if err := a.users.SetTag(r.Context(), Who(r), id.UserID(r.PathValue("userId")),
		id.RoomID(r.PathValue("roomId")), r.PathValue("tag"), body); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}
func (a *API) deleteTag(w http.ResponseWriter, r *http.Request) error {
	if err := a.users.DeleteTag(r.Context(), Who(r), id.UserID(r.PathValue("userId")),
		id.RoomID(r.PathValue("roomId")), r.PathValue("tag")); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

package client

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/e2ee"
	"polder.dev/polder/internal/mxerr"
)

// roomKeysRoutes registers the key backup routes (spec: "Server-side key
// backups"). Guests may not use them (as in Synapse).
func (a *API) roomKeysRoutes(rt *api.Router) {
	const c = "/_matrix/client/v3/room_keys"
	rt.Handle("POST "+c+"/version", a.authed(a.createBackupVersion))
	rt.Handle("GET "+c+"/version", a.authed(a.getBackupVersion))
	rt.Handle("GET "+c+"/version/{version}", a.authed(a.getBackupVersion))
	rt.Handle("PUT "+c+"/version/{version}", a.authed(a.putBackupVersion))
	rt.Handle("DELETE "+c+"/version/{version}", a.authed(a.deleteBackupVersion))
	for _, p := range []string{c + "/keys", c + "/keys/{roomId}", c + "/keys/{roomId}/{sessionId}"} {
		rt.Handle("GET "+p, a.authed(a.getBackupKeys))
		rt.Handle("PUT "+p, a.authed(a.putBackupKeys))
		rt.Handle("DELETE "+p, a.authed(a.deleteBackupKeys))
	}
}

type backupInfoJSON struct {
	Algorithm *string         `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   string          `json:"version"`
}

func decodeBackupInfo(r *http.Request) (backupInfoJSON, error) {
	var req backupInfoJSON
	if err := api.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	if req.Algorithm == nil {
		return req, mxerr.MissingParam("algorithm is required")
	}
	if req.AuthData == nil {
		return req, mxerr.MissingParam("auth_data is required")
	}
	return req, nil
}

// POST /_matrix/client/v3/room_keys/version
func (a *API) createBackupVersion(w http.ResponseWriter, r *http.Request) error {
	req, err := decodeBackupInfo(r)
	if err != nil {
		return err
	}
	v, err := a.svc.E2EE.CreateBackupVersion(r.Context(), Who(r).UserID, *req.Algorithm, req.AuthData)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]string{"version": v})
}

// GET /_matrix/client/v3/room_keys/version
// GET /_matrix/client/v3/room_keys/version/{version}
func (a *API) getBackupVersion(w http.ResponseWriter, r *http.Request) error {
	v, err := a.svc.E2EE.BackupVersion(r.Context(), Who(r).UserID, r.PathValue("version"))
	if err != nil {
		return err
	}
	return api.OK(w, v)
}

// PUT /_matrix/client/v3/room_keys/version/{version}
func (a *API) putBackupVersion(w http.ResponseWriter, r *http.Request) error {
	req, err := decodeBackupInfo(r)
	if err != nil {
		return err
	}
	if err := a.svc.E2EE.UpdateBackupVersion(r.Context(), Who(r).UserID, r.PathValue("version"), req.Version, *req.Algorithm, req.AuthData); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// DELETE /_matrix/client/v3/room_keys/version/{version}
func (a *API) deleteBackupVersion(w http.ResponseWriter, r *http.Request) error {
	if err := a.svc.E2EE.DeleteBackupVersion(r.Context(), Who(r).UserID, r.PathValue("version")); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// backupVersionParam returns the required ?version= of the key routes.
func backupVersionParam(r *http.Request) (string, error) {
	q := r.URL.Query()
	if !q.Has("version") {
		return "", mxerr.MissingParam("The version query parameter is required")
	}
	return q.Get("version"), nil
}

// PUT /_matrix/client/v3/room_keys/keys
// PUT /_matrix/client/v3/room_keys/keys/{roomId}
// PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}
func (a *API) putBackupKeys(w http.ResponseWriter, r *http.Request) error {
	version, err := backupVersionParam(r)
	if err != nil {
		return err
	}
	room, session := id.RoomID(r.PathValue("roomId")), r.PathValue("sessionId")
	var rooms map[id.RoomID]e2ee.RoomBackup
	switch {
	case session != "":
		var k e2ee.BackupKey
		if err := api.DecodeJSON(r, &k); err != nil {
			return err
		}
		rooms = map[id.RoomID]e2ee.RoomBackup{room: {Sessions: map[string]e2ee.BackupKey{session: k}}}
	case room != "":
		var rb e2ee.RoomBackup
		if err := api.DecodeJSON(r, &rb); err != nil {
			return err
		}
		if rb.Sessions == nil {
			return mxerr.MissingParam("sessions is required")
		}
		rooms = map[id.RoomID]e2ee.RoomBackup{room: rb}
	default:
		var req e2ee.BackupKeys
		if err := api.DecodeJSON(r, &req); err != nil {
			return err
		}
		if req.Rooms == nil {
			return mxerr.MissingParam("rooms is required")
		}
		for room, rb := range req.Rooms {
			if rb.Sessions == nil {
				return mxerr.MissingParam("sessions is required (room %s)", room)
			}
		}
		rooms = req.Rooms
	}
	res, err := a.svc.E2EE.PutBackupKeys(r.Context(), Who(r).UserID, version, rooms)
	if err != nil {
		return err
	}
	return api.OK(w, res)
}

// GET /_matrix/client/v3/room_keys/keys
// GET /_matrix/client/v3/room_keys/keys/{roomId}
// GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}
//
// A room without keys is {"sessions": {}}; a session without a key is
// M_NOT_FOUND (spec: "The key or backup was not found").
func (a *API) getBackupKeys(w http.ResponseWriter, r *http.Request) error {
	version, err := backupVersionParam(r)
	if err != nil {
		return err
	}
	room, session := id.RoomID(r.PathValue("roomId")), r.PathValue("sessionId")
	keys, err := a.svc.E2EE.BackupKeys(r.Context(), Who(r).UserID, version, room, session)
	if err != nil {
		return err
	}
	switch {
	case session != "":
		k, ok := keys.Rooms[room].Sessions[session]
		if !ok {
			return mxerr.NotFound("No key found for this session")
		}
		return api.OK(w, k)
	case room != "":
		rb, ok := keys.Rooms[room]
		if !ok {
			rb = e2ee.RoomBackup{Sessions: map[string]e2ee.BackupKey{}}
		}
		return api.OK(w, rb)
	}
	return api.OK(w, keys)
}

// DELETE /_matrix/client/v3/room_keys/keys
// DELETE /_matrix/client/v3/room_keys/keys/{roomId}
// DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}
func (a *API) deleteBackupKeys(w http.ResponseWriter, r *http.Request) error {
	version, err := backupVersionParam(r)
	if err != nil {
		return err
	}
	res, err := a.svc.E2EE.DeleteBackupKeys(r.Context(), Who(r).UserID, version, id.RoomID(r.PathValue("roomId")), r.PathValue("sessionId"))
	if err != nil {
		return err
	}
	return api.OK(w, res)
}

package federation

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
)

// The membership handshakes of the server-server API ("Joining Rooms",
// "Leaving Rooms", "Knocking upon a room"): make_* answers a template for
// a user of the requesting server, send_* takes the signed event back. The
// room service checks the event (its ID against the path included).

// GET /_matrix/federation/v1/make_join/{roomId}/{userId}
//
// ver lists the room versions the requesting server supports; without it,
// version 1 (spec).
func (a *API) makeJoin(w http.ResponseWriter, r *http.Request) error {
	versions := roomVersions(r)
	if len(versions) == 0 {
		versions = []id.RoomVersion{"1"}
	}
	return a.make(w, r, "join", versions)
}

// GET /_matrix/federation/v1/make_leave/{roomId}/{userId}
func (a *API) makeLeave(w http.ResponseWriter, r *http.Request) error {
	return a.make(w, r, "leave", nil)
}

// GET /_matrix/federation/v1/make_knock/{roomId}/{userId}
//
// ver is required: knocking came with room version 7.
func (a *API) makeKnock(w http.ResponseWriter, r *http.Request) error {
	versions := roomVersions(r)
	if len(versions) == 0 {
		return mxerr.MissingParam("Missing ver query parameter: the room versions the server supports")
	}
	return a.make(w, r, "knock", versions)
}

func roomVersions(r *http.Request) []id.RoomVersion {
	var out []id.RoomVersion
	for _, v := range r.URL.Query()["ver"] {
		out = append(out, id.RoomVersion(v))
	}
	return out
}

func (a *API) make(w http.ResponseWriter, r *http.Request, membership string, versions []id.RoomVersion) error {
	roomID, origin, err := a.roomRequest(r)
	if err != nil {
		return err
	}
	userID, err := originUserParam(r)
	if err != nil {
		return err
	}
	resp, err := a.svc.Rooms.MakeMembership(r.Context(), origin, roomID, userID, membership, versions)
	if err != nil {
		return err
	}
	return api.OK(w, resp)
}

// signedEvent reads the path of a send_* request and its body, the signed
// event.
func (a *API) signedEvent(r *http.Request) (roomID id.RoomID, eventID id.EventID, origin string, raw json.RawMessage, err error) {
	if roomID, origin, err = a.roomRequest(r); err != nil {
		return
	}
	if eventID, err = eventIDParam(r); err != nil {
		return
	}
	raw, err = rawObject(r)
	return
}

// rawObject reads the request body, which must be a JSON object.
func rawObject(r *http.Request) (json.RawMessage, error) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(data)
	if !json.Valid(trimmed) {
		return nil, mxerr.NotJSON("request body is not valid JSON")
	}
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, mxerr.BadJSON("request body must be a JSON object: the signed event")
	}
	return trimmed, nil
}

// PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}
//
// omit_members=true asks for the partial state (spec: membership events other
// than the room's heroes' left out).
func (a *API) sendJoin(w http.ResponseWriter, r *http.Request) error {
	resp, err := a.doSendJoin(r)
	if err != nil {
		return err
	}
	return api.OK(w, resp)
}

// PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}
//
// Removed from the spec (v1.x) but still called by older servers: the v2
// answer inside [200, answer], without partial state.
func (a *API) sendJoinV1(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	q.Del("omit_members")
	r.URL.RawQuery = q.Encode()
	resp, err := a.doSendJoin(r)
	if err != nil {
		return err
	}
	return api.OK(w, []any{http.StatusOK, resp})
}

func (a *API) doSendJoin(r *http.Request) (any, error) {
	roomID, eventID, origin, raw, err := a.signedEvent(r)
	if err != nil {
		return nil, err
	}
	omit := r.URL.Query().Get("omit_members") == "true"
	return a.svc.Rooms.SendJoin(r.Context(), origin, roomID, eventID, raw, omit)
}

// PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}
func (a *API) sendLeave(w http.ResponseWriter, r *http.Request) error {
	if err := a.doSendLeave(r); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}
//
// The deprecated form: [200, {}].
func (a *API) sendLeaveV1(w http.ResponseWriter, r *http.Request) error {
	if err := a.doSendLeave(r); err != nil {
		return err
	}
	return api.OK(w, []any{http.StatusOK, struct{}{}})
}

func (a *API) doSendLeave(r *http.Request) error {
	roomID, eventID, origin, raw, err := a.signedEvent(r)
	if err != nil {
		return err
	}
	return a.svc.Rooms.SendLeave(r.Context(), origin, roomID, eventID, raw)
}

// PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}
func (a *API) sendKnock(w http.ResponseWriter, r *http.Request) error {
	roomID, eventID, origin, raw, err := a.signedEvent(r)
	if err != nil {
		return err
	}
	resp, err := a.svc.Rooms.SendKnock(r.Context(), origin, roomID, eventID, raw)
	if err != nil {
		return err
	}
	return api.OK(w, resp)
}

// PUT /_matrix/federation/v2/invite/{roomId}/{eventId}
//
// An invite of a local user to a room of the requesting server: the room
// service checks it, signs it and records the invite.
func (a *API) invite(w http.ResponseWriter, r *http.Request) error {
	roomID, origin, err := a.roomRequest(r)
	if err != nil {
		return err
	}
	eventID, err := eventIDParam(r)
	if err != nil {
		return err
	}
	var req federation.InviteRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if len(req.Event) == 0 || req.Event[0] != '{' {
		return mxerr.BadJSON("event must be a JSON object")
	}
	if req.RoomVersion == "" {
		return mxerr.BadJSON("room_version is missing")
	}
	signed, err := a.svc.Rooms.ReceiveInvite(r.Context(), origin, roomID, eventID, req)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]json.RawMessage{"event": signed})
}

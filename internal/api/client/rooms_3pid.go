package client

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
)

// invite3PIDBody is the third-party form of POST /rooms/{roomId}/invite
// (client-server API, "Third-party invites"; definitions/invite_3pid).
type invite3PIDBody struct {
	IDServer      string `json:"id_server"`
	IDAccessToken string `json:"id_access_token"`
	Medium        string `json:"medium"`
	Address       string `json:"address"`
}

// thirdPartyInvite reads the body of an invite and reports whether it is
// the third-party form (it has id_server, medium or address). The body is
// put back for the other form's decoder.
func thirdPartyInvite(r *http.Request) (*invite3PIDBody, bool, error) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, false, err
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	var probe struct {
		IDServer *string `json:"id_server"`
		Medium   *string `json:"medium"`
		Address  *string `json:"address"`
	}
	if json.Unmarshal(data, &probe) != nil || (probe.IDServer == nil && probe.Medium == nil && probe.Address == nil) {
		return nil, false, nil // the user_id form decodes (and reports) it
	}
	var body invite3PIDBody
	if err := api.DecodeJSON(r, &body); err != nil {
		return nil, false, err
	}
	return &body, true, nil
}

// POST /_matrix/client/v3/rooms/{roomId}/invite (third-party form)
//
// The identity server maps the address to a user, who is invited, or
// stores the invite; the room then gets an m.room.third_party_invite
// event (room.InviteThirdParty).
func (a *API) invite3PID(w http.ResponseWriter, r *http.Request, body *invite3PIDBody) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	switch {
	case body.IDServer == "":
		return mxerr.MissingParam("id_server is required")
	case body.IDAccessToken == "":
		// Optional before r0.6 (spec); we have no v1 identity API client.
		return mxerr.MissingParam("id_access_token is required")
	case body.Medium == "":
		return mxerr.MissingParam("medium is required")
	case body.Address == "":
		return mxerr.MissingParam("address is required")
	}
	if _, err := a.svc.Rooms.InviteThirdParty(r.Context(), room.ThirdPartyInvite{
		RoomID: roomID, Sender: Who(r).UserID,
		IDServer: body.IDServer, IDAccessToken: body.IDAccessToken, Medium: body.Medium, Address: body.Address,
	}); err != nil {
		return err
	}
	return api.OK(w, map[string]any{})
}

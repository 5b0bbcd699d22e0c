package client

import (
	"bytes"
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
)

// toDeviceRoutes registers PUT /sendToDevice/{eventType}/{txnId}.
func (a *API) toDeviceRoutes(rt *api.Router) {
	const c = "/_matrix/client"
	rt.Handle("PUT "+c+"/v3/sendToDevice/{eventType}/{txnId}", a.guestOK(a.sendToDevice))
}

// PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}
//
// Sends a message to devices (client-server API, "Send-to-Device
// messaging"); guests may, as in Synapse. The body is {"messages": user
// ID → device ID ("*": all the user's devices) → content}. A repeated
// txnId of the same device does nothing and answers {} again. Errors:
// M_MISSING_PARAM without messages, M_BAD_JSON for messages of another
// shape or a content that is not an object, M_INVALID_PARAM for an
// invalid user ID, device ID, event type or txnId, M_TOO_LARGE for too
// many messages or one too large (e2ee.SendToDevice has the limits).
func (a *API) sendToDevice(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Messages json.RawMessage `json:"messages"`
	}
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	if len(body.Messages) == 0 || bytes.Equal(body.Messages, []byte("null")) {
		return mxerr.MissingParam("Missing messages")
	}
	var msgs map[id.UserID]map[id.DeviceID]json.RawMessage
	if err := json.Unmarshal(body.Messages, &msgs); err != nil {
		return mxerr.BadJSON("messages must map user IDs to objects that map device IDs to message contents")
	}
	who := Who(r)
	if err := a.svc.E2EE.SendToDevice(r.Context(), who.UserID, who.DeviceID, r.PathValue("txnId"), r.PathValue("eventType"), msgs); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

package client

import (
	"encoding/json"
	"net/http"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/receipt"
)

// PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}
//
// Body {"typing": bool, "timeout": ms}; timeout defaults to 30 s and is
// capped at 120 s (typing.MaxTimeout).
func (a *API) putTyping(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	who := Who(r)
	if id.UserID(r.PathValue("userId")) != who.UserID {
		return mxerr.Forbidden("Cannot set another user's typing state")
	}
	var body struct {
		Typing  *bool  `json:"typing"`
		Timeout *int64 `json:"timeout"`
	}
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.Typing == nil {
		return mxerr.BadJSON("typing is required")
	}
	var timeout time.Duration
	if body.Timeout != nil {
		if *body.Timeout < 0 {
			return mxerr.InvalidParam("timeout must not be negative")
		}
		timeout = time.Duration(min(*body.Timeout, int64(time.Hour/time.Millisecond))) * time.Millisecond
	}
	if err := a.svc.Typing.Set(r.Context(), who.UserID, roomID, *body.Typing, timeout); err != nil {
		return err
	}
	a.active(r.Context(), who.UserID)
	return api.OK(w, struct{}{})
}

// POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}
//
// Body {"thread_id": "main" | "$root"}, optional: an empty body is an
// unthreaded receipt (older clients send none).
func (a *API) postReceipt(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := api.DecodeOptionalJSON(r, &body); err != nil {
		return err
	}
	threadID := ""
	if raw, ok := body["thread_id"]; ok {
		if json.Unmarshal(raw, &threadID) != nil || threadID == "" {
			return mxerr.InvalidParam("thread_id field must be a non-empty string")
		}
	}
	who := Who(r)
	if err := a.svc.Receipts.Send(r.Context(), who.UserID, roomID, r.PathValue("receiptType"),
		id.EventID(r.PathValue("eventId")), threadID); err != nil {
		return err
	}
	a.active(r.Context(), who.UserID)
	return api.OK(w, struct{}{})
}

// POST /_matrix/client/v3/rooms/{roomId}/read_markers
//
// Body {"m.fully_read": "$ev", "m.read": "$ev", "m.read.private": "$ev"},
// each optional; other members are ignored, as receipt types may be added.
func (a *API) postReadMarkers(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	evs := map[string]id.EventID{}
	for _, typ := range []string{receipt.FullyRead, receipt.Read, receipt.ReadPrivate} {
		raw, ok := body[typ]
		if !ok || string(raw) == "null" {
			continue
		}
		var eid string
		if json.Unmarshal(raw, &eid) != nil {
			return mxerr.BadJSON("%s must be an event ID", typ)
		}
		evs[typ] = id.EventID(eid)
	}
	who := Who(r)
	if err := a.svc.Receipts.ReadMarkers(r.Context(), who.UserID, roomID,
		evs[receipt.FullyRead], evs[receipt.Read], evs[receipt.ReadPrivate]); err != nil {
		return err
	}
	a.active(r.Context(), who.UserID)
	return api.OK(w, struct{}{})
}

package federation

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// Retrieving events (server-server API, "Retrieving events", "Backfilling
// and retrieving missing events", "Retrieving event authorisation
// information"). The room service decides what origin may see.

// Limits of backfill and get_missing_events. Synapse caps backfill at 100;
// get_missing_events defaults to 10 (spec) and Synapse caps it at 20.
const (
	maxBackfill          = 100
	defaultMissingEvents = 10
	maxMissingEvents     = 20
)

// GET /_matrix/federation/v1/event/{eventId}
//
// The answer is a transaction-like object holding the one PDU.
func (a *API) event(w http.ResponseWriter, r *http.Request) error {
	eventID, err := eventIDParam(r)
	if err != nil {
		return err
	}
	ev, err := a.svc.Rooms.FederationEvent(r.Context(), Origin(r.Context()), eventID)
	if err != nil {
		return err
	}
	return api.OK(w, a.events([]json.RawMessage{ev}))
}

// events wraps PDUs in the answer of /event and /backfill.
func (a *API) events(pdus []json.RawMessage) federation.EventsResponse {
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	return federation.EventsResponse{Origin: a.cfg.ServerName, OriginServerTS: time.Now().UnixMilli(), PDUs: pdus}
}

// GET /_matrix/federation/v1/state/{roomId}?event_id=
func (a *API) state(w http.ResponseWriter, r *http.Request) error {
	roomID, origin, err := a.roomRequest(r)
	if err != nil {
		return err
	}
	eventID, err := eventIDQuery(r)
	if err != nil {
		return err
	}
	resp, err := a.svc.Rooms.FederationState(r.Context(), origin, roomID, eventID)
	if err != nil {
		return err
	}
	return api.OK(w, resp)
}

// GET /_matrix/federation/v1/state_ids/{roomId}?event_id=
func (a *API) stateIDs(w http.ResponseWriter, r *http.Request) error {
	roomID, origin, err := a.roomRequest(r)
	if err != nil {
		return err
	}
	eventID, err := eventIDQuery(r)
	if err != nil {
		return err
	}
	resp, err := a.svc.Rooms.FederationStateIDs(r.Context(), origin, roomID, eventID)
	if err != nil {
		return err
	}
	return api.OK(w, resp)
}

// GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}
func (a *API) eventAuth(w http.ResponseWriter, r *http.Request) error {
	roomID, origin, err := a.roomRequest(r)
	if err != nil {
		return err
	}
	eventID, err := eventIDParam(r)
	if err != nil {
		return err
	}
	resp, err := a.svc.Rooms.FederationEventAuth(r.Context(), origin, roomID, eventID)
	if err != nil {
		return err
	}
	return api.OK(w, resp)
}

// GET /_matrix/federation/v1/backfill/{roomId}?v=&limit=
//
// v (repeated) and limit are required; limit is capped at 100.
func (a *API) backfill(w http.ResponseWriter, r *http.Request) error {
	roomID, origin, err := a.roomRequest(r)
	if err != nil {
		return err
	}
	var from []id.EventID
	for _, v := range r.URL.Query()["v"] {
		if !validEventID(v) {
			return mxerr.InvalidParam("Invalid event ID %q", v)
		}
		from = append(from, id.EventID(v))
	}
	if len(from) == 0 {
		return mxerr.MissingParam("Missing v query parameter: the events to backfill from")
	}
	if r.URL.Query().Get("limit") == "" {
		return mxerr.MissingParam("Missing limit query parameter")
	}
	limit, err := intQuery(r, "limit", 0)
	if err != nil {
		return err
	}
	if limit <= 0 {
		return api.OK(w, a.events(nil))
	}
	pdus, err := a.svc.Rooms.FederationBackfill(r.Context(), origin, roomID, from, int(min(limit, maxBackfill)))
	if err != nil {
		return err
	}
	return api.OK(w, a.events(pdus))
}

// POST /_matrix/federation/v1/get_missing_events/{roomId}
//
// limit defaults to 10 and is capped at 20.
func (a *API) missingEvents(w http.ResponseWriter, r *http.Request) error {
	roomID, origin, err := a.roomRequest(r)
	if err != nil {
		return err
	}
	var req federation.MissingEventsRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	switch {
	case req.Limit <= 0:
		req.Limit = defaultMissingEvents
	case req.Limit > maxMissingEvents:
		req.Limit = maxMissingEvents
	}
	evs, err := a.svc.Rooms.FederationMissingEvents(r.Context(), origin, roomID, req)
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []json.RawMessage{}
	}
	return api.OK(w, federation.MissingEventsResponse{Events: evs})
}

// GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts=&dir=
//
// The event closest to ts in the direction dir (f or b) that origin may
// see. M_NOT_FOUND if there is none.
func (a *API) timestampToEvent(w http.ResponseWriter, r *http.Request) error {
	roomID, origin, err := a.roomRequest(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if q.Get("ts") == "" {
		return mxerr.MissingParam("Missing ts query parameter")
	}
	ts, err := intQuery(r, "ts", 0)
	if err != nil {
		return err
	}
	dir := q.Get("dir")
	if dir != "f" && dir != "b" {
		return mxerr.InvalidParam("dir must be f or b")
	}
	if a.svc.EventByTime == nil {
		return mxerr.Unrecognized("timestamp_to_event is not served")
	}
	direction := map[string]string{"f": "forward", "b": "backward"}[dir]
	notFound := mxerr.NotFound("Unable to find event from %d in %s direction", ts, direction)
	ev, err := a.svc.EventByTime(r.Context(), roomID, ts, dir == "b")
	if errors.Is(err, store.ErrNotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	// The room service says whether origin may see it (history visibility
	// for servers).
	if _, err := a.svc.Rooms.FederationEvent(r.Context(), origin, ev.EventID()); err != nil {
		if mx, ok := mxerr.As(err); ok && (mx.Code == "M_NOT_FOUND" || mx.Code == "M_FORBIDDEN") {
			return notFound
		}
		return err
	}
	return api.OK(w, map[string]any{"event_id": ev.EventID(), "origin_server_ts": ev.OriginServerTS()})
}

package client

import (
	"math"
	"net/http"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
)

// GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}
func (a *API) getEvent(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	eventID, err := eventIDParam(r)
	if err != nil {
		return err
	}
	ev, err := a.svc.Rooms.Event(r.Context(), Who(r).UserID, roomID, eventID)
	if err != nil {
		return err
	}
	out, err := a.svc.Rooms.FormatOne(r.Context(), ev, viewer(r), room.FormatOptions{})
	if err != nil {
		return err
	}
	return api.OK(w, out)
}

// GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}
func (a *API) eventContext(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	eventID, err := eventIDParam(r)
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 10, 0, math.MaxInt32)
	if err != nil {
		return err
	}
	f, err := room.ParseRoomEventFilter(r.URL.Query().Get("filter"))
	if err != nil {
		return err
	}
	c, err := a.svc.Rooms.Context(r.Context(), Who(r).UserID, roomID, eventID, int(limit), f)
	if err != nil {
		return err
	}
	// One Format call for all the events, so that aggregations are loaded
	// in one batch.
	all := append(append(append(c.Before[:len(c.Before):len(c.Before)], c.Event), c.After...), c.State...)
	out, err := a.format(r, all)
	if err != nil {
		return err
	}
	nb, na := len(c.Before), len(c.After)
	return api.OK(w, map[string]any{
		"events_before": out[:nb],
		"event":         out[nb],
		"events_after":  out[nb+1 : nb+1+na],
		"state":         out[nb+1+na:],
		"start":         c.Start,
		"end":           c.End,
	})
}

// GET /_matrix/client/v3/rooms/{roomId}/messages
func (a *API) messages(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	// The spec makes dir required; Synapse takes "f" when it is missing.
	backwards, err := queryDir(r, "f")
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 0, 0, math.MaxInt32)
	if err != nil {
		return err
	}
	f, err := room.ParseRoomEventFilter(q.Get("filter"))
	if err != nil {
		return err
	}
	if q.Has("limit") && limit == 0 {
		// An explicit limit of 0 asks for no events.
		return api.OK(w, map[string]any{"chunk": []any{}, "start": q.Get("from"), "end": q.Get("from")})
	}
	m, err := a.svc.Rooms.Messages(r.Context(), Who(r).UserID, roomID, room.MessagesRequest{
		From: q.Get("from"), To: q.Get("to"), Backwards: backwards, Limit: int(limit), Filter: f,
	})
	if err != nil {
		return err
	}
	chunk, err := a.format(r, m.Chunk)
	if err != nil {
		return err
	}
	resp := map[string]any{"chunk": chunk, "start": m.Start}
	if m.End != "" {
		resp["end"] = m.End
	}
	if len(m.State) > 0 {
		state, err := a.formatState(r, m.State)
		if err != nil {
			return err
		}
		resp["state"] = state
	}
	return api.OK(w, resp)
}

// GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event
func (a *API) timestampToEvent(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if !q.Has("ts") {
		return mxerr.MissingParam("ts is required")
	}
	ts, err := queryInt(r, "ts", 0, 0, math.MaxInt64)
	if err != nil {
		return err
	}
	if !q.Has("dir") {
		return mxerr.MissingParam("dir is required")
	}
	backwards, err := queryDir(r, "")
	if err != nil {
		return err
	}
	ev, err := a.svc.Rooms.TimestampToEvent(r.Context(), Who(r).UserID, roomID, ts, backwards)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"event_id": ev.EventID(), "origin_server_ts": ev.OriginServerTS()})
}

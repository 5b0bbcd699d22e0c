package client

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
)

// timelineRoutes registers the routes that read a room's events, its
// relations and threads, and content reports. Guests may use the reads the
// spec lists for them ("Guest access": state, context, event, messages,
// members) and, as in Synapse, relations.
func (a *API) timelineRoutes(rt *api.Router) {
	const c = "/_matrix/client"
	// timeline_events.go
	rt.Handle("GET "+c+"/v3/rooms/{roomId}/event/{eventId}", a.guestOK(a.getEvent))
	rt.Handle("GET "+c+"/v3/rooms/{roomId}/context/{eventId}", a.guestOK(a.eventContext))
	rt.Handle("GET "+c+"/v3/rooms/{roomId}/messages", a.guestOK(a.messages))
	rt.Handle("GET "+c+"/v1/rooms/{roomId}/timestamp_to_event", a.authed(a.timestampToEvent))
	// timeline_state.go
	rt.Handle("GET "+c+"/v3/rooms/{roomId}/members", a.guestOK(a.members))
	rt.Handle("GET "+c+"/v3/rooms/{roomId}/joined_members", a.authed(a.joinedMembers))
	rt.Handle("GET "+c+"/v3/rooms/{roomId}/state", a.guestOK(a.roomState))
	// timeline_relations.go
	rt.Handle("GET "+c+"/v1/rooms/{roomId}/relations/{eventId}", a.guestOK(a.relations))
	rt.Handle("GET "+c+"/v1/rooms/{roomId}/relations/{eventId}/{relType}", a.guestOK(a.relations))
	rt.Handle("GET "+c+"/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", a.guestOK(a.relations))
	rt.Handle("GET "+c+"/v1/rooms/{roomId}/threads", a.authed(a.threads))
	// timeline_reports.go
	rt.Handle("POST "+c+"/v3/rooms/{roomId}/report/{eventId}", a.authed(a.reportEvent))
	rt.Handle("POST "+c+"/v3/rooms/{roomId}/report", a.authed(a.reportRoom))
	const s = "/_synapse/admin"
	rt.Handle("GET "+s+"/v1/event_reports", a.admin(a.listEventReports))
	rt.Handle("GET "+s+"/v1/event_reports/{reportId}", a.admin(a.getEventReport))
	rt.Handle("DELETE "+s+"/v1/event_reports/{reportId}", a.admin(a.deleteEventReport))
}

// eventIDParam parses the {eventId} path parameter.
func eventIDParam(r *http.Request) (id.EventID, error) {
	s := r.PathValue("eventId")
	if !strings.HasPrefix(s, "$") || len(s) > 255 {
		return "", mxerr.InvalidParam("Invalid event ID %q", s)
	}
	return id.EventID(s), nil
}

// queryInt parses an optional integer query parameter; def if absent.
// M_INVALID_PARAM if it is not an integer in [lo, hi].
func queryInt(r *http.Request, name string, def, lo, hi int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, mxerr.InvalidParam("%s must be an integer between %d and %d", name, lo, hi)
	}
	return n, nil
}

// queryDir parses the dir query parameter ("b" or "f"); def if absent.
func queryDir(r *http.Request, def string) (backwards bool, err error) {
	d := r.URL.Query().Get("dir")
	if d == "" {
		d = def
	}
	switch d {
	case "b":
		return true, nil
	case "f":
		return false, nil
	}
	return false, mxerr.InvalidParam("dir must be b or f")
}

// queryBool parses an optional boolean query parameter.
func queryBool(r *http.Request, name string) (value, set bool, err error) {
	v := r.URL.Query().Get(name)
	switch v {
	case "":
		return false, false, nil
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, false, mxerr.InvalidParam("%s must be true or false", name)
}

func viewer(r *http.Request) room.Viewer {
	who := Who(r)
	return room.Viewer{UserID: who.UserID, DeviceID: who.DeviceID}
}

// format formats events for the requesting client, with bundled
// aggregations.
func (a *API) format(r *http.Request, evs []*store.Event) ([]json.RawMessage, error) {
	return a.svc.Rooms.Format(r.Context(), evs, viewer(r), room.FormatOptions{})
}

// formatState formats state events (which get no aggregations).
func (a *API) formatState(r *http.Request, evs []*store.Event) ([]json.RawMessage, error) {
	return a.svc.Rooms.Format(r.Context(), evs, viewer(r), room.FormatOptions{NoAggregations: true})
}

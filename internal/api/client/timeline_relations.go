package client

import (
	"math"
	"net/http"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
)

// GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]
func (a *API) relations(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	eventID, err := eventIDParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	backwards, err := queryDir(r, "b")
	if err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 0, 1, math.MaxInt32)
	if err != nil {
		return err
	}
	recurse, set, err := queryBool(r, "recurse")
	if err != nil {
		return err
	}
	if !set { // the unstable name of MSC3981
		if recurse, set, err = queryBool(r, "org.matrix.msc3981.recurse"); err != nil {
			return err
		}
	}
	p, err := a.svc.Rooms.Relations(r.Context(), Who(r).UserID, roomID, room.RelationsRequest{
		EventID: eventID, RelType: r.PathValue("relType"), EventType: r.PathValue("eventType"),
		From: q.Get("from"), To: q.Get("to"), Backwards: backwards, Limit: int(limit), Recurse: recurse,
	})
	if err != nil {
		return err
	}
	chunk, err := a.format(r, p.Chunk)
	if err != nil {
		return err
	}
	resp := map[string]any{"chunk": chunk}
	if p.NextBatch != "" {
		resp["next_batch"] = p.NextBatch
	}
	if p.PrevBatch != "" {
		resp["prev_batch"] = p.PrevBatch
	}
	if set {
		// "If the recurse parameter was supplied ... this field is
		// mandatory and gives the actual depth to which the server
		// recursed."
		depth := 1
		if recurse {
			depth = room.RecurseLevels
		}
		resp["recursion_depth"] = depth
	}
	return api.OK(w, resp)
}

// GET /_matrix/client/v1/rooms/{roomId}/threads
func (a *API) threads(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var participated bool
	switch q.Get("include") {
	case "", "all":
	case "participated":
		participated = true
	default:
		return mxerr.InvalidParam("include must be all or participated")
	}
	limit, err := queryInt(r, "limit", 0, 1, math.MaxInt32)
	if err != nil {
		return err
	}
	p, err := a.svc.Rooms.Threads(r.Context(), Who(r).UserID, roomID, room.ThreadsRequest{
		Participated: participated, From: q.Get("from"), Limit: int(limit),
	})
	if err != nil {
		return err
	}
	chunk, err := a.format(r, p.Chunk)
	if err != nil {
		return err
	}
	resp := map[string]any{"chunk": chunk}
	if p.NextBatch != "" {
		resp["next_batch"] = p.NextBatch
	}
	return api.OK(w, resp)
}

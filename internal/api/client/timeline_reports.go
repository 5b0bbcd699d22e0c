package client

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
)

// maxReasonLen bounds a report's reason.
const maxReasonLen = 10000

// POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}
func (a *API) reportEvent(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	eventID, err := eventIDParam(r)
	if err != nil {
		return err
	}
	var body struct {
		Reason *string          `json:"reason"`
		Score  *json.RawMessage `json:"score"`
	}
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	reason := ""
	if body.Reason != nil {
		reason = *body.Reason
	}
	if len(reason) > maxReasonLen {
		return mxerr.InvalidParam("reason is longer than %d bytes", maxReasonLen)
	}
	var score *int64
	if body.Score != nil && string(*body.Score) != "null" {
		// score was removed in v1.18; older clients still send it.
		var n int64
		if err := json.Unmarshal(*body.Score, &n); err != nil {
			return mxerr.InvalidParam("score must be an integer between -100 and 0")
		}
		score = &n
	}
	if err := a.svc.Rooms.ReportEvent(r.Context(), Who(r).UserID, roomID, eventID, reason, score); err != nil {
		return err
	}
	return api.OK(w, map[string]any{})
}

// POST /_matrix/client/v3/rooms/{roomId}/report
func (a *API) reportRoom(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	var body struct {
		Reason *string `json:"reason"`
	}
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.Reason == nil {
		return mxerr.MissingParam("reason is required")
	}
	if len(*body.Reason) > maxReasonLen {
		return mxerr.InvalidParam("reason is longer than %d bytes", maxReasonLen)
	}
	if err := a.svc.Rooms.ReportRoom(r.Context(), Who(r).UserID, roomID, *body.Reason); err != nil {
		return err
	}
	return api.OK(w, map[string]any{})
}

// eventReport is an event report in the Synapse admin API.
type eventReport struct {
	ID             int64           `json:"id"`
	ReceivedTS     int64           `json:"received_ts"`
	RoomID         id.RoomID       `json:"room_id"`
	Name           *string         `json:"name"`
	CanonicalAlias *string         `json:"canonical_alias"`
	EventID        id.EventID      `json:"event_id"`
	UserID         id.UserID       `json:"user_id"`
	Sender         id.UserID       `json:"sender"`
	Reason         *string         `json:"reason"`
	Score          *int64          `json:"score"`
	EventJSON      json.RawMessage `json:"event_json,omitempty"`
}

func toEventReport(ri room.ReportInfo) eventReport {
	out := eventReport{
		ID: ri.ID, ReceivedTS: ri.ReceivedTS, RoomID: ri.RoomID, EventID: ri.EventID,
		UserID: ri.UserID, Sender: ri.EventSender, Score: ri.Score,
	}
	if ri.RoomName != "" {
		out.Name = &ri.RoomName
	}
	if ri.CanonicalAlias != "" {
		out.CanonicalAlias = &ri.CanonicalAlias
	}
	if ri.Reason != "" {
		out.Reason = &ri.Reason
	}
	return out
}

// adminPage reads the paging parameters of Synapse's admin lists: from
// (an offset, default 0), limit (default 100) and dir (dflt when absent).
func adminPage(r *http.Request, dflt string) (from, limit int64, backwards bool, err error) {
	if from, err = queryInt(r, "from", 0, 0, math.MaxInt32); err != nil {
		return 0, 0, false, err
	}
	if limit, err = queryInt(r, "limit", 100, 0, math.MaxInt32); err != nil {
		return 0, 0, false, err
	}
	backwards, err = queryDir(r, dflt)
	return from, limit, backwards, err
}

// GET /_synapse/admin/v1/event_reports
func (a *API) listEventReports(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	from, limit, backwards, err := adminPage(r, "b")
	if err != nil {
		return err
	}
	rq := store.ReportQuery{
		Offset: int(from), Limit: int(limit), Backwards: backwards,
		RoomID: id.RoomID(q.Get("room_id")), UserID: id.UserID(q.Get("user_id")), EventSender: id.UserID(q.Get("event_sender_user_id")),
	}
	rs, total, err := a.svc.Rooms.EventReports(r.Context(), rq)
	if err != nil {
		return err
	}
	list := make([]eventReport, len(rs))
	for i, ri := range rs {
		list[i] = toEventReport(ri)
	}
	resp := map[string]any{"event_reports": list, "total": total}
	if next := int(from) + len(rs); next < total && len(rs) > 0 {
		resp["next_token"] = next
	}
	return api.OK(w, resp)
}

func reportIDParam(r *http.Request) (int64, error) {
	n, err := strconv.ParseInt(r.PathValue("reportId"), 10, 64)
	if err != nil || n < 0 {
		return 0, mxerr.InvalidParam("The report_id parameter must be a string representing a positive integer")
	}
	return n, nil
}

// GET /_synapse/admin/v1/event_reports/{reportId}
func (a *API) getEventReport(w http.ResponseWriter, r *http.Request) error {
	rid, err := reportIDParam(r)
	if err != nil {
		return err
	}
	ri, err := a.svc.Rooms.EventReport(r.Context(), rid)
	if err != nil {
		return err
	}
	out := toEventReport(*ri)
	if ri.Event != nil {
		ev, err := a.svc.Rooms.FormatOne(r.Context(), ri.Event, viewer(r), room.FormatOptions{Federation: true, NoAggregations: true})
		if err != nil {
			return err
		}
		out.EventJSON = ev
	}
	return api.OK(w, out)
}

// DELETE /_synapse/admin/v1/event_reports/{reportId}
func (a *API) deleteEventReport(w http.ResponseWriter, r *http.Request) error {
	rid, err := reportIDParam(r)
	if err != nil {
		return err
	}
	if err := a.svc.Rooms.DeleteEventReport(r.Context(), rid); err != nil {
		return err
	}
	return api.OK(w, map[string]any{})
}

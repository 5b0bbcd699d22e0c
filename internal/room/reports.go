package room

import (
	"context"
	"errors"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// ReportEvent records a user's report of an event (client-server API,
// "Reporting content"). The reporter must be joined to the room now (the
// spec requires it since v1.8) and able to see the event; otherwise, and
// for unknown events, M_NOT_FOUND. score, if given, must lie in
// [-100, 0] (M_INVALID_PARAM).
func (s *Service) ReportEvent(ctx context.Context, user id.UserID, roomID id.RoomID, eventID id.EventID, reason string, score *int64) error {
	if score != nil && (*score < -100 || *score > 0) {
		return mxerr.InvalidParam("score must be an integer between -100 and 0")
	}
	notFound := mxerr.NotFound("The event was not found or you are not joined to the room")
	r, err := s.reader(ctx, user, roomID)
	if err != nil || !r.joined {
		var mx *mxerr.Error
		if err == nil || errors.As(err, &mx) {
			return notFound
		}
		return err
	}
	ev, err := s.readableEvent(ctx, r, roomID, eventID)
	if err != nil {
		if _, ok := mxerr.As(err); ok {
			return notFound
		}
		return err
	}
	_, err = s.db.AddReport(ctx, store.Report{
		RoomID: roomID, EventID: eventID, EventSender: ev.Sender(), UserID: user, Reason: reason, Score: score,
	})
	return err
}

// ReportRoom records a user's report of a room. The spec forbids
// requiring membership; M_NOT_FOUND if the server does not know the room.
func (s *Service) ReportRoom(ctx context.Context, user id.UserID, roomID id.RoomID, reason string) error {
	ok, err := s.Exists(ctx, roomID)
	if err != nil {
		return err
	}
	if !ok {
		return mxerr.NotFound("The room was not found")
	}
	_, err = s.db.AddReport(ctx, store.Report{RoomID: roomID, UserID: user, Reason: reason})
	return err
}

// ReportInfo is an event report as the Synapse admin API shows it.
type ReportInfo struct {
	store.Report
	// RoomName and CanonicalAlias are the room's current ones ("" if
	// none).
	RoomName, CanonicalAlias string
	// Event is the reported event, nil if it is no longer stored.
	Event *store.Event
}

// EventReports returns a page of event reports for server admins, with
// the total number matching.
func (s *Service) EventReports(ctx context.Context, q store.ReportQuery) ([]ReportInfo, int, error) {
	rs, total, err := s.db.EventReports(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	out := make([]ReportInfo, len(rs))
	names := map[id.RoomID][2]string{}
	for i, r := range rs {
		out[i].Report = r
		n, ok := names[r.RoomID]
		if !ok {
			if n, err = s.roomNames(ctx, r.RoomID); err != nil {
				return nil, 0, err
			}
			names[r.RoomID] = n
		}
		out[i].RoomName, out[i].CanonicalAlias = n[0], n[1]
	}
	return out, total, nil
}

// EventReport returns one report with its event, or M_NOT_FOUND.
func (s *Service) EventReport(ctx context.Context, reportID int64) (*ReportInfo, error) {
	r, err := s.db.Report(ctx, reportID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && r.EventID == "") {
		return nil, mxerr.NotFound("Event report not found")
	}
	if err != nil {
		return nil, err
	}
	out := &ReportInfo{Report: r}
	n, err := s.roomNames(ctx, r.RoomID)
	if err != nil {
		return nil, err
	}
	out.RoomName, out.CanonicalAlias = n[0], n[1]
	ev, err := s.db.Event(ctx, r.EventID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	out.Event = ev
	return out, nil
}

// DeleteEventReport deletes an event report, or returns M_NOT_FOUND.
func (s *Service) DeleteEventReport(ctx context.Context, reportID int64) error {
	if _, err := s.EventReport(ctx, reportID); err != nil {
		return err
	}
	err := s.db.DeleteReport(ctx, reportID)
	if errors.Is(err, store.ErrNotFound) {
		return mxerr.NotFound("Event report not found")
	}
	return err
}

// roomNames returns a room's current name and canonical alias.
func (s *Service) roomNames(ctx context.Context, roomID id.RoomID) ([2]string, error) {
	var out [2]string
	for i, k := range [][2]string{{"m.room.name", "name"}, {"m.room.canonical_alias", "alias"}} {
		c, err := s.StateContent(ctx, roomID, k[0], "")
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return out, err
		}
		out[i], _ = getString(c, k[1])
	}
	return out, nil
}

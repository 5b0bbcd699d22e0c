package room

import (
	"context"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// ThreadsRequest is GET /rooms/{roomId}/threads.
type ThreadsRequest struct {
	// Participated keeps only the threads the user took part in.
	Participated bool
	// From is a next_batch token of an earlier page ("" for the first).
	From  string
	Limit int
}

// ThreadsPage is a page of thread roots.
type ThreadsPage struct {
	Chunk []*store.Event
	// NextBatch is "" when there are no more threads.
	NextBatch string
}

// Threads is GET /threads (client-server API, "Querying threads in a
// room"): the roots of the room's threads that the user may see, the
// thread with the most recent event first. A root sent by a user it
// ignores comes back redacted.
//
// Tokens are stream tokens "s{pos}_0": the page holds the threads whose
// latest event is at or before pos, as for a /sync next_batch.
// M_FORBIDDEN if the user may not read the room, M_INVALID_PARAM for a bad
// token.
func (s *Service) Threads(ctx context.Context, user id.UserID, roomID id.RoomID, req ThreadsRequest) (*ThreadsPage, error) {
	r, err := s.reader(ctx, user, roomID)
	if err != nil {
		return nil, err
	}
	ignored, err := s.IgnoredUsers(ctx, user)
	if err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 20
	}
	limit = min(limit, MaxLimit)
	// Threads are listed whoever wrote in them; ignored users' events only
	// leave the aggregations (and their roots come back redacted).
	q := store.ThreadsQuery{Room: roomID, Limit: limit + 1}
	if req.Participated {
		q.Participant = user
	}
	if r.departed {
		q.MaxStream = r.bound
	}
	out := &ThreadsPage{}
	if req.From != "" {
		t, err := ParseToken(req.From)
		if err != nil {
			return nil, mxerr.InvalidParam("Invalid pagination token %q", req.From)
		}
		q.MaxLatest = t.Stream
		if t.Topological {
			q.MaxLatest = t.Stream - 1 // the gap before the event at t.Stream
		}
		if q.MaxLatest <= 0 {
			return out, nil
		}
	}
	roots, err := s.db.Threads(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(roots) > limit {
		roots = roots[:limit]
		out.NextBatch = Token{Stream: roots[len(roots)-1].Latest - 1}.String()
	}
	ids := make([]id.EventID, len(roots))
	for i, t := range roots {
		ids[i] = t.RootID
	}
	evs, err := s.eventsInOrder(ctx, ids)
	if err != nil {
		return nil, err
	}
	// Roots from ignored users are kept (redacted below), so visibility
	// runs without the ignore list.
	vis, err := s.visible(ctx, r, nil, evs)
	if err != nil {
		return nil, err
	}
	for i, ev := range vis {
		if ignored[ev.Sender()] && ev.RedactedBy == "" {
			cp := *ev
			cp.PDU = ev.PDU.Redacted()
			vis[i] = &cp
		}
	}
	out.Chunk = vis
	return out, nil
}

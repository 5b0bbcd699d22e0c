package sync

// Sliding sync connections: the pos token, long-polling and the
// expiry of unknown positions (MSC4186 "Connections").

import (
	"context"
	"encoding/json"
	"errors"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/store"
)

// unknownPos is the error for a pos the server does not know (any more):
// 400 M_UNKNOWN_POS, after which clients start a new connection (MSC4186
// "A server may decide to expire connections").
func unknownPos() error {
	return mxerr.New("M_UNKNOWN_POS", "Unknown or expired position; start a new connection").WithStatus(400)
}

// SlidingSync answers a sliding sync request: at once when it has no pos,
// a zero timeout or something to report, otherwise when something for the
// user happens or the timeout passes. Errors: 400 M_UNKNOWN_POS for a pos
// not issued to this user, device and conn_id or no longer kept (the
// client then starts over without pos), M_INVALID_PARAM for a bad
// set_presence.
func (s *Service) SlidingSync(ctx context.Context, req *SlidingRequest) (*SlidingResponse, error) {
	switch req.SetPresence {
	case "":
		req.SetPresence = Online
	case Online, Unavailable, Offline:
	default:
		return nil, mxerr.InvalidParam("set_presence must be online, unavailable or offline")
	}
	var prev *store.SlidingPosition
	if req.Pos != "" {
		p, err := s.db.SlidingPos(ctx, req.User, req.Device, req.ConnID, req.Pos)
		if errors.Is(err, store.ErrNotFound) {
			return nil, unknownPos()
		}
		if err != nil {
			return nil, err
		}
		prev = p
	}
	subs, err := mergeSubscriptions(prev, req)
	if err != nil {
		return nil, err
	}
	if req.SetPresence != Offline {
		if err := s.src.Presence.Touch(ctx, req.User, req.SetPresence); err != nil {
			return nil, err
		}
		defer s.src.Presence.Syncing(req.User)()
	}
	cur := s.n.Current()
	var since *notify.Position
	if prev != nil {
		since = &notify.Position{Stream: prev.Stream, Typing: prev.Typing}
		if since.Typing > cur.Typing {
			// The typing counter restarted with the process.
			since.Typing = 0
		}
	}
	sb, err := s.slidingBuild(ctx, req, prev, since, subs, cur)
	if err != nil {
		return nil, err
	}
	if prev != nil && req.Timeout > 0 && sb.empty() {
		wctx, cancel := context.WithTimeout(ctx, req.Timeout)
		defer cancel()
		defer context.AfterFunc(s.life, cancel)()
		for sb.empty() && wctx.Err() == nil {
			rooms, err := s.wakeRooms(ctx, req.User)
			if err != nil {
				return nil, err
			}
			rooms = append(rooms, sb.watched()...)
			cur = s.n.Wait(wctx, req.User, rooms, sb.to)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if !cur.After(sb.to) {
				break // timed out or shutting down
			}
			if sb, err = s.slidingBuild(ctx, req, prev, since, subs, cur); err != nil {
				return nil, err
			}
		}
	}
	raw, err := json.Marshal(subs)
	if err != nil {
		return nil, err
	}
	tok, err := s.db.SlidingSave(ctx, req.User, req.Device, req.ConnID, req.Pos, sb.to.Stream, sb.to.Typing, raw, sb.sent)
	if errors.Is(err, store.ErrNotFound) {
		// Another request with a newer pos superseded this one.
		return nil, unknownPos()
	}
	if err != nil {
		return nil, err
	}
	sb.resp.Pos = tok
	s.lazy.record(sb.lazyKey(), sb.to.Stream, sb.lazySent)
	return sb.resp, nil
}

// mergeSubscriptions returns the subscriptions in force: the
// connection's, replaced by the request's and without those it
// unsubscribes.
func mergeSubscriptions(prev *store.SlidingPosition, req *SlidingRequest) (map[id.RoomID]*RoomConfig, error) {
	subs := map[id.RoomID]*RoomConfig{}
	if prev != nil && len(prev.Subscriptions) > 0 {
		if err := json.Unmarshal(prev.Subscriptions, &subs); err != nil {
			return nil, err
		}
	}
	for r, c := range req.Subscriptions {
		subs[r] = c
	}
	for _, r := range req.Unsubscribe {
		delete(subs, r)
	}
	return subs, nil
}

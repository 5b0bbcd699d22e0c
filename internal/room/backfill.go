package room

import (
	"context"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
)

// Backfill (server-server API, "Backfilling and retrieving missing
// events"): when a client pages back past the oldest event we hold of a
// room, the history before it is asked of a server in the room, checked
// like any remote event, and stored with backfill stream positions.

// backfillRetry is how long after a backfill that brought nothing the
// room's servers are not asked again.
const backfillRetry = time.Minute

// backfill fetches up to limit events before the oldest we hold of a
// room. It reports whether it stored any.
func (s *Service) backfill(ctx context.Context, roomID id.RoomID, limit int) (bool, error) {
	if s.cfg.Federation == nil {
		return false, nil
	}
	s.mu.Lock()
	if t, ok := s.noBackfill[roomID]; ok && time.Since(t) < backfillRetry {
		s.mu.Unlock()
		return false, nil
	}
	s.mu.Unlock()
	oldest, err := s.db.OldestEvents(ctx, roomID, 5)
	if err != nil || len(oldest) == 0 {
		return false, err
	}
	var prevs []id.EventID
	for _, ev := range oldest {
		for _, p := range ev.PrevEventIDs() {
			if !slices.Contains(prevs, p) {
				prevs = append(prevs, p)
			}
		}
	}
	held, err := s.db.Events(ctx, prevs)
	if err != nil {
		return false, err
	}
	for _, ev := range held {
		if ev.StreamPos != 0 || ev.IsRejected {
			prevs = slices.DeleteFunc(prevs, func(e id.EventID) bool { return e == ev.EventID() })
		}
	}
	if len(prevs) == 0 {
		return false, nil // the start of the room
	}
	servers, err := s.JoinedServers(ctx, roomID)
	if err != nil {
		return false, err
	}
	version, err := s.Version(ctx, roomID)
	if err != nil {
		return false, err
	}
	limit = min(max(limit, 20), 100)
	for _, srv := range servers {
		if srv == s.cfg.ServerName {
			continue
		}
		// The room is not locked while a remote server is asked: a slow
		// one must not hold up local sends.
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := s.cfg.Federation.Backfill(cctx, srv, roomID, prevs, limit)
		cancel()
		if err != nil {
			s.log.Info("backfill failed", "room_id", roomID, "destination", srv, "err", err)
			continue
		}
		raws := make([][]byte, len(resp.PDUs))
		for i, r := range resp.PDUs {
			raws[i] = r
		}
		pdus, _ := parseAll(version, roomID, raws)
		verified, _ := s.verifyAll(ctx, pdus)
		slices.SortStableFunc(verified, func(a, b *event.PDU) int { return int(a.Depth() - b.Depth()) })
		ids := make([]id.EventID, len(verified))
		for i, p := range verified {
			ids[i] = p.EventID()
		}
		before, err := s.db.Events(ctx, ids)
		if err != nil {
			return false, err
		}
		had := map[id.EventID]bool{}
		for _, ev := range before {
			if ev.StreamPos != 0 {
				had[ev.EventID()] = true
			}
		}
		rs, err := s.lock(ctx, roomID)
		if err != nil {
			return false, err
		}
		added := 0
		for _, p := range verified {
			if had[p.EventID()] {
				continue
			}
			if err := s.ingestEvent(ctx, rs, srv, p, false, true); err != nil {
				s.log.Debug("backfilled event not accepted", "event_id", p.EventID(), "origin", srv, "err", err)
				continue
			}
			added++
		}
		rs.mu.Unlock()
		if added > 0 {
			s.log.Debug("backfilled", "room_id", roomID, "origin", srv, "events", added)
			return true, nil
		}
	}
	s.mu.Lock()
	s.noBackfill[roomID] = time.Now()
	s.mu.Unlock()
	return false, nil
}

package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	gosync "sync"

	"golang.org/x/sync/errgroup"
	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/eventauth"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

// Inbound PDUs (server-server API, "Checks performed on receipt of a
// PDU"): parse, signatures, hashes, auth against the event's own auth
// events, auth against the state before it (rejected otherwise), auth
// against the current state (soft-failed otherwise). Missing prev events
// are fetched with get_missing_events; when a gap remains, the state
// before the missing events is asked of the sender with state_ids. Every
// state computed here goes through the same resolver as local forks.

// maxMissingEvents bounds one get_missing_events request.
const maxMissingEvents = 20

// ErrNotInRoom is the result of PDUs of rooms this server is not in.
var ErrNotInRoom = errors.New("this server is not in the room")

// ReceivePDUs implements the inbound transaction's PDU handling.
func (s *Service) ReceivePDUs(ctx context.Context, origin string, pdus []json.RawMessage) map[id.EventID]error {
	results := map[id.EventID]error{}
	var mu gosync.Mutex
	byRoom := map[id.RoomID][][]byte{}
	var order []id.RoomID
	for _, raw := range pdus {
		v, ok := cjson.Get(raw, "room_id")
		if !ok {
			continue
		}
		rid, err := cjson.Unquote(v)
		if err != nil {
			continue
		}
		if _, ok := byRoom[id.RoomID(rid)]; !ok {
			order = append(order, id.RoomID(rid))
		}
		byRoom[id.RoomID(rid)] = append(byRoom[id.RoomID(rid)], raw)
	}
	var g errgroup.Group
	g.SetLimit(4)
	for _, rid := range order {
		g.Go(func() error {
			res := s.receiveRoom(ctx, origin, rid, byRoom[rid])
			mu.Lock()
			for k, v := range res {
				results[k] = v
			}
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait()
	return results
}

func (s *Service) receiveRoom(ctx context.Context, origin string, roomID id.RoomID, raws [][]byte) map[id.EventID]error {
	res := map[id.EventID]error{}
	r, err := s.db.Room(ctx, roomID)
	if err != nil {
		return res // unknown room: the PDUs cannot even be parsed
	}
	pdus, _ := parseAll(r.Version, roomID, raws)
	if ok, err := s.ServerAllowed(ctx, roomID, origin); err == nil && !ok {
		for _, p := range pdus {
			res[p.EventID()] = errors.New("server ACL forbids the origin")
		}
		return res
	}
	verified, bad := s.verifyAll(ctx, pdus)
	for k, v := range bad {
		s.log.Debug("inbound PDU failed verification", "event_id", k, "room_id", roomID, "origin", origin, "err", v)
		res[k] = v
	}
	slices.SortStableFunc(verified, func(a, b *event.PDU) int { return int(a.Depth() - b.Depth()) })
	// Gaps are asked of origin before the room is locked, so that a slow
	// server does not hold up the room's local sends.
	gap := s.prefetchGaps(ctx, r.Version, origin, roomID, verified)
	rs, err := s.lock(ctx, roomID)
	if err != nil {
		for _, p := range verified {
			res[p.EventID()] = err
		}
		return res
	}
	if !s.resident(rs) {
		rs.mu.Unlock()
		for _, p := range verified {
			res[p.EventID()] = s.outOfRoom(ctx, r.Version, origin, p)
		}
		return res
	}
	defer rs.mu.Unlock()
	// The gap's events and the transaction's, together in depth order: a
	// fetched event may build on one the transaction carries (a fork that
	// merged it), which must be in before it, not fetched a second time
	// as the state at a gap.
	inTxn := make(map[id.EventID]bool, len(verified))
	for _, p := range verified {
		inTxn[p.EventID()] = true
	}
	all := append(gap, verified...)
	slices.SortStableFunc(all, func(a, b *event.PDU) int { return int(a.Depth() - b.Depth()) })
	for _, p := range all {
		if !inTxn[p.EventID()] {
			if err := s.ingest(ctx, rs, origin, p, false); err != nil {
				s.log.Debug("missing event not accepted", "event_id", p.EventID(), "err", err)
			}
			continue
		}
		err := s.ingest(ctx, rs, origin, p, true)
		if err != nil {
			s.log.Debug("inbound PDU not accepted", "event_id", p.EventID(), "room_id", roomID, "origin", origin, "err", err)
		}
		res[p.EventID()] = err
	}
	return res
}

// outOfRoom takes, from a room this server is not in, the events that
// end a local user's invite or knock (a rescinded invite, a refused
// knock, a ban): without the room's state they cannot be checked against
// it, so, as Synapse does with such "out-of-band" memberships, they are
// taken when their sender's server sent them and our user's membership
// is the invite or knock they end (a leave ends an invite only when its
// sender is the inviter). Anything else is ErrNotInRoom.
func (s *Service) outOfRoom(ctx context.Context, version id.RoomVersion, origin string, p *event.PDU) error {
	sk := p.StateKey()
	if p.Type() != event.TypeMember || sk == nil || id.UserID(*sk).Homeserver() != s.cfg.ServerName || p.Sender().Homeserver() != origin {
		return ErrNotInRoom
	}
	m, _ := getString(p.Content(), "membership")
	if m != Leave && m != Ban {
		return ErrNotInRoom
	}
	cur, err := s.db.UserMembership(ctx, p.RoomID(), id.UserID(*sk))
	if err != nil || (cur.Membership != Invite && cur.Membership != Knock) {
		return ErrNotInRoom
	}
	// Only the inviter rescinds an invite (as Synapse; Complement
	// TestFederationRoomsInvite "Non-invitee user cannot rescind invite
	// over federation"): another member's kick of a user who has not
	// joined is not shown to it.
	if cur.Membership == Invite && m == Leave && p.Sender() != cur.Sender {
		return ErrNotInRoom
	}
	_, err = s.persistOutOfRoom(ctx, version, p, "", nil)
	return err
}

// eventCache loads events by ID for one ingest, remembering them.
type eventCache struct {
	s     *Service
	ctx   context.Context
	known map[id.EventID]eventauth.Event
}

func (c *eventCache) get(eid id.EventID) eventauth.Event {
	if ev, ok := c.known[eid]; ok {
		return ev
	}
	ev, err := c.s.db.Event(c.ctx, eid)
	if err != nil {
		return nil
	}
	c.known[eid] = ev
	return ev
}

func (c *eventCache) pdu(eid id.EventID) *event.PDU {
	switch ev := c.get(eid).(type) {
	case *store.Event:
		return ev.PDU
	case *event.PDU:
		return ev
	}
	return nil
}

// rejection marks an ingest error that stored the event as rejected.
type rejection struct{ err error }

func (r *rejection) Error() string { return "rejected: " + r.err.Error() }
func (r *rejection) Unwrap() error { return r.err }

// ingest checks and persists one verified remote event. rs must be
// locked. fetch allows fetching missing prev events from origin (off for
// the events fetched that way, which fall back to state_ids).
func (s *Service) ingest(ctx context.Context, rs *roomState, origin string, p *event.PDU, fetch bool) error {
	return s.ingestEvent(ctx, rs, origin, p, fetch, false)
}

// ingestEvent is ingest; backfill marks history fetched with /backfill:
// it gets a backfill stream position, is not checked against the current
// state, and moves neither the forward extremities nor the current state.
// An event we hold as an outlier (from a join's state) becomes a
// backfilled timeline event.
func (s *Service) ingestEvent(ctx context.Context, rs *roomState, origin string, p *event.PDU, fetch, backfill bool) error {
	// An event we hold as an outlier (fetched for the state at a gap, or
	// in an auth or state chain) is in the past of events we have: it is
	// checked and becomes a timeline event, late, but it moves neither the
	// forward extremities nor the current state.
	promote := false
	if old, err := s.db.Event(ctx, p.EventID()); err == nil {
		if old.StreamPos != 0 || old.IsRejected {
			return nil
		}
		promote = true
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	ec := &eventCache{s: s, ctx: ctx, known: map[id.EventID]eventauth.Event{}}
	defer s.src.hold(p)()
	// The state before the event, from the states after its prev events,
	// first: filling a gap (get_missing_events, state_ids) also brings
	// the auth chain of the events after it, which the event's own auth
	// events may need (as Synapse, which fetches missing prev events
	// before it checks auth events; Complement
	// TestMSC4297StateResolutionV2_1_*: a 250-event chain of auth events).
	prevStates, missingPrev, err := s.prevStates(ctx, p)
	if err != nil {
		return err
	}
	if len(missingPrev) > 0 && fetch && s.cfg.Federation != nil {
		s.fetchMissing(ctx, rs, origin, p)
		if prevStates, missingPrev, err = s.prevStates(ctx, p); err != nil {
			return err
		}
	}
	for _, prev := range missingPrev {
		st, err := s.stateAfterRemote(ctx, rs.version, origin, p.RoomID(), prev)
		if err != nil {
			return fmt.Errorf("state at missing prev event %s: %w", prev, err)
		}
		prevStates = append(prevStates, st)
	}
	// Step 4: the event's own auth events. Those that cannot be had
	// reject it (as Synapse; dropping it would leave a hole that every
	// later event would try to fill again: Complement
	// TestCorruptedAuthChain).
	var missing []id.EventID
	for _, a := range p.AuthEventIDs() {
		if ec.get(a) == nil {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		if err := s.fetchAuthEvents(ctx, rs.version, origin, p, missing); err != nil {
			s.log.Debug("auth events not fetched", "event_id", p.EventID(), "room_id", p.RoomID(), "origin", origin, "missing", len(missing), "err", err)
		}
	}
	var rejectErr error
	if err := authAgainstOwn(rs.version, p, ec.get); err != nil {
		rejectErr = err
	}
	before, err := s.res.StateBefore(ctx, rs.version, prevStates)
	if err != nil {
		return fmt.Errorf("state before %s: %w", p.EventID(), err)
	}
	// Step 5: the state before the event.
	if rejectErr == nil {
		if err := eventauth.Check(rs.version, p, lookupIn(before, ec.get)); err != nil {
			rejectErr = err
		}
	}
	// Step 6: the current state.
	softFailed := false
	if rejectErr == nil && !backfill {
		if err := eventauth.Check(rs.version, p, rs.lookup); err != nil {
			softFailed = true
			s.log.Info("soft-failed remote event", "event_id", p.EventID(), "room_id", p.RoomID(), "origin", origin, "err", err)
		}
	}
	after := before
	if sk := p.StateKey(); sk != nil && rejectErr == nil {
		after = maps(before)
		after[stateres.StateKey{Type: p.Type(), StateKey: *sk}] = p.EventID()
	}
	ne := store.NewEvent{PDU: p, Rejected: rejectErr != nil, SoftFailed: softFailed, Backfilled: backfill}
	for _, prev := range p.PrevEventIDs() {
		if !slices.Contains(missingPrev, prev) {
			ne.StateBase = prev
			break
		}
	}
	baseState := stateres.StateMap{}
	if ne.StateBase != "" {
		if baseState, err = s.db.StateAfter(ctx, ne.StateBase); err != nil {
			return err
		}
	}
	ne.StateChanges = diff(baseState, after)
	if sk := p.StateKey(); sk != nil && rejectErr == nil {
		k := stateres.StateKey{Type: p.Type(), StateKey: *sk}
		if old, ok := before[k]; ok {
			ne.Replaces = old
			if op := ec.pdu(old); op != nil {
				u := cjson.Set(nil, []byte("{}"), "prev_content", op.Content())
				u = cjson.Set(nil, u, "prev_sender", cjson.AppendString(nil, string(op.Sender())))
				u = cjson.Set(nil, u, "replaces_state", cjson.AppendString(nil, string(old)))
				ne.Added = u
			}
		}
	}
	// Forward extremities and current state move for accepted new events.
	current := rs.state
	extremities := rs.extremities
	moves := rejectErr == nil && !softFailed && !backfill && !promote
	if moves {
		extremities = make([]id.EventID, 0, len(rs.extremities)+1)
		for _, x := range rs.extremities {
			if !slices.Contains(p.PrevEventIDs(), x) {
				extremities = append(extremities, x)
			}
		}
		extremities = append(extremities, p.EventID())
		if len(extremities) == 1 {
			current = after
		} else {
			states := make([]stateres.StateMap, 0, len(extremities))
			for _, x := range extremities[:len(extremities)-1] {
				st, err := s.db.StateAfter(ctx, x)
				if err != nil {
					return fmt.Errorf("state after extremity %s: %w", x, err)
				}
				states = append(states, st)
			}
			states = append(states, after)
			if current, err = s.res.Resolve(ctx, rs.version, states); err != nil {
				return fmt.Errorf("resolve current state: %w", err)
			}
		}
		ne.Extremities = extremities
		ne.CurrentChanges = diff(rs.state, current)
	}
	if promote && rejectErr != nil {
		// It stays the outlier it was: the events that made us fetch it
		// passed with it.
		return &rejection{rejectErr}
	}
	var red *redaction
	var pos int64
	var pn *pushes // rejected, soft-failed and backfilled events notify nobody
	if rejectErr == nil && !softFailed && !backfill {
		pn = s.preparePush(ctx, &store.Event{PDU: p})
	}
	err = s.db.WithTx(ctx, "persist_remote_event", func(tx *store.Tx) error {
		var err error
		if promote {
			if pos, err = tx.PromoteOutlier(ctx, ne); err != nil {
				return err
			}
		} else if pos, err = tx.PersistEvent(ctx, ne); err != nil {
			return err
		}
		if err := pn.writeAt(ctx, tx, 0, pos); err != nil {
			return err
		}
		if p.Type() == event.TypeRedaction && p.Redacts() != "" && rejectErr == nil && !softFailed {
			st := current
			if backfill || promote {
				st = before
			}
			red, err = s.applyRedaction(ctx, tx, rs, st, ec.pdu, p)
		}
		return err
	})
	pn.finish(err, &store.Event{PDU: p, StreamPos: pos, Added: ne.Added, Replaces: ne.Replaces})
	if errors.Is(err, store.ErrConflict) {
		return nil
	}
	if err != nil {
		return err
	}
	if backfill {
		if rejectErr != nil {
			return &rejection{rejectErr}
		}
		return nil
	}
	// Commit happened: update the cache.
	if moves {
		for k, eid := range ne.CurrentChanges {
			if old, ok := rs.state[k]; ok {
				delete(rs.events, old)
			}
			if eid == "" {
				continue
			}
			if pp := ec.pdu(eid); pp != nil {
				rs.events[eid] = pp
			} else if eid == p.EventID() {
				rs.events[eid] = p
			}
		}
		rs.state = current
		rs.extremities = extremities
		rs.depth = max(rs.depth, p.Depth())
	}
	if red != nil {
		if _, ok := rs.events[red.target]; ok {
			rs.events[red.target] = red.redacted
		}
	}
	s.announce(&store.Event{PDU: p, StreamPos: pos, Added: ne.Added, Replaces: ne.Replaces, IsRejected: ne.Rejected, SoftFailed: softFailed})
	if rejectErr != nil {
		return &rejection{rejectErr}
	}
	return nil
}

// errForeignEvent is the error of an event that names events of another
// room as its prev events (or whose sender's state does): it is dropped.
var errForeignEvent = errors.New("an event it builds on is in another room")

// prevStates returns the states after an event's prev events that we
// hold with state, and the prev events we do not.
func (s *Service) prevStates(ctx context.Context, p *event.PDU) ([]stateres.StateMap, []id.EventID, error) {
	held, err := s.db.Events(ctx, p.PrevEventIDs())
	if err != nil {
		return nil, nil, err
	}
	for _, ev := range held {
		if ev.RoomID() != p.RoomID() {
			return nil, nil, fmt.Errorf("%w: %s", errForeignEvent, ev.EventID())
		}
	}
	var states []stateres.StateMap
	var missing []id.EventID
	for _, prev := range p.PrevEventIDs() {
		st, err := s.db.StateAfter(ctx, prev)
		if errors.Is(err, store.ErrNotFound) {
			missing = append(missing, prev)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		states = append(states, st)
	}
	return states, missing, nil
}

// fetchMissing asks origin for the events between our forward
// extremities and p (get_missing_events) and ingests them, oldest first.
// Failures leave the gap to stateAfterRemote.
func (s *Service) fetchMissing(ctx context.Context, rs *roomState, origin string, p *event.PDU) {
	for _, m := range s.missingEvents(ctx, rs.version, origin, p, rs.extremities) {
		if err := s.ingest(ctx, rs, origin, m, false); err != nil {
			s.log.Debug("missing event not accepted", "event_id", m.EventID(), "err", err)
		}
	}
}

// missingEvents asks origin for the events between earliest and p
// (get_missing_events) and returns those that verify, oldest first,
// without p.
func (s *Service) missingEvents(ctx context.Context, version id.RoomVersion, origin string, p *event.PDU, earliest []id.EventID) []*event.PDU {
	resp, err := s.cfg.Federation.GetMissingEvents(ctx, origin, p.RoomID(), federation.MissingEventsRequest{
		EarliestEvents: earliest, LatestEvents: []id.EventID{p.EventID()}, Limit: maxMissingEvents,
	})
	if err != nil {
		s.log.Info("get_missing_events failed", "room_id", p.RoomID(), "destination", origin, "err", err)
		return nil
	}
	raws := make([][]byte, len(resp.Events))
	for i, r := range resp.Events {
		raws[i] = r
	}
	pdus, _ := parseAll(version, p.RoomID(), raws)
	verified, bad := s.verifyAll(ctx, pdus)
	for eid, err := range bad {
		s.log.Debug("missing event failed verification", "event_id", eid, "origin", origin, "err", err)
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		got := make([]id.EventID, len(verified))
		for i, m := range verified {
			got[i] = m.EventID()
		}
		s.log.Debug("get_missing_events answered", "room_id", p.RoomID(), "destination", origin, "latest", p.EventID(), "earliest", earliest, "returned", len(raws), "events", got)
	}
	slices.SortStableFunc(verified, func(a, b *event.PDU) int { return int(a.Depth() - b.Depth()) })
	return slices.DeleteFunc(verified, func(m *event.PDU) bool { return m.EventID() == p.EventID() })
}

// prefetchGaps fetches, without the room's lock, the missing events
// before the PDUs of a transaction whose prev events are neither stored
// nor among them. It returns them oldest first, for ingest before the
// transaction's PDUs.
func (s *Service) prefetchGaps(ctx context.Context, version id.RoomVersion, origin string, roomID id.RoomID, pdus []*event.PDU) []*event.PDU {
	if s.cfg.Federation == nil {
		return nil
	}
	inBatch := make(map[id.EventID]bool, len(pdus))
	var prevs []id.EventID
	for _, p := range pdus {
		inBatch[p.EventID()] = true
		prevs = append(prevs, p.PrevEventIDs()...)
	}
	held, err := s.db.Events(ctx, prevs)
	if err != nil {
		return nil
	}
	have := make(map[id.EventID]bool, len(held))
	for _, ev := range held {
		have[ev.EventID()] = true
	}
	var out []*event.PDU
	var earliest []id.EventID
	for _, p := range pdus {
		gap := false
		for _, prev := range p.PrevEventIDs() {
			gap = gap || (!have[prev] && !inBatch[prev])
		}
		if !gap {
			continue
		}
		if earliest == nil {
			if earliest, err = s.db.Extremities(ctx, roomID); err != nil {
				return out
			}
		}
		for _, m := range s.missingEvents(ctx, version, origin, p, earliest) {
			if !inBatch[m.EventID()] {
				inBatch[m.EventID()] = true
				out = append(out, m)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b *event.PDU) int { return int(a.Depth() - b.Depth()) })
	return out
}

// fetchAuthEvents fetches the missing auth events of p: its auth chain
// from /event_auth, or, when that fails (Synapse answers 404 for events
// it rejected), the missing events one by one with /event, then theirs,
// for a few rounds.
func (s *Service) fetchAuthEvents(ctx context.Context, version id.RoomVersion, origin string, p *event.PDU, missing []id.EventID) error {
	if s.cfg.Federation == nil {
		return errNoFederation
	}
	chainErr := s.fetchAuthChain(ctx, version, origin, p.RoomID(), p.EventID())
	for round := 0; round < 4; round++ {
		held, err := s.db.Events(ctx, missing)
		if err != nil {
			return err
		}
		have := map[id.EventID]bool{}
		for _, ev := range held {
			have[ev.EventID()] = true
		}
		missing = slices.DeleteFunc(missing, func(e id.EventID) bool { return have[e] })
		if len(missing) == 0 {
			return nil
		}
		var raws []json.RawMessage
		var next []id.EventID
		for _, eid := range missing {
			raw, err := s.cfg.Federation.Event(ctx, origin, eid)
			if err != nil {
				continue
			}
			raws = append(raws, raw)
			if q, err := event.Parse(version, raw); err == nil {
				next = append(next, q.AuthEventIDs()...)
			}
		}
		if len(raws) == 0 {
			break
		}
		// Their own auth events first, so that they can be checked.
		if len(next) > 0 && round < 3 {
			if held, err := s.db.Events(ctx, next); err == nil && len(held) < len(next) {
				missing = append(missing, next...)
				continue
			}
		}
		if err := s.storeOutliers(ctx, version, p.RoomID(), raws); err != nil {
			return err
		}
	}
	// The last round's events may be all that was missing.
	if held, err := s.db.Events(ctx, missing); err == nil {
		have := map[id.EventID]bool{}
		for _, ev := range held {
			have[ev.EventID()] = true
		}
		if missing = slices.DeleteFunc(missing, func(e id.EventID) bool { return have[e] }); len(missing) == 0 {
			return nil
		}
	}
	if chainErr != nil {
		return chainErr
	}
	return fmt.Errorf("%d auth events could not be fetched", len(missing))
}

// fetchAuthChain fetches the auth chain of an event from a server and
// stores what we lack of it as outliers, each checked against its own
// auth events.
func (s *Service) fetchAuthChain(ctx context.Context, version id.RoomVersion, origin string, roomID id.RoomID, eventID id.EventID) error {
	if s.cfg.Federation == nil {
		return errNoFederation
	}
	resp, err := s.cfg.Federation.EventAuth(ctx, origin, roomID, eventID)
	if err != nil {
		return err
	}
	return s.storeOutliers(ctx, version, roomID, resp.AuthChain)
}

// storeOutliers verifies events and stores those we lack as outliers,
// auth events first, each checked against its own auth events (rejected
// if it fails, or if one of them is neither held nor among raws).
func (s *Service) storeOutliers(ctx context.Context, version id.RoomVersion, roomID id.RoomID, raws []json.RawMessage) error {
	bs := make([][]byte, len(raws))
	for i, r := range raws {
		bs[i] = r
	}
	pdus, _ := parseAll(version, roomID, bs)
	verified, _ := s.verifyAll(ctx, pdus)
	ids := make([]id.EventID, len(verified))
	for i, p := range verified {
		ids[i] = p.EventID()
	}
	stored, err := s.db.Events(ctx, ids)
	if err != nil {
		return err
	}
	have := map[id.EventID]bool{}
	ec := &eventCache{s: s, ctx: ctx, known: map[id.EventID]eventauth.Event{}}
	for _, ev := range stored {
		have[ev.EventID()] = true
		ec.known[ev.EventID()] = ev
	}
	ordered := authOrder(verified)
	return s.db.WithTx(ctx, "persist_outliers", func(tx *store.Tx) error {
		for _, p := range ordered {
			if have[p.EventID()] {
				continue
			}
			// An auth event that could not be fetched rejects it too: it
			// stays in the graph (a prev event we must hold to go on), but
			// never in a state.
			rejected := authAgainstOwn(version, p, ec.get) != nil
			// Known as it is stored: the events whose auth events include
			// a rejected one are rejected in turn (Complement
			// TestCorruptedAuthChain: none of them may become state).
			ec.known[p.EventID()] = &store.Event{PDU: p, IsRejected: rejected}
			if _, err := tx.PersistEvent(ctx, store.NewEvent{PDU: p, Outlier: true, Rejected: rejected}); err != nil && !errors.Is(err, store.ErrConflict) {
				return err
			}
		}
		return nil
	})
}

// stateAfterRemote asks origin for the state at a prev event we lack
// (state_ids gives the state before it), fetches the events of it we lack,
// and returns the state after the prev event.
func (s *Service) stateAfterRemote(ctx context.Context, version id.RoomVersion, origin string, roomID id.RoomID, prev id.EventID) (stateres.StateMap, error) {
	if s.cfg.Federation == nil {
		return nil, errNoFederation
	}
	ids, err := s.cfg.Federation.StateIDs(ctx, origin, roomID, prev)
	if err != nil {
		return nil, err
	}
	want := append(append([]id.EventID{prev}, ids.PDUIDs...), ids.AuthChainIDs...)
	stored, err := s.db.Events(ctx, want)
	if err != nil {
		return nil, err
	}
	have := map[id.EventID]bool{}
	for _, ev := range stored {
		have[ev.EventID()] = true
	}
	var lack []id.EventID
	for _, eid := range want {
		if !have[eid] && !slices.Contains(lack, eid) {
			lack = append(lack, eid)
		}
	}
	if len(lack) > 0 {
		var raws []json.RawMessage
		if len(lack) > 50 {
			full, err := s.cfg.Federation.State(ctx, origin, roomID, prev)
			if err != nil {
				return nil, err
			}
			raws = append(full.AuthChain, full.PDUs...)
		}
		// Events not in the bulk answer (and prev itself) one by one.
		var mu gosync.Mutex
		var g errgroup.Group
		g.SetLimit(8)
		for _, eid := range lack {
			if len(lack) > 50 && eid != prev {
				continue
			}
			g.Go(func() error {
				raw, err := s.cfg.Federation.Event(ctx, origin, eid)
				if err != nil {
					return nil
				}
				mu.Lock()
				raws = append(raws, raw)
				mu.Unlock()
				return nil
			})
		}
		_ = g.Wait()
		if err := s.storeOutliers(ctx, version, roomID, raws); err != nil {
			return nil, err
		}
	}
	evs, err := s.db.Events(ctx, append([]id.EventID{prev}, ids.PDUIDs...))
	if err != nil {
		return nil, err
	}
	state := stateres.StateMap{}
	var prevEv *store.Event
	for _, ev := range evs {
		if ev.RoomID() != roomID {
			// A state of another room's events is no state of this one.
			return nil, fmt.Errorf("%w: state_ids of %s names %s", errForeignEvent, prev, ev.EventID())
		}
		if ev.EventID() == prev {
			prevEv = ev
		}
		if ev.StateKey() == nil || ev.IsRejected || !slices.Contains(ids.PDUIDs, ev.EventID()) {
			continue
		}
		state[stateres.StateKey{Type: ev.Type(), StateKey: *ev.StateKey()}] = ev.EventID()
	}
	if prevEv == nil {
		return nil, fmt.Errorf("prev event %s could not be fetched", prev)
	}
	if sk := prevEv.StateKey(); sk != nil && !prevEv.IsRejected {
		state[stateres.StateKey{Type: prevEv.Type(), StateKey: *sk}] = prev
	}
	return state, nil
}

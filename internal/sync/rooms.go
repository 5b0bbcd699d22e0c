package sync

import (
	"cmp"
	"context"
	"encoding/json"
	"reflect"
	"slices"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

// maxTimelineRounds bounds how often a timeline is read further back when
// filters, ignored users or history visibility hid events: after that the
// timeline is returned as it is, limited, as Synapse gives up after a few
// rounds too. Each round reads twice as many events as the one before.
const maxTimelineRounds = 4

type kind int

const (
	kindJoin kind = iota
	kindLeave
)

// roomSpec is a room whose timeline and state the response carries.
type roomSpec struct {
	id   id.RoomID
	kind kind
	// from and to bound the timeline: stream positions in (from, to].
	from, to int64
	// full: state from nothing (an initial sync, a room joined since the
	// token, full_state) rather than a delta from the state at since.
	full bool
	// checkSince: the membership changed since the token, so whether the
	// user was joined at since decides between a delta and full state.
	checkSince bool
	// joinedNow: shared history is visible (the user is joined, or
	// joined before it left).
	joinedNow bool

	events  []*store.Event // the timeline, in stream order (topological when topo)
	limited bool
	// raw are all the events of the range read for the timeline, before
	// filters and history visibility, in stream order; readAll: they reach
	// back to from.
	raw     []*store.Event
	readAll bool
	// sinceTip is the room's newest event at since (delta rooms only): a
	// timeline event whose prev event it is follows on what the client has.
	sinceTip id.EventID
	// topo: the timeline was read in topological order (see topoTimelines).
	topo bool
	// tip is the newest event at or before to: its state after is the
	// room's state at the end of the timeline.
	tip id.EventID
	// prev is the state at since (nil when full), start the state before
	// the timeline, end the state after it.
	prev, start, end stateres.StateMap
}

// builder builds one response.
type builder struct {
	s       *Service
	req     Request
	f       *Filter
	fields  *fieldTree
	since   *notify.Position
	to      notify.Position
	resp    *Response
	ignored map[id.UserID]bool
	dk      deviceKey
	// moved says which streams other than rooms changed in (since, to];
	// nil for an initial sync (everything is read).
	moved *store.SyncMoved
	// tops are the tops of an initial sync's rooms, for the event reads
	// (nil otherwise).
	tops *store.RoomTops

	// memberships are the user's current ones, without their event IDs
	// (store.UserRoomMemberships).
	memberships map[id.RoomID]store.Membership
	loaded      map[id.EventID]*store.Event
	stateCache  map[id.EventID]stateres.StateMap // states after events, as read
	// refs are the states after the timeline events read (store.StateRef),
	// refStates those states as read.
	refs      map[id.EventID]store.StateRef
	refStates map[store.StateRef]stateres.StateMap
	joined    map[id.RoomID]*JoinedRoom
	left      map[id.RoomID]*LeftRoom
	// quiet are joined rooms that have only ephemeral events or account
	// data: they get no summary.
	quiet    map[id.RoomID]bool
	invited  map[id.RoomID]*InvitedRoom
	knocked  map[id.RoomID]*KnockedRoom
	lazySent map[roomUser]id.EventID
}

// build reads everything for the user in (since, to] (everything up to to
// for an initial sync) and returns the response and the position it is
// at, which may be past to when memberships committed after to was read.
func (s *Service) build(ctx context.Context, req Request, f *Filter, since *notify.Position, to notify.Position) (*Response, notify.Position, error) {
	b := &builder{
		s: s, req: req, f: f, fields: parseFields(f.EventFields), since: since,
		dk:          deviceKey{req.User, req.Device},
		memberships: map[id.RoomID]store.Membership{},
		loaded:      map[id.EventID]*store.Event{},
		stateCache:  map[id.EventID]stateres.StateMap{},
		refs:        map[id.EventID]store.StateRef{},
		refStates:   map[store.StateRef]stateres.StateMap{},
		joined:      map[id.RoomID]*JoinedRoom{},
		left:        map[id.RoomID]*LeftRoom{},
		quiet:       map[id.RoomID]bool{},
		invited:     map[id.RoomID]*InvitedRoom{},
		knocked:     map[id.RoomID]*KnockedRoom{},
		lazySent:    map[roomUser]id.EventID{},
	}
	// Which of the other streams have anything in (since, to], and
	// whether the user's memberships changed after those cached: the
	// reads of those that have not are skipped (moved.go).
	cached := s.cachedMemberships(req.User)
	if since != nil {
		memFrom := int64(-1)
		if cached != nil {
			memFrom = min(since.Stream, cached.at)
		}
		m, err := s.db.SyncMoved(ctx, req.User, memFrom, since.Stream, to.Stream)
		if err != nil {
			return nil, to, err
		}
		b.moved = &m
	}
	// A membership row is committed, and so is every position below it
	// (store.Tx.NextStreamPos): to moves past the memberships read, which
	// are then reported as they are.
	probed := to
	ms, changes, err := s.memberships(ctx, req.User, since, &to, cached, b.moved != nil && !b.moved.Memberships)
	if err != nil {
		return nil, to, err
	}
	for _, m := range ms {
		b.memberships[m.RoomID] = m
	}
	b.to = to
	if since != nil && to.Stream != probed.Stream {
		// to moved past a membership: ask again up to it.
		m, err := s.db.SyncMoved(ctx, req.User, -1, since.Stream, to.Stream)
		if err != nil {
			return nil, to, err
		}
		b.moved = &m
	}
	if b.ignored, err = s.ignoredUsers(ctx, req.User, since, b.moved, to.Stream); err != nil {
		return nil, to, err
	}
	b.resp = newResponse(to)
	specs, invites, knocks, err := b.plan(ctx, ms, changes)
	if err != nil {
		return nil, to, err
	}
	if since == nil && len(specs) > 0 {
		// An initial sync reads the state of every room: the rows of
		// the rooms with nothing new since the last one are kept
		// (store.CachedEventsAt).
		rooms := make([]id.RoomID, len(specs))
		for i, sp := range specs {
			rooms[i] = sp.id
		}
		if b.tops, err = s.db.RoomTopsOf(ctx, rooms); err != nil {
			return nil, to, err
		}
	}
	for _, step := range []func(context.Context, []*roomSpec) error{b.timelines, b.states, b.compose} {
		if err := step(ctx, specs); err != nil {
			return nil, to, err
		}
	}
	if err := b.ephemeral(ctx); err != nil {
		return nil, to, err
	}
	if err := b.accountData(ctx); err != nil {
		return nil, to, err
	}
	if err := b.unread(ctx); err != nil {
		return nil, to, err
	}
	if err := b.stripped(ctx, invites, knocks); err != nil {
		return nil, to, err
	}
	if err := b.presence(ctx); err != nil {
		return nil, to, err
	}
	if err := s.e2ee(ctx, req, since, to, b.moved, b.resp); err != nil {
		return nil, to, err
	}
	if len(b.joined)+len(b.left)+len(b.invited)+len(b.knocked) > 0 {
		b.resp.Rooms = &Rooms{}
		if len(b.joined) > 0 {
			b.resp.Rooms.Join = b.joined
		}
		if len(b.left) > 0 {
			b.resp.Rooms.Leave = b.left
		}
		if len(b.invited) > 0 {
			b.resp.Rooms.Invite = b.invited
		}
		if len(b.knocked) > 0 {
			b.resp.Rooms.Knock = b.knocked
		}
	}
	s.lazy.record(b.dk, to.Stream, b.lazySent)
	return b.resp, to, nil
}

func (b *builder) memberKey() stateres.StateKey {
	return stateres.StateKey{Type: event.TypeMember, StateKey: string(b.req.User)}
}

// plan decides which rooms the response carries and how: every room of an
// initial sync; for an incremental one the rooms whose membership changed
// and the joined rooms with new events (or every joined room for
// full_state).
func (b *builder) plan(ctx context.Context, ms, changes []store.Membership) (specs []*roomSpec, invites, knocks []store.Membership, err error) {
	rf := &b.f.Room
	if b.since == nil {
		for _, m := range ms {
			if !rf.IncludesRoom(m.RoomID) {
				continue
			}
			switch m.Membership {
			case room.Join:
				specs = append(specs, &roomSpec{id: m.RoomID, kind: kindJoin, to: b.to.Stream, full: true, joinedNow: true})
			case room.Invite:
				if !b.ignored[m.Sender] {
					invites = append(invites, m)
				}
			case room.Knock:
				knocks = append(knocks, m)
			case room.Leave, room.Ban:
				if rf.IncludeLeave {
					specs = append(specs, &roomSpec{id: m.RoomID, kind: kindLeave, to: m.StreamPos, full: true})
				}
			}
		}
		// The member events of the rooms reported by them.
		var need []id.RoomID
		for _, m := range append(append([]store.Membership(nil), invites...), knocks...) {
			need = append(need, m.RoomID)
		}
		for _, sp := range specs {
			if sp.kind == kindLeave {
				need = append(need, sp.id)
			}
		}
		evs, err := b.s.db.MembershipEventIDs(ctx, b.req.User, need)
		if err != nil {
			return nil, nil, nil, err
		}
		for i := range invites {
			invites[i].EventID = evs[invites[i].RoomID]
		}
		for i := range knocks {
			knocks[i].EventID = evs[knocks[i].RoomID]
		}
		for _, sp := range specs {
			if sp.kind == kindLeave {
				sp.tip = evs[sp.id]
			}
		}
		return specs, invites, knocks, b.wasJoined(ctx, specs)
	}
	since := b.since.Stream
	// The rooms whose membership changed, with the member event.
	changed := map[id.RoomID]id.EventID{}
	for _, c := range changes {
		if !c.Forgotten {
			changed[c.RoomID] = c.EventID
		}
	}
	withEvents, err := b.s.db.JoinedRoomsWithEvents(ctx, b.req.User, since, b.to.Stream)
	if err != nil {
		return nil, nil, nil, err
	}
	active := make(map[id.RoomID]bool, len(withEvents))
	for _, r := range withEvents {
		active[r] = true
	}
	for _, m := range ms {
		if !rf.IncludesRoom(m.RoomID) {
			continue
		}
		switch m.Membership {
		case room.Join:
			sp := &roomSpec{id: m.RoomID, kind: kindJoin, from: since, to: b.to.Stream, joinedNow: true, full: b.req.FullState}
			switch _, ch := changed[m.RoomID]; {
			case ch:
				sp.checkSince = true
			case b.req.FullState, active[m.RoomID]:
			default:
				continue
			}
			specs = append(specs, sp)
		case room.Invite:
			if e, ok := changed[m.RoomID]; ok && !b.ignored[m.Sender] {
				m.EventID = e
				invites = append(invites, m)
			}
		case room.Knock:
			if e, ok := changed[m.RoomID]; ok {
				m.EventID = e
				knocks = append(knocks, m)
			}
		case room.Leave, room.Ban:
			if e, ok := changed[m.RoomID]; ok {
				specs = append(specs, &roomSpec{id: m.RoomID, kind: kindLeave, from: since, to: m.StreamPos, checkSince: true, tip: e})
			}
		}
	}
	if err := b.wasJoined(ctx, specs); err != nil {
		return nil, nil, nil, err
	}
	// The state at since of the rooms that get a delta.
	var need []id.RoomID
	for _, sp := range specs {
		if !sp.full || sp.checkSince {
			need = append(need, sp.id)
		}
	}
	if len(need) == 0 {
		return specs, invites, knocks, nil
	}
	tips, refs, err := b.s.db.LatestEventRefs(ctx, need, since)
	if err != nil {
		return nil, nil, nil, err
	}
	ids := make([]id.EventID, 0, len(tips))
	for _, e := range tips {
		ids = append(ids, e)
	}
	for e, r := range refs {
		b.refs[e] = r
	}
	for r, e := range tips {
		if ref, ok := refs[e]; ok {
			if st, ok := b.s.roomStates.get(r, ref); ok {
				b.refStates[ref] = st // no read (roomStateCache)
			}
		}
	}
	states, err := b.statesAfterRefs(ctx, ids)
	if err != nil {
		return nil, nil, nil, err
	}
	var members []id.EventID
	for _, sp := range specs {
		if !sp.full || sp.checkSince {
			sp.prev = states[tips[sp.id]]
			sp.sinceTip = tips[sp.id]
			if sp.prev == nil {
				sp.prev = stateres.StateMap{} // the room had no event yet
			}
			if sp.checkSince {
				if e := sp.prev[b.memberKey()]; e != "" {
					members = append(members, e)
				}
			}
		}
	}
	if err := b.load(ctx, members); err != nil {
		return nil, nil, nil, err
	}
	for _, sp := range specs {
		if !sp.checkSince {
			continue
		}
		if b.membershipOf(sp.prev[b.memberKey()]) == room.Join {
			if sp.full {
				sp.prev = nil // full_state
			}
			continue
		}
		// Not joined at since: the client does not know the room (a join
		// since the token, or a leave of a room it never saw joined).
		sp.full, sp.prev = true, nil
		if sp.kind == kindJoin {
			sp.from = 0
		}
	}
	return specs, invites, knocks, nil
}

// wasJoined decides, for the rooms left, whether "shared" history is
// visible: it is to a user who joined the room (spec: "the user joined the
// room at any point after the event was sent"), judged by the membership
// its leave replaced; not to one who only rejected an invite.
func (b *builder) wasJoined(ctx context.Context, specs []*roomSpec) error {
	var leaves []id.EventID
	for _, sp := range specs {
		if sp.kind == kindLeave {
			leaves = append(leaves, sp.tip)
		}
	}
	if err := b.load(ctx, leaves); err != nil {
		return err
	}
	for _, sp := range specs {
		if sp.kind != kindLeave {
			continue
		}
		if ev := b.loaded[sp.tip]; ev != nil {
			prev, _ := cjson.Get(ev.Added, "prev_content")
			m, _ := getString(prev, "membership")
			sp.joinedNow = m == room.Join
		}
	}
	return nil
}

// statesAfter returns the states after events, reading only those this
// response has not read yet. The maps are shared: never modified.
func (b *builder) statesAfter(ctx context.Context, ids []id.EventID) (map[id.EventID]stateres.StateMap, error) {
	var need []id.EventID
	for _, e := range ids {
		if _, ok := b.stateCache[e]; !ok && e != "" {
			need = append(need, e)
		}
	}
	if len(need) > 0 {
		got, err := b.s.db.StatesAfter(ctx, need)
		if err != nil {
			return nil, err
		}
		for _, e := range need {
			b.stateCache[e] = got[e] // nil for an unknown event or an outlier
		}
	}
	out := make(map[id.EventID]stateres.StateMap, len(ids))
	for _, e := range ids {
		if st := b.stateCache[e]; st != nil {
			out[e] = st
		}
	}
	return out, nil
}

// statesAfterRefs is statesAfter that reads the states of the timeline
// events read by their refs (store.States) rather than looking the events
// up.
func (b *builder) statesAfterRefs(ctx context.Context, ids []id.EventID) (map[id.EventID]stateres.StateMap, error) {
	var byID []id.EventID
	var need []store.StateRef
	for _, e := range ids {
		ref, ok := b.refs[e]
		if !ok {
			byID = append(byID, e)
		} else if _, read := b.refStates[ref]; !read {
			need = append(need, ref)
		}
	}
	if len(need) > 0 {
		if b.refStates == nil {
			b.refStates = map[store.StateRef]stateres.StateMap{}
		}
		got, err := b.s.db.States(ctx, need)
		if err != nil {
			return nil, err
		}
		for _, r := range need {
			b.refStates[r] = got[r]
		}
	}
	out, err := b.statesAfter(ctx, byID)
	if err != nil {
		return nil, err
	}
	for _, e := range ids {
		if ref, ok := b.refs[e]; ok {
			if st := b.refStates[ref]; st != nil {
				out[e] = st
			}
		}
	}
	return out, nil
}

// load reads the events among ids that are not loaded yet.
func (b *builder) load(ctx context.Context, ids []id.EventID) error {
	var need []id.EventID
	seen := map[id.EventID]bool{}
	for _, e := range ids {
		if e != "" && b.loaded[e] == nil && !seen[e] {
			seen[e] = true
			need = append(need, e)
		}
	}
	if len(need) == 0 {
		return nil
	}
	evs, err := b.s.db.CachedEventsAt(ctx, b.req.User, b.tops, need)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		b.loaded[ev.EventID()] = ev
	}
	return nil
}

// membershipOf reads the membership of a loaded member event.
func (b *builder) membershipOf(eid id.EventID) string {
	ev := b.loaded[eid]
	if ev == nil {
		return ""
	}
	m, _ := getString(ev.Content(), "membership")
	return m
}

// timelines reads each room's timeline: the newest events of its range that
// pass the timeline filter, are not from ignored users (state events
// excepted, spec "Ignoring Users") and that the user may see. Hidden events
// make it read further back, a bounded number of times.
func (b *builder) timelines(ctx context.Context, specs []*roomSpec) error {
	limit := b.f.TimelineLimit()
	tf := &b.f.Room.Timeline
	joinedNow := make(map[id.RoomID]bool, len(specs))
	type pending struct {
		sp        *roomSpec
		upper     int64
		exhausted bool
	}
	var todo []*pending
	for _, sp := range specs {
		joinedNow[sp.id] = sp.joinedNow
		if matchRoom(tf.Rooms, tf.NotRooms, sp.id) && sp.to > sp.from {
			todo = append(todo, &pending{sp: sp, upper: sp.to})
		}
	}
	chunk := limit + 1
	for round := 0; len(todo) > 0; round++ {
		ranges := make([]store.StreamRange, len(todo))
		for i, p := range todo {
			ranges[i] = store.StreamRange{RoomID: p.sp.id, From: p.sp.from, To: p.upper}
		}
		raw, refs, err := b.s.db.RecentEventsAt(ctx, b.req.User, b.tops, ranges, chunk)
		if err != nil {
			return err
		}
		if b.refs == nil { // a builder of sliding sync's
			b.refs = map[id.EventID]store.StateRef{}
		}
		for e, r := range refs {
			b.refs[e] = r
		}
		var cands []*store.Event
		for _, p := range todo {
			evs := raw[p.sp.id]
			if round == 0 && len(evs) > 0 {
				p.sp.tip = evs[len(evs)-1].EventID()
			}
			p.sp.raw = append(slices.Clone(evs), p.sp.raw...)
			p.exhausted = len(evs) < chunk
			if len(evs) > 0 {
				p.upper = evs[0].StreamPos - 1
				if p.upper <= p.sp.from {
					p.exhausted = true
				}
			}
			for _, ev := range evs {
				if b.ignored[ev.Sender()] && ev.StateKey() == nil {
					continue
				}
				if tf.Match(ev.RoomID(), ev.Type(), ev.Sender(), ev.Content()) {
					cands = append(cands, ev)
				}
			}
		}
		vis, err := b.visible(ctx, cands, joinedNow)
		if err != nil {
			return err
		}
		byRoom := map[id.RoomID][]*store.Event{}
		for _, ev := range vis {
			byRoom[ev.RoomID()] = append(byRoom[ev.RoomID()], ev)
		}
		var next []*pending
		for _, p := range todo {
			p.sp.events = append(byRoom[p.sp.id], p.sp.events...)
			p.sp.readAll = p.exhausted
			switch {
			case len(p.sp.events) > limit:
				p.sp.limited = true
			case p.exhausted:
			case round+1 >= maxTimelineRounds:
				p.sp.limited = true
			default:
				next = append(next, p)
			}
		}
		todo = next
		chunk = min(chunk*2, 500)
	}
	for _, sp := range specs {
		if len(sp.events) > limit {
			sp.events = sp.events[len(sp.events)-limit:]
		}
	}
	if err := b.topoTimelines(ctx, specs); err != nil {
		return err
	}
	return b.gaps(ctx, specs)
}

// visible keeps the events the user may see, with the room service's
// history visibility rules (one implementation for /sync, /messages and the
// rest: room.VisibleMany), asking them once per room and state rather than
// once per event. Whether an event that is not a state event is visible
// depends only on the state after it (the history visibility and the
// user's membership there) and on whether the user is joined now, so the
// message events after which the room has the same state share one answer:
// a room's ten newest messages are usually one question. And that answer
// is yes without asking when the user's membership in that state is join
// (client-server API, "Room history visibility": "If the user's membership
// was join, allow"), which sync reads from the states of its timelines
// (it needs them anyway) and the user's member events. State events are
// asked about each when they are the user's own membership changes or
// history visibility changes, which have rules of their own; other state
// events follow the rule of messages.
func (b *builder) visible(ctx context.Context, cands []*store.Event, joinedNow map[id.RoomID]bool) ([]*store.Event, error) {
	type group struct {
		room id.RoomID
		ref  store.StateRef
	}
	first := make(map[group]id.EventID, len(cands))
	repOf := make(map[id.EventID]id.EventID, len(cands))
	ask := make([]*store.Event, 0, len(cands))
	for _, ev := range cands {
		ref := b.refs[ev.EventID()]
		if ref.IsZero() || b.ownRule(ev) {
			ask = append(ask, ev)
			continue
		}
		g := group{ev.RoomID(), ref}
		if r, ok := first[g]; ok {
			repOf[ev.EventID()] = r
			continue
		}
		first[g] = ev.EventID()
		ask = append(ask, ev)
	}
	// The groups where the user is joined need no question.
	reps := make([]id.EventID, 0, len(first))
	for _, e := range first {
		reps = append(reps, e)
	}
	states, err := b.statesAfterRefs(ctx, reps)
	if err != nil {
		return nil, err
	}
	members := make([]id.EventID, 0, len(states))
	for _, st := range states {
		members = append(members, st[b.memberKey()])
	}
	if err := b.load(ctx, members); err != nil {
		return nil, err
	}
	ok := make(map[id.EventID]bool, len(cands))
	joined := make(map[id.EventID]bool, len(first))
	for _, e := range reps {
		if st := states[e]; st != nil && b.membershipOf(st[b.memberKey()]) == room.Join {
			joined[e] = true
			ok[e] = true
		}
	}
	if len(joined) > 0 {
		ask = slices.DeleteFunc(ask, func(ev *store.Event) bool { return joined[ev.EventID()] })
	}
	vis, err := b.s.rooms.VisibleMany(ctx, b.req.User, ask, joinedNow)
	if err != nil {
		return nil, err
	}
	for _, ev := range vis {
		ok[ev.EventID()] = true
	}
	out := make([]*store.Event, 0, len(cands))
	for _, ev := range cands {
		e := ev.EventID()
		if r, shared := repOf[e]; shared {
			e = r
		}
		if ok[e] {
			out = append(out, ev)
		}
	}
	return out, nil
}

// ownRule reports whether room.VisibleMany decides ev's visibility by a
// rule of its own rather than by the state after it: the user's own member
// events and history visibility events.
func (b *builder) ownRule(ev *store.Event) bool {
	sk := ev.StateKey()
	if sk == nil {
		return false
	}
	return ev.Type() == event.TypeMember && *sk == string(b.req.User) || ev.Type() == event.TypeHistoryVisibility && *sk == ""
}

// topoTimelines rereads, in topological order, the timelines of the rooms
// the client gets from their start (an initial sync, a room joined since
// the token) whose events arrived out of topological order.
//
// An incremental timeline is in stream order: what arrived since the
// token, a late event of a fork included (Complement
// TestNetworkPartitionOrdering). A timeline from the start is the room's
// newest events in topological order, as /messages backwards from the
// sync position would return them, as Synapse does: a state event of a
// fork that arrived late is then in the state section rather than being
// the timeline's last event (Complement
// TestSyncOmitsStateChangeOnFilteredEvents, Synapse issue 16928). Rooms
// whose events read arrived in depth order (nearly all) keep the batched
// stream read: the two orders agree on them but for an event older than
// what was read.
func (b *builder) topoTimelines(ctx context.Context, specs []*roomSpec) error {
	limit := b.f.TimelineLimit()
	tf := &b.f.Room.Timeline
	for _, sp := range specs {
		if sp.from != 0 || !outOfOrder(sp.raw) {
			continue
		}
		p, err := b.s.db.RoomTopoPosAt(ctx, sp.id, sp.to)
		if err != nil {
			return err
		}
		from := store.TopoPos{Depth: p.Depth, Stream: p.Stream + 1}
		var evs []*store.Event
		limited := false
		chunk := limit + 1
		for round := 0; ; round++ {
			batch, err := b.s.db.RoomTimeline(ctx, store.TimelineQuery{Room: sp.id, From: from, Backwards: true, MaxStream: sp.to, Limit: chunk})
			if err != nil {
				return err
			}
			var cands []*store.Event
			for _, ev := range batch {
				if b.ignored[ev.Sender()] && ev.StateKey() == nil {
					continue
				}
				if tf.Match(ev.RoomID(), ev.Type(), ev.Sender(), ev.Content()) {
					cands = append(cands, ev)
				}
			}
			vis, err := b.s.rooms.VisibleMany(ctx, b.req.User, cands, map[id.RoomID]bool{sp.id: sp.joinedNow})
			if err != nil {
				return err
			}
			evs = append(evs, vis...) // newest first
			if len(batch) > 0 {
				last := batch[len(batch)-1]
				from = store.TopoPos{Depth: last.Depth(), Stream: last.StreamPos}
			}
			if len(evs) > limit || (len(batch) == chunk && round+1 >= maxTimelineRounds) {
				limited = true
				break
			}
			if len(batch) < chunk {
				break
			}
			chunk = min(chunk*2, 500)
		}
		evs = evs[:min(len(evs), limit)]
		slices.Reverse(evs)
		sp.events, sp.limited, sp.topo = evs, limited, true
	}
	return nil
}

// outOfOrder reports whether events in stream order are not in depth
// order: one arrived after an event deeper than it.
func outOfOrder(evs []*store.Event) bool {
	var deepest int64
	for _, ev := range evs {
		if ev.Depth() < deepest {
			return true
		}
		deepest = ev.Depth()
	}
	return false
}

// gaps finds the gaps in the timelines: an event whose prev events this
// server does not hold in the room's timeline (it fetched only some of
// the missing events, or joined the room there). The client cannot know
// what is missing, so the timeline is limited and starts at the newest
// such event, as Synapse does (Complement TestSyncTimelineGap, Synapse
// issue 16463): the client fills the gap with /messages from prev_batch,
// which backfills.
//
// Prev events among the events read, and the room's newest event at the
// token, are known without a read; the oldest event read has its prev
// events checked only when the read reached the start of the range (when
// it did not, the timeline is limited and starts after it anyway).
func (b *builder) gaps(ctx context.Context, specs []*roomSpec) error {
	var need []id.EventID
	for _, sp := range specs {
		if sp.topo || len(sp.raw) == 0 {
			continue
		}
		known := make(map[id.EventID]bool, len(sp.raw)+1)
		known[sp.sinceTip] = true
		for _, ev := range sp.raw {
			known[ev.EventID()] = true
		}
		for i, ev := range sp.raw {
			if i == 0 && !sp.readAll {
				continue
			}
			for _, prev := range ev.PrevEventIDs() {
				if !known[prev] {
					need = append(need, prev)
				}
			}
		}
	}
	if len(need) == 0 {
		return nil
	}
	held, err := b.s.db.CachedEventsFor(ctx, "", need) // only their positions
	if err != nil {
		return err
	}
	inTimeline := make(map[id.EventID]bool, len(held))
	for _, ev := range held {
		if ev.StreamPos != 0 { // backfilled events (negative) fill a gap too
			inTimeline[ev.EventID()] = true
		}
	}
	for _, sp := range specs {
		if sp.topo || len(sp.raw) == 0 {
			continue
		}
		known := make(map[id.EventID]bool, len(sp.raw)+1)
		known[sp.sinceTip] = true
		var gapAt int64
		for i, ev := range sp.raw {
			missing := false
			for _, prev := range ev.PrevEventIDs() {
				if !known[prev] && !inTimeline[prev] && (i > 0 || sp.readAll) {
					missing = true
				}
			}
			if missing {
				gapAt = ev.StreamPos
			}
			known[ev.EventID()] = true
		}
		if gapAt == 0 {
			continue
		}
		sp.limited = true
		i := 0
		for i < len(sp.events) && sp.events[i].StreamPos < gapAt {
			i++
		}
		sp.events = sp.events[i:]
	}
	return nil
}

// states reads the state at the start and at the end of each timeline.
func (b *builder) states(ctx context.Context, specs []*roomSpec) error {
	var noTip []id.RoomID
	for _, sp := range specs {
		if sp.tip == "" {
			noTip = append(noTip, sp.id)
		}
	}
	if len(noTip) > 0 {
		tips, refs, err := b.s.db.LatestEventRefs(ctx, noTip, b.to.Stream)
		if err != nil {
			return err
		}
		if b.refs == nil { // a builder of sliding sync's
			b.refs = map[id.EventID]store.StateRef{}
		}
		for e, r := range refs {
			b.refs[e] = r
		}
		for _, sp := range specs {
			if sp.tip == "" {
				sp.tip = tips[sp.id]
			}
		}
	}
	var ids []id.EventID
	for _, sp := range specs {
		if sp.tip != "" {
			ids = append(ids, sp.tip)
		}
		if len(sp.events) > 0 {
			ids = append(ids, sp.events[0].EventID())
		}
	}
	states, err := b.statesAfterRefs(ctx, ids)
	if err != nil {
		return err
	}
	for _, sp := range specs {
		sp.end = states[sp.tip]
		if ref, ok := b.refs[sp.tip]; ok && sp.end != nil {
			b.s.roomStates.put(sp.id, ref, sp.end)
		}
		if sp.end == nil {
			sp.end = stateres.StateMap{}
		}
		sp.start = sp.end
		if len(sp.events) > 0 {
			first := sp.events[0]
			if after := states[first.EventID()]; after != nil {
				sp.start = stateBefore(after, first)
			}
		}
	}
	return nil
}

// stateBefore is the state before ev given the state after it: the key ev
// set swapped back to the event it replaced. after is not modified.
func stateBefore(after stateres.StateMap, ev *store.Event) stateres.StateMap {
	sk := ev.StateKey()
	if sk == nil || ev.IsRejected {
		return after
	}
	k := stateres.StateKey{Type: ev.Type(), StateKey: *sk}
	if after[k] != ev.EventID() {
		return after
	}
	out := make(stateres.StateMap, len(after))
	for key, v := range after {
		out[key] = v
	}
	if ev.Replaces != "" {
		out[k] = ev.Replaces
	} else {
		delete(out, k)
	}
	return out
}

var (
	nameKey  = stateres.StateKey{Type: "m.room.name"}
	aliasKey = stateres.StateKey{Type: "m.room.canonical_alias"}
)

// compose turns the specs into the rooms of the response: summaries,
// state sections and timelines, formatted for the client.
func (b *builder) compose(ctx context.Context, specs []*roomSpec) error {
	// What the summaries and the leave rule read.
	var meta []id.EventID
	for _, sp := range specs {
		if sp.kind == kindJoin {
			if sp.full || summaryChanged(sp.prev, sp.end) {
				meta = append(meta, sp.end[nameKey], sp.end[aliasKey])
			}
		} else if sp.full {
			meta = append(meta, sp.start[b.memberKey()])
		}
	}
	if err := b.load(ctx, meta); err != nil {
		return err
	}
	summaries, err := b.summaries(ctx, specs)
	if err != nil {
		return err
	}
	chosen := make([][]id.EventID, len(specs))
	var all []id.EventID
	for i, sp := range specs {
		var heroes []id.UserID
		if s := summaries[sp.id]; s != nil {
			heroes = s.Heroes
		}
		chosen[i] = b.stateIDs(sp, heroes)
		all = append(all, chosen[i]...)
	}
	if err := b.load(ctx, all); err != nil {
		return err
	}
	// Format every timeline and every state section in two batches.
	var tl, st []*store.Event
	stateOf := make([][]*store.Event, len(specs))
	sf := &b.f.Room.State
	for i, sp := range specs {
		tl = append(tl, sp.events...)
		for _, eid := range chosen[i] {
			ev := b.loaded[eid]
			if ev == nil || !sf.Match(sp.id, ev.Type(), ev.Sender(), ev.Content()) {
				continue
			}
			stateOf[i] = append(stateOf[i], ev)
		}
		slices.SortFunc(stateOf[i], func(x, y *store.Event) int { return cmp.Compare(x.StreamPos, y.StreamPos) })
		st = append(st, stateOf[i]...)
	}
	viewer := room.Viewer{UserID: b.req.User, DeviceID: b.req.Device}
	opts := room.FormatOptions{NoRoomID: true, Federation: b.f.Federation}
	tlOut, err := b.s.rooms.Format(ctx, tl, viewer, opts)
	if err != nil {
		return err
	}
	opts.NoAggregations = true
	stOut, err := b.s.rooms.Format(ctx, st, viewer, opts)
	if err != nil {
		return err
	}
	for i, sp := range specs {
		events := b.applyFields(tlOut[:len(sp.events)])
		tlOut = tlOut[len(sp.events):]
		state := &EventList{Events: b.applyFields(stOut[:len(stateOf[i])])}
		stOut = stOut[len(stateOf[i]):]
		timeline := Timeline{Events: events, Limited: sp.limited}
		switch {
		case len(sp.events) > 0 && sp.topo:
			timeline.PrevBatch = room.TopoToken(sp.events[0].Depth(), sp.events[0].StreamPos).String()
		case len(sp.events) > 0:
			// The position before the first event: /messages backwards
			// from it returns what arrived before it, in topological
			// order, including events of a fork that arrived before it
			// but sort after it (Complement TestNetworkPartitionOrdering;
			// Synapse's prev_batch is a stream token too).
			timeline.PrevBatch = room.StreamToken(notify.Position{Stream: sp.events[0].StreamPos - 1}).String()
		default:
			timeline.PrevBatch = room.StreamToken(notify.Position{Stream: sp.to}).String()
		}
		if sp.kind == kindLeave {
			lr := &LeftRoom{Timeline: timeline}
			b.setState(&lr.State, &lr.StateAfter, state)
			b.left[sp.id] = lr
			continue
		}
		if !sp.full && len(events) == 0 && len(state.Events) == 0 {
			// Nothing the client sees changed (its new events were all
			// filtered out); ephemeral events or account data may still
			// bring the room in.
			continue
		}
		jr := &JoinedRoom{Timeline: timeline, Summary: summaries[sp.id]}
		b.setState(&jr.State, &jr.StateAfter, state)
		b.joined[sp.id] = jr
	}
	return nil
}

func (b *builder) setState(state, after **EventList, l *EventList) {
	if b.req.UseStateAfter {
		*after = l
	} else {
		*state = l
	}
}

func (b *builder) applyFields(evs []json.RawMessage) []json.RawMessage {
	out := make([]json.RawMessage, len(evs))
	for i, e := range evs {
		out[i] = b.fields.apply(e)
	}
	return out
}

// stateIDs chooses the state events of a room's state section
// (client-server API, "Syncing"): without use_state_after, the state at
// the start of the timeline that the client does not have (all of it when
// full); with it, the state at the end that differs from the state at
// since (MSC4222). Deltas are computed from the state snapshots at since,
// at the start and at the end, never by scanning events, so that they are
// right across forks: state at the end that neither the timeline nor the
// start explain (a fork's resolution, or a state event the timeline filter
// hid) is sent too, so that the client ends at the room's state.
//
// With lazy_load_members, member events are only those of the timeline's
// senders, of the user itself when the state is full, of the heroes, and
// every member change in the gap of an incremental sync; member events the
// client already has are left out unless include_redundant_members.
func (b *builder) stateIDs(sp *roomSpec, heroes []id.UserID) []id.EventID {
	sf := &b.f.Room.State
	if !matchRoom(sf.Rooms, sf.NotRooms, sp.id) {
		return nil
	}
	if sp.kind == kindLeave && sp.full && b.membershipOf(sp.start[b.memberKey()]) != room.Join {
		// The user was not in the room where the timeline starts (an
		// invite it rejected, a ban): it gets no state.
		return nil
	}
	inTimeline := make(map[id.EventID]bool, len(sp.events))
	setByTimeline := map[stateres.StateKey]bool{}
	for _, ev := range sp.events {
		inTimeline[ev.EventID()] = true
		if sk := ev.StateKey(); sk != nil {
			setByTimeline[stateres.StateKey{Type: ev.Type(), StateKey: *sk}] = true
		}
	}
	after := b.req.UseStateAfter
	chosen := stateres.StateMap{}
	// Snapshots are shared: the same map means the same state, and a
	// message-only delta costs no walk over a big room's state.
	if after {
		if !sameState(sp.end, sp.prev) {
			for k, v := range sp.end {
				if sp.prev[k] != v {
					chosen[k] = v
				}
			}
		}
	} else {
		if !sameState(sp.start, sp.prev) {
			for k, v := range sp.start {
				if sp.prev[k] != v && !inTimeline[v] {
					chosen[k] = v
				}
			}
		}
		// With the end state the same as the start, the loop below adds
		// nothing: keys not chosen equal prev or are in the timeline.
		for k, v := range sp.end {
			if sameState(sp.end, sp.start) {
				break
			}
			if inTimeline[v] || setByTimeline[k] {
				continue
			}
			has, ok := chosen[k]
			if !ok {
				has = sp.prev[k]
			}
			if has != v {
				chosen[k] = v
			}
		}
	}
	for k := range chosen {
		if !sf.MatchType(k.Type) {
			delete(chosen, k)
		}
	}
	if sf.LazyLoadMembers && sf.MatchType(event.TypeMember) {
		wanted := map[id.UserID]bool{}
		for _, ev := range sp.events {
			wanted[ev.Sender()] = true
		}
		if sp.full {
			wanted[b.req.User] = true
		}
		for _, h := range heroes {
			wanted[h] = true
		}
		if sp.prev == nil {
			// Full state: only the wanted members. (In a delta every
			// member change is in the gap and must be sent.)
			for k := range chosen {
				if k.Type == event.TypeMember && !wanted[id.UserID(k.StateKey)] {
					delete(chosen, k)
				}
			}
		}
		base := sp.start
		if after {
			base = sp.end
		}
		for u := range wanted {
			k := stateres.StateKey{Type: event.TypeMember, StateKey: string(u)}
			eid := base[k]
			if eid == "" || (!after && inTimeline[eid]) {
				continue
			}
			if _, ok := chosen[k]; ok {
				continue
			}
			if !sf.IncludeRedundantMembers && b.since != nil && b.s.lazy.known(b.dk, sp.id, u, eid, b.since.Stream) {
				continue
			}
			chosen[k] = eid
		}
		for k, eid := range chosen {
			if k.Type == event.TypeMember {
				b.lazySent[roomUser{sp.id, id.UserID(k.StateKey)}] = eid
			}
		}
		if !after {
			for _, ev := range sp.events {
				if ev.Type() == event.TypeMember && ev.StateKey() != nil {
					b.lazySent[roomUser{sp.id, id.UserID(*ev.StateKey())}] = ev.EventID()
				}
			}
		}
	}
	out := make([]id.EventID, 0, len(chosen))
	for _, v := range chosen {
		out = append(out, v)
	}
	return out
}

// summaries returns the summaries of the joined rooms (client-server API,
// "RoomSummary"): member counts, and heroes when the room has neither a
// name nor a canonical alias; for rooms whose state at since is known,
// only when one of those changed.
func (b *builder) summaries(ctx context.Context, specs []*roomSpec) (map[id.RoomID]*Summary, error) {
	var rooms, nameless []id.RoomID
	for _, sp := range specs {
		if sp.kind != kindJoin || !sp.full && !summaryChanged(sp.prev, sp.end) {
			// The spec lets an unchanged summary be left out: counting
			// a big room's members for every message is not free.
			continue
		}
		rooms = append(rooms, sp.id)
		name, _ := getString(b.contentOf(sp.end[nameKey]), "name")
		alias, _ := getString(b.contentOf(sp.end[aliasKey]), "alias")
		if name == "" && alias == "" {
			nameless = append(nameless, sp.id)
		}
	}
	out := make(map[id.RoomID]*Summary, len(rooms))
	if len(rooms) == 0 {
		return out, nil
	}
	counts, err := b.s.db.RoomMemberCounts(ctx, rooms)
	if err != nil {
		return nil, err
	}
	heroes, err := b.s.db.RoomHeroes(ctx, nameless, b.req.User, 5)
	if err != nil {
		return nil, err
	}
	for _, r := range rooms {
		c := counts[r]
		s := &Summary{JoinedMemberCount: c.Joined, InvitedMemberCount: c.Invited, Heroes: heroes[r]}
		out[r] = s
	}
	return out, nil
}

// sameState reports whether a and b are the same map (states read from
// the same snapshot are).
func sameState(a, b stateres.StateMap) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// summaryChanged reports whether what a summary is made of (members, name,
// canonical alias) differs between two states.
func summaryChanged(prev, end stateres.StateMap) bool {
	if sameState(prev, end) {
		return false
	}
	relevant := func(k stateres.StateKey) bool {
		return k.Type == event.TypeMember || k == nameKey || k == aliasKey
	}
	for k, v := range end {
		if relevant(k) && prev[k] != v {
			return true
		}
	}
	for k := range prev {
		if _, ok := end[k]; !ok && relevant(k) {
			return true
		}
	}
	return false
}

func (b *builder) contentOf(eid id.EventID) []byte {
	if ev := b.loaded[eid]; ev != nil {
		return ev.Content()
	}
	return nil
}

// joinedEntry returns the joined room's entry, adding an empty one (a room
// with only ephemeral events or account data) if it has none.
func (b *builder) joinedEntry(r id.RoomID) *JoinedRoom {
	if jr := b.joined[r]; jr != nil {
		return jr
	}
	jr := &JoinedRoom{Timeline: Timeline{Events: []json.RawMessage{}, PrevBatch: room.StreamToken(notify.Position{Stream: b.to.Stream}).String()}}
	if !b.req.UseStateAfter {
		jr.State = &EventList{}
	} else {
		jr.StateAfter = &EventList{}
	}
	b.joined[r] = jr
	b.quiet[r] = true
	return jr
}

// joinedRooms are the rooms the user is joined to that the room filter
// keeps.
func (b *builder) joinedRooms() []id.RoomID {
	var out []id.RoomID
	for r, m := range b.memberships {
		if m.Membership == room.Join && b.f.Room.IncludesRoom(r) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// ephemeral adds typing notifications and receipts to the joined rooms.
func (b *builder) ephemeral(ctx context.Context) error {
	ef := &b.f.Room.Ephemeral
	var rooms []id.RoomID
	for _, r := range b.joinedRooms() {
		if matchRoom(ef.Rooms, ef.NotRooms, r) {
			rooms = append(rooms, r)
		}
	}
	if len(rooms) == 0 {
		return nil
	}
	if ef.MatchType("m.typing") {
		for _, r := range rooms {
			users, changed := b.s.src.Typing.Typing(r)
			if b.since == nil && len(users) == 0 || b.since != nil && changed <= b.since.Typing {
				continue
			}
			ids := make([]id.UserID, 0, len(users))
			for _, u := range users {
				if !b.ignored[u] {
					ids = append(ids, u)
				}
			}
			content, err := json.Marshal(map[string]any{"user_ids": ids})
			if err != nil {
				return err
			}
			b.addEphemeral(r, "m.typing", content)
		}
	}
	if ef.MatchType("m.receipt") && (b.moved == nil || b.moved.Receipts) {
		var from int64
		if b.since != nil {
			from = b.since.Stream
		}
		rs, err := b.s.src.Receipts.Since(ctx, b.req.User, rooms, from, b.to.Stream)
		if err != nil {
			return err
		}
		for _, r := range rooms {
			if c, ok := rs[r]; ok && len(c) > 0 {
				b.addEphemeral(r, "m.receipt", c)
			}
		}
	}
	return nil
}

func (b *builder) addEphemeral(r id.RoomID, typ string, content []byte) {
	ev := []byte(`{"content":`)
	ev = append(ev, content...)
	ev = append(ev, `,"type":`...)
	ev = cjson.AppendString(ev, typ)
	ev = append(ev, '}')
	jr := b.joinedEntry(r)
	if l := b.f.Room.Ephemeral.Limit; l > 0 && len(jr.Ephemeral.Events) >= l {
		return
	}
	jr.Ephemeral.Events = append(jr.Ephemeral.Events, ev)
}

// accountData adds the global account data and the rooms' account data.
func (b *builder) accountData(ctx context.Context) error {
	if b.moved != nil && !b.moved.AccountData {
		return nil
	}
	var from int64
	if b.since != nil {
		from = b.since.Stream
	}
	ads, err := b.s.src.Users.AccountDataSince(ctx, b.req.User, from, b.to.Stream)
	if err != nil {
		return err
	}
	af := &b.f.Room.AccountData
	var global []json.RawMessage
	for _, a := range ads {
		ev := []byte(`{"content":`)
		ev = append(ev, a.Content...)
		ev = append(ev, `,"type":`...)
		ev = cjson.AppendString(ev, a.Type)
		ev = append(ev, '}')
		if a.RoomID == "" {
			if b.f.AccountData.MatchType(a.Type) {
				global = append(global, ev)
			}
			continue
		}
		if !b.f.Room.IncludesRoom(a.RoomID) || !af.MatchType(a.Type) || !matchRoom(af.Rooms, af.NotRooms, a.RoomID) {
			continue
		}
		var list *EventList
		if lr := b.left[a.RoomID]; lr != nil {
			list = &lr.AccountData
		} else if m, ok := b.memberships[a.RoomID]; ok && m.Membership == room.Join {
			list = &b.joinedEntry(a.RoomID).AccountData
		} else {
			continue
		}
		list.Events = append(list.Events, ev)
	}
	for _, jr := range b.joined {
		jr.AccountData.Events = lastN(jr.AccountData.Events, af.Limit)
	}
	for _, lr := range b.left {
		lr.AccountData.Events = lastN(lr.AccountData.Events, af.Limit)
	}
	if global = lastN(global, b.f.AccountData.Limit); len(global) > 0 {
		b.resp.AccountData = &EventList{Events: global}
	}
	return nil
}

// lastN keeps the last n (the newest) of evs; n 0 keeps all.
func lastN(evs []json.RawMessage, n int) []json.RawMessage {
	if n > 0 && len(evs) > n {
		return evs[len(evs)-n:]
	}
	return evs
}

// stripped adds the invited and knocked rooms, with the stripped state of
// the room at the invite or knock (client-server API, "Stripped state")
// followed by the member event itself.
func (b *builder) stripped(ctx context.Context, invites, knocks []store.Membership) error {
	all := append(append([]store.Membership(nil), invites...), knocks...)
	if len(all) == 0 {
		return nil
	}
	ids := make([]id.EventID, len(all))
	for i, m := range all {
		ids[i] = m.EventID
	}
	states, err := b.statesAfter(ctx, ids)
	if err != nil {
		return err
	}
	need := append([]id.EventID(nil), ids...)
	for _, st := range states {
		for _, t := range event.StrippedStateTypes {
			need = append(need, st[stateres.StateKey{Type: t}])
		}
	}
	if err := b.load(ctx, need); err != nil {
		return err
	}
	for i, m := range all {
		var pdus []*event.PDU
		st := states[m.EventID]
		for _, t := range event.StrippedStateTypes {
			if ev := b.loaded[st[stateres.StateKey{Type: t}]]; ev != nil {
				pdus = append(pdus, ev.PDU)
			}
		}
		if ev := b.loaded[m.EventID]; ev != nil {
			pdus = append(pdus, ev.PDU)
		}
		var list EventList
		if err := json.Unmarshal(event.StrippedState(pdus), &list.Events); err != nil {
			return err
		}
		// A remote room's state comes with the invite or knock (server-
		// server API invite_room_state, knock_room_state); the room
		// service keeps it in the event's unsigned.
		if ev := b.loaded[m.EventID]; ev != nil && ev.Added != nil {
			key := "invite_room_state"
			if i >= len(invites) {
				key = "knock_room_state"
			}
			if raw, ok := cjson.Get(ev.Added, key); ok {
				var remote []json.RawMessage
				if json.Unmarshal(raw, &remote) == nil && len(list.Events) > 0 {
					list.Events = append(remote, list.Events[len(list.Events)-1:]...)
				}
			}
		}
		if i < len(invites) {
			b.invited[m.RoomID] = &InvitedRoom{InviteState: list}
		} else {
			b.knocked[m.RoomID] = &KnockedRoom{KnockState: list}
		}
	}
	return nil
}

// presence adds the presence of the users who share a room with the user.
func (b *builder) presence(ctx context.Context) error {
	pf := &b.f.Presence
	if !pf.MatchType("m.presence") {
		return nil
	}
	var users []id.UserID
	var from int64
	var err error
	if b.since == nil {
		if users, err = b.s.db.SharedRoomUsers(ctx, b.req.User); err != nil {
			return err
		}
		if !slices.Contains(users, b.req.User) {
			users = append(users, b.req.User)
		}
	} else {
		// Incremental: start from the few presence changes since the
		// token rather than from everyone the user shares a room with.
		from = b.since.Stream
		if !b.moved.Presence {
			return nil
		}
		if users, err = b.s.db.PresenceChangedPeers(ctx, b.req.User, from, b.to.Stream); err != nil {
			return err
		}
		if len(users) == 0 {
			return nil
		}
	}
	evs, err := b.s.src.Presence.Since(ctx, users, from, b.to.Stream)
	if err != nil {
		return err
	}
	var out []json.RawMessage
	for _, ev := range evs {
		sender, _ := getString(ev, "sender")
		if pf.MatchSender(id.UserID(sender)) {
			out = append(out, ev)
		}
	}
	if out = lastN(out, pf.Limit); len(out) > 0 {
		b.resp.Presence = &EventList{Events: out}
	}
	return nil
}

// e2ee fills the end-to-end encryption sections. moved, when known,
// tells whether device lists may have changed in (since, to].
func (s *Service) e2ee(ctx context.Context, req Request, since *notify.Position, to notify.Position, moved *store.SyncMoved, resp *Response) error {
	var from int64
	if since != nil {
		from = since.Stream
	}
	msgs, err := s.src.ToDevice.ToDevice(ctx, req.User, req.Device, from, to.Stream)
	if err != nil {
		return err
	}
	resp.ToDevice.Events = msgs
	if since != nil && (moved == nil || moved.DeviceLists) {
		changed, left, err := s.src.DeviceLists.DeviceListChanges(ctx, req.User, from, to.Stream)
		if err != nil {
			return err
		}
		if changed != nil {
			resp.DeviceLists.Changed = changed
		}
		if left != nil {
			resp.DeviceLists.Left = left
		}
	}
	counts, fallback, err := s.src.OneTimeKeys.KeyCounts(ctx, req.User, req.Device)
	if err != nil {
		return err
	}
	for k, v := range counts {
		resp.OneTimeKeysCount[k] = v
	}
	if fallback != nil {
		resp.UnusedFallback = fallback
	}
	return nil
}

// getString reads a string member of a JSON object.
func getString(obj []byte, key string) (string, bool) {
	v, ok := cjson.Get(obj, key)
	if !ok {
		return "", false
	}
	s, err := cjson.Unquote(v)
	return s, err == nil
}

package sync

// Sliding sync room results (MSC4186 "Room results"), built with the
// /sync v2 builder's steps (timelines with history visibility and ignored
// users, gaps, states, stripped state, unread counts) and the room
// service's event formatting, so that a room's events are the same JSON in
// both APIs. Only the rooms to send are read: a new connection's first
// response for a user in thousands of rooms reads the rooms of its ranges.

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

var avatarKey = stateres.StateKey{Type: "m.room.avatar"}

// slidingSpec is a room to send with what the connection had of it.
type slidingSpec struct {
	*roomSpec
	want     *roomWant
	entry    *store.SlidingRoomEntry
	initial  bool
	expanded bool // timeline_limit grew: the newest events again
	fullRS   bool // required_state changed: all of it again
	sentTo   int64
}

// rooms decides which wanted rooms to send and builds them.
func (sb *slidingBuilder) rooms(ctx context.Context) error {
	user := sb.req.User
	var recheck []id.RoomID
	for r := range sb.want {
		if p, ok := sb.prevSent(r); ok && sb.byRoom[r].Membership == room.Join && sb.byRoom[r].MemberPos <= p.SentTo {
			recheck = append(recheck, r)
		}
	}
	latest := map[id.RoomID]int64{}
	if len(recheck) > 0 {
		var err error
		if latest, err = sb.s.db.LatestStreamPositions(ctx, recheck, sb.to.Stream); err != nil {
			return err
		}
	}
	var specs []*slidingSpec
	var invites, knocks []store.Membership
	for r, w := range sb.want {
		e := sb.byRoom[r]
		p, sent := sb.prevSent(r)
		sp := &slidingSpec{want: w, entry: e}
		switch {
		case !sent:
			sp.initial = true
		case e.MemberPos > p.SentTo:
			// The user's membership changed: the room starts over.
			sp.initial = true
		default:
			sp.sentTo = p.SentTo
			sp.expanded = w.cfg.TimelineLimit > p.TimelineLimit
			sp.fullRS = w.cfg.RequiredState.key() != p.RequiredState
			if latest[r] <= p.SentTo && !sp.expanded && !sp.fullRS {
				continue // nothing new
			}
		}
		switch e.Membership {
		case room.Invite, room.Knock:
			m := store.Membership{RoomID: r, UserID: user, Membership: e.Membership, Sender: e.Sender, StreamPos: e.MemberPos}
			if e.Membership == room.Invite {
				invites = append(invites, m)
			} else {
				knocks = append(knocks, m)
			}
			sp.initial = true
			specs = append(specs, sp)
			continue
		case room.Join:
			sp.roomSpec = &roomSpec{id: r, kind: kindJoin, to: sb.to.Stream, joinedNow: true, full: true}
			if !sp.initial && !sp.expanded {
				sp.from, sp.full = sp.sentTo, false
			}
		default: // leave, ban
			sp.roomSpec = &roomSpec{id: r, kind: kindLeave, to: e.MemberPos, full: true}
			if !sp.initial && !sp.expanded {
				sp.from, sp.full = sp.sentTo, false
			}
		}
		specs = append(specs, sp)
	}
	if len(specs) == 0 {
		return nil
	}
	slices.SortFunc(specs, func(a, b *slidingSpec) int { return cmp.Compare(a.entry.RoomID, b.entry.RoomID) })

	b := &builder{
		s: sb.s, req: Request{User: user, Device: sb.req.Device, UseStateAfter: true}, f: &Filter{},
		fields: parseFields(nil), since: sb.since, to: sb.to, dk: sb.lazyKey(),
		memberships: map[id.RoomID]store.Membership{}, loaded: map[id.EventID]*store.Event{},
		stateCache: map[id.EventID]stateres.StateMap{}, joined: map[id.RoomID]*JoinedRoom{},
		left: map[id.RoomID]*LeftRoom{}, quiet: map[id.RoomID]bool{}, invited: map[id.RoomID]*InvitedRoom{},
		knocked: map[id.RoomID]*KnockedRoom{}, lazySent: sb.lazySent, ignored: sb.ignored,
	}
	for _, e := range sb.byRoom {
		b.memberships[e.RoomID] = store.Membership{RoomID: e.RoomID, UserID: user, Membership: e.Membership, Sender: e.Sender, StreamPos: e.MemberPos}
	}
	// Invites and knocks: stripped state, as rooms.invite and rooms.knock.
	if len(invites)+len(knocks) > 0 {
		var need []id.RoomID
		for _, m := range append(append([]store.Membership(nil), invites...), knocks...) {
			need = append(need, m.RoomID)
		}
		evs, err := sb.s.db.MembershipEventIDs(ctx, user, need)
		if err != nil {
			return err
		}
		for i := range invites {
			invites[i].EventID = evs[invites[i].RoomID]
		}
		for i := range knocks {
			knocks[i].EventID = evs[knocks[i].RoomID]
		}
		if err := b.stripped(ctx, invites, knocks); err != nil {
			return err
		}
	}
	var rs []*roomSpec
	var leaves []id.RoomID
	for _, sp := range specs {
		if sp.roomSpec != nil {
			rs = append(rs, sp.roomSpec)
			if sp.kind == kindLeave {
				leaves = append(leaves, sp.id)
			}
		}
	}
	if len(leaves) > 0 {
		evs, err := sb.s.db.MembershipEventIDs(ctx, user, leaves)
		if err != nil {
			return err
		}
		for _, sp := range rs {
			if sp.kind == kindLeave {
				sp.tip = evs[sp.id]
			}
		}
		if err := b.wasJoined(ctx, rs); err != nil {
			return err
		}
	}
	// The state the client has of the rooms sent before: at sentTo.
	var deltas []*slidingSpec
	for _, sp := range specs {
		if sp.roomSpec != nil && !sp.initial {
			deltas = append(deltas, sp)
		}
	}
	if err := sb.prevStates(ctx, b, deltas); err != nil {
		return err
	}
	// Timelines, per timeline limit (the v2 steps read one limit).
	byLimit := map[int][]*roomSpec{}
	for _, sp := range specs {
		if sp.roomSpec != nil && sp.want.cfg.TimelineLimit > 0 {
			byLimit[sp.want.cfg.TimelineLimit] = append(byLimit[sp.want.cfg.TimelineLimit], sp.roomSpec)
		}
	}
	for limit, group := range byLimit {
		b.f = &Filter{}
		b.f.Room.Timeline.Limit = limit
		if err := b.timelines(ctx, group); err != nil {
			return err
		}
	}
	b.f = &Filter{}
	if err := b.states(ctx, rs); err != nil {
		return err
	}
	return sb.compose(ctx, b, specs)
}

func (sb *slidingBuilder) prevSent(r id.RoomID) (store.SlidingSent, bool) {
	p, ok := sb.prevRooms[r]
	return p, ok
}

// prevStates reads the state of each room at the position it was last
// sent up to.
func (sb *slidingBuilder) prevStates(ctx context.Context, b *builder, specs []*slidingSpec) error {
	bySince := map[int64][]id.RoomID{}
	for _, sp := range specs {
		bySince[sp.sentTo] = append(bySince[sp.sentTo], sp.id)
	}
	tips := map[id.RoomID]id.EventID{}
	for at, rooms := range bySince {
		t, err := sb.s.db.LatestEventIDs(ctx, rooms, at)
		if err != nil {
			return err
		}
		for r, e := range t {
			tips[r] = e
		}
	}
	ids := make([]id.EventID, 0, len(tips))
	for _, e := range tips {
		ids = append(ids, e)
	}
	states, err := b.statesAfter(ctx, ids)
	if err != nil {
		return err
	}
	for _, sp := range specs {
		sp.sinceTip = tips[sp.id]
		sp.prev = states[tips[sp.id]]
		if sp.prev == nil {
			sp.prev = stateres.StateMap{}
		}
	}
	return nil
}

// compose turns the specs into room results.
func (sb *slidingBuilder) compose(ctx context.Context, b *builder, specs []*slidingSpec) error {
	user := sb.req.User
	// Which state events each room gets.
	chosen := make([]stateres.StateMap, len(specs))
	removed := make([][]stateres.StateKey, len(specs))
	var need []id.EventID
	var summaryRooms, nameless []id.RoomID
	for i, sp := range specs {
		if sp.roomSpec == nil {
			continue
		}
		chosen[i], removed[i] = sb.requiredState(sp)
		for _, e := range chosen[i] {
			need = append(need, e)
		}
		need = append(need, sp.end[nameKey], sp.end[avatarKey], sp.end[aliasKey])
		if sp.kind == kindJoin && (sp.full || summaryChanged(sp.prev, sp.end)) {
			summaryRooms = append(summaryRooms, sp.id)
		}
	}
	if err := b.load(ctx, need); err != nil {
		return err
	}
	for _, sp := range specs {
		if sp.roomSpec != nil && sp.kind == kindJoin && (sp.full || summaryChanged(sp.prev, sp.end)) {
			if name, _ := getString(b.contentOf(sp.end[nameKey]), "name"); name == "" {
				nameless = append(nameless, sp.id)
			}
		}
	}
	counts, err := sb.s.db.RoomMemberCounts(ctx, summaryRooms)
	if err != nil {
		return err
	}
	heroes, err := sb.s.db.RoomHeroes(ctx, nameless, user, 5)
	if err != nil {
		return err
	}
	var heroEvents []id.EventID
	for _, sp := range specs {
		for _, h := range heroes[sp.entry.RoomID] {
			if sp.end != nil {
				heroEvents = append(heroEvents, sp.end[stateres.StateKey{Type: event.TypeMember, StateKey: string(h)}])
			}
		}
	}
	if err := b.load(ctx, heroEvents); err != nil {
		return err
	}
	// Format every timeline and every state section in two batches, as
	// /sync v2 does.
	var tl, st []*store.Event
	stateOf := make([][]*store.Event, len(specs))
	for i, sp := range specs {
		if sp.roomSpec == nil {
			continue
		}
		tl = append(tl, sp.events...)
		for _, eid := range chosen[i] {
			if ev := b.loaded[eid]; ev != nil {
				stateOf[i] = append(stateOf[i], ev)
			}
		}
		slices.SortFunc(stateOf[i], func(x, y *store.Event) int { return cmp.Compare(x.StreamPos, y.StreamPos) })
		st = append(st, stateOf[i]...)
	}
	viewer := room.Viewer{UserID: user, DeviceID: sb.req.Device}
	opts := room.FormatOptions{NoRoomID: true}
	tlOut, err := sb.s.rooms.Format(ctx, tl, viewer, opts)
	if err != nil {
		return err
	}
	opts.NoAggregations = true
	stOut, err := sb.s.rooms.Format(ctx, st, viewer, opts)
	if err != nil {
		return err
	}
	var live int64 = -1
	if sb.since != nil {
		live = sb.since.Stream
	}
	for i, sp := range specs {
		r := sp.entry.RoomID
		res := &SlidingRoom{Membership: sp.entry.Membership, Initial: sp.initial, Lists: sp.want.lists}
		bump := sp.entry.Bump
		res.BumpStamp = &bump
		if sb.direct[r] {
			res.IsDM = true
		}
		sb.sent = append(sb.sent, store.SlidingSent{RoomID: r, SentTo: sb.to.Stream, TimelineLimit: sp.want.cfg.TimelineLimit,
			RequiredState: sp.want.cfg.RequiredState.key()})
		if sp.roomSpec == nil {
			// An invite or a knock: stripped state only (MSC4186
			// "Invite/knock/rejections").
			var evs []json.RawMessage
			if ir := b.invited[r]; ir != nil {
				evs = ir.InviteState.Events
			} else if kr := b.knocked[r]; kr != nil {
				evs = kr.KnockState.Events
			}
			if evs == nil {
				evs = []json.RawMessage{}
			}
			res.StrippedState, res.InviteState = evs, evs
			sb.resp.Rooms[r] = res
			sb.initial[r] = true
			continue
		}
		events := tlOut[:len(sp.events)]
		tlOut = tlOut[len(sp.events):]
		state := stOut[:len(stateOf[i])]
		stOut = stOut[len(stateOf[i]):]
		for _, k := range removed[i] {
			stub, _ := json.Marshal(map[string]string{"type": k.Type, "state_key": k.StateKey})
			state = append(state, stub)
		}
		if !sp.initial && !sp.expanded && !sp.fullRS && len(events) == 0 && len(state) == 0 {
			continue // only hidden events: nothing the client sees
		}
		res.Timeline, res.RequiredState, res.Limited = events, state, sp.limited
		if sp.expanded {
			res.ExpandedTimeline, res.UnstableExpanded = true, true
		}
		n := 0
		for _, ev := range sp.events {
			if live >= 0 && ev.StreamPos > live {
				n++
			}
		}
		res.NumLive = &n
		switch {
		case len(sp.events) > 0 && sp.topo:
			res.PrevBatch = room.TopoToken(sp.events[0].Depth(), sp.events[0].StreamPos).String()
		case len(sp.events) > 0:
			res.PrevBatch = room.StreamToken(notify.Position{Stream: sp.events[0].StreamPos - 1}).String()
		default:
			res.PrevBatch = room.StreamToken(notify.Position{Stream: sp.to}).String()
		}
		// Name and avatar: always when initial, else when changed; null
		// when removed.
		res.Name = sb.stateField(b, sp, nameKey, "name")
		res.Avatar = sb.stateField(b, sp, avatarKey, "url")
		if c, ok := counts[r]; ok {
			j, inv := c.Joined, c.Invited
			res.JoinedCount, res.InvitedCount = &j, &inv
			if hs := heroes[r]; len(hs) > 0 {
				res.Heroes = make([]Hero, len(hs))
				for k, h := range hs {
					mc := b.contentOf(sp.end[stateres.StateKey{Type: event.TypeMember, StateKey: string(h)}])
					dn, _ := getString(mc, "displayname")
					av, _ := getString(mc, "avatar_url")
					res.Heroes[k] = Hero{UserID: h, DisplayName: dn, AvatarURL: av}
				}
			}
		}
		if sp.kind == kindJoin {
			b.joined[r] = &JoinedRoom{}
		}
		sb.resp.Rooms[r] = res
		if sp.initial {
			sb.initial[r] = true
		}
	}
	// Notification and highlight counts of the joined rooms, with the
	// same code as /sync v2.
	if err := b.unread(ctx); err != nil {
		return err
	}
	for r, jr := range b.joined {
		n, h := jr.Unread.Notifications, jr.Unread.Highlights
		sb.resp.Rooms[r].Notifications, sb.resp.Rooms[r].Highlights = &n, &h
	}
	return nil
}

// stateField returns a room's name or avatar for the response: the
// field's value when initial or changed, null when the event went away,
// nil when unchanged.
func (sb *slidingBuilder) stateField(b *builder, sp *slidingSpec, k stateres.StateKey, prop string) json.RawMessage {
	now := sp.end[k]
	if !sp.initial && sp.prev != nil && sp.prev[k] == now {
		return nil
	}
	v, ok := getString(b.contentOf(now), prop)
	if !ok || v == "" {
		if sp.initial {
			return nil
		}
		return json.RawMessage("null")
	}
	out, _ := json.Marshal(v)
	return out
}

// requiredState chooses a room's state events (MSC4186
// "RequiredStateRequest"): the current state that the config matches, all
// of it when the room is sent from scratch or its config changed, else
// what changed since it was last sent (and the keys that went away); with
// lazy_members, the member events of the timeline's senders and targets
// that the connection does not have, and every member change of a gapless
// delta.
func (sb *slidingBuilder) requiredState(sp *slidingSpec) (stateres.StateMap, []stateres.StateKey) {
	user := sb.req.User
	rs := &sp.want.cfg.RequiredState
	chosen := stateres.StateMap{}
	var removed []stateres.StateKey
	full := sp.initial || sp.fullRS || sp.prev == nil
	if sp.kind == kindLeave && sp.initial && !sp.joinedNow {
		return chosen, nil // a rejected invite or a ban without a join
	}
	for k, v := range sp.end {
		if !full && sp.prev[k] == v {
			continue
		}
		if rs.matches(k.Type, k.StateKey, user) ||
			!full && rs.LazyMembers && k.Type == event.TypeMember && !sp.limited {
			chosen[k] = v
		}
	}
	if !full {
		for k := range sp.prev {
			if _, ok := sp.end[k]; !ok && rs.matches(k.Type, k.StateKey, user) {
				removed = append(removed, k)
			}
		}
	}
	if rs.LazyMembers {
		wanted := map[id.UserID]bool{}
		for _, ev := range sp.events {
			wanted[ev.Sender()] = true
			if ev.Type() == event.TypeMember && ev.StateKey() != nil {
				wanted[id.UserID(*ev.StateKey())] = true
			}
		}
		var since int64 = -1
		if sb.since != nil && !sp.initial {
			since = sb.since.Stream
		}
		for u := range wanted {
			k := stateres.StateKey{Type: event.TypeMember, StateKey: string(u)}
			eid := sp.end[k]
			if eid == "" {
				continue
			}
			if _, ok := chosen[k]; ok {
				continue
			}
			if since >= 0 && sb.s.lazy.known(sb.lazyKey(), sp.id, u, eid, since) {
				continue
			}
			chosen[k] = eid
		}
		for k, eid := range chosen {
			if k.Type == event.TypeMember {
				sb.lazySent[roomUser{sp.id, id.UserID(k.StateKey)}] = eid
			}
		}
	}
	return chosen, removed
}

package sync

// The sliding sync room lists (MSC4186 "Lists"): the rooms the user has a
// membership of, sorted by bump stamp, filtered per list, cut to the
// list's range and counted, in one statement per list
// (store.SlidingList); the response reads nothing of the rooms outside
// the ranges and the subscriptions.

import (
	"context"
	"encoding/json"
	"slices"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
)

// slidingBuilder builds one sliding sync response.
type slidingBuilder struct {
	s    *Service
	req  *SlidingRequest
	prev *store.SlidingPosition // nil for a new connection
	// prevRooms is what the connection sent up to prev of the rooms the
	// response may send.
	prevRooms map[id.RoomID]store.SlidingSent
	since     *notify.Position // prev's position, nil for a new connection
	to        notify.Position
	subs      map[id.RoomID]*RoomConfig

	ignored map[id.UserID]bool
	// byRoom are the rooms of the server's list that the response may
	// send: those of the lists' ranges and the subscribed ones.
	byRoom map[id.RoomID]*store.SlidingRoomEntry
	// accountData is the user's global account data up to to.
	accountData []store.AccountData
	direct      map[id.RoomID]bool

	// want are the rooms matched by a list or a subscription, inList the
	// rooms of each list's range.
	want    map[id.RoomID]*roomWant
	inList  map[string][]id.RoomID
	resp    *SlidingResponse
	sent    []store.SlidingSent
	initial map[id.RoomID]bool // rooms sent with initial: true
	extNews bool               // an extension has news

	lazySent map[roomUser]id.EventID
}

// roomWant is a room matched by the request's rules, with its combined
// config.
type roomWant struct {
	cfg   RoomConfig
	lists []string
}

// slidingBuild builds a response. Its cost does not grow with the number
// of the user's rooms: each list is one statement (store.SlidingList:
// the filters, the order, the range and the count in SQL), and only the
// rooms of the ranges and the subscriptions are read further.
func (s *Service) slidingBuild(ctx context.Context, req *SlidingRequest, prev *store.SlidingPosition, since *notify.Position, subs map[id.RoomID]*RoomConfig, to notify.Position) (*slidingBuilder, error) {
	sb := &slidingBuilder{s: s, req: req, prev: prev, since: since, to: to, subs: subs,
		byRoom: map[id.RoomID]*store.SlidingRoomEntry{},
		want:   map[id.RoomID]*roomWant{}, inList: map[string][]id.RoomID{}, initial: map[id.RoomID]bool{},
		lazySent: map[roomUser]id.EventID{},
		resp:     &SlidingResponse{Lists: map[string]SlidingListResult{}, Rooms: map[id.RoomID]*SlidingRoom{}, Extensions: map[string]any{}}}
	var err error
	if sb.ignored, err = s.src.Users.IgnoredUsers(ctx, req.User); err != nil {
		return nil, err
	}
	if sb.accountData, err = s.db.SlidingAccountData(ctx, req.User, true, nil, "", sb.to.Stream); err != nil {
		return nil, err
	}
	sb.readDirect()
	if err := sb.lists(ctx); err != nil {
		return nil, err
	}
	// As in /sync v2: a membership row read is committed with every
	// position below it, so the response moves past it.
	for _, e := range sb.byRoom {
		sb.to.Stream = max(sb.to.Stream, e.MemberPos)
	}
	if err := sb.rooms(ctx); err != nil {
		return nil, err
	}
	if err := sb.extensions(ctx); err != nil {
		return nil, err
	}
	return sb, nil
}

// empty reports whether the response has nothing new: no room and no
// extension data beyond key counts.
func (sb *slidingBuilder) empty() bool {
	return len(sb.resp.Rooms) == 0 && !sb.extNews
}

// watched are the rooms besides the joined ones whose events wake a
// long-poll: those the response would report (a left room's events do
// not reach the user, but an invite's room may change).
func (sb *slidingBuilder) watched() []id.RoomID {
	var out []id.RoomID
	for r := range sb.want {
		if e := sb.byRoom[r]; e != nil && e.Membership != room.Join {
			out = append(out, r)
		}
	}
	return out
}

func (sb *slidingBuilder) lazyKey() deviceKey {
	return deviceKey{sb.req.User, id.DeviceID(string(sb.req.Device) + "\x00sliding\x00" + sb.req.ConnID)}
}

// readDirect reads m.direct (is_dm) from the global account data.
func (sb *slidingBuilder) readDirect() {
	sb.direct = map[id.RoomID]bool{}
	for _, a := range sb.accountData {
		if a.RoomID == "" && a.Type == "m.direct" {
			var m map[string][]id.RoomID
			if json.Unmarshal(a.Content, &m) == nil {
				for _, rooms := range m {
					for _, r := range rooms {
						sb.direct[r] = true
					}
				}
			}
		}
	}
}

// inServerList reports whether a room the user has a membership of is in
// the server's list (MSC4186 "Lists"): joined, invited (not by an ignored
// user), knocked, kicked and banned rooms; rooms the user left itself (or
// invites it rejected) only when the connection sent them before. The
// same rules as store.SlidingList's, for rooms read one by one.
func (sb *slidingBuilder) inServerList(e *store.SlidingRoomEntry) bool {
	switch e.Membership {
	case room.Invite:
		return !sb.ignored[e.Sender]
	case room.Leave:
		return e.Sender != sb.req.User || sb.sentBefore(e.RoomID)
	}
	return true
}

func (sb *slidingBuilder) sentBefore(r id.RoomID) bool {
	_, ok := sb.prevRooms[r]
	return ok
}

// lists reads each list's range and count (one statement per list), and
// adds the subscribed rooms the user may see: those of the server's list
// (MSC4186 "Subscriptions"); others are ignored.
func (sb *slidingBuilder) lists(ctx context.Context) error {
	names := make([]string, 0, len(sb.req.Lists))
	for n := range sb.req.Lists {
		names = append(names, n)
	}
	slices.Sort(names)
	sets, err := sb.filterSets(ctx)
	if err != nil {
		return err
	}
	ignored := make([]id.UserID, 0, len(sb.ignored))
	for u := range sb.ignored {
		ignored = append(ignored, u)
	}
	slices.Sort(ignored)
	var after string
	if sb.prev != nil {
		after = sb.prev.Token
	}
	for _, name := range names {
		l := sb.req.Lists[name]
		q := store.SlidingListQuery{User: sb.req.User, After: after, Ignored: ignored, Limit: -1}
		if l.HasRange {
			q.Offset, q.Limit = l.Start, l.End-l.Start+1
		}
		if f := l.Filters; f != nil {
			q.IsInvite, q.IsEncrypted = f.IsInvite, f.IsEncrypted
			q.RoomTypes, q.HasRoomTypes, q.NotRoomTypes = f.RoomTypes, f.HasRoomTypes, f.NotRoomTypes
			if f.IsDM != nil {
				if *f.IsDM {
					q.In = append(q.In, sets.direct)
				} else {
					q.NotIn = append(q.NotIn, sets.direct)
				}
			}
			if len(f.Spaces) > 0 {
				var children []id.RoomID
				for _, sp := range f.Spaces {
					children = append(children, sets.children[sp]...)
				}
				q.In = append(q.In, children)
			}
			if len(f.Tags) > 0 {
				var tagged []id.RoomID
				for _, t := range f.Tags {
					tagged = append(tagged, sets.tagged[t]...)
				}
				q.In = append(q.In, tagged)
			}
			for _, t := range f.NotTags {
				q.NotIn = append(q.NotIn, sets.tagged[t])
			}
		}
		entries, count, err := sb.s.db.SlidingList(ctx, q)
		if err != nil {
			return err
		}
		rooms := make([]id.RoomID, len(entries))
		for i := range entries {
			rooms[i] = entries[i].RoomID
			if sb.byRoom[rooms[i]] == nil {
				sb.byRoom[rooms[i]] = &entries[i]
			}
		}
		res := SlidingListResult{Count: count}
		if l.HasRange {
			// MSC3575's SYNC op for clients that read ops.
			res.Ops = []SlidingOp{{Op: "SYNC", Range: [2]int{l.Start, l.End}, RoomIDs: append([]id.RoomID{}, rooms...)}}
		}
		sb.resp.Lists[name] = res
		sb.inList[name] = rooms
		for _, r := range rooms {
			w := sb.want[r]
			if w == nil {
				w = &roomWant{cfg: RoomConfig{TimelineLimit: l.TimelineLimit, RequiredState: l.RequiredState}}
				sb.want[r] = w
			} else {
				w.cfg.combine(&l.RoomConfig)
			}
			w.lists = append(w.lists, name)
		}
	}
	// What the connection had of the rooms of the ranges and the
	// subscriptions (and of nothing else).
	sb.prevRooms = map[id.RoomID]store.SlidingSent{}
	if sb.prev != nil {
		rooms := make([]id.RoomID, 0, len(sb.byRoom)+len(sets.subscribed))
		for r := range sb.byRoom {
			rooms = append(rooms, r)
		}
		for _, e := range sets.subscribed {
			rooms = append(rooms, e.RoomID)
		}
		slices.Sort(rooms)
		if sb.prevRooms, err = sb.s.db.SlidingSentRooms(ctx, sb.prev.Token, slices.Compact(rooms)); err != nil {
			return err
		}
	}
	for _, e := range sets.subscribed {
		if !sb.inServerList(&e) {
			continue
		}
		r := e.RoomID
		if sb.byRoom[r] == nil {
			sb.byRoom[r] = &e
		}
		if w := sb.want[r]; w != nil {
			w.cfg.combine(sb.subs[r])
		} else {
			sb.want[r] = &roomWant{cfg: *sb.subs[r]}
		}
	}
	return nil
}

// filterSets are the sets of rooms that the filters read from account
// data and from the state of a few rooms.
type filterSets struct {
	direct []id.RoomID // m.direct's rooms
	// children are the rooms of each joined space of a spaces filter.
	children map[id.RoomID][]id.RoomID
	// tagged are the rooms with each tag of a tags or not_tags filter.
	tagged map[string][]id.RoomID
	// subscribed are the user's memberships of the subscribed rooms.
	subscribed []store.SlidingRoomEntry
}

// filterSets reads what the lists' filters need besides the membership
// rows: the m.tag account data when a filter reads tags, the m.space.child
// state of the spaces a filter names (MSC4186 "spaces": the user must be
// joined to the space), and the user's membership of the spaces and the
// subscribed rooms. At most four statements, none when no filter needs
// them.
func (sb *slidingBuilder) filterSets(ctx context.Context) (*filterSets, error) {
	fs := &filterSets{children: map[id.RoomID][]id.RoomID{}, tagged: map[string][]id.RoomID{}}
	for r := range sb.direct {
		fs.direct = append(fs.direct, r)
	}
	slices.Sort(fs.direct)
	needTags := false
	var spaces, lookup []id.RoomID
	for _, l := range sb.req.Lists {
		if f := l.Filters; f != nil {
			needTags = needTags || len(f.Tags)+len(f.NotTags) > 0
			spaces = append(spaces, f.Spaces...)
		}
	}
	lookup = append(lookup, spaces...)
	for r := range sb.subs {
		lookup = append(lookup, r)
	}
	slices.Sort(lookup)
	lookup = slices.Compact(lookup)
	entries, err := sb.s.db.SlidingRoomEntries(ctx, sb.req.User, lookup)
	if err != nil {
		return nil, err
	}
	var joinedSpaces []id.RoomID
	for _, e := range entries {
		if sb.subs[e.RoomID] != nil {
			fs.subscribed = append(fs.subscribed, e)
		}
		if e.Membership == room.Join && slices.Contains(spaces, e.RoomID) {
			joinedSpaces = append(joinedSpaces, e.RoomID)
		}
	}
	if len(joinedSpaces) > 0 {
		st, err := sb.s.db.CurrentStateOfTypes(ctx, joinedSpaces, []string{"m.space.child"})
		if err != nil {
			return nil, err
		}
		for r, evs := range st {
			for _, ev := range evs {
				// A child whose content has no via was removed (spec
				// "m.space.child").
				if via, ok := cjson.Get(ev.Content(), "via"); ok && string(via) != "[]" && ev.StateKey() != nil {
					fs.children[r] = append(fs.children[r], id.RoomID(*ev.StateKey()))
				}
			}
		}
	}
	if needTags {
		ads, err := sb.s.db.SlidingAccountData(ctx, sb.req.User, false, nil, "m.tag", sb.to.Stream)
		if err != nil {
			return nil, err
		}
		for _, a := range ads {
			var t struct {
				Tags map[string]json.RawMessage `json:"tags"`
			}
			if json.Unmarshal(a.Content, &t) == nil {
				for k := range t.Tags {
					fs.tagged[k] = append(fs.tagged[k], a.RoomID)
				}
			}
		}
	}
	return fs, nil
}

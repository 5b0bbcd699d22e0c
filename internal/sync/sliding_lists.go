package sync

// The sliding sync room list (MSC4186 "Lists"): every room the user has a
// membership of, sorted by bump stamp (store.SlidingRoomList: one
// statement, no timeline read), filtered per list and cut to its range.

import (
	"cmp"
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
	s     *Service
	req   *SlidingRequest
	prev  *store.SlidingPosition // nil for a new connection
	since *notify.Position       // prev's position, nil for a new connection
	to    notify.Position
	subs  map[id.RoomID]*RoomConfig

	ignored map[id.UserID]bool
	// entries are the server's room list, most recent first.
	entries []store.SlidingRoomEntry
	byRoom  map[id.RoomID]*store.SlidingRoomEntry
	// accountData is all of the user's account data up to to.
	accountData []store.AccountData
	direct      map[id.RoomID]bool
	tags        map[id.RoomID]map[string]bool
	meta        map[id.RoomID]*roomMeta

	// want are the rooms matched by a list or a subscription, inScope the
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

// roomMeta is what the filters read of a room's state.
type roomMeta struct {
	typ       *string
	encrypted bool
	children  []id.RoomID // m.space.child state keys with a via
}

func (s *Service) slidingBuild(ctx context.Context, req *SlidingRequest, prev *store.SlidingPosition, since *notify.Position, subs map[id.RoomID]*RoomConfig, to notify.Position) (*slidingBuilder, error) {
	sb := &slidingBuilder{s: s, req: req, prev: prev, since: since, to: to, subs: subs,
		byRoom: map[id.RoomID]*store.SlidingRoomEntry{}, meta: map[id.RoomID]*roomMeta{},
		want: map[id.RoomID]*roomWant{}, inList: map[string][]id.RoomID{}, initial: map[id.RoomID]bool{},
		lazySent: map[roomUser]id.EventID{},
		resp:     &SlidingResponse{Lists: map[string]SlidingListResult{}, Rooms: map[id.RoomID]*SlidingRoom{}, Extensions: map[string]any{}}}
	var err error
	if sb.ignored, err = s.src.Users.IgnoredUsers(ctx, req.User); err != nil {
		return nil, err
	}
	if sb.entries, err = s.db.SlidingRoomList(ctx, req.User); err != nil {
		return nil, err
	}
	// As in /sync v2: a membership row read is committed with every
	// position below it, so the response moves past it.
	for _, e := range sb.entries {
		sb.to.Stream = max(sb.to.Stream, e.MemberPos)
	}
	if sb.accountData, err = s.src.Users.AccountDataSince(ctx, req.User, 0, sb.to.Stream); err != nil {
		return nil, err
	}
	sb.readAccountData()
	sb.serverList()
	if err := sb.lists(ctx); err != nil {
		return nil, err
	}
	sb.subscriptions()
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

// readAccountData reads m.direct (is_dm) and the rooms' m.tag.
func (sb *slidingBuilder) readAccountData() {
	sb.direct = map[id.RoomID]bool{}
	sb.tags = map[id.RoomID]map[string]bool{}
	for _, a := range sb.accountData {
		switch {
		case a.RoomID == "" && a.Type == "m.direct":
			var m map[string][]id.RoomID
			if json.Unmarshal(a.Content, &m) == nil {
				for _, rooms := range m {
					for _, r := range rooms {
						sb.direct[r] = true
					}
				}
			}
		case a.RoomID != "" && a.Type == "m.tag":
			var t struct {
				Tags map[string]json.RawMessage `json:"tags"`
			}
			if json.Unmarshal(a.Content, &t) == nil {
				sb.tags[a.RoomID] = map[string]bool{}
				for k := range t.Tags {
					sb.tags[a.RoomID][k] = true
				}
			}
		}
	}
}

// serverList keeps the rooms of the server's list (MSC4186 "Lists"):
// joined, invited (not by an ignored user), knocked, kicked and banned
// rooms; rooms the user left itself (or invites it rejected) only when the
// connection sent them before. Most recent first.
func (sb *slidingBuilder) serverList() {
	kept := sb.entries[:0]
	for _, e := range sb.entries {
		switch e.Membership {
		case room.Invite:
			if sb.ignored[e.Sender] {
				continue
			}
		case room.Leave:
			if e.Sender == sb.req.User && !sb.sentBefore(e.RoomID) {
				continue
			}
		}
		kept = append(kept, e)
	}
	sb.entries = kept
	slices.SortFunc(sb.entries, func(a, b store.SlidingRoomEntry) int {
		if c := cmp.Compare(b.Bump, a.Bump); c != 0 {
			return c
		}
		return cmp.Compare(a.RoomID, b.RoomID)
	})
	for i := range sb.entries {
		sb.byRoom[sb.entries[i].RoomID] = &sb.entries[i]
	}
}

func (sb *slidingBuilder) sentBefore(r id.RoomID) bool {
	if sb.prev == nil {
		return false
	}
	_, ok := sb.prev.Rooms[r]
	return ok
}

// lists filters the server list for each list, counts it and takes the
// rooms of its range.
func (sb *slidingBuilder) lists(ctx context.Context) error {
	names := make([]string, 0, len(sb.req.Lists))
	for n := range sb.req.Lists {
		names = append(names, n)
	}
	slices.Sort(names)
	if err := sb.loadMeta(ctx); err != nil {
		return err
	}
	for _, name := range names {
		l := sb.req.Lists[name]
		var rooms []id.RoomID
		count := 0
		for i := range sb.entries {
			e := &sb.entries[i]
			if !sb.matchFilters(l.Filters, e) {
				continue
			}
			if !l.HasRange || count >= l.Start && count <= l.End {
				rooms = append(rooms, e.RoomID)
			}
			count++
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
	return nil
}

// subscriptions adds the subscribed rooms the user may see: those it has
// a membership of (MSC4186 "Subscriptions"); others are ignored.
func (sb *slidingBuilder) subscriptions() {
	for r, c := range sb.subs {
		if sb.byRoom[r] == nil {
			continue
		}
		if w := sb.want[r]; w != nil {
			w.cfg.combine(c)
		} else {
			sb.want[r] = &roomWant{cfg: *c}
		}
	}
}

// loadMeta reads room types, encryption and space children when a
// filter needs them: two statements over the current state, whatever the
// number of rooms.
func (sb *slidingBuilder) loadMeta(ctx context.Context) error {
	needState := false
	var spaces []id.RoomID
	for _, l := range sb.req.Lists {
		if f := l.Filters; f != nil {
			if f.IsEncrypted != nil || f.HasRoomTypes || f.NotRoomTypes != nil {
				needState = true
			}
			for _, sp := range f.Spaces {
				if e := sb.byRoom[sp]; e != nil && e.Membership == room.Join {
					spaces = append(spaces, sp)
				}
			}
		}
	}
	if needState {
		rooms := make([]id.RoomID, len(sb.entries))
		for i, e := range sb.entries {
			rooms[i] = e.RoomID
		}
		st, err := sb.s.db.CurrentStateOfTypes(ctx, rooms, []string{"m.room.create", "m.room.encryption"})
		if err != nil {
			return err
		}
		for r, evs := range st {
			m := sb.metaOf(r)
			for _, ev := range evs {
				switch ev.Type() {
				case "m.room.encryption":
					m.encrypted = true
				case "m.room.create":
					if t, ok := getString(ev.Content(), "type"); ok {
						m.typ = &t
					}
				}
			}
		}
	}
	if len(spaces) > 0 {
		st, err := sb.s.db.CurrentStateOfTypes(ctx, spaces, []string{"m.space.child"})
		if err != nil {
			return err
		}
		for r, evs := range st {
			m := sb.metaOf(r)
			for _, ev := range evs {
				// A child whose content has no via was removed (spec
				// "m.space.child").
				if via, ok := cjson.Get(ev.Content(), "via"); ok && string(via) != "[]" && ev.StateKey() != nil {
					m.children = append(m.children, id.RoomID(*ev.StateKey()))
				}
			}
		}
	}
	return nil
}

func (sb *slidingBuilder) metaOf(r id.RoomID) *roomMeta {
	m := sb.meta[r]
	if m == nil {
		m = &roomMeta{}
		sb.meta[r] = m
	}
	return m
}

// matchFilters applies a list's filters to a room (MSC4186
// "SlidingRoomFilter").
func (sb *slidingBuilder) matchFilters(f *SlidingFilters, e *store.SlidingRoomEntry) bool {
	if f == nil {
		return true
	}
	r := e.RoomID
	if f.IsInvite != nil && *f.IsInvite != (e.Membership == room.Invite) {
		return false
	}
	if f.IsDM != nil && *f.IsDM != sb.direct[r] {
		return false
	}
	m := sb.meta[r]
	if m == nil {
		m = &roomMeta{}
	}
	if f.IsEncrypted != nil && *f.IsEncrypted != m.encrypted {
		return false
	}
	sameType := func(t *string) bool {
		return t == nil && m.typ == nil || t != nil && m.typ != nil && *t == *m.typ
	}
	if f.HasRoomTypes && !slices.ContainsFunc(f.RoomTypes, sameType) {
		return false
	}
	if slices.ContainsFunc(f.NotRoomTypes, sameType) {
		return false
	}
	if len(f.Spaces) > 0 {
		in := false
		for _, sp := range f.Spaces {
			if sm := sb.meta[sp]; sm != nil && slices.Contains(sm.children, r) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	for _, t := range f.NotTags {
		if sb.tags[r][t] {
			return false
		}
	}
	if len(f.Tags) > 0 && !slices.ContainsFunc(f.Tags, func(t string) bool { return sb.tags[r][t] }) {
		return false
	}
	return true
}

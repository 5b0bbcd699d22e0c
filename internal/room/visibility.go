package room

import (
	"context"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

// History visibility values (client-server API, "Room history
// visibility").
const (
	WorldReadable = "world_readable"
	Shared        = "shared"
	Invited       = "invited"
	Joined        = "joined"
)

// Visible returns the events among evs that user may see, in the same
// order (client-server API, "Room history visibility"); currentlyJoined
// says whether the user is joined now (see VisibleMany).
func (s *Service) Visible(ctx context.Context, user id.UserID, currentlyJoined bool, evs []*store.Event) ([]*store.Event, error) {
	joinedNow := map[id.RoomID]bool{}
	for _, ev := range evs {
		joinedNow[ev.RoomID()] = currentlyJoined
	}
	return s.VisibleMany(ctx, user, evs, joinedNow)
}

// VisibleMany returns the events among evs, of any rooms, that user may
// see, in the same order (client-server API, "Room history visibility",
// server behaviour), deciding each by the room's m.room.history_visibility
// and the user's membership at the event:
//   - world_readable: everyone;
//   - a user joined at the event sees it;
//   - shared: a user who is joined now (joinedNow[room]) sees it;
//   - invited: a user invited at the event sees it;
//   - joined: only a user joined at the event.
//
// An m.room.history_visibility event is visible if the setting before or
// after it allows, and the user's own member event if its membership
// before or after does; a user always sees its own leave after a join, an
// invite or a knock (so that it sees the room go, as Synapse). An empty user (an
// anonymous reader) sees only world_readable events. Outliers are never
// shown.
//
// The states of all events come from one batched read and the visibility
// and member events from another: two queries for a page, not two per
// event.
func (s *Service) VisibleMany(ctx context.Context, user id.UserID, evs []*store.Event, joinedNow map[id.RoomID]bool) ([]*store.Event, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	ids := make([]id.EventID, len(evs))
	for i, ev := range evs {
		ids[i] = ev.EventID()
	}
	states, err := s.db.StatesAfter(ctx, ids)
	if err != nil {
		return nil, err
	}
	hvKey := stateres.StateKey{Type: event.TypeHistoryVisibility}
	memberKey := stateres.StateKey{Type: event.TypeMember, StateKey: string(user)}
	need := map[id.EventID]bool{}
	for _, ev := range evs {
		st := states[ev.EventID()]
		if st == nil {
			continue
		}
		if hv := st[hvKey]; hv != "" && hv != ev.EventID() {
			need[hv] = true
		}
		if m := st[memberKey]; m != "" && m != ev.EventID() && user != "" {
			need[m] = true
		}
		if ev.Replaces != "" && (isOwnMember(ev, user) || isHistoryVisibility(ev)) {
			need[ev.Replaces] = true
		}
	}
	contents := map[id.EventID][]byte{}
	if len(need) > 0 {
		list := make([]id.EventID, 0, len(need))
		for e := range need {
			list = append(list, e)
		}
		loaded, err := s.db.Events(ctx, list)
		if err != nil {
			return nil, err
		}
		for _, e := range loaded {
			contents[e.EventID()] = e.Content()
		}
	}
	for _, ev := range evs {
		contents[ev.EventID()] = ev.Content()
	}
	field := func(eid id.EventID, key string) string {
		if eid == "" {
			return ""
		}
		v, _ := getString(contents[eid], key)
		return v
	}
	out := make([]*store.Event, 0, len(evs))
	for _, ev := range evs {
		st := states[ev.EventID()]
		if st == nil {
			continue // an outlier: never shown
		}
		vis := historyVisibility(field(st[hvKey], "history_visibility"))
		joined := joinedNow[ev.RoomID()] && user != ""
		member := ""
		if user != "" {
			member = field(st[memberKey], "membership")
		}
		ok := false
		switch {
		case user != "" && isOwnMember(ev, user):
			after := field(ev.EventID(), "membership")
			before := field(ev.Replaces, "membership")
			ok = (after == Leave && (before == Join || before == Invite || before == Knock)) ||
				visibleTo(vis, after, joined) || visibleTo(vis, before, joined)
		case isHistoryVisibility(ev):
			ok = visibleTo(vis, member, joined) || visibleTo(historyVisibility(field(ev.Replaces, "history_visibility")), member, joined)
		default:
			ok = visibleTo(vis, member, joined)
		}
		if ok {
			out = append(out, ev)
		}
	}
	return out, nil
}

func isOwnMember(ev *store.Event, user id.UserID) bool {
	return ev.Type() == event.TypeMember && ev.StateKey() != nil && *ev.StateKey() == string(user)
}

func isHistoryVisibility(ev *store.Event) bool {
	return ev.Type() == event.TypeHistoryVisibility && ev.StateKey() != nil && *ev.StateKey() == ""
}

// historyVisibility normalises a setting: absent or not understood is
// shared (spec: "By default if no history_visibility is set, or if the
// value is not understood, the visibility is assumed to be shared").
func historyVisibility(v string) string {
	switch v {
	case WorldReadable, Invited, Joined:
		return v
	}
	return Shared
}

func visibleTo(vis, membership string, currentlyJoined bool) bool {
	switch {
	case vis == WorldReadable:
		return true
	case membership == Join:
		return true
	case vis == Shared:
		return currentlyJoined
	case vis == Invited:
		return membership == Invite
	default:
		return false
	}
}

// CanRead checks that user may read a room now: it is joined, or the room
// is world_readable, or (for the parts of history it may see) it was a
// member once. It returns the user's current membership ("" if none) and
// M_FORBIDDEN if it has never been in a room that is not world readable.
func (s *Service) CanRead(ctx context.Context, user id.UserID, roomID id.RoomID) (string, error) {
	m, err := s.Membership(ctx, roomID, user)
	if err != nil {
		return "", err
	}
	if m == Join || m == Leave || m == Ban || m == Invite {
		// A former member may read what it saw while it was in the room;
		// Visible and the caller's bound decide which events.
		if m != "" {
			return m, nil
		}
	}
	c, err := s.StateContent(ctx, roomID, event.TypeHistoryVisibility, "")
	if err != nil {
		return "", err
	}
	if v, _ := getString(c, "history_visibility"); v == WorldReadable {
		return m, nil
	}
	return "", mxerr.Forbidden("You are not allowed to read room %s", roomID)
}

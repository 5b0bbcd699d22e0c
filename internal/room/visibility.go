package room

import (
	"context"
	"errors"

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
// order (client-server API, "Room history visibility"), deciding each by
// the room's m.room.history_visibility and the user's membership in the
// state before the event:
//   - world_readable: everyone;
//   - a user joined at the event sees it;
//   - shared: a user who is joined now sees it (currentlyJoined);
//   - invited: a user invited or joined at the event sees it;
//   - joined: only a user joined at the event.
//
// A user's own member event is judged by the membership it sets, so that
// users see their own invites, joins and leaves. An empty user (a guest
// peeking, or an anonymous reader) sees only world_readable events.
func (s *Service) Visible(ctx context.Context, user id.UserID, currentlyJoined bool, evs []*store.Event) ([]*store.Event, error) {
	out := make([]*store.Event, 0, len(evs))
	contents := map[id.EventID][]byte{}
	content := func(eid id.EventID) ([]byte, error) {
		if c, ok := contents[eid]; ok {
			return c, nil
		}
		ev, err := s.db.Event(ctx, eid)
		if err != nil {
			return nil, err
		}
		contents[eid] = ev.Content()
		return ev.Content(), nil
	}
	for _, ev := range evs {
		state, err := s.db.StateAfter(ctx, ev.EventID())
		if errors.Is(err, store.ErrNotFound) {
			continue // an outlier: never shown
		}
		if err != nil {
			return nil, err
		}
		vis := Shared
		if eid, ok := state[stateres.StateKey{Type: event.TypeHistoryVisibility}]; ok {
			c, err := content(eid)
			if err != nil {
				return nil, err
			}
			if v, ok := getString(c, "history_visibility"); ok {
				vis = v
			}
		}
		// The membership before the event: the state after, swapped back
		// for a member event of the user itself, whose own membership
		// counts instead.
		membership := ""
		k := stateres.StateKey{Type: event.TypeMember, StateKey: string(user)}
		if ev.Type() == event.TypeMember && ev.StateKey() != nil && *ev.StateKey() == string(user) {
			membership, _ = getString(ev.Content(), "membership")
		} else if eid, ok := state[k]; ok && user != "" {
			c, err := content(eid)
			if err != nil {
				return nil, err
			}
			membership, _ = getString(c, "membership")
		}
		if visibleTo(vis, membership, currentlyJoined) {
			out = append(out, ev)
		}
	}
	return out, nil
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

package sync

import (
	"context"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

// visible returns the events of evs that user may see, in order, by the
// rules of history visibility (client-server API, "Room history
// visibility", Server behaviour) applied to the state after each event, as
// room.Visible does, but for many events and rooms at once: the states come
// from one batched read and the visibility and member events from another.
// joinedNow says per room whether the user is joined now, or was before it
// left ("shared" history is visible to whoever joined after it was sent).
//
// As the spec asks, an m.room.history_visibility event is visible if the
// setting before or after it allows, and the user's own member event if
// its membership before or after does; a user always sees its own leave
// after a join or an invite (so that it sees the room go, as Synapse).
func (b *builder) visible(ctx context.Context, evs []*store.Event, joinedNow map[id.RoomID]bool) ([]*store.Event, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	user := b.req.User
	ids := make([]id.EventID, len(evs))
	for i, ev := range evs {
		ids[i] = ev.EventID()
	}
	states, err := b.statesAfter(ctx, ids)
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
		if m := st[memberKey]; m != "" && m != ev.EventID() {
			need[m] = true
		}
		if ev.Replaces != "" && (isOwnMember(ev, user) || isHistoryVisibility(ev)) {
			need[ev.Replaces] = true
		}
	}
	list := make([]id.EventID, 0, len(need))
	for e := range need {
		list = append(list, e)
	}
	if err := b.load(ctx, list); err != nil {
		return nil, err
	}
	own := make(map[id.EventID][]byte, len(evs))
	for _, ev := range evs {
		own[ev.EventID()] = ev.Content()
	}
	field := func(eid id.EventID, key string) string {
		if eid == "" {
			return ""
		}
		c, ok := own[eid]
		if !ok {
			c = b.contentOf(eid)
		}
		s, _ := getString(c, key)
		return s
	}
	out := make([]*store.Event, 0, len(evs))
	for _, ev := range evs {
		st := states[ev.EventID()]
		if st == nil {
			continue // an outlier: never shown
		}
		vis := historyVisibility(field(st[hvKey], "history_visibility"))
		joined := joinedNow[ev.RoomID()]
		ok := false
		switch {
		case isOwnMember(ev, user):
			after := field(ev.EventID(), "membership")
			before := field(ev.Replaces, "membership")
			ok = (after == room.Leave && (before == room.Join || before == room.Invite)) ||
				allowed(vis, after, joined) || allowed(vis, before, joined)
		case isHistoryVisibility(ev):
			m := field(st[memberKey], "membership")
			ok = allowed(vis, m, joined) || allowed(historyVisibility(field(ev.Replaces, "history_visibility")), m, joined)
		default:
			ok = allowed(vis, field(st[memberKey], "membership"), joined)
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
	case room.WorldReadable, room.Invited, room.Joined:
		return v
	}
	return room.Shared
}

// allowed applies the spec's rules to one setting and membership.
func allowed(vis, membership string, joinedNow bool) bool {
	switch {
	case vis == room.WorldReadable:
		return true
	case membership == room.Join:
		return true
	case vis == room.Shared:
		return joinedNow
	case vis == room.Invited:
		return membership == room.Invite
	}
	return false
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

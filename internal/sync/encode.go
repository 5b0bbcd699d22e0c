package sync

import (
	"encoding/json"
	"slices"
	"strconv"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
)

// AppendJSON appends the response as a JSON object, the same as
// json.Marshal gives, with the rooms in room ID order. Events are copied as
// they are: they come from room.Format, the services and the store as
// valid JSON, and an initial sync carries megabytes of them, which
// encoding/json would validate and copy once more.
func (r *Response) AppendJSON(b []byte) []byte {
	b = append(b, `{"next_batch":`...)
	b = cjson.AppendString(b, r.NextBatch)
	if r.Rooms != nil {
		b = append(b, `,"rooms":`...)
		b = r.Rooms.appendJSON(b)
	}
	if r.Presence != nil {
		b = append(b, `,"presence":`...)
		b = r.Presence.appendJSON(b)
	}
	if r.AccountData != nil {
		b = append(b, `,"account_data":`...)
		b = r.AccountData.appendJSON(b)
	}
	b = append(b, `,"to_device":`...)
	b = r.ToDevice.appendJSON(b)
	b = append(b, `,"device_lists":{"changed":`...)
	b = appendUsers(b, r.DeviceLists.Changed)
	b = append(b, `,"left":`...)
	b = appendUsers(b, r.DeviceLists.Left)
	b = append(b, `},"device_one_time_keys_count":{`...)
	keys := make([]string, 0, len(r.OneTimeKeysCount))
	for k := range r.OneTimeKeysCount {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = cjson.AppendString(b, k)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(r.OneTimeKeysCount[k]), 10)
	}
	b = append(b, `},"device_unused_fallback_key_types":[`...)
	for i, k := range r.UnusedFallback {
		if i > 0 {
			b = append(b, ',')
		}
		b = cjson.AppendString(b, k)
	}
	return append(b, "]}"...)
}

// Size estimates the length of AppendJSON's output, for the buffer.
func (r *Response) Size() int {
	n := 512 + len(r.ToDevice.Events)*64
	list := func(l *EventList) {
		if l != nil {
			n += 16
			for _, e := range l.Events {
				n += len(e) + 1
			}
		}
	}
	list(r.Presence)
	list(r.AccountData)
	list(&r.ToDevice)
	if r.Rooms != nil {
		for _, jr := range r.Rooms.Join {
			n += 400
			list(jr.State)
			list(jr.StateAfter)
			list(&EventList{Events: jr.Timeline.Events})
			list(&jr.Ephemeral)
			list(&jr.AccountData)
		}
		for _, lr := range r.Rooms.Leave {
			n += 200
			list(lr.State)
			list(lr.StateAfter)
			list(&EventList{Events: lr.Timeline.Events})
			list(&lr.AccountData)
		}
		for _, ir := range r.Rooms.Invite {
			n += 100
			list(&ir.InviteState)
		}
		for _, kr := range r.Rooms.Knock {
			n += 100
			list(&kr.KnockState)
		}
	}
	return n
}

func appendUsers(b []byte, us []id.UserID) []byte {
	b = append(b, '[')
	for i, u := range us {
		if i > 0 {
			b = append(b, ',')
		}
		b = cjson.AppendString(b, string(u))
	}
	return append(b, ']')
}

func (l *EventList) appendJSON(b []byte) []byte {
	b = append(b, `{"events":`...)
	b = appendEvents(b, l.Events)
	return append(b, '}')
}

func appendEvents(b []byte, evs []json.RawMessage) []byte {
	b = append(b, '[')
	for i, e := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	return append(b, ']')
}

// appendRooms appends a section's rooms in room ID order.
func appendRooms[T any](b []byte, m map[id.RoomID]T, room func([]byte, T) []byte) []byte {
	ids := make([]id.RoomID, 0, len(m))
	for r := range m {
		ids = append(ids, r)
	}
	slices.Sort(ids)
	b = append(b, '{')
	for i, r := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = cjson.AppendString(b, string(r))
		b = append(b, ':')
		b = room(b, m[r])
	}
	return append(b, '}')
}

func (rs *Rooms) appendJSON(b []byte) []byte {
	b = append(b, '{')
	n := 0
	sep := func(name string) {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	if len(rs.Join) > 0 {
		sep("join")
		b = appendRooms(b, rs.Join, func(b []byte, r *JoinedRoom) []byte { return r.appendJSON(b) })
	}
	if len(rs.Invite) > 0 {
		sep("invite")
		b = appendRooms(b, rs.Invite, func(b []byte, r *InvitedRoom) []byte {
			b = append(b, `{"invite_state":`...)
			b = r.InviteState.appendJSON(b)
			return append(b, '}')
		})
	}
	if len(rs.Knock) > 0 {
		sep("knock")
		b = appendRooms(b, rs.Knock, func(b []byte, r *KnockedRoom) []byte {
			b = append(b, `{"knock_state":`...)
			b = r.KnockState.appendJSON(b)
			return append(b, '}')
		})
	}
	if len(rs.Leave) > 0 {
		sep("leave")
		b = appendRooms(b, rs.Leave, func(b []byte, r *LeftRoom) []byte { return r.appendJSON(b) })
	}
	return append(b, '}')
}

func (t *Timeline) appendJSON(b []byte) []byte {
	b = append(b, `{"events":`...)
	b = appendEvents(b, t.Events)
	b = append(b, `,"limited":`...)
	b = strconv.AppendBool(b, t.Limited)
	if t.PrevBatch != "" {
		b = append(b, `,"prev_batch":`...)
		b = cjson.AppendString(b, t.PrevBatch)
	}
	return append(b, '}')
}

func appendState(b []byte, state, after *EventList) []byte {
	if state != nil {
		b = append(b, `"state":`...)
		b = state.appendJSON(b)
		b = append(b, ',')
	}
	if after != nil {
		b = append(b, `"state_after":`...)
		b = after.appendJSON(b)
		b = append(b, ',')
	}
	return b
}

func (r *JoinedRoom) appendJSON(b []byte) []byte {
	b = append(b, '{')
	if r.Summary != nil {
		s, _ := json.Marshal(r.Summary)
		b = append(b, `"summary":`...)
		b = append(b, s...)
		b = append(b, ',')
	}
	b = appendState(b, r.State, r.StateAfter)
	b = append(b, `"timeline":`...)
	b = r.Timeline.appendJSON(b)
	b = append(b, `,"ephemeral":`...)
	b = r.Ephemeral.appendJSON(b)
	b = append(b, `,"account_data":`...)
	b = r.AccountData.appendJSON(b)
	b = append(b, `,"unread_notifications":`...)
	b = r.Unread.appendJSON(b)
	if len(r.UnreadThreads) > 0 {
		b = append(b, `,"unread_thread_notifications":`...)
		b = appendRooms(b, eventKeyed(r.UnreadThreads), func(b []byte, c Counts) []byte { return c.appendJSON(b) })
	}
	return append(b, '}')
}

// eventKeyed lets appendRooms order a map keyed by event IDs.
func eventKeyed(m map[id.EventID]Counts) map[id.RoomID]Counts {
	out := make(map[id.RoomID]Counts, len(m))
	for k, v := range m {
		out[id.RoomID(k)] = v
	}
	return out
}

func (c Counts) appendJSON(b []byte) []byte {
	b = append(b, `{"highlight_count":`...)
	b = strconv.AppendInt(b, int64(c.Highlights), 10)
	b = append(b, `,"notification_count":`...)
	b = strconv.AppendInt(b, int64(c.Notifications), 10)
	return append(b, '}')
}

func (r *LeftRoom) appendJSON(b []byte) []byte {
	b = append(b, '{')
	b = appendState(b, r.State, r.StateAfter)
	b = append(b, `"timeline":`...)
	b = r.Timeline.appendJSON(b)
	b = append(b, `,"account_data":`...)
	b = r.AccountData.appendJSON(b)
	return append(b, '}')
}

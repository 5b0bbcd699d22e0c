package sync

// Sliding sync extensions (MSC3575's extension MSCs, as Synapse serves
// them with MSC4186): to_device (MSC3885), e2ee (MSC3884), account_data
// (MSC3959), receipts (MSC3960) and typing (MSC3961), with their lists
// and rooms scoping.

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"

	"maunium.net/go/mautrix/id"
)

// scopeRooms are the rooms an extension applies to: those of the lists
// and subscriptions it names (all when it names none).
func (sb *slidingBuilder) scopeRooms(sc ExtScope) []id.RoomID {
	set := map[id.RoomID]bool{}
	for name, rooms := range sb.inList {
		if sc.Lists == nil || slices.Contains(sc.Lists, name) {
			for _, r := range rooms {
				set[r] = true
			}
		}
	}
	for r := range sb.subs {
		if sb.byRoom[r] != nil && (sc.Rooms == nil || slices.Contains(sc.Rooms, string(r))) {
			set[r] = true
		}
	}
	out := make([]id.RoomID, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// extensions fills the extensions asked for; extNews says whether any of
// them has news (for long-polling).
func (sb *slidingBuilder) extensions(ctx context.Context) error {
	ext := &sb.req.Extensions
	var from int64
	if sb.since != nil {
		from = sb.since.Stream
	}
	user, device := sb.req.User, sb.req.Device
	if ext.ToDevice.Enabled {
		// since is the client's acknowledgement: the messages up to it
		// were delivered and are deleted (the same source as /sync v2).
		var since int64
		if ext.ToDevice.Since != "" {
			v, err := strconv.ParseInt(ext.ToDevice.Since, 10, 64)
			if err == nil && v >= 0 {
				since = v
			}
		}
		msgs, err := sb.s.src.ToDevice.ToDevice(ctx, user, device, since, sb.to.Stream)
		if err != nil {
			return err
		}
		if msgs == nil {
			msgs = []json.RawMessage{}
		}
		sb.resp.Extensions["to_device"] = map[string]any{"next_batch": strconv.FormatInt(sb.to.Stream, 10), "events": msgs}
		sb.extNews = sb.extNews || len(msgs) > 0
	}
	if ext.E2EE.Enabled {
		out := map[string]any{}
		if sb.since != nil {
			changed, left, err := sb.s.src.DeviceLists.DeviceListChanges(ctx, user, from, sb.to.Stream)
			if err != nil {
				return err
			}
			if changed == nil {
				changed = []id.UserID{}
			}
			if left == nil {
				left = []id.UserID{}
			}
			out["device_lists"] = map[string]any{"changed": changed, "left": left}
			sb.extNews = sb.extNews || len(changed)+len(left) > 0
		}
		counts, fallback, err := sb.s.src.OneTimeKeys.KeyCounts(ctx, user, device)
		if err != nil {
			return err
		}
		c := map[string]int{"signed_curve25519": 0}
		for k, v := range counts {
			c[k] = v
		}
		if fallback == nil {
			fallback = []string{}
		}
		out["device_one_time_keys_count"] = c
		out["device_unused_fallback_key_types"] = fallback
		sb.resp.Extensions["e2ee"] = out
	}
	if ext.AccountData.Enabled {
		global := []json.RawMessage{}
		rooms := map[id.RoomID][]json.RawMessage{}
		scope := sb.scopeRooms(ext.AccountData)
		// The global account data and that of the rooms in scope, read
		// again up to the response's final position.
		ads, err := sb.s.db.SlidingAccountData(ctx, user, true, scope, "", sb.to.Stream)
		if err != nil {
			return err
		}
		for _, a := range ads {
			ev, _ := json.Marshal(map[string]any{"type": a.Type, "content": json.RawMessage(a.Content)})
			switch {
			case a.RoomID == "":
				if a.StreamPos > from || sb.since == nil {
					global = append(global, ev)
				}
			case a.StreamPos > from || sb.since == nil || sb.initial[a.RoomID]:
				rooms[a.RoomID] = append(rooms[a.RoomID], ev)
			}
		}
		sb.resp.Extensions["account_data"] = map[string]any{"global": global, "rooms": rooms}
		sb.extNews = sb.extNews || len(rooms) > 0 || sb.since != nil && len(global) > 0
	}
	if ext.Receipts.Enabled {
		out := map[id.RoomID]json.RawMessage{}
		var fresh, old []id.RoomID
		for _, r := range sb.scopeRooms(ext.Receipts) {
			if sb.byRoom[r].Membership != "join" {
				continue
			}
			if sb.since == nil || sb.initial[r] {
				fresh = append(fresh, r)
			} else {
				old = append(old, r)
			}
		}
		for _, part := range []struct {
			rooms []id.RoomID
			from  int64
		}{{fresh, 0}, {old, from}} {
			if len(part.rooms) == 0 {
				continue
			}
			rs, err := sb.s.src.Receipts.Since(ctx, user, part.rooms, part.from, sb.to.Stream)
			if err != nil {
				return err
			}
			for r, c := range rs {
				if len(c) > 0 {
					out[r], _ = json.Marshal(map[string]any{"type": "m.receipt", "content": c})
				}
			}
		}
		sb.resp.Extensions["receipts"] = map[string]any{"rooms": out}
		sb.extNews = sb.extNews || len(out) > 0
	}
	if ext.Typing.Enabled {
		out := map[id.RoomID]json.RawMessage{}
		for _, r := range sb.scopeRooms(ext.Typing) {
			if sb.byRoom[r].Membership != "join" {
				continue
			}
			users, changed := sb.s.src.Typing.Typing(r)
			fresh := sb.since == nil || sb.initial[r]
			if fresh && len(users) == 0 || !fresh && changed <= sb.since.Typing {
				continue
			}
			ids := make([]id.UserID, 0, len(users))
			for _, u := range users {
				if !sb.ignored[u] {
					ids = append(ids, u)
				}
			}
			out[r], _ = json.Marshal(map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": ids}})
		}
		sb.resp.Extensions["typing"] = map[string]any{"rooms": out}
		sb.extNews = sb.extNews || len(out) > 0
	}
	return nil
}

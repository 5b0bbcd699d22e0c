package e2ee

// The device list stream (client-server API, "Tracking the device list for
// a user"; server-server API, "Device Management"): each change of a
// user's devices or cross-signing keys takes a position of the server's
// stream (store: device_list_changes), wakes the syncs of the users
// sharing a room with it, and, for a local user, is sent to the servers in
// its rooms as m.device_list_update EDUs, chained per user by stream_id
// and prev_id.

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"sync"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/store"
)

// userLocks serialise the device changes of each local user, from taking
// their EDU stream_ids to queueing the EDUs, so that a user's EDUs are
// queued in stream_id order (a remote that sees a prev_id it does not know
// resyncs the whole list). Striped: a lock per user is not needed.
var userLocks [64]sync.Mutex

func lockUser(u id.UserID) func() {
	h := fnv.New32a()
	h.Write([]byte(u))
	m := &userLocks[h.Sum32()%uint32(len(userLocks))]
	m.Lock()
	return m.Unlock
}

// DeviceListChanges returns the users sharing a room with user whose
// devices changed in (from, to], and those who no longer share one
// (sync.DeviceLists; GET /keys/changes). See store.DB.DeviceListChanges.
func (s *Service) DeviceListChanges(ctx context.Context, user id.UserID, from, to int64) (changed, left []id.UserID, err error) {
	if to <= from {
		return []id.UserID{}, []id.UserID{}, nil
	}
	return s.db.DeviceListChanges(ctx, user, from, to)
}

// markDeviceListChanged records, at a new stream position, that the
// devices or cross-signing keys of users changed (local or remote users),
// and wakes the syncs of the users who share a room with them.
func (s *Service) markDeviceListChanged(ctx context.Context, users ...id.UserID) error {
	return s.markChanged(ctx, "", users...)
}

// markChanged is markDeviceListChanged for the changes only viewer sees
// (viewer "": everyone).
func (s *Service) markChanged(ctx context.Context, viewer id.UserID, users ...id.UserID) error {
	if len(users) == 0 {
		return nil
	}
	var pos int64
	err := s.db.WithTx(ctx, "e2ee_device_list_changed", func(tx *store.Tx) error {
		var err error
		pos, err = tx.MarkDeviceListChanged(ctx, viewer, users...)
		return err
	})
	if err != nil {
		return err
	}
	if viewer != "" {
		s.n.Wake(pos, notify.Change{Users: []id.UserID{viewer}})
		return nil
	}
	s.wake(ctx, pos, users)
	return nil
}

// wake wakes the syncs of users and of the members of their rooms.
func (s *Service) wake(ctx context.Context, pos int64, users []id.UserID) {
	rooms, err := s.db.JoinedRoomsOfUsers(ctx, users)
	if err != nil {
		s.log.Warn("device list change: read rooms to wake; waking every sync", "err", err)
		s.n.WakeAll(pos)
		return
	}
	s.n.Wake(pos, notify.Change{Users: users, Rooms: rooms})
}

// changeDevices runs fn in a write transaction. When fn returns devices of
// the local user, that is a change of its device list: it is recorded at a
// new stream position with a new EDU stream_id per device, and once
// committed the syncs are woken and m.device_list_update EDUs (deleted:
// the devices are gone) queued for the servers sharing a room with user.
func (s *Service) changeDevices(ctx context.Context, user id.UserID, fn func(tx *store.Tx) (devices []id.DeviceID, deleted bool, err error)) error {
	unlock := lockUser(user)
	defer unlock()
	var devs []id.DeviceID
	var deleted bool
	var pos int64
	var streamIDs, prevIDs []int64
	err := s.db.WithTx(ctx, "e2ee_device_change", func(tx *store.Tx) error {
		var err error
		devs, deleted, err = fn(tx)
		if err != nil || len(devs) == 0 {
			return err
		}
		if pos, err = tx.MarkDeviceListChanged(ctx, "", user); err != nil {
			return err
		}
		streamIDs, prevIDs = streamIDs[:0], prevIDs[:0]
		for range devs {
			next, prev, err := tx.NextDeviceListStreamID(ctx, user)
			if err != nil {
				return err
			}
			streamIDs, prevIDs = append(streamIDs, next), append(prevIDs, prev)
		}
		return nil
	})
	if err != nil || len(devs) == 0 {
		return err
	}
	s.wake(ctx, pos, []id.UserID{user})
	if err := s.sendDeviceListUpdates(ctx, user, devs, deleted, streamIDs, prevIDs); err != nil {
		// The change is committed; remote servers resync on the next
		// update, whose prev_id they will not know.
		s.log.Warn("queue device list updates", "user_id", user, "err", err)
	}
	return nil
}

// sendDeviceListUpdates queues the m.device_list_update EDUs of changed
// devices of a local user for the servers sharing a room with it.
func (s *Service) sendDeviceListUpdates(ctx context.Context, user id.UserID, devs []id.DeviceID, deleted bool, streamIDs, prevIDs []int64) error {
	if s.cfg.Queue == nil {
		return nil
	}
	servers, err := s.db.ServersSharingRooms(ctx, user, s.cfg.ServerName)
	if err != nil || len(servers) == 0 {
		return err
	}
	return s.sendDeviceListUpdatesTo(ctx, servers, user, devs, deleted, streamIDs, prevIDs)
}

// sendDeviceListUpdatesTo queues the m.device_list_update EDUs of devices
// of a local user for servers.
func (s *Service) sendDeviceListUpdatesTo(ctx context.Context, servers []string, user id.UserID, devs []id.DeviceID, deleted bool, streamIDs, prevIDs []int64) error {
	keysOf := map[id.DeviceID]json.RawMessage{}
	names := map[id.DeviceID]string{}
	if !deleted {
		dks, err := s.db.DeviceKeysOf(ctx, user, user.Localpart(), devs)
		if err != nil {
			return err
		}
		sigs, err := s.db.SignaturesOn(ctx, []id.UserID{user})
		if err != nil {
			return err
		}
		for _, k := range dks {
			b, err := withExtras(k.JSON, ownSignatures(sigs, user, string(k.DeviceID)), "")
			if err != nil {
				return err
			}
			keysOf[k.DeviceID] = b
		}
		all, err := s.db.Devices(ctx, user.Localpart())
		if err != nil {
			return err
		}
		for _, d := range all {
			names[id.DeviceID(d.DeviceID)] = d.DisplayName
		}
	}
	for i, d := range devs {
		u := federation.DeviceListUpdate{
			UserID: user, DeviceID: d, DeviceDisplayName: names[d],
			StreamID: streamIDs[i], PrevID: []int64{}, Deleted: deleted, Keys: keysOf[d],
		}
		if prevIDs[i] > 0 {
			u.PrevID = []int64{prevIDs[i]}
		}
		content, err := json.Marshal(u)
		if err != nil {
			return err
		}
		if err := s.cfg.Queue.SendEDU(ctx, servers, federation.EDU{Type: federation.EDUDeviceListUpdate, Content: content}, ""); err != nil {
			return err
		}
	}
	return nil
}

// sendSigningKeyUpdate queues an m.signing_key_update EDU with a local
// user's current master and self-signing keys for the servers sharing a
// room with it.
func (s *Service) sendSigningKeyUpdate(ctx context.Context, user id.UserID) error {
	if s.cfg.Queue == nil {
		return nil
	}
	servers, err := s.db.ServersSharingRooms(ctx, user, s.cfg.ServerName)
	if err != nil || len(servers) == 0 {
		return err
	}
	csks, err := s.db.CrossSigningKeys(ctx, []id.UserID{user})
	if err != nil {
		return err
	}
	u := federation.SigningKeyUpdate{UserID: user}
	if k, ok := csks[user][store.MasterKey]; ok {
		u.MasterKey = k.JSON
	}
	if k, ok := csks[user][store.SelfSigningKey]; ok {
		u.SelfSigningKey = k.JSON
	}
	content, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return s.cfg.Queue.SendEDU(ctx, servers, federation.EDU{Type: federation.EDUSigningKeyUpdate, Content: content}, "")
}

// notifyUser is the change that concerns user alone.
func notifyUser(user id.UserID) notify.Change { return notify.Change{Users: []id.UserID{user}} }

// KeyChanges answers GET /keys/changes: the device list changes visible
// to user in the stream positions (from, to]; to < 0 means up to now.
func (s *Service) KeyChanges(ctx context.Context, user id.UserID, from, to int64) (changed, left []id.UserID, err error) {
	if to < 0 {
		to = s.n.Current().Stream
	}
	return s.DeviceListChanges(ctx, user, from, to)
}

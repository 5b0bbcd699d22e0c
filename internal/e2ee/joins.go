package e2ee

// Device lists and joins. The server-server API ("Device Management") says
// that m.device_list_update EDUs must be sent "when that user joins a room
// which contains servers which are not already receiving updates for that
// user's device list": a local user's join of a room with servers it
// shared no room with sends them its devices, which they cannot otherwise
// learn of until the next change. The user itself sees its own ID in
// device_lists.changed (its other devices learn that new servers hold its
// list), as with Synapse (Complement TestDeviceListsUpdateOverFederation).
//
// RoomEvent is called for each persisted event and must not block: the
// joins go to a queue that Run works through.

import (
	"context"
	"encoding/json"
	"sync"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/store"
)

// joinQueue holds the local users' joins waiting for runJoins.
type joinQueue struct {
	mu    sync.Mutex
	joins []userJoin
	wake  chan struct{} // capacity 1: there is work
}

type userJoin struct {
	user id.UserID
	room id.RoomID
}

func newJoinQueue() joinQueue { return joinQueue{wake: make(chan struct{}, 1)} }

// RoomEvent takes note of a local user's join of a room (a membership that
// was not join before) so that the servers of the room that do not yet
// receive the user's device list updates are sent its devices. Other
// events are ignored. It does not block. Without federation it does
// nothing.
func (s *Service) RoomEvent(ev *store.Event) {
	if s.cfg.Queue == nil || ev.Type() != event.TypeMember || ev.StateKey() == nil {
		return
	}
	user := id.UserID(*ev.StateKey())
	if !s.isLocal(user) || membershipOf(ev.Content()) != "join" {
		return
	}
	var added struct {
		PrevContent json.RawMessage `json:"prev_content"`
	}
	if len(ev.Added) > 0 {
		_ = json.Unmarshal(ev.Added, &added)
	}
	if len(added.PrevContent) > 0 && membershipOf(added.PrevContent) == "join" {
		return // a profile change
	}
	s.joins.mu.Lock()
	s.joins.joins = append(s.joins.joins, userJoin{user: user, room: ev.RoomID()})
	s.joins.mu.Unlock()
	select {
	case s.joins.wake <- struct{}{}:
	default:
	}
}

func membershipOf(content []byte) string {
	var c struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(content, &c)
	return c.Membership
}

// runJoins works through the joins RoomEvent queued until ctx ends.
func (s *Service) runJoins(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.joins.wake:
		}
		s.joins.mu.Lock()
		joins := s.joins.joins
		s.joins.joins = nil
		s.joins.mu.Unlock()
		for _, j := range joins {
			if err := s.userJoined(ctx, j.user, j.room); err != nil && ctx.Err() == nil {
				s.log.Warn("device list update for a join", "user_id", j.user, "room_id", j.room, "err", err)
			}
		}
	}
}

// userJoined sends the devices of a local user who joined roomID to the
// servers of the room it shared no other room with, and shows the user
// its own device list as changed.
func (s *Service) userJoined(ctx context.Context, user id.UserID, roomID id.RoomID) error {
	servers, err := s.db.ServersNewToUser(ctx, user, roomID, s.cfg.ServerName)
	if err != nil || len(servers) == 0 {
		return err
	}
	if err := s.markChanged(ctx, user, user); err != nil {
		return err
	}
	unlock := lockUser(user)
	defer unlock()
	devices, err := s.db.Devices(ctx, user.Localpart())
	if err != nil || len(devices) == 0 {
		return err
	}
	streamID, err := s.db.DeviceListStreamID(ctx, user)
	if err != nil {
		return err
	}
	if streamID == 0 {
		// No update was ever sent: take the first stream_id.
		err := s.db.WithTx(ctx, "e2ee_device_list_stream_id", func(tx *store.Tx) error {
			streamID, _, err = tx.NextDeviceListStreamID(ctx, user)
			return err
		})
		if err != nil {
			return err
		}
	}
	devs := make([]id.DeviceID, len(devices))
	streamIDs := make([]int64, len(devices))
	prevIDs := make([]int64, len(devices)) // none: the servers resync
	for i, d := range devices {
		devs[i], streamIDs[i] = id.DeviceID(d.DeviceID), streamID
	}
	return s.sendDeviceListUpdatesTo(ctx, servers, user, devs, false, streamIDs, prevIDs)
}

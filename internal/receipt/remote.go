package receipt

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/store"
)

// PutRemote applies one receipt of an m.receipt EDU (server-server API,
// "Receipts"): user, of the sending server, has read the room up to
// eventID (threadID "" for an unthreaded receipt), at ts (ms, as the
// sending server says). Only public m.read receipts travel over
// federation. The caller checked that user belongs to the sending server
// and that the server may take part in the room. Unlike Send it is not a
// local change: nothing is sent on to other servers. As for Send, a
// receipt never moves back.
//
// Errors, after which the receipt is to be ignored: M_FORBIDDEN when the
// user is not joined to the room, M_NOT_FOUND for an event this server
// does not have in the room, M_INVALID_PARAM for a malformed event ID or
// thread ID.
func (s *Service) PutRemote(ctx context.Context, user id.UserID, roomID id.RoomID, eventID id.EventID, threadID string, ts int64) error {
	if threadID != "" && threadID != MainThread && (len(threadID) < 2 || threadID[0] != '$') {
		return mxerr.InvalidParam("thread_id must be \"main\" or the event ID of a thread root")
	}
	if err := s.checkJoined(ctx, user, roomID); err != nil {
		return err
	}
	ev, err := s.event(ctx, roomID, eventID)
	if err != nil {
		return err
	}
	if ts <= 0 {
		ts = s.now().UnixMilli()
	}
	pos, err := s.db.PutReceipt(ctx, store.Receipt{
		RoomID: roomID, UserID: user, Type: Read, ThreadID: threadID, EventID: eventID, TS: ts,
	}, ev.StreamPos)
	if err != nil {
		return fmt.Errorf("store receipt of %s in %s: %w", user, roomID, err)
	}
	if pos != 0 {
		s.n.Wake(pos, notify.Change{Rooms: []id.RoomID{roomID}})
	}
	return nil
}

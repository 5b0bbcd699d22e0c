// Package receipt owns read receipts and read markers (client-server API
// "Receipts" and "Read and unread markers"): public m.read receipts, private
// m.read.private receipts that only their sender sees, threaded receipts
// (thread_id), and the m.fully_read marker kept in room account data.
//
// Receipts are "up to" markers, so only the latest of each (room, user,
// type, thread) is kept, and neither receipts nor the fully read marker
// ever move back to an earlier event. Each change takes a stream position
// and wakes /sync: the room's waiters for a public receipt, only the user's
// for a private receipt or the fully read marker.
//
// Public receipts of local users reach other servers through the OnPublic
// hook (server wires it to the federation queue).
//
// Imported by api/client and sync; wired by server.
package receipt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/store"
)

// Receipt types (spec: POST /rooms/{roomId}/receipt/{receiptType}/{eventId}).
const (
	Read        = "m.read"
	ReadPrivate = "m.read.private"
	// FullyRead is not a receipt but the fully read marker; the receipt
	// endpoint accepts it as an alternative to /read_markers.
	FullyRead = "m.fully_read"
	// MainThread is the thread ID of the main timeline.
	MainThread = "main"
)

// Service is the receipt service.
type Service struct {
	db  *store.DB
	n   *notify.Notifier
	now func() time.Time

	// OnPublic, if set, is called after a public (m.read) receipt moved
	// through Send or ReadMarkers, so that it can be sent to other
	// servers. It must not block. Set it before the service is used.
	OnPublic func(r store.Receipt)
}

// New returns the service.
func New(db *store.DB, n *notify.Notifier) *Service {
	return &Service{db: db, n: n, now: time.Now}
}

// Send records a receipt of user in the room up to eventID (spec: POST
// /rooms/{roomId}/receipt/{receiptType}/{eventId}). receiptType is m.read,
// m.read.private or m.fully_read (which sets the fully read marker as
// /read_markers does). threadID is "" for an unthreaded receipt, "main"
// for the main timeline, or the thread root's event ID; the event must
// belong to that thread (as Synapse checks). A receipt for an event before
// the current one changes nothing.
//
// Errors: M_INVALID_PARAM for an unknown receipt type, a malformed event ID
// or a bad thread ID,
// M_FORBIDDEN when the user is not joined to the room, M_NOT_FOUND for an
// event that is not in the room.
func (s *Service) Send(ctx context.Context, user id.UserID, roomID id.RoomID, receiptType string, eventID id.EventID, threadID string) error {
	switch receiptType {
	case Read, ReadPrivate:
	case FullyRead:
		if threadID != "" {
			return mxerr.InvalidParam("thread_id is not compatible with m.fully_read receipts")
		}
	default:
		return mxerr.InvalidParam("Receipt type must be m.read, m.read.private or m.fully_read")
	}
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
	if threadID != "" {
		ok, err := s.inThread(ctx, ev, threadID)
		if err != nil {
			return err
		}
		if !ok {
			return mxerr.InvalidParam("event_id %s is not related to thread %s", eventID, threadID)
		}
	}
	if receiptType == FullyRead {
		return s.setFullyRead(ctx, user, roomID, ev)
	}
	return s.put(ctx, user, roomID, receiptType, ev, threadID)
}

// ReadMarkers sets the fully read marker and, in the same request, the
// public and private read receipts (spec: POST /rooms/{roomId}/read_markers);
// an empty event ID leaves that one alone. Every event is checked before
// anything is written. Errors: M_FORBIDDEN when the user is not joined to
// the room, M_NOT_FOUND for an event that is not in the room.
func (s *Service) ReadMarkers(ctx context.Context, user id.UserID, roomID id.RoomID, fullyRead, read, readPrivate id.EventID) error {
	if err := s.checkJoined(ctx, user, roomID); err != nil {
		return err
	}
	evs := map[string]*store.Event{}
	for typ, eid := range map[string]id.EventID{FullyRead: fullyRead, Read: read, ReadPrivate: readPrivate} {
		if eid == "" {
			continue
		}
		ev, err := s.event(ctx, roomID, eid)
		if err != nil {
			return err
		}
		evs[typ] = ev
	}
	if ev := evs[FullyRead]; ev != nil {
		if err := s.setFullyRead(ctx, user, roomID, ev); err != nil {
			return err
		}
	}
	for _, typ := range []string{Read, ReadPrivate} {
		if ev := evs[typ]; ev != nil {
			if err := s.put(ctx, user, roomID, typ, ev, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Service) checkJoined(ctx context.Context, user id.UserID, roomID id.RoomID) error {
	m, err := s.db.UserMembership(ctx, roomID, user)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("membership of %s in %s: %w", user, roomID, err)
	}
	if err != nil || m.Membership != "join" {
		return mxerr.Forbidden("User %s is not in room %s", user, roomID)
	}
	return nil
}

// event returns a timeline event of the room: M_INVALID_PARAM for a
// malformed event ID, M_NOT_FOUND for one not in the room.
func (s *Service) event(ctx context.Context, roomID id.RoomID, eventID id.EventID) (*store.Event, error) {
	if len(eventID) < 2 || eventID[0] != '$' || len(eventID) > 255 {
		return nil, mxerr.InvalidParam("Invalid event ID %q", eventID)
	}
	ev, err := s.db.Event(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) || err == nil && (ev.RoomID() != roomID || ev.StreamPos == 0 || ev.IsRejected) {
		return nil, mxerr.NotFound("Event %s not found in room %s", eventID, roomID)
	}
	if err != nil {
		return nil, fmt.Errorf("read event %s: %w", eventID, err)
	}
	return ev, nil
}

// relation reads content["m.relates_to"]: the event related to and how.
func relation(content []byte) (to id.EventID, relType string) {
	rel, ok := cjson.Get(content, "m.relates_to")
	if !ok {
		return "", ""
	}
	var r struct {
		RelType string     `json:"rel_type"`
		EventID id.EventID `json:"event_id"`
	}
	if json.Unmarshal(rel, &r) != nil {
		return "", ""
	}
	return r.EventID, r.RelType
}

// maxRelationHops bounds the walk up relations (spec "Threaded read
// receipts": "a maximum of 3 hops is recommended").
const maxRelationHops = 3

// inThread reports whether ev belongs to the thread for a receipt: for
// "main", whether it is not in a thread; for a thread root R, whether it is
// R, has a thread relation to R, or relates (in up to three hops) to such
// an event. This is what Synapse accepts.
func (s *Service) inThread(ctx context.Context, ev *store.Event, threadID string) (bool, error) {
	cur := ev
	for range maxRelationHops + 1 {
		if threadID != MainThread && string(cur.EventID()) == threadID {
			return true, nil
		}
		to, relType := relation(cur.Content())
		if relType == "m.thread" {
			return string(to) == threadID, nil
		}
		if to == "" {
			return threadID == MainThread, nil
		}
		parent, err := s.db.Event(ctx, to)
		if errors.Is(err, store.ErrNotFound) {
			return threadID == MainThread, nil
		}
		if err != nil {
			return false, fmt.Errorf("read related event %s: %w", to, err)
		}
		cur = parent
	}
	return threadID == MainThread, nil
}

// put stores a receipt and wakes who may see it.
func (s *Service) put(ctx context.Context, user id.UserID, roomID id.RoomID, typ string, ev *store.Event, threadID string) error {
	r := store.Receipt{
		RoomID: roomID, UserID: user, Type: typ, ThreadID: threadID, EventID: ev.EventID(), TS: s.now().UnixMilli(),
	}
	pos, err := s.db.PutReceipt(ctx, r, ev.StreamPos)
	if err != nil {
		return fmt.Errorf("store receipt of %s in %s: %w", user, roomID, err)
	}
	if pos == 0 {
		return nil
	}
	if typ == ReadPrivate {
		s.n.Wake(pos, notify.Change{Users: []id.UserID{user}})
	} else {
		s.n.Wake(pos, notify.Change{Rooms: []id.RoomID{roomID}})
		if s.OnPublic != nil {
			r.StreamPos = pos
			s.OnPublic(r)
		}
	}
	return nil
}

// setFullyRead moves the user's m.fully_read room account data to ev,
// unless it already is at or after ev.
func (s *Service) setFullyRead(ctx context.Context, user id.UserID, roomID id.RoomID, ev *store.Event) error {
	pos, err := s.db.UpdateAccountData(ctx, user, roomID, FullyRead, func(old []byte) ([]byte, error) {
		if old != nil {
			var cur struct {
				EventID id.EventID `json:"event_id"`
			}
			_ = json.Unmarshal(old, &cur)
			if cur.EventID != "" {
				prev, err := s.db.Event(ctx, cur.EventID)
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return nil, err
				}
				if err == nil && prev.StreamPos >= ev.StreamPos {
					return nil, nil
				}
			}
		}
		return json.Marshal(map[string]id.EventID{"event_id": ev.EventID()})
	})
	if err != nil {
		return fmt.Errorf("set fully read marker of %s in %s: %w", user, roomID, err)
	}
	if pos != 0 {
		s.n.Wake(pos, notify.Change{Users: []id.UserID{user}})
	}
	return nil
}

// receiptInfo is what an m.receipt event says of one user's receipt.
type receiptInfo struct {
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id,omitempty"`
}

// Since returns, per room, the content of an m.receipt ephemeral event
// with every receipt in rooms that changed at a stream position in
// (from, to]; from 0 gives every current receipt. Private receipts are
// included only for forUser. Rooms without such receipts are absent.
//
// The content maps event IDs to receipt types to user IDs (spec: m.receipt):
//
//	{"$ev": {"m.read": {"@u:hs": {"ts": 1661384801651, "thread_id": "main"}}}}
func (s *Service) Since(ctx context.Context, forUser id.UserID, rooms []id.RoomID, from, to int64) (map[id.RoomID]json.RawMessage, error) {
	rs, err := s.db.ReceiptsSince(ctx, forUser, rooms, from, to)
	if err != nil {
		return nil, fmt.Errorf("read receipts: %w", err)
	}
	byRoom := map[id.RoomID]map[id.EventID]map[string]map[id.UserID]receiptInfo{}
	for _, r := range rs {
		evs := byRoom[r.RoomID]
		if evs == nil {
			evs = map[id.EventID]map[string]map[id.UserID]receiptInfo{}
			byRoom[r.RoomID] = evs
		}
		types := evs[r.EventID]
		if types == nil {
			types = map[string]map[id.UserID]receiptInfo{}
			evs[r.EventID] = types
		}
		users := types[r.Type]
		if users == nil {
			users = map[id.UserID]receiptInfo{}
			types[r.Type] = users
		}
		users[r.UserID] = receiptInfo{TS: r.TS, ThreadID: r.ThreadID}
	}
	out := make(map[id.RoomID]json.RawMessage, len(byRoom))
	for room, evs := range byRoom {
		b, err := json.Marshal(evs)
		if err != nil {
			return nil, err
		}
		out[room] = b
	}
	return out, nil
}

// LastRead returns the event of the user's furthest m.read or
// m.read.private receipt in the room that is unthreaded or for the main
// timeline (for unread counts), or store.ErrNotFound if there is none.
func (s *Service) LastRead(ctx context.Context, user id.UserID, roomID id.RoomID) (id.EventID, error) {
	return s.db.LastRead(ctx, user, roomID)
}

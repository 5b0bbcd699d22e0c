package federation

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/store"
)

// The fan-out: which servers get a local user's events, typing, receipts
// and presence. RoomEvent, Typing, Receipt and Presence are hooks of the
// room, typing, receipt and presence services: they must not block, so
// each only appends a job to a list that Run's fan-out goroutines work
// through: one for events, in order (a room's PDUs are queued in the order
// they were persisted), one for EDUs (a presence change looks up every
// room of the user, and must not hold events up).
//
// An event persisted while Run is not running, or whose job had not run
// when the process stopped and could not be finished in shutdownDrain, is
// not sent: the remote servers learn of it through the prev_events of the
// next one and fetch it (get_missing_events).

// shutdownDrain bounds the time Run spends queueing the events whose
// fan-out had not run yet when its context ended.
const shutdownDrain = 5 * time.Second

type job func(ctx context.Context)

// lane is an unbounded list of jobs worked through in order.
type lane struct {
	mu   sync.Mutex
	jobs []job
	wake chan struct{}
}

func (l *lane) add(j job) {
	l.mu.Lock()
	l.jobs = append(l.jobs, j)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *lane) next() (job, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.jobs) == 0 {
		return nil, false
	}
	j := l.jobs[0]
	l.jobs[0] = nil
	l.jobs = l.jobs[1:]
	return j, true
}

// run works through the jobs until ctx ends. A lane that keeps its jobs
// runs them on a context ctx's end does not cancel, and after ctx ended
// runs those left for up to shutdownDrain; other lanes drop them.
func (l *lane) run(ctx context.Context, keep bool) {
	jctx := ctx
	if keep {
		jctx = context.WithoutCancel(ctx)
	}
	for ctx.Err() == nil {
		j, ok := l.next()
		if !ok {
			select {
			case <-l.wake:
			case <-ctx.Done():
			}
			continue
		}
		j(jctx)
	}
	if !keep {
		l.mu.Lock()
		l.jobs = nil
		l.mu.Unlock()
		return
	}
	dctx, cancel := context.WithTimeout(jctx, shutdownDrain)
	defer cancel()
	for dctx.Err() == nil {
		j, ok := l.next()
		if !ok {
			return
		}
		j(dctx)
	}
}

type fanout struct {
	// pdus is a lane of one job that queues every event waiting in
	// events: the events that piled up while the last batch was written
	// are queued together, in one database transaction, with one look-up
	// of each room's servers (group commit).
	pdus   lane
	mu     sync.Mutex
	events []roomEvent
	edus   lane
}

type roomEvent struct {
	ev     *store.Event
	target string // a server to send it to beside the room's; "" none
	// exclude is a server not to send it to (the origin of an event we
	// relay); "" none.
	exclude string
}

// maxEventBatch bounds the events queued in one transaction.
const maxEventBatch = 256

func (f *fanout) init() {
	f.pdus.wake = make(chan struct{}, 1)
	f.edus.wake = make(chan struct{}, 1)
}

// run runs both lanes until ctx ends: events are still queued after it
// (cheap, and worth it), EDUs are dropped.
func (f *fanout) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { f.pdus.run(ctx, true) })
	wg.Go(func() { f.edus.run(ctx, false) })
	wg.Wait()
}

// addEvent adds an event for queueEvents.
func (q *Queue) addEvent(e roomEvent) {
	q.fan.mu.Lock()
	first := len(q.fan.events) == 0
	q.fan.events = append(q.fan.events, e)
	q.fan.mu.Unlock()
	if first {
		q.fan.pdus.add(q.queueEvents)
	}
}

// queueEvents queues the events waiting in the fan-out, in batches.
func (q *Queue) queueEvents(ctx context.Context) {
	for {
		q.fan.mu.Lock()
		batch := q.fan.events[:min(len(q.fan.events), maxEventBatch)]
		q.fan.events = q.fan.events[len(batch):]
		if len(q.fan.events) == 0 {
			q.fan.events = nil
		}
		q.fan.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		servers := map[id.RoomID][]string{}
		joined := map[id.RoomID]map[string]int64{}
		pdus := make([]store.FedPDU, 0, len(batch))
		for _, e := range batch {
			roomID := e.ev.RoomID()
			var s []string
			if q.cfg.RoomServersJoined != nil {
				j, ok := joined[roomID]
				if !ok {
					j = q.roomServersJoined(ctx, roomID)
					joined[roomID] = j
				}
				s = make([]string, 0, len(j))
				for srv, since := range j {
					if since <= e.ev.StreamPos {
						s = append(s, srv)
					}
				}
				s = q.destinations(s)
			} else {
				var ok bool
				if s, ok = servers[roomID]; !ok {
					s = q.roomServers(ctx, roomID)
					servers[roomID] = s
				}
			}
			if e.target != "" {
				s = append(s[:len(s):len(s)], e.target)
			}
			if e.exclude != "" {
				kept := make([]string, 0, len(s))
				for _, d := range s {
					if d != e.exclude {
						kept = append(kept, d)
					}
				}
				s = kept
			}
			pdus = append(pdus, store.FedPDU{EventID: e.ev.EventID(), RoomID: roomID, PDU: e.ev.JSON(), Destinations: s})
		}
		if err := q.sendPDUs(ctx, pdus); err != nil && ctx.Err() == nil {
			q.log.Error("queue events for federation", "events", len(pdus), "first_event_id", pdus[0].EventID, "err", err)
		}
	}
}

// isLocal reports whether user belongs to this server.
func (q *Queue) isLocal(user id.UserID) bool {
	return q.cfg.ServerName != "" && user.Homeserver() == q.cfg.ServerName
}

// roomServers returns the servers in the room other than this one; on an
// error it logs and returns none.
func (q *Queue) roomServers(ctx context.Context, roomID id.RoomID) []string {
	if q.cfg.RoomServers == nil {
		return nil
	}
	servers, err := q.cfg.RoomServers(ctx, roomID)
	if err != nil {
		if ctx.Err() == nil {
			q.log.Warn("servers in room, for federation", "room_id", roomID, "err", err)
		}
		return nil
	}
	return q.destinations(servers)
}

// roomServersJoined is RoomServersJoined; on an error it logs and returns
// none.
func (q *Queue) roomServersJoined(ctx context.Context, roomID id.RoomID) map[string]int64 {
	j, err := q.cfg.RoomServersJoined(ctx, roomID)
	if err != nil {
		if ctx.Err() == nil {
			q.log.Warn("servers in room, for federation", "room_id", roomID, "err", err)
		}
		return nil
	}
	return j
}

// Relay queues an event of another server's user that this server
// accepted on that server's behalf (send_join, send_leave, send_knock)
// for the other servers in the room: the sender's server (origin) already
// has it. It does not block.
func (q *Queue) Relay(ev *store.Event, origin string) {
	if ev == nil || ev.PDU == nil || ev.StreamPos == 0 || ev.IsRejected || ev.SoftFailed {
		return
	}
	q.addEvent(roomEvent{ev: ev, exclude: origin})
}

// RoomEvent is the room service's OnEvent hook: an event sent by a local
// user is queued for the servers in its room and, for a membership event
// other than an invite, for the target user's server (a user who left or
// was kicked or banned is no longer in the room, and its server must
// learn it). Invites are sent by the room service itself (the invite
// API), as are events it accepts on behalf of other servers (send_join,
// send_leave, send_knock), which it must queue with SendPDU. Outliers,
// rejected and soft-failed events are not sent. It does not block.
func (q *Queue) RoomEvent(ev *store.Event) {
	if ev == nil || ev.PDU == nil || ev.StreamPos <= 0 || ev.IsRejected || ev.SoftFailed || ev.Handshake || !q.isLocal(ev.Sender()) {
		return
	}
	var target string
	if ev.Type() == event.TypeMember && ev.StateKey() != nil {
		var c struct {
			Membership string `json:"membership"`
		}
		_ = json.Unmarshal(ev.Content(), &c)
		if c.Membership != "invite" {
			target = id.UserID(*ev.StateKey()).Homeserver()
		}
	}
	q.addEvent(roomEvent{ev: ev, target: target})
}

// sendRoomEDU queues an EDU for the servers in the room.
func (q *Queue) sendRoomEDU(ctx context.Context, roomID id.RoomID, edu EDU, key string) {
	servers := q.roomServers(ctx, roomID)
	if len(servers) == 0 {
		return
	}
	if err := q.SendEDU(ctx, servers, edu, key); err != nil && ctx.Err() == nil {
		q.log.Error("queue edu for federation", "edu_type", edu.Type, "room_id", roomID, "err", err)
	}
}

// TypingEDU is an m.typing EDU (server-server API, "Typing Notifications").
func TypingEDU(roomID id.RoomID, userID id.UserID, typing bool) EDU {
	c, _ := json.Marshal(struct {
		RoomID id.RoomID `json:"room_id"`
		UserID id.UserID `json:"user_id"`
		Typing bool      `json:"typing"`
	}{roomID, userID, typing})
	return EDU{Type: EDUTyping, Content: c}
}

// Typing is the typing service's hook: a local user started or stopped
// typing in the room. The servers in the room get an m.typing EDU; only
// the latest of each user and room is sent. Remote users are ignored. It
// does not block.
func (q *Queue) Typing(roomID id.RoomID, userID id.UserID, typing bool) {
	if !q.isLocal(userID) {
		return
	}
	q.fan.edus.add(func(ctx context.Context) {
		q.sendRoomEDU(ctx, roomID, TypingEDU(roomID, userID, typing), string(roomID)+" "+string(userID))
	})
}

// ReceiptEDU is an m.receipt EDU with one public read receipt
// (server-server API, "Receipts"). threadID "" is an unthreaded receipt.
func ReceiptEDU(roomID id.RoomID, userID id.UserID, eventID id.EventID, threadID string, ts int64) EDU {
	type data struct {
		TS       int64  `json:"ts"`
		ThreadID string `json:"thread_id,omitempty"`
	}
	type user struct {
		EventIDs []id.EventID `json:"event_ids"`
		Data     data         `json:"data"`
	}
	c, _ := json.Marshal(map[id.RoomID]map[string]map[id.UserID]user{
		roomID: {"m.read": {userID: {EventIDs: []id.EventID{eventID}, Data: data{TS: ts, ThreadID: threadID}}}},
	})
	return EDU{Type: EDUReceipt, Content: c}
}

// Receipt is the receipt service's hook: a local user's public read
// receipt (m.read) moved. The servers in the room get an m.receipt EDU,
// persisted; only the latest of each user, room and thread is sent.
// Private receipts and remote users are ignored. It does not block.
func (q *Queue) Receipt(r store.Receipt) {
	if r.Type != "m.read" || !q.isLocal(r.UserID) {
		return
	}
	q.fan.edus.add(func(ctx context.Context) {
		q.sendRoomEDU(ctx, r.RoomID, ReceiptEDU(r.RoomID, r.UserID, r.EventID, r.ThreadID, r.TS),
			string(r.RoomID)+" "+string(r.UserID)+" "+r.ThreadID)
	})
}

// PresenceUpdate is one entry of an m.presence EDU's push list.
type PresenceUpdate struct {
	UserID          id.UserID `json:"user_id"`
	Presence        string    `json:"presence"`
	StatusMsg       string    `json:"status_msg,omitempty"`
	LastActiveAgo   int64     `json:"last_active_ago"`
	CurrentlyActive bool      `json:"currently_active"`
}

// PresenceEDU is an m.presence EDU (server-server API, "Presence").
func PresenceEDU(updates ...PresenceUpdate) EDU {
	c, _ := json.Marshal(struct {
		Push []PresenceUpdate `json:"push"`
	}{updates})
	return EDU{Type: EDUPresence, Content: c}
}

// Presence is the presence service's hook: a local user's presence state
// or status message changed. The servers sharing a room with the user get
// an m.presence EDU; only the latest of each user is sent. Remote users
// are ignored. It does not block.
func (q *Queue) Presence(u PresenceUpdate) {
	if !q.isLocal(u.UserID) {
		return
	}
	q.fan.edus.add(func(ctx context.Context) {
		rooms, err := q.db.JoinedRoomIDs(ctx, u.UserID)
		if err != nil {
			if ctx.Err() == nil {
				q.log.Warn("rooms of user, for presence", "user_id", u.UserID, "err", err)
			}
			return
		}
		var servers []string
		seen := map[string]bool{}
		for _, r := range rooms {
			for _, s := range q.roomServers(ctx, r) {
				if !seen[s] {
					seen[s] = true
					servers = append(servers, s)
				}
			}
		}
		if len(servers) == 0 {
			return
		}
		if err := q.SendEDU(ctx, servers, PresenceEDU(u), string(u.UserID)); err != nil && ctx.Err() == nil {
			q.log.Error("queue presence for federation", "user_id", u.UserID, "err", err)
		}
	})
}

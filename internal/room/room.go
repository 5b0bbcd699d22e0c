// Package room owns the event graph of the rooms this server takes part in:
// it builds, authorises and persists local events (room creation,
// membership, messages, state, redactions, upgrades), keeps each room's
// current state and forward extremities, and decides who may see which
// events (history visibility). Remote events will enter through the same
// persist path when federation lands.
//
// Local sends to one room are serialised by a per-room lock; the room's
// current state, with its events, is kept in memory while the room is
// active, so that authorising a send reads no state from the database.
// The lock and cache assume one Polder process per database; several
// processes over one PostgreSQL need cross-process invalidation (see
// docs/operation.md).
//
// Imported by api/client, sync and server.
package room

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/eventauth"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/identity"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/stateres"
	"polder.dev/polder/internal/store"
)

// DefaultVersion is the room version of new rooms unless configured
// otherwise: the spec's recommendation (rooms/_index.md, "Servers SHOULD
// use room version 12").
const DefaultVersion id.RoomVersion = "12"

// maxPrevEvents bounds the prev_events of a local event.
const maxPrevEvents = 10

// Config configures the room service.
type Config struct {
	ServerName string
	Key        *keys.SigningKey
	// DefaultVersion of new rooms; DefaultVersion if empty.
	DefaultVersion id.RoomVersion
	// Federation reaches other servers (joins, invites, missing events).
	// nil: rooms stay local, and remote invites and joins are refused.
	Federation *federation.Client
	// Keys gives other servers' signing keys, to verify their events.
	Keys KeySource
	// Identity reaches identity servers for third-party invites
	// (thirdparty.go); nil: a default client (system CAs).
	Identity *identity.Client
}

// Service is the room service.
type Service struct {
	cfg Config
	db  *store.DB
	n   *notify.Notifier
	log *slog.Logger

	mu    sync.Mutex
	rooms map[id.RoomID]*roomState
	// res resolves state at forks (remote events); its auth chain cache
	// lives as long as the service.
	res *stateres.Resolver
	// noBackfill holds when a room's backfill last brought nothing.
	noBackfill map[id.RoomID]time.Time
	src        *dbSource

	// OnEvent, if set, is called after each event is persisted and
	// announced (push, federation). It must not block.
	OnEvent func(ev *store.Event)
	// Push, if set, works out the push notifications of each event about
	// to go into the timeline (push.Service.Prepare): called before the
	// event's transaction with the room locked, in the order events are
	// persisted, never for rejected, soft-failed, outlier or backfilled
	// events. write, if not nil, runs in the transaction right after the
	// event is persisted, with its stream position, so that its
	// notification counts commit with it; done, if not nil, is told after
	// the transaction the persisted event (nil if the transaction failed).
	// See pushhook.go.
	Push func(ctx context.Context, ev *store.Event) (write PushWrite, done PushDone)
	// OnRelay, if set, is called with an event of another server's user
	// that this server accepted for that server (send_join, send_leave,
	// send_knock): the other servers in the room must get it from us.
	// It must not block.
	OnRelay func(ev *store.Event, origin string)
}

// New returns the room service.
func New(cfg Config, db *store.DB, n *notify.Notifier, log *slog.Logger) *Service {
	if cfg.DefaultVersion == "" {
		cfg.DefaultVersion = DefaultVersion
	}
	s := &Service{cfg: cfg, db: db, n: n, log: log, rooms: make(map[id.RoomID]*roomState), noBackfill: map[id.RoomID]time.Time{}}
	s.src = &dbSource{db: db}
	s.res = stateres.New(stateres.Config{Source: s.src})
	return s
}

// ServerName is the name of this server.
func (s *Service) ServerName() string { return s.cfg.ServerName }

// DB is the store the service writes to, for read paths that need no
// rules.
func (s *Service) DB() *store.DB { return s.db }

// roomState is what the service keeps in memory of a room it sends to.
type roomState struct {
	mu          sync.Mutex // held while building and persisting a local event
	loaded      bool
	version     id.RoomVersion
	state       stateres.StateMap
	events      map[id.EventID]*event.PDU // the events of state
	extremities []id.EventID
	depth       int64
	// tail is closed once the room's last pipelined send has committed
	// (or failed) and been announced; nil when none is in flight.
	tail chan struct{}
	// stale says that a pipelined send failed after the cache took its
	// event: the cache must be read again from the store (see settle).
	stale atomic.Bool
}

func (rs *roomState) lookup(typ, stateKey string) eventauth.Event {
	eid, ok := rs.state[stateres.StateKey{Type: typ, StateKey: stateKey}]
	if !ok {
		return nil
	}
	if ev := rs.events[eid]; ev != nil {
		return ev
	}
	return nil
}

// lock returns the in-memory state of a room, locked, once the room's
// pipelined sends (sendPipelined) have finished, so that the store holds
// everything the cache does. The caller must unlock rs.mu. It returns
// ErrUnknownRoom if the room does not exist.
func (s *Service) lock(ctx context.Context, roomID id.RoomID) (*roomState, error) {
	rs := s.lockAny(roomID)
	if rs.loaded {
		return rs, nil
	}
	if err := s.load(ctx, roomID, rs); err != nil {
		rs.mu.Unlock()
		return nil, err
	}
	return rs, nil
}

// lockAny locks a room's in-memory entry without requiring the room to
// exist, once its pipelined sends are done; the caller must unlock rs.mu
// and set rs.loaded = false after changing the room behind the cache.
func (s *Service) lockAny(roomID id.RoomID) *roomState {
	rs := s.lockQueued(roomID)
	rs.settle()
	return rs
}

// lockQueued locks a room's in-memory entry without waiting for its
// pipelined sends: only sendPipelined may use the entry so.
func (s *Service) lockQueued(roomID id.RoomID) *roomState {
	s.mu.Lock()
	rs := s.rooms[roomID]
	if rs == nil {
		rs = &roomState{}
		s.rooms[roomID] = rs
	}
	s.mu.Unlock()
	rs.mu.Lock()
	return rs
}

// settle waits, rs locked, until the room's pipelined sends have
// committed or failed, and forgets the cache if one failed (it held the
// failed event as the room's extremity). New pipelined sends cannot start
// meanwhile: they need rs.mu.
func (rs *roomState) settle() {
	if rs.tail != nil {
		<-rs.tail
		rs.tail = nil
	}
	if rs.stale.Swap(false) {
		rs.loaded = false
	}
}

// ErrUnknownRoom is returned for rooms this server does not know.
var ErrUnknownRoom = errors.New("unknown room")

func (s *Service) load(ctx context.Context, roomID id.RoomID, rs *roomState) error {
	r, err := s.db.Room(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return ErrUnknownRoom
	}
	if err != nil {
		return err
	}
	evs, err := s.db.CurrentStateEvents(ctx, roomID)
	if err != nil {
		return err
	}
	x, err := s.db.Extremities(ctx, roomID)
	if err != nil {
		return err
	}
	rs.version = r.Version
	rs.depth = r.MaxDepth
	rs.extremities = x
	rs.state = make(stateres.StateMap, len(evs))
	rs.events = make(map[id.EventID]*event.PDU, len(evs))
	for _, ev := range evs {
		rs.state[stateres.StateKey{Type: ev.Type(), StateKey: *ev.StateKey()}] = ev.EventID()
		rs.events[ev.EventID()] = ev.PDU
	}
	rs.loaded = true
	return nil
}

// Draft is an event a local user wants to send.
type Draft struct {
	Type     string
	StateKey *string // nil for a message event
	// Content is a JSON object.
	Content []byte
	// Redacts is the target of an m.room.redaction.
	Redacts id.EventID
	// Txn, if set, makes the send idempotent per device: a second send
	// with the same transaction ID returns the first event.
	Txn *store.Txn
}

// Send builds, authorises and persists a local event in a room and returns
// it. Errors the client must see are *mxerr.Error: M_FORBIDDEN when the
// authorization rules refuse the event (including when the sender is not
// in the room), M_NOT_FOUND for an unknown room, M_BAD_JSON or M_TOO_LARGE
// for an invalid one.
//
// A send with a transaction ID that already names an event returns that
// event. It is not looked up before the send, which would cost every send
// a read for the rare retry: the retry's transaction-ID row conflicts
// with the first one's (store.ErrConflict), and a send that fails for any
// other reason (the sender has left since, say) looks the ID up then.
func (s *Service) Send(ctx context.Context, sender id.UserID, roomID id.RoomID, d Draft) (*store.Event, error) {
	ev, err := s.send(ctx, sender, roomID, d)
	if err != nil && d.Txn != nil {
		if prev, terr := s.txnEvent(ctx, *d.Txn); terr == nil {
			return prev, nil
		}
	}
	return ev, err
}

func (s *Service) send(ctx context.Context, sender id.UserID, roomID id.RoomID, d Draft) (*store.Event, error) {
	if s.pipelinable(d) {
		return s.sendPipelined(ctx, sender, roomID, d)
	}
	rs, err := s.lock(ctx, roomID)
	if errors.Is(err, ErrUnknownRoom) {
		return nil, mxerr.Forbidden("You are not in room %s", roomID)
	}
	if err != nil {
		return nil, err
	}
	defer rs.mu.Unlock()
	return s.sendLocked(ctx, rs, sender, roomID, d)
}

// pipelinable reports whether a draft may take sendPipelined: a message
// event without a relation (no relation check reads the store, no state
// changes), on an engine that shares write transactions.
func (s *Service) pipelinable(d Draft) bool {
	if d.StateKey != nil || d.Type == event.TypeRedaction || d.Redacts != "" || !s.db.Grouped() {
		return false
	}
	_, rel, _ := relatesTo(d.Content)
	return rel == ""
}

// sendPipelined sends a plain message event without holding the room's
// lock across the commit. Under the lock it builds and authorises the
// event on the cached state, queues its write (store.DB.Enqueue: writes
// run in queue order) and makes it the cached extremity; then it unlocks
// and waits for the commit. The next message of the room is built on it
// meanwhile and usually shares its commit: in a busy room the commit is
// paid once per batch, not once per message, and sends of one room no
// longer queue behind each other's commits.
//
// The client's answer still comes after the commit, and events are
// announced (sync wake-up, federation queue) in the order they were
// built, each after its predecessor. If the write fails (a retried
// transaction ID, say) the cache is marked stale: the messages queued
// behind it name a missing event as their base, so their writes fail too
// (store.Tx.PersistEvent refuses an unknown base), and the next user of
// the room reads the cache again from the store (settle). Every other
// user of the room lock waits for the pipelined sends first (lock,
// lockAny), so they see the store as before.
func (s *Service) sendPipelined(ctx context.Context, sender id.UserID, roomID id.RoomID, d Draft) (*store.Event, error) {
	rs := s.lockQueued(roomID)
	if !rs.loaded || rs.stale.Load() || len(rs.extremities) != 1 {
		rs.settle()
		if !rs.loaded {
			if err := s.load(ctx, roomID, rs); err != nil {
				rs.mu.Unlock()
				if errors.Is(err, ErrUnknownRoom) {
					return nil, mxerr.Forbidden("You are not in room %s", roomID)
				}
				return nil, err
			}
		}
		if len(rs.extremities) != 1 {
			// A fork: the write needs the resolved state (persistBatch).
			defer rs.mu.Unlock()
			return s.sendLocked(ctx, rs, sender, roomID, d)
		}
	}
	pdu, err := s.build(rs, sender, roomID, d)
	if err == nil {
		err = forbidden(eventauth.Check(rs.version, pdu, rs.lookup))
	}
	if err != nil {
		rs.mu.Unlock()
		return nil, err
	}
	pn := s.preparePushLocal(ctx, []*event.PDU{pdu})
	ne := store.NewEvent{PDU: pdu, StateBase: rs.extremities[0], Extremities: []id.EventID{pdu.EventID()}, Txn: d.Txn}
	var pos int64
	wctx := context.WithoutCancel(ctx) // the write runs even if the client goes
	q, _ := s.db.Enqueue(wctx, "persist_event", func(tx *store.Tx) error {
		p, err := tx.PersistEvent(wctx, ne)
		if err != nil {
			return err
		}
		if err := pn.writeAt(wctx, tx, 0, p); err != nil {
			return err
		}
		pos = p
		return nil
	})
	prev, mine := rs.tail, make(chan struct{})
	rs.tail = mine
	rs.extremities = ne.Extremities
	rs.depth = max(rs.depth, pdu.Depth())
	rs.mu.Unlock()

	err = q.Wait()
	var ev *store.Event
	if err == nil {
		ev = &store.Event{PDU: pdu, StreamPos: pos}
		if d.Txn != nil {
			ev.TxnDevice, ev.TxnID = d.Txn.DeviceID, d.Txn.TxnID
		}
		pn.finish(nil, ev)
	} else {
		pn.finish(err)
		rs.stale.Store(true)
	}
	if prev != nil {
		<-prev
	}
	if ev != nil {
		s.announce(ev)
	}
	close(mine)
	if errors.Is(err, store.ErrConflict) && d.Txn != nil {
		return s.txnEvent(ctx, *d.Txn)
	}
	return ev, err
}

// sendLocked is send with the room locked and settled.
func (s *Service) sendLocked(ctx context.Context, rs *roomState, sender id.UserID, roomID id.RoomID, d Draft) (*store.Event, error) {
	if ev := s.sameState(ctx, rs, sender, d); ev != nil {
		return ev, nil
	}
	pdu, err := s.build(rs, sender, roomID, d)
	if err != nil {
		return nil, err
	}
	if err := creatorsInPowerLevels(rs, pdu); err != nil {
		return nil, err
	}
	if err := eventauth.Check(rs.version, pdu, rs.lookup); err != nil {
		return nil, forbidden(err)
	}
	if err := s.checkRelation(ctx, pdu); err != nil { // relations.go
		return nil, err
	}
	if pdu.Type() == event.TypeRedaction {
		if _, err := s.checkRedaction(ctx, rs, roomID, pdu); err != nil {
			return nil, err
		}
	}
	ev, err := s.persist(ctx, rs, pdu, d.Txn)
	if errors.Is(err, store.ErrConflict) && d.Txn != nil {
		return s.txnEvent(ctx, *d.Txn)
	}
	return ev, err
}

// sameState returns the current state event a state draft would replace
// when it is the same: same sender, same content. Sending it again would
// change nothing but add an event, so, as Synapse does, the send returns
// the existing one. rs must be locked.
func (s *Service) sameState(ctx context.Context, rs *roomState, sender id.UserID, d Draft) *store.Event {
	if d.StateKey == nil || d.Content == nil {
		return nil
	}
	cur := rs.lookup(d.Type, *d.StateKey)
	if cur == nil || cur.Sender() != sender {
		return nil
	}
	a, err1 := cjson.Append(nil, d.Content, cjson.Legacy)
	b, err2 := cjson.Append(nil, cur.Content(), cjson.Legacy)
	if err1 != nil || err2 != nil || string(a) != string(b) {
		return nil
	}
	ev, err := s.db.Event(ctx, cur.EventID())
	if err != nil {
		return nil
	}
	return ev
}

func (s *Service) txnEvent(ctx context.Context, t store.Txn) (*store.Event, error) {
	eid, err := s.db.TxnEvent(ctx, t)
	if err != nil {
		return nil, err
	}
	return s.db.Event(ctx, eid)
}

// forbidden turns a refusal of the authorization rules into M_FORBIDDEN.
func forbidden(err error) error {
	var ae *eventauth.Error
	if errors.As(err, &ae) || errors.Is(err, eventauth.ErrMissingAuthEvent) {
		return mxerr.Forbidden("%s", err.Error())
	}
	return err
}

// protoEvent is enough of an event for the auth event selection.
type protoEvent struct {
	eventauth.Event
	typ      string
	stateKey *string
	sender   id.UserID
	content  []byte
}

func (p protoEvent) Type() string        { return p.typ }
func (p protoEvent) StateKey() *string   { return p.stateKey }
func (p protoEvent) Sender() id.UserID   { return p.sender }
func (p protoEvent) Content() []byte     { return p.content }
func (p protoEvent) EventID() id.EventID { return "" }

// build makes the signed event for a draft on top of the room's current
// state. rs must be locked.
func (s *Service) build(rs *roomState, sender id.UserID, roomID id.RoomID, d Draft) (*event.PDU, error) {
	content := d.Content
	if content == nil {
		content = []byte("{}")
	}
	if len(content) > event.MaxSize {
		return nil, mxerr.TooLarge("Event content is too large")
	}
	sel := eventauth.AuthEventSelection(rs.version, protoEvent{typ: d.Type, stateKey: d.StateKey, sender: sender, content: content})
	var auth []id.EventID
	for _, k := range sel {
		if eid, ok := rs.state[stateres.StateKey{Type: k.Type, StateKey: k.StateKey}]; ok {
			auth = append(auth, eid)
		}
	}
	prev := rs.extremities
	if len(prev) > maxPrevEvents {
		prev = prev[len(prev)-maxPrevEvents:]
	}
	pdu, err := event.New(rs.version, event.Proto{
		Type:       d.Type,
		StateKey:   d.StateKey,
		Sender:     sender,
		RoomID:     roomID,
		Content:    content,
		PrevEvents: prev,
		AuthEvents: auth,
		Depth:      min(rs.depth+1, event.MaxDepth),
		Redacts:    d.Redacts,
	}, s.cfg.ServerName, s.cfg.Key)
	if err != nil {
		if errors.Is(err, event.ErrInvalid) {
			if len(content) > event.MaxSize-2048 {
				return nil, mxerr.TooLarge("Event is too large")
			}
			return nil, mxerr.BadJSON("Invalid event: %v", err)
		}
		return nil, err
	}
	return pdu, nil
}

// persist writes an authorised local event on top of the room's current
// state and updates the cache. rs must be locked.
func (s *Service) persist(ctx context.Context, rs *roomState, pdu *event.PDU, txn *store.Txn) (*store.Event, error) {
	evs, err := s.persistBatch(ctx, rs, []*event.PDU{pdu}, txn, nil)
	if err != nil {
		return nil, err
	}
	return evs[0], nil
}

// persistBatch persists local events, each built on the previous one, in
// one transaction. before, if not nil, runs first in the transaction (room
// creation records the room). rs must be locked.
func (s *Service) persistBatch(ctx context.Context, rs *roomState, pdus []*event.PDU, txn *store.Txn, before func(tx *store.Tx) error) ([]*store.Event, error) {
	out := make([]*store.Event, len(pdus))
	// Work on copies so that a failed write leaves the cache as it was.
	state := maps(rs.state)
	byID := make(map[id.EventID]*event.PDU, 4)
	get := func(eid id.EventID) *event.PDU {
		if p := byID[eid]; p != nil {
			return p
		}
		return rs.events[eid]
	}
	extremities := rs.extremities
	var redactions []redaction
	var replaced []id.EventID
	pn := s.preparePushLocal(ctx, pdus)
	err := s.db.WithTx(ctx, "persist_event", func(tx *store.Tx) error {
		if before != nil {
			if err := before(tx); err != nil {
				return err
			}
		}
		for i, pdu := range pdus {
			ne := store.NewEvent{PDU: pdu}
			if len(extremities) > 0 {
				ne.StateBase = extremities[len(extremities)-1]
			}
			if len(extremities) > 1 {
				// Local events after a fork: the state before is the
				// resolved current state, not the base's.
				baseState, err := s.db.StateAfter(ctx, ne.StateBase)
				if err != nil {
					return err
				}
				ne.StateChanges = diff(baseState, state)
			}
			if sk := pdu.StateKey(); sk != nil {
				k := stateres.StateKey{Type: pdu.Type(), StateKey: *sk}
				if old, ok := state[k]; ok {
					if p := get(old); p != nil {
						u := []byte("{}")
						u = cjson.Set(nil, u, "prev_content", p.Content())
						u = cjson.Set(nil, u, "prev_sender", cjson.AppendString(nil, string(p.Sender())))
						u = cjson.Set(nil, u, "replaces_state", cjson.AppendString(nil, string(old)))
						ne.Added, ne.Replaces = u, old
					}
				}
				if ne.StateChanges == nil {
					ne.StateChanges = stateres.StateMap{}
				}
				ne.StateChanges[k] = pdu.EventID()
				if old, ok := state[k]; ok {
					replaced = append(replaced, old)
				}
				ne.CurrentChanges = stateres.StateMap{k: pdu.EventID()}
				state[k] = pdu.EventID()
				byID[pdu.EventID()] = pdu
			}
			ne.Extremities = []id.EventID{pdu.EventID()}
			if i == 0 {
				ne.Txn = txn
			}
			pos, err := tx.PersistEvent(ctx, ne)
			if err != nil {
				return err
			}
			if err := pn.writeAt(ctx, tx, i, pos); err != nil {
				return err
			}
			extremities = ne.Extremities
			out[i] = &store.Event{PDU: pdu, StreamPos: pos, Added: ne.Added, Replaces: ne.Replaces}
			if ne.Txn != nil {
				out[i].TxnDevice, out[i].TxnID = ne.Txn.DeviceID, ne.Txn.TxnID
			}
			if pdu.Type() == event.TypeRedaction && pdu.Redacts() != "" {
				r, err := s.applyRedaction(ctx, tx, rs, state, get, pdu)
				if err != nil {
					return err
				}
				if r != nil {
					redactions = append(redactions, *r)
				}
			}
		}
		return nil
	})
	pn.finish(err, out...)
	if err != nil {
		return nil, err
	}
	// Commit happened: update the cache and tell the waiters.
	rs.state = state
	for eid, p := range byID {
		rs.events[eid] = p
	}
	for _, eid := range replaced {
		if _, ok := byID[eid]; !ok {
			delete(rs.events, eid)
		}
	}
	for eid := range byID {
		if !inState(state, eid) { // set and replaced within the batch
			delete(rs.events, eid)
		}
	}
	for _, r := range redactions {
		if _, ok := rs.events[r.target]; ok {
			rs.events[r.target] = r.redacted
		}
	}
	rs.extremities = extremities
	for _, ev := range out {
		rs.depth = max(rs.depth, ev.Depth())
		c := notify.Change{Rooms: []id.RoomID{ev.RoomID()}}
		if ev.Type() == event.TypeMember && ev.StateKey() != nil {
			c.Users = []id.UserID{id.UserID(*ev.StateKey())}
		}
		s.n.Wake(ev.StreamPos, c)
		if s.OnEvent != nil {
			s.OnEvent(ev)
		}
	}
	return out, nil
}

// creatorsInPowerLevels refuses, with M_BAD_JSON as Synapse does, power
// levels that give a room creator a level in a room version where creators
// outrank every level (v12, MSC4289): the auth rules reject them anyway,
// but the client made a request error, not a permission one.
func creatorsInPowerLevels(rs *roomState, pdu *event.PDU) error {
	if pdu.Type() != event.TypePowerLevels || pdu.StateKey() == nil || *pdu.StateKey() != "" {
		return nil
	}
	create := rs.lookup(event.TypeCreate, "")
	if create == nil {
		return nil
	}
	creators, err := eventauth.Creators(rs.version, create)
	if err != nil || len(creators) == 0 || rs.version != "12" {
		return nil
	}
	var c struct {
		Users map[id.UserID]json.RawMessage `json:"users"`
	}
	if json.Unmarshal(pdu.Content(), &c) != nil {
		return nil
	}
	for _, u := range creators {
		if _, ok := c.Users[u]; ok {
			return mxerr.BadJSON("%s is a creator of the room and cannot be given a power level", u)
		}
	}
	return nil
}

// notifyChange is who an event concerns: its room and, for a member
// event, its target.
func notifyChange(ev *store.Event) notify.Change {
	c := notify.Change{Rooms: []id.RoomID{ev.RoomID()}}
	if ev.Type() == event.TypeMember && ev.StateKey() != nil {
		c.Users = []id.UserID{id.UserID(*ev.StateKey())}
	}
	return c
}

// inState reports whether eid is in state. It is a scan; callers only use
// it for the few events of one batch.
func inState(state stateres.StateMap, eid id.EventID) bool {
	for _, v := range state {
		if v == eid {
			return true
		}
	}
	return false
}

func maps(m stateres.StateMap) stateres.StateMap {
	out := make(stateres.StateMap, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// diff returns the changes that turn from into to ("" removes a key).
func diff(from, to stateres.StateMap) stateres.StateMap {
	out := stateres.StateMap{}
	for k, v := range to {
		if from[k] != v {
			out[k] = v
		}
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			out[k] = ""
		}
	}
	return out
}

// Version returns a room's version, or ErrUnknownRoom.
func (s *Service) Version(ctx context.Context, roomID id.RoomID) (id.RoomVersion, error) {
	r, err := s.db.Room(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return "", ErrUnknownRoom
	}
	return r.Version, err
}

// Exists reports whether the server knows the room.
func (s *Service) Exists(ctx context.Context, roomID id.RoomID) (bool, error) {
	_, err := s.db.Room(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// StateEvent returns an event of a room's current state, or
// store.ErrNotFound.
func (s *Service) StateEvent(ctx context.Context, roomID id.RoomID, typ, stateKey string) (*store.Event, error) {
	return s.db.CurrentStateEvent(ctx, roomID, typ, stateKey)
}

// StateContent returns the content of an event of the current state, or
// nil if there is none.
func (s *Service) StateContent(ctx context.Context, roomID id.RoomID, typ, stateKey string) ([]byte, error) {
	ev, err := s.db.CurrentStateEvent(ctx, roomID, typ, stateKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ev.Content(), nil
}

// Membership returns a user's current membership of a room ("" if none).
func (s *Service) Membership(ctx context.Context, roomID id.RoomID, user id.UserID) (string, error) {
	m, err := s.db.UserMembership(ctx, roomID, user)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return m.Membership, err
}

// PowerLevels returns a room's current power levels.
func (s *Service) PowerLevels(ctx context.Context, roomID id.RoomID) (*eventauth.PowerLevels, error) {
	rs, err := s.lock(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer rs.mu.Unlock()
	return rs.powerLevels()
}

func (rs *roomState) powerLevels() (*eventauth.PowerLevels, error) {
	return eventauth.NewPowerLevels(rs.version, rs.lookup(event.TypeCreate, ""), rs.lookup(event.TypePowerLevels, ""))
}

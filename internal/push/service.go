package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
	"polder.dev/polder/internal/store"
)

// AccountDataWriter writes a user's global account data and wakes its
// syncers (user.Service).
type AccountDataWriter interface {
	SetAccountData(ctx context.Context, userID id.UserID, roomID id.RoomID, typ string, content []byte) error
}

// Config configures the push service.
type Config struct {
	ServerName string
	// RetryBase and RetryMax bound the backoff of a failing push gateway:
	// the n-th consecutive failure waits RetryBase·2^(n-1), at most
	// RetryMax. Defaults: 1 s and 1 h.
	RetryBase, RetryMax time.Duration
	// HTTPClient sends to push gateways; a client with a 30 s timeout if
	// nil.
	HTTPClient *http.Client
	// Retention is how long read notification rows are kept (for GET
	// /notifications); 0 keeps them for ever. Unread rows and highlights
	// are always kept.
	Retention time.Duration
	// PrunePass is the pause between two passes of the pruner; default
	// 1 h.
	PrunePass time.Duration
}

// Service evaluates push rules on new events, keeps the notification rows
// and delivers them to pushers.
type Service struct {
	cfg      Config
	db       *store.DB
	accounts AccountDataWriter
	log      *slog.Logger
	m        metrics

	mu    sync.Mutex
	rooms map[id.RoomID]*roomCache
	rules map[id.UserID]*Ruleset
	// ruleLocks serialises changes of a user's rules.
	ruleLocks map[id.UserID]*sync.Mutex

	d *delivery
}

// New returns the push service. Run delivers to push gateways.
func New(cfg Config, db *store.DB, accounts AccountDataWriter, log *slog.Logger) *Service {
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = time.Hour
	}
	if cfg.PrunePass <= 0 {
		cfg.PrunePass = time.Hour
	}
	s := &Service{cfg: cfg, db: db, accounts: accounts, log: log, m: newMetrics(),
		rooms: map[id.RoomID]*roomCache{}, rules: map[id.UserID]*Ruleset{}, ruleLocks: map[id.UserID]*sync.Mutex{}}
	s.d = newDelivery(s)
	return s
}

// ---- Rules ----

// Rules returns a user's push rules.
func (s *Service) Rules(ctx context.Context, user id.UserID) (*Ruleset, error) {
	m, err := s.rulesOf(ctx, []id.UserID{user})
	if err != nil {
		return nil, err
	}
	return m[user], nil
}

// rulesOf returns the rules of users, from the cache or, for those not in
// it, from their account data in one query.
func (s *Service) rulesOf(ctx context.Context, users []id.UserID) (map[id.UserID]*Ruleset, error) {
	out := make(map[id.UserID]*Ruleset, len(users))
	var miss []id.UserID
	s.mu.Lock()
	for _, u := range users {
		if rs := s.rules[u]; rs != nil {
			out[u] = rs
		} else {
			miss = append(miss, u)
		}
	}
	s.mu.Unlock()
	if len(miss) == 0 {
		return out, nil
	}
	stored, err := s.db.PushRulesOf(ctx, miss)
	if err != nil {
		return nil, fmt.Errorf("load push rules: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rules) > maxCachedRules {
		clear(s.rules)
	}
	for _, u := range miss {
		rs, err := Load(stored[u])
		if err != nil {
			s.log.Warn("unreadable m.push_rules: using the defaults", "user_id", u, "error", err)
		}
		if cur := s.rules[u]; cur != nil {
			rs = cur // changed meanwhile
		}
		s.rules[u] = rs
		out[u] = rs
	}
	return out, nil
}

const maxCachedRules = 200000

// ChangeRules applies fn to a user's rules and stores the result as its
// m.push_rules account data, which its clients see in /sync. Errors are
// fn's.
func (s *Service) ChangeRules(ctx context.Context, user id.UserID, fn func(*Ruleset) (*Ruleset, error)) error {
	s.mu.Lock()
	l := s.ruleLocks[user]
	if l == nil {
		l = &sync.Mutex{}
		s.ruleLocks[user] = l
	}
	s.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	rs, err := s.Rules(ctx, user)
	if err != nil {
		return err
	}
	next, err := fn(rs)
	if err != nil {
		return err
	}
	content, err := next.AccountData(user)
	if err != nil {
		return err
	}
	if err := s.accounts.SetAccountData(ctx, user, "", "m.push_rules", content); err != nil {
		return err
	}
	s.mu.Lock()
	s.rules[user] = next
	s.mu.Unlock()
	return nil
}

// ---- Rooms ----

// roomCache is what the rules need of a room, kept in memory so that an
// event is evaluated without reading the room's state (DESIGN-NOTES
// "Don't recompute room state per event for push").
type roomCache struct {
	mu     sync.Mutex
	loaded bool
	// joined maps every joined member to its display name; local holds the
	// local ones.
	joined map[id.UserID]string
	local  map[id.UserID]*Member
	create *store.Event
	pl     *store.Event
	power  *eventauth.PowerLevels
	name   string
	alias  string
}

func (s *Service) room(roomID id.RoomID) *roomCache {
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := s.rooms[roomID]
	if rc == nil {
		rc = &roomCache{}
		s.rooms[roomID] = rc
	}
	return rc
}

func (s *Service) isLocal(u id.UserID) bool {
	return strings.HasSuffix(string(u), ":"+s.cfg.ServerName)
}

// load reads the room's current state; rc.mu is held.
func (s *Service) load(ctx context.Context, roomID id.RoomID, rc *roomCache) error {
	evs, err := s.db.CurrentStateEvents(ctx, roomID, "m.room.member", "m.room.power_levels", "m.room.create", "m.room.name", "m.room.canonical_alias")
	if errors.Is(err, store.ErrNotFound) {
		err = nil // a room known only by an invite
	}
	if err != nil {
		return fmt.Errorf("load room %s for push: %w", roomID, err)
	}
	rc.joined, rc.local, rc.create, rc.pl, rc.name, rc.alias = map[id.UserID]string{}, map[id.UserID]*Member{}, nil, nil, "", ""
	for _, e := range evs {
		s.apply(rc, e)
	}
	rc.power = nil
	rc.loaded = true
	return nil
}

// apply updates the cache with a state event that became current.
func (s *Service) apply(rc *roomCache, e *store.Event) {
	switch e.Type() {
	case "m.room.member":
		u := id.UserID(*e.StateKey())
		var c struct {
			Membership  string `json:"membership"`
			DisplayName any    `json:"displayname"`
		}
		_ = json.Unmarshal(e.Content(), &c)
		name, _ := c.DisplayName.(string)
		if c.Membership == "join" {
			rc.joined[u] = name
			if s.isLocal(u) {
				rc.local[u] = &Member{UserID: u, DisplayName: name}
			}
		} else {
			delete(rc.joined, u)
			delete(rc.local, u)
		}
	case "m.room.power_levels":
		if *e.StateKey() == "" {
			rc.pl, rc.power = e, nil
		}
	case "m.room.create":
		if *e.StateKey() == "" {
			rc.create, rc.power = e, nil
		}
	case "m.room.name":
		if *e.StateKey() == "" {
			var c struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(e.Content(), &c)
			rc.name = c.Name
		}
	case "m.room.canonical_alias":
		if *e.StateKey() == "" {
			var c struct {
				Alias string `json:"alias"`
			}
			_ = json.Unmarshal(e.Content(), &c)
			rc.alias = c.Alias
		}
	}
}

func (rc *roomCache) powerLevels() *eventauth.PowerLevels {
	if rc.power == nil && rc.create != nil {
		var pl eventauth.Event
		if rc.pl != nil {
			pl = rc.pl
		}
		p, err := eventauth.NewPowerLevels(rc.create.RoomVersion(), rc.create, pl)
		if err == nil {
			rc.power = p
		}
	}
	return rc.power
}

var cachedTypes = map[string]bool{"m.room.member": true, "m.room.power_levels": true, "m.room.create": true, "m.room.name": true, "m.room.canonical_alias": true}

// ---- Evaluation ----

// notice is one recipient's notification, for the pushers.
type notice struct {
	user   id.UserID
	result Result
}

// Prepare evaluates the push rules of the room's local members for an
// event about to be persisted, and returns what the room service does
// with the result (room.Service.Push):
//
//   - write, called in the event's transaction with the stream position
//     it got, inserts the notification rows, so that the counts commit
//     with the event and a /sync that sees the event sees them (client-
//     server API, "Receiving notifications");
//   - done, called after the transaction with the persisted event (nil
//     if the transaction failed), queues the pushes for the pushers.
//
// Either may be nil. Events must come in the order they are persisted in
// their room (the room service calls Prepare with the room locked): a
// state event is applied to the room's cache here, before the events
// after it are evaluated, and the cache is read again after a failed
// transaction or another server's state event (which may lose state
// resolution). Rejected and soft-failed events notify nobody. Errors are
// logged: the event is persisted whatever push thinks of it.
func (s *Service) Prepare(ctx context.Context, ev *store.Event) (write func(ctx context.Context, tx *store.Tx, pos int64) error, done func(ev *store.Event)) {
	if ev.IsRejected || ev.SoftFailed {
		return nil, nil
	}
	p, err := s.prepare(ctx, ev)
	if err != nil {
		s.log.Error("evaluate push rules", "event_id", ev.EventID(), "room_id", ev.RoomID(), "error", err)
	}
	if p == nil {
		return nil, nil
	}
	if len(p.rows) > 0 {
		write = p.write
	}
	return write, p.done
}

// pending is an event's evaluation between Prepare and its commit.
type pending struct {
	s  *Service
	rc *roomCache
	// reload: the event changed the room's cache, which must be read
	// again after the transaction (if it failed, or if it is another
	// server's state event).
	reload, reloadAlways bool
	rows                 []store.PushAction
	job                  *job
}

func (p *pending) write(ctx context.Context, tx *store.Tx, pos int64) error {
	for i := range p.rows {
		p.rows[i].StreamPos = pos
	}
	if err := tx.AddPushActions(ctx, p.rows); err != nil {
		return fmt.Errorf("store notifications: %w", err)
	}
	return nil
}

func (p *pending) done(ev *store.Event) {
	if p.reload && (ev == nil || p.reloadAlways) {
		p.rc.mu.Lock()
		p.rc.loaded = false
		p.rc.mu.Unlock()
	}
	if ev != nil && p.job != nil {
		p.job.ev = ev
		p.s.d.enqueue(*p.job)
	}
}

// prepare evaluates ev; nil if it changes nothing and notifies nobody.
func (s *Service) prepare(ctx context.Context, ev *store.Event) (*pending, error) {
	roomID := ev.RoomID()
	rc := s.room(roomID)
	p := &pending{s: s, rc: rc}
	rc.mu.Lock()
	if !rc.loaded {
		if err := s.load(ctx, roomID, rc); err != nil {
			rc.mu.Unlock()
			return nil, err
		}
	}
	if ev.IsState() && cachedTypes[ev.Type()] {
		// The room's state after the event, for the events after it. A
		// local user's event is the room's new current state; another
		// server's may lose state resolution, and a join through another
		// server replaces the room's state: those are read again after
		// the commit.
		s.apply(rc, ev)
		p.reload = true
		p.reloadAlways = !s.isLocal(ev.Sender()) || ev.Handshake
	}
	sender := ev.Sender()
	recipients := make([]*Member, 0, len(rc.local)+1)
	for u, m := range rc.local {
		if u != sender {
			recipients = append(recipients, m)
		}
	}
	// An invite notifies the invited local user, not yet a member.
	if ev.Type() == "m.room.member" && ev.IsState() {
		target := id.UserID(*ev.StateKey())
		if _, joined := rc.local[target]; !joined && target != sender && s.isLocal(target) {
			recipients = append(recipients, &Member{UserID: target})
		}
	}
	room := &Room{MemberCount: len(rc.joined), Notifications: map[string]int64{}}
	if pl := rc.powerLevels(); pl != nil {
		room.SenderPower = pl.UserLevel(sender)
		if l, ok := pl.NotificationLevel("room"); ok {
			room.Notifications["room"] = l
		}
	}
	senderName := rc.joined[sender]
	roomName, alias := rc.name, rc.alias
	rc.mu.Unlock()
	if len(recipients) == 0 {
		return p, nil
	}
	pev, err := ParseEvent(ev.JSON())
	if err != nil {
		return p, fmt.Errorf("decode event: %w", err)
	}
	users := make([]id.UserID, len(recipients))
	for i, m := range recipients {
		users[i] = m.UserID
	}
	rules, err := s.rulesOf(ctx, users)
	if err != nil {
		return p, err
	}
	s.m.evaluated.Add(float64(len(recipients)))
	var notices []notice
	thread := ""
	threadKnown := false
	now := time.Now().UnixMilli()
	// The actions of a rule, marshalled once per event.
	var lastRule *Rule
	var lastActions []byte
	for _, m := range recipients {
		res := Evaluate(rules[m.UserID], pev, room, m)
		if !res.Notify && !res.Highlight {
			continue
		}
		if !threadKnown {
			thread, threadKnown = s.threadOf(ctx, pev), true
		}
		if res.Rule != lastRule {
			lastRule = res.Rule
			lastActions, _ = json.Marshal(res.Actions())
		}
		p.rows = append(p.rows, store.PushAction{UserID: m.UserID, RoomID: roomID, EventID: ev.EventID(),
			Thread: thread, Notify: res.Notify, Highlight: res.Highlight, Actions: lastActions, TS: now})
		if res.Notify {
			notices = append(notices, notice{user: m.UserID, result: res})
		}
	}
	if len(notices) > 0 {
		p.job = &job{notices: notices, senderName: senderName, roomName: roomName, alias: alias}
	}
	return p, nil
}

// maxThreadHops bounds the walk from a relation to its thread root
// (client-server API, "Receiving notifications": a maximum of 3 hops).
const maxThreadHops = 3

// threadOf is the thread an event belongs to for notification counts: the
// root of its m.thread relation, or of the thread of the event it relates
// to (a reaction to a threaded message), else the main timeline ("").
func (s *Service) threadOf(ctx context.Context, ev *Event) string {
	relType, target := relation(ev.m)
	for hop := 0; target != ""; hop++ {
		if relType == "m.thread" {
			return target
		}
		if hop+1 >= maxThreadHops {
			break
		}
		t, err := s.db.Event(ctx, id.EventID(target))
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				s.log.Warn("thread of event", "event_id", target, "error", err)
			}
			break
		}
		var m map[string]any
		if json.Unmarshal(t.JSON(), &m) != nil {
			break
		}
		relType, target = relation(m)
	}
	return ""
}

func relation(ev map[string]any) (relType, target string) {
	c, _ := ev["content"].(map[string]any)
	r, _ := c["m.relates_to"].(map[string]any)
	return str(r["rel_type"]), str(r["event_id"])
}

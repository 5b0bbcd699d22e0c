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
	w writer
}

// writer writes notification rows off the path that persists events: the
// rows of the events announced meanwhile go in one transaction (group
// commit), so that a send waits for neither. Readers of the rows call
// Flush first. While Run is not running, rows are written at once.
type writer struct {
	mu      sync.Mutex
	running bool
	pending []written
	enq     uint64        // batches handed over
	done    uint64        // batches written
	doneCh  chan struct{} // closed when done advances
	kick    chan struct{}
}

type written struct {
	rows []store.PushAction
	job  *job
}

// New returns the push service. Run delivers to push gateways.
func New(cfg Config, db *store.DB, accounts AccountDataWriter, log *slog.Logger) *Service {
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = time.Hour
	}
	s := &Service{cfg: cfg, db: db, accounts: accounts, log: log, m: newMetrics(),
		rooms: map[id.RoomID]*roomCache{}, rules: map[id.UserID]*Ruleset{}, ruleLocks: map[id.UserID]*sync.Mutex{}}
	s.d = newDelivery(s)
	s.w.doneCh = make(chan struct{})
	s.w.kick = make(chan struct{}, 1)
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

// OnEvent evaluates a new event for the room's local members and stores
// the notification rows. The room service calls it after persisting the
// event and before waking the syncers, so that the counts change in the
// same /sync response as the event arrives in (client-server API, "Server
// behaviour"). Pushes are queued for delivery afterwards. Errors are
// logged: the event is persisted whatever push thinks of it.
func (s *Service) OnEvent(ev *store.Event) {
	if ev.StreamPos <= 0 || ev.IsRejected || ev.SoftFailed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.onEvent(ctx, ev); err != nil {
		s.log.Error("evaluate push rules", "event_id", ev.EventID(), "room_id", ev.RoomID(), "error", err)
	}
}

func (s *Service) onEvent(ctx context.Context, ev *store.Event) error {
	roomID := ev.RoomID()
	rc := s.room(roomID)
	rc.mu.Lock()
	if !rc.loaded {
		if err := s.load(ctx, roomID, rc); err != nil {
			rc.mu.Unlock()
			return err
		}
	} else if ev.IsState() && cachedTypes[ev.Type()] {
		// A local user's event is the room's new current state; another
		// server's may have lost state resolution, and a join through
		// another server replaced the room's state: read it again.
		if s.isLocal(ev.Sender()) && !ev.Handshake {
			s.apply(rc, ev)
		} else if err := s.load(ctx, roomID, rc); err != nil {
			rc.mu.Unlock()
			return err
		}
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
	if p := rc.powerLevels(); p != nil {
		room.SenderPower = p.UserLevel(sender)
		if l, ok := p.NotificationLevel("room"); ok {
			room.Notifications["room"] = l
		}
	}
	senderName := rc.joined[sender]
	roomName, alias := rc.name, rc.alias
	rc.mu.Unlock()
	if len(recipients) == 0 {
		return nil
	}
	pev, err := ParseEvent(ev.JSON())
	if err != nil {
		return fmt.Errorf("decode event: %w", err)
	}
	users := make([]id.UserID, len(recipients))
	for i, m := range recipients {
		users[i] = m.UserID
	}
	rules, err := s.rulesOf(ctx, users)
	if err != nil {
		return err
	}
	s.m.evaluated.Add(float64(len(recipients)))
	var rows []store.PushAction
	var notices []notice
	thread := ""
	threadKnown := false
	now := time.Now().UnixMilli()
	for _, m := range recipients {
		res := Evaluate(rules[m.UserID], pev, room, m)
		if !res.Notify && !res.Highlight {
			continue
		}
		if !threadKnown {
			thread, threadKnown = s.threadOf(ctx, pev), true
		}
		actions, _ := json.Marshal(res.Actions())
		rows = append(rows, store.PushAction{UserID: m.UserID, RoomID: roomID, EventID: ev.EventID(), StreamPos: ev.StreamPos,
			Thread: thread, Notify: res.Notify, Highlight: res.Highlight, Actions: actions, TS: now})
		if res.Notify {
			notices = append(notices, notice{user: m.UserID, result: res})
		}
	}
	var j *job
	if len(notices) > 0 {
		j = &job{ev: ev, notices: notices, senderName: senderName, roomName: roomName, alias: alias}
	}
	if len(rows) == 0 && j == nil {
		return nil
	}
	s.w.mu.Lock()
	if s.w.running {
		s.w.pending = append(s.w.pending, written{rows: rows, job: j})
		s.w.enq++
		s.w.mu.Unlock()
		select {
		case s.w.kick <- struct{}{}:
		default:
		}
		return nil
	}
	s.w.mu.Unlock()
	if err := s.db.AddPushActions(ctx, rows); err != nil {
		return fmt.Errorf("store notifications: %w", err)
	}
	if j != nil {
		s.d.enqueue(*j)
	}
	return nil
}

// Flush waits until the notification rows of every event announced so
// far are written: /sync calls it before counting (the counts of an event
// are in the same response as the event, client-server API "Server
// behaviour").
func (s *Service) Flush(ctx context.Context) error {
	s.w.mu.Lock()
	target := s.w.enq
	for s.w.running && s.w.done < target {
		ch := s.w.doneCh
		s.w.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
		s.w.mu.Lock()
	}
	s.w.mu.Unlock()
	return nil
}

// write runs the writer until ctx ends; what is left then is written
// before it returns.
func (s *Service) write(ctx context.Context) {
	s.w.mu.Lock()
	s.w.running = true
	s.w.mu.Unlock()
	for {
		stop := false
		select {
		case <-ctx.Done():
			stop = true
		case <-s.w.kick:
		}
		s.w.mu.Lock()
		batch, upTo := s.w.pending, s.w.enq
		s.w.pending = nil
		if stop {
			s.w.running = false
		}
		s.w.mu.Unlock()
		if len(batch) > 0 {
			wctx := ctx
			if stop {
				var cancel context.CancelFunc
				wctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
			}
			var rows []store.PushAction
			for _, w := range batch {
				rows = append(rows, w.rows...)
			}
			if err := s.db.AddPushActions(wctx, rows); err != nil {
				s.log.Error("store notifications", "events", len(batch), "error", err)
			}
			for _, w := range batch {
				if w.job != nil {
					s.d.enqueue(*w.job)
				}
			}
		}
		s.w.mu.Lock()
		s.w.done = upTo
		close(s.w.doneCh)
		s.w.doneCh = make(chan struct{})
		s.w.mu.Unlock()
		if stop {
			return
		}
	}
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

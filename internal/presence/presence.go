// Package presence owns the presence of local users (client-server API
// "Presence"): online, unavailable or offline, a status message, and when
// the user was last active.
//
// It follows Synapse's model, the de-facto standard where the spec leaves
// room:
//   - A /sync with set_presence (Touch) brings an offline user online and
//     keeps it from going offline; it does not count as activity.
//   - Activity (Active: sending, typing, receipts; PUT presence online)
//     bumps last_active and brings an unavailable user back online.
//   - An online user inactive for IdleTimeout (5 minutes) becomes
//     unavailable; a user not syncing for SyncTimeout (30 seconds after its
//     last /sync ended) becomes offline. Run checks both.
//
// Only state and status message changes take a stream position and wake
// /sync (everyone: the audience of presence is not known cheaply). The
// timestamps are kept fresh to within a minute without waking anyone; the
// m.presence events /sync sends compute last_active_ago when they are
// read. So a client that keeps syncing writes at most once a minute.
//
// Changes of local users reach other servers through the OnChange hook
// (server wires it to the federation queue).
//
// Which syncs are in flight is known per process; a user no process sees
// syncing is set offline from the database's last sync time, a minute or
// two later than the in-process rule would.
//
// Imported by api/client and sync; wired by server.
package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/store"
)

// Presence states.
const (
	Online      = "online"
	Unavailable = "unavailable"
	Offline     = "offline"
)

// Config configures the service. Zero fields take the defaults.
type Config struct {
	// IdleTimeout: an online user inactive this long becomes unavailable.
	// Default 5 minutes (Synapse's IDLE_TIMER).
	IdleTimeout time.Duration
	// SyncTimeout: a user whose last /sync ended this long ago becomes
	// offline. Default 30 seconds (Synapse's SYNC_ONLINE_TIMEOUT).
	SyncTimeout time.Duration
	// MaxPoll is how long a /sync that only called Touch (and not
	// Syncing) is assumed to be still waiting. Default 30 seconds, the
	// timeout clients commonly long-poll with.
	MaxPoll time.Duration
	// Interval is how often Run checks for idle and gone users. Default
	// 5 seconds.
	Interval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// refresh is how stale the stored timestamps may get before Touch or
// Active writes them again, and how long after its last activity a user
// still counts as currently_active.
const refresh = time.Minute

// Service is the presence service.
type Service struct {
	cfg Config
	db  *store.DB
	n   *notify.Notifier
	log *slog.Logger

	mu sync.Mutex
	// syncs are the users this process has seen syncing: how many /syncs
	// are in flight and until when they count as syncing after that.
	syncs map[id.UserID]*syncing

	// active holds, per local user (id.UserID → int64, Unix ms), until
	// when Active has nothing to write: the stored state is not
	// unavailable and its last-active time is fresh. Every change by this
	// process forgets the user's entry first. Another process sharing the
	// database may change the state meanwhile; Active then notices it
	// within refresh.
	active sync.Map
	// writes counts the changes of any user's presence by this process:
	// Active keeps an entry only if none happened while it read.
	writes atomic.Int64

	// OnChange, if set, is called after each change of a user's state or
	// status message (the changes that wake /sync), remote users' included
	// (SetRemote): the callee tells them apart. It must not block. Set it
	// before the service is used.
	OnChange func(p Presence)
}

type syncing struct {
	inFlight int
	until    time.Time
}

// New returns the service.
func New(cfg Config, db *store.DB, n *notify.Notifier, log *slog.Logger) *Service {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = 30 * time.Second
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 30 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, db: db, n: n, log: log, syncs: map[id.UserID]*syncing{}}
}

// Presence is a user's presence as clients see it.
type Presence struct {
	UserID    id.UserID
	State     string
	StatusMsg string
	// LastActive is when the user was last active; zero if never.
	LastActive time.Time
	// CurrentlyActive: online and active within the last minute or two.
	CurrentlyActive bool
}

func (s *Service) fromStore(p store.Presence) Presence {
	out := Presence{UserID: p.UserID, State: p.State, StatusMsg: p.StatusMsg}
	if p.LastActiveTS > 0 {
		out.LastActive = time.UnixMilli(p.LastActiveTS)
		out.CurrentlyActive = p.State == Online && s.cfg.Now().Sub(out.LastActive) <= 2*refresh
	}
	return out
}

// content is the content of an m.presence event, and the body of GET
// /presence/{userId}/status.
type content struct {
	Presence        string  `json:"presence"`
	LastActiveAgo   *int64  `json:"last_active_ago,omitempty"`
	StatusMsg       *string `json:"status_msg,omitempty"`
	CurrentlyActive *bool   `json:"currently_active,omitempty"`
}

// Content returns the presence as the content of an m.presence event,
// with last_active_ago counted to now.
func (p Presence) Content(now time.Time) json.RawMessage {
	c := content{Presence: p.State}
	if !p.LastActive.IsZero() {
		ago := max(now.Sub(p.LastActive).Milliseconds(), 0)
		c.LastActiveAgo = &ago
	}
	if p.StatusMsg != "" {
		c.StatusMsg = &p.StatusMsg
	}
	if p.State == Online {
		c.CurrentlyActive = &p.CurrentlyActive
	}
	b, _ := json.Marshal(c)
	return b
}

// Get returns a user's presence: offline if it never had any.
func (s *Service) Get(ctx context.Context, user id.UserID) (Presence, error) {
	p, err := s.db.Presence(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
		return Presence{UserID: user, State: Offline}, nil
	}
	if err != nil {
		return Presence{}, fmt.Errorf("read presence of %s: %w", user, err)
	}
	return s.fromStore(p), nil
}

// GetFor is GET /presence/{userId}/status: the presence of user as
// observer may see it. Users see their own presence and that of users they
// share a joined room with; anyone else's is M_FORBIDDEN, as in Synapse.
func (s *Service) GetFor(ctx context.Context, observer, user id.UserID) (Presence, error) {
	if observer != user {
		shared, err := s.db.SharedRoomUsers(ctx, observer)
		if err != nil {
			return Presence{}, fmt.Errorf("users sharing a room with %s: %w", observer, err)
		}
		if !slices.Contains(shared, user) {
			return Presence{}, mxerr.Forbidden("You are not allowed to see their presence")
		}
	}
	return s.Get(ctx, user)
}

// Now is the service's clock, for Content.
func (s *Service) Now() time.Time { return s.cfg.Now() }

func validState(state string) error {
	switch state {
	case Online, Unavailable, Offline:
		return nil
	}
	return mxerr.InvalidParam("presence must be one of online, unavailable or offline")
}

// Set sets a user's presence state and status message (spec: PUT
// /presence/{userId}/status; the caller checked that it is the user's
// own). Setting online counts as activity. Errors: M_INVALID_PARAM for an
// unknown state.
func (s *Service) Set(ctx context.Context, user id.UserID, state, statusMsg string) error {
	if err := validState(state); err != nil {
		return err
	}
	now := s.cfg.Now()
	s.forgetActive(user)
	var p store.Presence
	pos, err := s.db.UpdatePresence(ctx, user, func(cur store.Presence, found bool) (store.Presence, bool, error) {
		cur.State, cur.StatusMsg = state, statusMsg
		if state == Online {
			cur.LastActiveTS = now.UnixMilli()
		}
		// Setting one's presence is a sign of life: it counts as a sync
		// so that the user does not go offline at the next check.
		cur.LastSyncTS = now.UnixMilli()
		p = cur
		return cur, true, nil
	})
	if err != nil {
		return fmt.Errorf("set presence of %s: %w", user, err)
	}
	if state != Offline {
		s.mu.Lock()
		s.extend(user, now.Add(s.cfg.MaxPoll+s.cfg.SyncTimeout))
		s.mu.Unlock()
	}
	s.wake(pos)
	s.changed(pos, p)
	return nil
}

// changed calls OnChange for a change written at stream position pos (0:
// nothing reported).
func (s *Service) changed(pos int64, p store.Presence) {
	if pos != 0 && s.OnChange != nil {
		s.OnChange(s.fromStore(p))
	}
}

// extend records that user counts as syncing until at least until. The
// caller holds s.mu.
func (s *Service) extend(user id.UserID, until time.Time) {
	sy := s.syncs[user]
	if sy == nil {
		sy = &syncing{}
		s.syncs[user] = sy
	}
	if until.After(sy.until) {
		sy.until = until
	}
}

func (s *Service) wake(pos int64) {
	if pos != 0 {
		s.n.WakeAll(pos)
	}
}

// Touch is called by /sync with its set_presence (state; "" means online)
// at the start of each request. offline leaves the presence alone (the
// client syncs without being seen). online brings an offline user online;
// unavailable sets an online or offline user unavailable. It writes only
// when the state changes or the stored last sync time is over a minute
// old, and wakes only when the state changes. Errors: M_INVALID_PARAM for
// an unknown state.
func (s *Service) Touch(ctx context.Context, user id.UserID, state string) error {
	if state == "" {
		state = Online
	}
	if err := validState(state); err != nil {
		return err
	}
	if state == Offline {
		return nil
	}
	now := s.cfg.Now()
	s.mu.Lock()
	s.extend(user, now.Add(s.cfg.MaxPoll+s.cfg.SyncTimeout))
	s.mu.Unlock()

	next := func(cur store.Presence, found bool) (store.Presence, bool, bool) {
		changed := false
		switch {
		case state == Online && cur.State == Offline,
			state == Unavailable && cur.State != Unavailable:
			changed = true
			cur.State = state
			if state == Online {
				cur.LastActiveTS = now.UnixMilli()
			}
		}
		stale := now.Sub(time.UnixMilli(cur.LastSyncTS)) > refresh
		if stale {
			cur.LastSyncTS = now.UnixMilli()
		}
		return cur, changed, changed || stale || !found
	}
	// Most syncs change nothing: decide on a read first.
	cur, err := s.db.Presence(ctx, user)
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("read presence of %s: %w", user, err)
	}
	if !found {
		cur = store.Presence{UserID: user, State: Offline}
	}
	if _, _, write := next(cur, found); !write {
		return nil
	}
	return s.update(ctx, user, func(cur store.Presence, found bool) (store.Presence, bool, bool) { return next(cur, found) })
}

// update writes a change decided by fn from the current presence: fn
// returns the new presence, whether it is a change /sync must report
// (state or status), and whether to write at all. A reported change takes
// a stream position and wakes everyone; timestamps alone are written in
// place.
func (s *Service) update(ctx context.Context, user id.UserID, fn func(cur store.Presence, found bool) (store.Presence, bool, bool)) error {
	s.forgetActive(user)
	var report, write bool
	var p store.Presence
	pos, err := s.db.UpdatePresence(ctx, user, func(cur store.Presence, found bool) (store.Presence, bool, error) {
		p, report, write = fn(cur, found)
		return p, report, nil
	})
	if err != nil {
		return fmt.Errorf("update presence of %s: %w", user, err)
	}
	if write && !report {
		if err := s.db.SetPresenceTimes(ctx, user, p.LastActiveTS, p.LastSyncTS); err != nil {
			return fmt.Errorf("update presence times of %s: %w", user, err)
		}
	}
	s.wake(pos)
	s.changed(pos, p)
	return nil
}

// Syncing marks a /sync of the user in flight until the returned func is
// called: while one is, the user does not go offline, and SyncTimeout
// counts from its end. /sync calls it around its long-poll, after Touch.
func (s *Service) Syncing(user id.UserID) (done func()) {
	s.mu.Lock()
	s.extend(user, time.Time{})
	s.syncs[user].inFlight++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			sy := s.syncs[user]
			sy.inFlight--
			if sy.inFlight == 0 {
				sy.until = s.cfg.Now().Add(s.cfg.SyncTimeout)
			}
		})
	}
}

// Active records activity of the user (spec "Last active ago": a
// pro-active event such as sending a message): it bumps last_active and
// brings an unavailable user back online. It writes at most once a minute
// while the user stays online.
func (s *Service) Active(ctx context.Context, user id.UserID) error {
	now := s.cfg.Now()
	// A send is a request like any other: skip the read while the stored
	// presence needs no write (it was 8% of a message send's CPU).
	if until, ok := s.active.Load(user); ok && now.UnixMilli() < until.(int64) {
		return nil
	}
	next := func(cur store.Presence, found bool) (store.Presence, bool, bool) {
		changed := cur.State == Unavailable
		stale := now.Sub(time.UnixMilli(cur.LastActiveTS)) > refresh
		if changed {
			cur.State = Online
		}
		if changed || stale {
			cur.LastActiveTS = now.UnixMilli()
		}
		return cur, changed, found && (changed || stale)
	}
	gen := s.writes.Load()
	keep := func(until time.Time) {
		if s.writes.Load() == gen {
			s.active.Store(user, until.UnixMilli())
		}
	}
	cur, err := s.db.Presence(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
		keep(now.Add(refresh)) // never had presence: offline stays offline
		return nil
	}
	if err != nil {
		return fmt.Errorf("read presence of %s: %w", user, err)
	}
	if _, _, write := next(cur, true); !write {
		keep(time.UnixMilli(cur.LastActiveTS).Add(refresh))
		return nil
	}
	return s.update(ctx, user, next)
}

// forgetActive drops what Active knows of user, before a change.
func (s *Service) forgetActive(user id.UserID) {
	s.writes.Add(1)
	s.active.Delete(user)
}

// Since returns the m.presence events of those of users whose presence
// changed at stream positions in (from, to]. With from 0 (an initial
// sync) offline users are left out, as Synapse does.
func (s *Service) Since(ctx context.Context, users []id.UserID, from, to int64) ([]json.RawMessage, error) {
	ps, err := s.db.PresenceSince(ctx, users, from, to)
	if err != nil {
		return nil, fmt.Errorf("read presence: %w", err)
	}
	now := s.cfg.Now()
	out := make([]json.RawMessage, 0, len(ps))
	for _, p := range ps {
		if from == 0 && p.State == Offline {
			continue
		}
		ev, err := json.Marshal(struct {
			Type    string          `json:"type"`
			Sender  id.UserID       `json:"sender"`
			Content json.RawMessage `json:"content"`
		}{"m.presence", p.UserID, s.fromStore(p).Content(now)})
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// Expire sets idle online users unavailable and users who stopped syncing
// offline. Run calls it every Interval; tests may call it directly.
func (s *Service) Expire(ctx context.Context) error {
	now := s.cfg.Now()
	// Users this process saw syncing: precise.
	var gone []id.UserID
	s.mu.Lock()
	for u, sy := range s.syncs {
		if sy.inFlight == 0 && now.After(sy.until) {
			gone = append(gone, u)
			delete(s.syncs, u)
		}
	}
	s.mu.Unlock()
	for _, u := range gone {
		err := s.update(ctx, u, func(cur store.Presence, found bool) (store.Presence, bool, bool) {
			if !found || cur.State == Offline {
				return cur, false, false
			}
			cur.State = Offline
			return cur, true, true
		})
		if err != nil {
			return err
		}
	}
	// Everyone else, from the stored times: the stored last sync time may
	// be up to refresh old while the user keeps syncing.
	activeBefore := now.Add(-s.cfg.IdleTimeout).UnixMilli()
	syncBefore := now.Add(-(s.cfg.MaxPoll + s.cfg.SyncTimeout + refresh)).UnixMilli()
	stale, err := s.db.StalePresence(ctx, activeBefore, syncBefore)
	if err != nil {
		return fmt.Errorf("find stale presence: %w", err)
	}
	for _, p := range stale {
		s.mu.Lock()
		_, seen := s.syncs[p.UserID]
		s.mu.Unlock()
		err := s.update(ctx, p.UserID, func(cur store.Presence, found bool) (store.Presence, bool, bool) {
			switch {
			case !found || cur.State == Offline:
				return cur, false, false
			case !seen && cur.LastSyncTS < syncBefore:
				// No process has seen it syncing for a while.
				cur.State = Offline
				return cur, true, true
			case cur.State == Online && cur.LastActiveTS < activeBefore:
				cur.State = Unavailable
				return cur, true, true
			}
			return cur, false, false
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Run sets idle and gone users' presence until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.Expire(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("expire presence", "err", err)
			}
		}
	}
}

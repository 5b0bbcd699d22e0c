// Package typing tracks who is typing in which room (client-server API
// "Typing Notifications"). Typing notifications are ephemeral: they live in
// this process's memory only and are never persisted. Every change of a
// room's typing users advances the notifier's typing position
// (notify.Notifier.WakeTyping) and wakes the room's waiting /sync requests,
// which read the room's current list with Typing.
//
// A room's last change position is kept after its last typer stopped, so
// that a /sync whose token is behind it still learns that nobody types any
// more (the client must replace its list, spec "Client behaviour").
//
// Changes of local users reach other servers through the OnChange hook
// (server wires it to the federation queue).
//
// Several processes sharing one database do not share typing state yet.
//
// Imported by api/client and sync; wired by server.
package typing

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/store"
)

// Defaults of Config.
const (
	DefaultTimeout = 30 * time.Second
	// MaxTimeout caps the timeout a client asks for, as Synapse does, so
	// that a client that goes away does not leave a user typing for long.
	MaxTimeout    = 120 * time.Second
	sweepInterval = 250 * time.Millisecond
	// pingInterval: while a user keeps typing, OnChange is called again
	// this often, so that other servers, which time typing out after a
	// minute (Synapse's FEDERATION_TIMEOUT), keep showing it (Synapse's
	// FEDERATION_PING_INTERVAL).
	pingInterval = 40 * time.Second
)

// Config configures the service. The zero value is the defaults.
type Config struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service is the typing notification service.
type Service struct {
	db  *store.DB
	n   *notify.Notifier
	now func() time.Time

	mu    sync.Mutex
	rooms map[id.RoomID]*room
	// busy are the rooms with someone typing, for the sweep.
	busy map[id.RoomID]struct{}

	// OnChange, if set, is called when a user starts or stops typing
	// through Set, when Expire stops a user's typing (remote users'
	// included: the callee tells them apart), and every pingInterval while
	// a user keeps calling Set, so that the change can be sent to other
	// servers. It is called with the service's lock held and must not
	// block. Set it before the service is used.
	OnChange func(roomID id.RoomID, user id.UserID, typing bool)
}

type room struct {
	until   map[id.UserID]time.Time // when each typer stops
	changed int64                   // typing position of the last change
	// pinged is when OnChange last said each typer types (nil until
	// needed).
	pinged map[id.UserID]time.Time
}

// onChange calls OnChange. The caller holds s.mu.
func (s *Service) onChange(roomID id.RoomID, r *room, user id.UserID, typing bool, now time.Time) {
	if s.OnChange == nil {
		return
	}
	s.OnChange(roomID, user, typing)
	if !typing {
		delete(r.pinged, user)
		return
	}
	if r.pinged == nil {
		r.pinged = map[id.UserID]time.Time{}
	}
	r.pinged[user] = now
}

// New returns the service.
func New(cfg Config, db *store.DB, n *notify.Notifier) *Service {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Service{db: db, n: n, now: now, rooms: map[id.RoomID]*room{}, busy: map[id.RoomID]struct{}{}}
}

// Set marks user as typing in the room for timeout (DefaultTimeout if 0
// or less, at most MaxTimeout), or as not typing (spec: PUT
// /rooms/{roomId}/typing/{userId}). The user must be joined to the room:
// otherwise M_FORBIDDEN. Repeating "typing" only extends the timeout and
// wakes nobody.
func (s *Service) Set(ctx context.Context, user id.UserID, roomID id.RoomID, typing bool, timeout time.Duration) error {
	m, err := s.db.UserMembership(ctx, roomID, user)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("membership of %s in %s: %w", user, roomID, err)
	}
	if err != nil || m.Membership != "join" {
		return mxerr.Forbidden("User %s is not in room %s", user, roomID)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	timeout = min(timeout, MaxTimeout)

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	r := s.rooms[roomID]
	if r == nil {
		r = &room{until: map[id.UserID]time.Time{}}
		s.rooms[roomID] = r
	}
	until, was := r.until[user]
	if typing {
		r.until[user] = now.Add(timeout)
		s.busy[roomID] = struct{}{}
		// A typer whose timeout passed before the sweep saw it counts as
		// new: Typing no longer listed it.
		if !was || !now.Before(until) {
			r.changed = s.n.WakeTyping(roomID)
			s.onChange(roomID, r, user, true, now)
		} else if now.Sub(r.pinged[user]) >= pingInterval {
			s.onChange(roomID, r, user, true, now)
		}
		return nil
	}
	if was {
		delete(r.until, user)
		if len(r.until) == 0 {
			delete(s.busy, roomID)
		}
		r.changed = s.n.WakeTyping(roomID)
		s.onChange(roomID, r, user, false, now)
	}
	return nil
}

// Typing returns the users typing in the room, sorted, and the typing
// position of the room's last change (0 if nobody ever typed in it since
// the process started). A /sync whose typing token is behind changed sends
// the list.
func (s *Service) Typing(roomID id.RoomID) (users []id.UserID, changed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[roomID]
	if r == nil {
		return nil, 0
	}
	now := s.now()
	for u, until := range r.until {
		if now.Before(until) {
			users = append(users, u)
		}
	}
	slices.Sort(users)
	return users, r.changed
}

// Expire stops the typing of every user whose timeout has passed and wakes
// the rooms that changed. Run calls it; tests may call it directly.
func (s *Service) Expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for roomID := range s.busy {
		r := s.rooms[roomID]
		n := len(r.until)
		for u, until := range r.until {
			if !now.Before(until) {
				delete(r.until, u)
				s.onChange(roomID, r, u, false, now)
			}
		}
		if len(r.until) == 0 {
			delete(s.busy, roomID)
		}
		if len(r.until) != n {
			r.changed = s.n.WakeTyping(roomID)
		}
	}
}

// Run expires typing notifications until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.Expire()
		}
	}
}

// Package notify wakes waiting /sync requests. It holds, per user and per
// room, the requests that are long-polling, and when something new is
// persisted it wakes exactly those that may care, passing the new position
// rather than the data: the woken request reads what changed since its
// token from the store (DESIGN-NOTES "Wake by position, not by polling").
//
// The race between "read nothing new" and "start waiting" is closed by
// Wait's since argument: a waiter whose since is already behind the
// notifier's position returns at once. Writers must therefore call Wake only
// after the write committed, with the position it committed at.
//
// No HTTP, no SQL. Imported by room, user, sync and the ephemeral streams;
// wired by server.
package notify

import (
	"context"
	"sync"

	"maunium.net/go/mautrix/id"
)

// Position is where the server's streams are. Stream counts every
// persisted change (events, account data, receipts, presence, to-device,
// device lists: one counter shared by all, see store.Tx.NextStreamPos);
// Typing counts typing changes, which are never persisted.
type Position struct {
	Stream int64
	Typing int64
}

// After reports whether p is ahead of q in any stream.
func (p Position) After(q Position) bool { return p.Stream > q.Stream || p.Typing > q.Typing }

// Max is the position that is ahead of or at both.
func (p Position) Max(q Position) Position {
	return Position{Stream: max(p.Stream, q.Stream), Typing: max(p.Typing, q.Typing)}
}

// Notifier tracks the current position and the waiting requests. The zero
// value is not usable; call New.
type Notifier struct {
	mu     sync.Mutex
	pos    Position
	byUser map[id.UserID]map[*waiter]struct{}
	byRoom map[id.RoomID]map[*waiter]struct{}
}

type waiter struct {
	user  id.UserID
	rooms []id.RoomID
	ch    chan struct{} // closed when woken
}

// New returns a notifier at position start (the store's current stream
// position at startup).
func New(start Position) *Notifier {
	return &Notifier{
		pos:    start,
		byUser: make(map[id.UserID]map[*waiter]struct{}),
		byRoom: make(map[id.RoomID]map[*waiter]struct{}),
	}
}

// Current is the latest position Wake was told of.
func (n *Notifier) Current() Position {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pos
}

// Change says what was written at a position and who may care: the users
// it concerns directly (a member event's target, an account data owner, the
// recipients of to-device messages) and the rooms it happened in (every
// waiter who listed the room is woken).
type Change struct {
	Users []id.UserID
	Rooms []id.RoomID
}

// Wake advances the stream position to pos (ignored if behind) and wakes
// the waiters of c's users and rooms.
func (n *Notifier) Wake(pos int64, c Change) {
	n.wake(func(p *Position) { p.Stream = max(p.Stream, pos) }, c)
}

// WakeTyping advances the typing position by one and wakes the waiters of
// the room. It returns the new typing position.
func (n *Notifier) WakeTyping(room id.RoomID) int64 {
	var t int64
	n.wake(func(p *Position) { p.Typing++; t = p.Typing }, Change{Rooms: []id.RoomID{room}})
	return t
}

// WakeAll advances the stream position and wakes every waiter: for changes
// whose audience is not known cheaply (presence, profile changes).
func (n *Notifier) WakeAll(pos int64) {
	n.mu.Lock()
	n.pos.Stream = max(n.pos.Stream, pos)
	var ws []*waiter
	for _, set := range n.byUser {
		for w := range set {
			ws = append(ws, w)
		}
	}
	for _, w := range ws {
		n.removeLocked(w)
	}
	n.mu.Unlock()
}

func (n *Notifier) wake(advance func(*Position), c Change) {
	n.mu.Lock()
	defer n.mu.Unlock()
	advance(&n.pos)
	var ws []*waiter
	for _, u := range c.Users {
		for w := range n.byUser[u] {
			ws = append(ws, w)
		}
	}
	for _, r := range c.Rooms {
		for w := range n.byRoom[r] {
			ws = append(ws, w)
		}
	}
	for _, w := range ws {
		n.removeLocked(w)
	}
}

// removeLocked unregisters w and closes its channel (once).
func (n *Notifier) removeLocked(w *waiter) {
	set := n.byUser[w.user]
	if _, ok := set[w]; !ok {
		return // already woken
	}
	delete(set, w)
	if len(set) == 0 {
		delete(n.byUser, w.user)
	}
	for _, r := range w.rooms {
		if rs := n.byRoom[r]; rs != nil {
			delete(rs, w)
			if len(rs) == 0 {
				delete(n.byRoom, r)
			}
		}
	}
	close(w.ch)
}

// Wait blocks until something for user or one of rooms happens after
// since, or ctx ends. It returns the position then current. If the
// notifier is already past since it returns at once: the caller read the
// store at since and may have missed what came after.
//
// rooms are the rooms whose events the caller wants to be woken for
// (usually the user's joined and invited rooms); membership changes of the
// user itself wake it through the user.
func (n *Notifier) Wait(ctx context.Context, user id.UserID, rooms []id.RoomID, since Position) Position {
	n.mu.Lock()
	if n.pos.After(since) {
		p := n.pos
		n.mu.Unlock()
		return p
	}
	w := &waiter{user: user, rooms: rooms, ch: make(chan struct{})}
	set := n.byUser[user]
	if set == nil {
		set = make(map[*waiter]struct{})
		n.byUser[user] = set
	}
	set[w] = struct{}{}
	for _, r := range rooms {
		rs := n.byRoom[r]
		if rs == nil {
			rs = make(map[*waiter]struct{})
			n.byRoom[r] = rs
		}
		rs[w] = struct{}{}
	}
	n.mu.Unlock()
	select {
	case <-w.ch:
	case <-ctx.Done():
		n.mu.Lock()
		n.removeLocked(w)
		n.mu.Unlock()
	}
	return n.Current()
}

// Waiting is the number of requests waiting, for metrics.
func (n *Notifier) Waiting() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, set := range n.byUser {
		c += len(set)
	}
	return c
}

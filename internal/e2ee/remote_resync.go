package e2ee

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/store"
)

// Resyncs of remote device lists: GET /user/devices/{userId} replaces a
// list that missed an update (server-server API, "Device Management").
// The worker takes the stale lists from the store (so a restart goes on
// where it stopped), one goroutine per server at most; a server that
// cannot be reached, or fails, is left alone for a growing backoff while
// the others go on.

const (
	// resyncPoll is how often the worker looks for stale lists without
	// being woken (lists marked by another process, backoffs ending).
	resyncPoll = 30 * time.Second
	// resyncBatch bounds the stale lists read per pass.
	resyncBatch = 1000
	// resyncServers bounds the servers resynced at once.
	resyncServers = 8
	// resyncTimeout bounds one resync, however many wait for it.
	resyncTimeout = time.Minute
)

// backoff is the retry state after failures.
type backoff struct {
	failures int
	until    time.Time
}

// fail records a failure and sets the next try.
func (r *remoteState) fail(b *backoff) {
	d := r.minBackoff << min(b.failures, 20)
	if d > r.maxBackoff || d <= 0 {
		d = r.maxBackoff
	}
	b.failures++
	// ±20 % so that servers failing together are not retried together.
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	b.until = r.now().Add(d)
}

// serverFailed and userFailed record a failed resync (or query) of a
// server, or of one user; serverOK and userOK a success.
func (r *remoteState) serverFailed(server string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.servers[server]
	if b == nil {
		b = &backoff{}
		r.servers[server] = b
	}
	r.fail(b)
}

func (r *remoteState) userFailed(user id.UserID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.users[user]
	if b == nil {
		b = &backoff{}
		r.users[user] = b
	}
	r.fail(b)
}

func (r *remoteState) serverOK(server string) {
	r.mu.Lock()
	delete(r.servers, server)
	r.mu.Unlock()
}

// heardFrom ends the backoff of server, which just sent a transaction,
// and wakes the worker if there was one.
func (r *remoteState) heardFrom(server string) {
	r.mu.Lock()
	_, ok := r.servers[server]
	delete(r.servers, server)
	r.mu.Unlock()
	if ok {
		r.kick()
	}
}

func (r *remoteState) userOK(user id.UserID) {
	r.mu.Lock()
	delete(r.users, user)
	r.mu.Unlock()
}

// serverWait and userWait return how long the server, or the user, is
// left alone yet (0: not).
func (r *remoteState) serverWait(server string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.servers[server]; b != nil {
		return max(b.until.Sub(r.now()), 0)
	}
	return 0
}

func (r *remoteState) userWait(user id.UserID) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.users[user]; b != nil {
		return max(b.until.Sub(r.now()), 0)
	}
	return 0
}

// errNotReady is the failure of a server in backoff.
var errNotReady = errors.New("not ready for retry")

// serverDown reports whether err means the server, not only the request,
// failed: it could not be reached, or answered 5xx or 429.
func serverDown(err error) bool {
	if errors.Is(err, federation.ErrUnreachable) || errors.Is(err, errNotReady) {
		return true
	}
	var re *federation.RemoteError
	return errors.As(err, &re) && (re.Status >= 500 || re.Status == 429)
}

// resyncLoop is the worker: it resyncs the stale lists until ctx ends.
func (s *Service) resyncLoop(ctx context.Context) error {
	s.remote.mu.Lock()
	s.remote.life = ctx
	s.remote.mu.Unlock()
	running := map[string]bool{}
	done := make(chan string, resyncServers)
	defer func() {
		for range running {
			<-done
		}
	}()
	for {
		next := s.resyncPass(ctx, running, done)
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.remote.wake:
		case server := <-done:
			delete(running, server)
		case <-t.C:
		}
		t.Stop()
	}
}

// resyncPass starts a resync goroutine for each server with stale lists
// that is not in backoff nor being resynced already, and returns when to
// look again.
func (s *Service) resyncPass(ctx context.Context, running map[string]bool, done chan<- string) time.Duration {
	next := resyncPoll
	users, err := s.db.StaleRemoteUsers(ctx, resyncBatch)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("read stale remote device lists", "err", err)
		}
		return next
	}
	byServer := map[string][]id.UserID{}
	var servers []string
	for _, u := range users {
		server := u.Homeserver()
		if byServer[server] == nil {
			servers = append(servers, server)
		}
		byServer[server] = append(byServer[server], u)
	}
	for _, server := range servers {
		if running[server] {
			continue
		}
		if w := s.remote.serverWait(server); w > 0 {
			next = min(next, w)
			continue
		}
		var due []id.UserID
		for _, u := range byServer[server] {
			if w := s.remote.userWait(u); w > 0 {
				next = min(next, w)
				continue
			}
			due = append(due, u)
		}
		if len(due) == 0 {
			continue
		}
		if len(running) >= resyncServers {
			break // a goroutine's end wakes the loop
		}
		running[server] = true
		go func() {
			s.resyncServer(ctx, server, due)
			done <- server
		}()
	}
	return next
}

// resyncServer resyncs users of server one after the other, stopping at
// the first failure of the server. Users who no longer share a room with
// a local user are forgotten instead (their server no longer sends their
// updates here).
func (s *Service) resyncServer(ctx context.Context, server string, users []id.UserID) {
	log := s.log.With("destination", server)
	shared, err := s.db.SharedRoomsSince(ctx, s.cfg.ServerName, users)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("resync remote device lists", "err", err)
		}
		return
	}
	var gone []id.UserID
	for _, u := range users {
		if _, ok := shared[u]; !ok {
			gone = append(gone, u)
		}
	}
	if len(gone) > 0 {
		if err := s.db.DeleteRemoteDeviceLists(ctx, gone); err != nil {
			log.Warn("forget remote device lists", "err", err)
		}
	}
	for _, u := range users {
		if _, ok := shared[u]; !ok {
			continue
		}
		_, err := s.resync(ctx, u)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			s.remote.serverOK(server)
			s.remote.userOK(u)
			continue
		}
		if serverDown(err) {
			s.remote.serverFailed(server)
			log.Warn("resync remote device list: server failed, backing off", "user_id", u, "err", err)
			return
		}
		s.remote.userFailed(u)
		log.Warn("resync remote device list", "user_id", u, "err", err)
	}
}

// resyncCall is a resync under way; done is closed when list and err are
// set.
type resyncCall struct {
	done chan struct{}
	list store.RemoteDeviceList
	err  error
}

// resync fetches user's device list from its server and stores it. A
// resync already under way for the user is waited for instead of starting
// another. The resync runs on the server's lifetime, not ctx: when ctx
// ends first, resync returns ctx's error and the resync goes on.
func (s *Service) resync(ctx context.Context, user id.UserID) (store.RemoteDeviceList, error) {
	r := &s.remote
	r.mu.Lock()
	c := r.flights[user]
	if c == nil {
		c = &resyncCall{done: make(chan struct{})}
		r.flights[user] = c
		life := r.life
		if life == nil {
			life = context.Background()
		}
		go func() {
			fctx, cancel := context.WithTimeout(life, resyncTimeout)
			c.list, c.err = s.doResync(fctx, user)
			cancel()
			r.mu.Lock()
			delete(r.flights, user)
			r.mu.Unlock()
			close(c.done)
		}()
	}
	r.mu.Unlock()
	select {
	case <-c.done:
		return c.list, c.err
	case <-ctx.Done():
		return store.RemoteDeviceList{}, ctx.Err()
	}
}

// doResync is resync's work.
func (s *Service) doResync(ctx context.Context, user id.UserID) (store.RemoteDeviceList, error) {
	pos, err := s.db.StreamPos(ctx)
	if err != nil {
		return store.RemoteDeviceList{}, err
	}
	resp, err := s.cfg.Remote.UserDevices(ctx, user.Homeserver(), user)
	if err != nil {
		return store.RemoteDeviceList{}, fmt.Errorf("get devices of %s: %w", user, err)
	}
	if resp.UserID != user {
		return store.RemoteDeviceList{}, fmt.Errorf("get devices of %s: the answer is for %q", user, resp.UserID)
	}
	l := listFromResponse(resp)
	l.FetchedPos = pos
	stale, err := s.db.ReplaceRemoteDeviceList(ctx, l)
	if err != nil {
		return store.RemoteDeviceList{}, err
	}
	s.remote.forgetSeen(user)
	if stale {
		s.remote.kick()
	}
	// Reported even when nothing changed, as Synapse does: the list was
	// not known, or an update was missed.
	if err := s.markDeviceListChanged(ctx, user); err != nil {
		// Stale again, so that the worker tries again (the change must
		// reach the clients).
		return store.RemoteDeviceList{}, errors.Join(err, s.db.MarkRemoteDeviceListsStale(ctx, []id.UserID{user}))
	}
	return l, nil
}

// listFromResponse makes a list of a /user/devices answer, dropping the
// keys that are not of the user's device or usage, and devices seen twice.
func listFromResponse(resp *federation.UserDevicesResponse) store.RemoteDeviceList {
	user := resp.UserID
	l := store.RemoteDeviceList{UserID: user, StreamID: resp.StreamID}
	seen := map[id.DeviceID]bool{}
	for _, d := range resp.Devices {
		if d.DeviceID == "" || seen[d.DeviceID] {
			continue
		}
		seen[d.DeviceID] = true
		keys := d.Keys
		if !present(keys) || !deviceKeysOf(keys, user, d.DeviceID) {
			keys = nil
		}
		l.Devices = append(l.Devices, store.RemoteDevice{DeviceID: d.DeviceID, DisplayName: d.DeviceDisplayName, Keys: keys})
	}
	slices.SortFunc(l.Devices, func(a, b store.RemoteDevice) int { return cmp.Compare(a.DeviceID, b.DeviceID) })
	if present(resp.MasterKey) && crossSigningKeyOf(resp.MasterKey, user, "master") {
		l.MasterKey = resp.MasterKey
	}
	if present(resp.SelfSigningKey) && crossSigningKeyOf(resp.SelfSigningKey, user, "self_signing") {
		l.SelfSigningKey = resp.SelfSigningKey
	}
	return l
}

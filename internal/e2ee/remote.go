package e2ee

// Users of other servers (server-server API, "Device Management" and
// "End-to-End Encryption").
//
// The device lists of remote users who share a room with a local user are
// cached (store/e2ee_remote.go) and kept up to date by the
// m.device_list_update and m.signing_key_update EDUs their servers send.
// An update applies when every update it follows (prev_id) is in the
// list; otherwise one was missed, the list is marked stale (persisted),
// and a worker (remote_resync.go) fetches the whole list again with GET
// /user/devices. A list that is complete, not stale, and fetched since the
// user last began sharing a room with a local user (see trusted) answers
// /keys/query without asking the remote (remote_query.go); the others are
// fetched live. Lists of users who share no room any more are forgotten
// when met (a query, the worker). This follows Synapse's
// DeviceListUpdater.

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/store"
)

// remoteState is the service's in-memory state for remote users.
type remoteState struct {
	// wake, when it holds a value, tells the resync worker that lists
	// were marked stale.
	wake chan struct{}

	mu sync.Mutex
	// life is Run's context (nil before Run): resyncs outlive the
	// request that started them, not the server.
	life context.Context
	// seen holds, per user, the stream_ids of the updates applied since
	// the last resync (the newest few): an update may follow any of them
	// (a server with several writers sends several prev_ids).
	seen map[id.UserID][]int64
	// flights are the resyncs under way, one per user.
	flights map[id.UserID]*resyncCall
	// servers and users hold the backoff after failed resyncs: per
	// server when it could not be reached or failed, per user otherwise.
	servers map[string]*backoff
	users   map[id.UserID]*backoff

	// minBackoff and maxBackoff bound the backoff; now is the clock
	// (tests replace them).
	minBackoff, maxBackoff time.Duration
	now                    func() time.Time
}

const (
	maxSeenUsers   = 10000 // users in remoteState.seen before it is cleared
	maxSeenPerUser = 16
)

func newRemoteState() remoteState {
	return remoteState{
		wake:       make(chan struct{}, 1),
		seen:       map[id.UserID][]int64{},
		flights:    map[id.UserID]*resyncCall{},
		servers:    map[string]*backoff{},
		users:      map[id.UserID]*backoff{},
		minBackoff: 30 * time.Second,
		maxBackoff: time.Hour,
		now:        time.Now,
	}
}

// kick wakes the resync worker.
func (r *remoteState) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// addSeen records that the update streamID of user was applied.
func (r *remoteState) addSeen(user id.UserID, streamID int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) >= maxSeenUsers {
		clear(r.seen)
	}
	s := append(r.seen[user], streamID)
	if len(s) > maxSeenPerUser {
		s = s[len(s)-maxSeenPerUser:]
	}
	r.seen[user] = s
}

func (r *remoteState) isSeen(user id.UserID, streamID int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.seen[user] {
		if v == streamID {
			return true
		}
	}
	return false
}

func (r *remoteState) forgetSeen(user id.UserID) {
	r.mu.Lock()
	delete(r.seen, user)
	r.mu.Unlock()
}

// decide says what to do with the update streamID (following prevIDs) of
// user's list in state st (found false: no list), as Synapse does: an
// update applies when each update it follows is known, that is, is the
// newest applied, one applied since the last resync, or in the last
// resync's list; one that the list already holds is dropped; anything
// else means updates were missed (also an update with no prev_id: the
// spec allows it only for the first of a sequence, which this server has
// not seen). So may a list fetched before the user last started sharing
// a room with a local user (sharedSince, see trusted).
func (r *remoteState) decide(user id.UserID, st store.RemoteListState, found bool, sharedSince, streamID int64, prevIDs []int64) store.RemoteUpdateAction {
	if !found || !trusted(st, sharedSince) {
		return store.RemoteResync
	}
	if streamID <= st.ResyncStreamID || streamID == st.StreamID || r.isSeen(user, streamID) {
		return store.RemoteIgnore
	}
	if len(prevIDs) == 0 {
		return store.RemoteResync
	}
	for _, p := range prevIDs {
		if p != st.StreamID && p > st.ResyncStreamID && !r.isSeen(user, p) {
			return store.RemoteResync
		}
	}
	return store.RemoteApply
}

// runRemote runs the resyncs of remote device lists until ctx ends.
func (s *Service) runRemote(ctx context.Context) error {
	if s.cfg.Remote == nil {
		<-ctx.Done()
		return nil
	}
	return s.resyncLoop(ctx)
}

// queryRemote adds to out the keys of the users of other servers in want
// (empty device list: all devices), and to out.Failures the servers that
// could not be asked before ctx ended.
func (s *Service) queryRemote(ctx context.Context, want map[id.UserID][]id.DeviceID, out *QueryResponse) {
	if s.cfg.Remote == nil {
		return
	}
	s.queryRemoteUsers(ctx, want, out)
}

// claimRemote adds to out one-time keys claimed from other servers for
// the users in want, and to out.Failures the servers that could not be
// asked.
func (s *Service) claimRemote(ctx context.Context, want map[id.UserID]map[id.DeviceID]string, out *ClaimResponse) {
	if s.cfg.Remote == nil {
		return
	}
	s.claimRemoteUsers(ctx, want, out)
}

// ReceiveDeviceListUpdate applies an m.device_list_update EDU from origin
// (server-server API, "Device Management"). Updates of users who are not
// of origin, or who share no room with a local user, are ignored; keys
// that are not the device's are dropped. An update that cannot be applied
// (one was missed) marks the list for a resync. Local users who share a
// room with the user see the change in /sync.
func (s *Service) ReceiveDeviceListUpdate(ctx context.Context, origin string, u federation.DeviceListUpdate) error {
	log := s.log.With("origin", origin, "user_id", u.UserID, "device_id", u.DeviceID)
	if !s.remoteUserOf(u.UserID, origin) || u.DeviceID == "" {
		log.Debug("device list update ignored: not a device of a user of the origin")
		return nil
	}
	s.remote.heardFrom(origin)
	since, ok, err := s.sharedSince(ctx, u.UserID)
	if err != nil || !ok {
		if err == nil {
			log.Debug("device list update ignored: the user shares no room with this server")
		}
		return err
	}
	keys := u.Keys
	if !present(keys) {
		keys = nil
	} else if !deviceKeysOf(keys, u.UserID, u.DeviceID) {
		log.Debug("device list update: keys of another device dropped")
		keys = nil
	}
	up := store.RemoteDeviceUpdate{
		UserID: u.UserID, DeviceID: u.DeviceID, DisplayName: u.DeviceDisplayName,
		Keys: keys, Deleted: u.Deleted, StreamID: u.StreamID,
	}
	act, err := s.db.ApplyRemoteDeviceUpdate(ctx, up, func(st store.RemoteListState, found bool) store.RemoteUpdateAction {
		return s.remote.decide(u.UserID, st, found, since, u.StreamID, u.PrevID)
	})
	if err != nil {
		return err
	}
	switch act {
	case store.RemoteIgnore:
		log.Debug("device list update ignored: already applied", "stream_id", u.StreamID)
		return nil
	case store.RemoteApply:
		s.remote.addSeen(u.UserID, u.StreamID)
	case store.RemoteResync:
		log.Debug("device list update: resync needed", "stream_id", u.StreamID, "prev_id", u.PrevID)
		s.remote.kick()
	}
	return s.markDeviceListChanged(ctx, u.UserID)
}

// ReceiveSigningKeyUpdate applies an m.signing_key_update EDU from origin
// (server-server API, "End-to-End Encryption"): the user's master and
// self-signing keys, when given, replace the cached ones. Keys that are
// not the user's, or not of their usage, are dropped; users who are not of
// origin, or who share no room with a local user, are ignored.
func (s *Service) ReceiveSigningKeyUpdate(ctx context.Context, origin string, u federation.SigningKeyUpdate) error {
	log := s.log.With("origin", origin, "user_id", u.UserID)
	if !s.remoteUserOf(u.UserID, origin) {
		log.Debug("signing key update ignored: not a user of the origin")
		return nil
	}
	s.remote.heardFrom(origin)
	master, ssk := u.MasterKey, u.SelfSigningKey
	if present(master) && !crossSigningKeyOf(master, u.UserID, "master") {
		log.Debug("signing key update: master key of another user or usage dropped")
		master = nil
	}
	if present(ssk) && !crossSigningKeyOf(ssk, u.UserID, "self_signing") {
		log.Debug("signing key update: self-signing key of another user or usage dropped")
		ssk = nil
	}
	if !present(master) && !present(ssk) {
		return nil
	}
	if _, ok, err := s.sharedSince(ctx, u.UserID); err != nil || !ok {
		if err == nil {
			log.Debug("signing key update ignored: the user shares no room with this server")
		}
		return err
	}
	created, err := s.db.SetRemoteCrossSigningKeys(ctx, u.UserID, master, ssk)
	if err != nil {
		return err
	}
	if created {
		s.remote.kick()
	}
	return s.markDeviceListChanged(ctx, u.UserID)
}

// remoteUserOf reports whether user is a valid user ID of server, which
// is not this one.
func (s *Service) remoteUserOf(user id.UserID, server string) bool {
	_, hs, err := user.Parse()
	return err == nil && hs == server && !s.isLocal(user)
}

// sharedSince reports whether user is joined to a room a local user is
// joined to, and since when (a stream position) they have shared one
// (store.DB.SharedRoomsSince).
func (s *Service) sharedSince(ctx context.Context, user id.UserID) (int64, bool, error) {
	got, err := s.db.SharedRoomsSince(ctx, s.cfg.ServerName, []id.UserID{user})
	since, ok := got[user]
	return since, ok, err
}

// trusted reports whether a list in state st is complete and up to date
// for a user who has shared a room with a local user since sharedSince.
// Its server sends updates only while the user shares a room with this
// server's users: a list fetched before the sharing last began may lack
// what changed in a break (Synapse forgets the list when the last shared
// room is left; here the memberships tell).
func trusted(st store.RemoteListState, sharedSince int64) bool {
	return st.Tracked() && sharedSince <= st.FetchedPos
}

// remoteKeyHead is what is checked of a key object of another server.
type remoteKeyHead struct {
	UserID   id.UserID   `json:"user_id"`
	DeviceID id.DeviceID `json:"device_id"`
	Usage    []string    `json:"usage"`
}

// deviceKeysOf reports whether raw is a device_keys object of user's
// device.
func deviceKeysOf(raw json.RawMessage, user id.UserID, device id.DeviceID) bool {
	var h remoteKeyHead
	return json.Unmarshal(raw, &h) == nil && h.UserID == user && h.DeviceID == device
}

// crossSigningKeyOf reports whether raw is a cross-signing key of user
// with usage.
func crossSigningKeyOf(raw json.RawMessage, user id.UserID, usage string) bool {
	var h remoteKeyHead
	if json.Unmarshal(raw, &h) != nil || h.UserID != user {
		return false
	}
	for _, u := range h.Usage {
		if u == usage {
			return true
		}
	}
	return false
}

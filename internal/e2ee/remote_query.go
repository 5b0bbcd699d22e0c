package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/store"
)

// Key queries and claims for users of other servers (client-server API,
// POST /keys/query and /keys/claim; server-server API, "End-to-End
// Encryption"). Each server is asked once, all in parallel, within the
// client's timeout; a server that fails or does not answer in time is
// named in failures, as {"status", "message"} (Synapse's form), never with
// what it answered.

// queryResyncs bounds the device list fetches a query makes at once to
// one server.
const queryResyncs = 4

// askParallel bounds the servers a query or claim asks at once.
const askParallel = 32

// queryAnswer is what one server gave to a key query.
type queryAnswer struct {
	lists []store.RemoteDeviceList          // lists fetched with /user/devices
	asked map[id.UserID][]id.DeviceID       // what was asked with /user/keys/query
	resp  *federation.UserKeysQueryResponse // its answer
	err   error                             // the server's failure
}

// queryRemoteUsers is queryRemote. The tracked lists of users sharing a
// room with a local user answer from the cache; the other users sharing
// one have their lists fetched (GET /user/devices) and cached, as Synapse
// does on first sight, so that later updates apply; the rest are asked
// with POST /user/keys/query. Keys that are not of the user asked for are
// dropped.
func (s *Service) queryRemoteUsers(ctx context.Context, want map[id.UserID][]id.DeviceID, out *QueryResponse) {
	var users []id.UserID
	for u := range want {
		if !s.isLocal(u) && u.Homeserver() != "" {
			users = append(users, u)
		}
	}
	if len(users) == 0 {
		return
	}
	slices.Sort(users)
	initQueryResponse(out)
	shared, err := s.db.SharedRoomsSince(ctx, s.cfg.ServerName, users)
	if err != nil {
		// Everyone is asked live, and no list forgotten.
		s.log.Warn("query remote keys: shared rooms", "err", err)
		shared = nil
	}
	lists, states, err := s.db.RemoteDeviceLists(ctx, users)
	if err != nil {
		s.log.Warn("query remote keys: cached device lists", "err", err)
		lists, states = nil, nil
	}
	resyncs := map[string][]id.UserID{}
	queries := map[string]map[id.UserID][]id.DeviceID{}
	var gone []id.UserID
	var serverNames []string
	addServer := func(server string) {
		if resyncs[server] == nil && queries[server] == nil {
			serverNames = append(serverNames, server)
		}
	}
	for _, u := range users {
		server := u.Homeserver()
		st, cached := states[u]
		since, isShared := shared[u]
		switch {
		case isShared && cached && trusted(st, since):
			addCachedList(out, want[u], lists[u])
		case isShared:
			addServer(server)
			resyncs[server] = append(resyncs[server], u)
		default:
			if cached && shared != nil {
				gone = append(gone, u) // its updates no longer come here
			}
			addServer(server)
			if queries[server] == nil {
				queries[server] = map[id.UserID][]id.DeviceID{}
			}
			queries[server][u] = want[u]
		}
	}
	if len(gone) > 0 {
		if err := s.db.DeleteRemoteDeviceLists(ctx, gone); err != nil {
			s.log.Warn("query remote keys: forget device lists", "err", err)
		}
	}
	answers := askServers(ctx, serverNames, func(ctx context.Context, server string) queryAnswer {
		return s.queryServer(ctx, server, want, resyncs[server], queries[server])
	})
	for _, server := range serverNames {
		a, ok := answers[server]
		if !ok {
			out.Failures[server] = remoteFailure(context.DeadlineExceeded)
			continue
		}
		for _, l := range a.lists {
			addCachedList(out, want[l.UserID], l)
		}
		if a.resp != nil {
			addQueryAnswer(out, server, a.asked, a.resp)
		}
		if a.err != nil {
			out.Failures[server] = remoteFailure(a.err)
		}
	}
}

// queryServer asks server for the keys of its users: the device lists of
// resync (cached), and the keys of query (also those of resync whose list
// could not be fetched while the server answers).
func (s *Service) queryServer(ctx context.Context, server string, want map[id.UserID][]id.DeviceID, resync []id.UserID, query map[id.UserID][]id.DeviceID) queryAnswer {
	var a queryAnswer
	if s.remote.serverWait(server) > 0 {
		a.err = errNotReady
		return a
	}
	failed := func(err error) {
		a.err = err
		if ctx.Err() == nil && serverDown(err) {
			s.remote.serverFailed(server)
		}
	}
	asked := map[id.UserID][]id.DeviceID{}
	for u, d := range query {
		asked[u] = d
	}
	if len(resync) > 0 {
		type result struct {
			list store.RemoteDeviceList
			err  error
		}
		results := make([]result, len(resync))
		sem := make(chan struct{}, queryResyncs)
		var wg sync.WaitGroup
		for i, u := range resync {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				l, err := s.resync(ctx, u)
				results[i] = result{l, err}
			}()
		}
		wg.Wait()
		var down error
		for i, r := range results {
			switch {
			case r.err == nil:
				a.lists = append(a.lists, r.list)
			case ctx.Err() != nil || serverDown(r.err):
				down = r.err
			default:
				// The list could not be had: ask for the keys.
				s.log.Debug("query remote keys: device list", "user_id", resync[i], "err", r.err)
				asked[resync[i]] = want[resync[i]]
			}
		}
		if down != nil {
			failed(down)
			return a
		}
	}
	if len(asked) > 0 {
		req := federation.UserKeysQueryRequest{DeviceKeys: make(map[id.UserID][]id.DeviceID, len(asked))}
		for u, d := range asked {
			if d == nil {
				d = []id.DeviceID{} // [] (all devices), not null
			}
			req.DeviceKeys[u] = d
		}
		resp, err := s.cfg.Remote.UserKeysQuery(ctx, server, req)
		if err != nil {
			failed(err)
			return a
		}
		a.asked, a.resp = asked, resp
	}
	s.remote.serverOK(server)
	return a
}

// addCachedList adds the keys of the devices of l (only those in devices
// when it is not empty) and its cross-signing keys to out.
func addCachedList(out *QueryResponse, devices []id.DeviceID, l store.RemoteDeviceList) {
	m := out.DeviceKeys[l.UserID]
	if m == nil {
		m = map[id.DeviceID]json.RawMessage{}
		out.DeviceKeys[l.UserID] = m
	}
	for _, d := range l.Devices {
		if d.Keys == nil || (len(devices) > 0 && !slices.Contains(devices, d.DeviceID)) {
			continue
		}
		m[d.DeviceID] = withDisplayName(d.Keys, d.DisplayName)
	}
	if l.MasterKey != nil {
		out.MasterKeys[l.UserID] = l.MasterKey
	}
	if l.SelfSigningKey != nil {
		out.SelfSigningKeys[l.UserID] = l.SelfSigningKey
	}
}

// addQueryAnswer adds to out what server answered to a key query for
// asked: only keys of the users asked, which are server's, and of their
// devices asked.
func addQueryAnswer(out *QueryResponse, server string, asked map[id.UserID][]id.DeviceID, resp *federation.UserKeysQueryResponse) {
	for u, devs := range resp.DeviceKeys {
		want, ok := asked[u]
		if !ok || u.Homeserver() != server {
			continue
		}
		m := out.DeviceKeys[u]
		if m == nil {
			m = map[id.DeviceID]json.RawMessage{}
			out.DeviceKeys[u] = m
		}
		for d, k := range devs {
			if (len(want) > 0 && !slices.Contains(want, d)) || !present(k) || !deviceKeysOf(k, u, d) {
				continue
			}
			m[d] = k
		}
	}
	for u, k := range resp.MasterKeys {
		if _, ok := asked[u]; ok && u.Homeserver() == server && present(k) && crossSigningKeyOf(k, u, "master") {
			out.MasterKeys[u] = k
		}
	}
	for u, k := range resp.SelfSigningKeys {
		if _, ok := asked[u]; ok && u.Homeserver() == server && present(k) && crossSigningKeyOf(k, u, "self_signing") {
			out.SelfSigningKeys[u] = k
		}
	}
}

// claimAnswer is what one server gave to a key claim.
type claimAnswer struct {
	resp *federation.UserKeysClaimResponse
	err  error
}

// claimRemoteUsers is claimRemote: one POST /user/keys/claim per server.
// Keys of users or devices not asked for, or of another algorithm, are
// dropped.
func (s *Service) claimRemoteUsers(ctx context.Context, want map[id.UserID]map[id.DeviceID]string, out *ClaimResponse) {
	byServer := map[string]map[id.UserID]map[id.DeviceID]string{}
	var servers []string
	for u, devs := range want {
		server := u.Homeserver()
		if s.isLocal(u) || server == "" || len(devs) == 0 {
			continue
		}
		if byServer[server] == nil {
			byServer[server] = map[id.UserID]map[id.DeviceID]string{}
			servers = append(servers, server)
		}
		byServer[server][u] = devs
	}
	if len(servers) == 0 {
		return
	}
	slices.Sort(servers)
	if out.OneTimeKeys == nil {
		out.OneTimeKeys = map[id.UserID]map[id.DeviceID]map[string]json.RawMessage{}
	}
	if out.Failures == nil {
		out.Failures = map[string]json.RawMessage{}
	}
	answers := askServers(ctx, servers, func(ctx context.Context, server string) claimAnswer {
		if s.remote.serverWait(server) > 0 {
			return claimAnswer{err: errNotReady}
		}
		resp, err := s.cfg.Remote.UserKeysClaim(ctx, server, federation.UserKeysClaimRequest{OneTimeKeys: byServer[server]})
		if err != nil {
			if ctx.Err() == nil && serverDown(err) {
				s.remote.serverFailed(server)
			}
			return claimAnswer{err: err}
		}
		s.remote.serverOK(server)
		return claimAnswer{resp: resp}
	})
	for _, server := range servers {
		a, ok := answers[server]
		switch {
		case !ok:
			out.Failures[server] = remoteFailure(context.DeadlineExceeded)
			continue
		case a.err != nil:
			out.Failures[server] = remoteFailure(a.err)
			continue
		}
		asked := byServer[server]
		for u, devs := range a.resp.OneTimeKeys {
			askedDevs, ok := asked[u]
			if !ok {
				continue
			}
			for d, keys := range devs {
				alg, ok := askedDevs[d]
				if !ok {
					continue
				}
				for keyID, k := range keys {
					if !strings.HasPrefix(keyID, alg+":") || !present(k) {
						continue
					}
					if out.OneTimeKeys[u] == nil {
						out.OneTimeKeys[u] = map[id.DeviceID]map[string]json.RawMessage{}
					}
					if out.OneTimeKeys[u][d] == nil {
						out.OneTimeKeys[u][d] = map[string]json.RawMessage{}
					}
					out.OneTimeKeys[u][d][keyID] = k
				}
			}
		}
	}
}

// askServers runs ask for each server in parallel (at most askParallel
// at once) and returns the answers given before ctx ended (the others are
// missing). An ask still running then ends soon after, with ctx.
func askServers[T any](ctx context.Context, servers []string, ask func(ctx context.Context, server string) T) map[string]T {
	type answer struct {
		server string
		v      T
	}
	ch := make(chan answer, len(servers)) // asks never block on sending
	sem := make(chan struct{}, askParallel)
	for _, server := range servers {
		go func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			ch <- answer{server, ask(ctx, server)}
		}()
	}
	out := make(map[string]T, len(servers))
	for range servers {
		select {
		case a := <-ch:
			out[a.server] = a.v
		case <-ctx.Done():
			for {
				select {
				case a := <-ch:
					out[a.server] = a.v
				default:
					return out
				}
			}
		}
	}
	return out
}

// initQueryResponse makes out's maps that are nil.
func initQueryResponse(out *QueryResponse) {
	if out.DeviceKeys == nil {
		out.DeviceKeys = map[id.UserID]map[id.DeviceID]json.RawMessage{}
	}
	if out.MasterKeys == nil {
		out.MasterKeys = map[id.UserID]json.RawMessage{}
	}
	if out.SelfSigningKeys == nil {
		out.SelfSigningKeys = map[id.UserID]json.RawMessage{}
	}
	if out.UserSigningKeys == nil {
		out.UserSigningKeys = map[id.UserID]json.RawMessage{}
	}
	if out.Failures == nil {
		out.Failures = map[string]json.RawMessage{}
	}
}

// remoteFailure is the failures entry of a server that failed with err:
// {"status", "message"} as Synapse gives, without what the server said.
func remoteFailure(err error) json.RawMessage {
	status, msg := 503, "Could not reach the server"
	var re *federation.RemoteError
	switch {
	case errors.Is(err, errNotReady):
		msg = "Not ready for retry"
	case errors.As(err, &re):
		status, msg = re.Status, fmt.Sprintf("The server answered with HTTP status %d", re.Status)
		if status < 400 {
			status = 502
		}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		msg = "The server did not answer in time"
	}
	b, _ := json.Marshal(map[string]any{"status": status, "message": msg})
	return b
}

// withDisplayName returns the device keys keys with
// unsigned.device_display_name set to name (keys as they are when name is
// "" or keys is not an object).
func withDisplayName(keys json.RawMessage, name string) json.RawMessage {
	b, err := withExtras(keys, nil, name)
	if err != nil {
		return keys
	}
	return b
}

package e2ee

// Device keys, one-time and fallback keys of local devices (client-server
// API, "End-to-End Encryption": POST /keys/upload, /keys/query,
// /keys/claim) and their federation side (server-server API, "End-to-End
// Encryption": /user/keys/query, /user/keys/claim; "Device Management":
// /user/devices). Cross-signing is in keys_crosssign.go, the device list
// stream in devicelists.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// Limits of one request. Clients upload a few dozen one-time keys at a
// time (matrix-rust-sdk: up to 50); the caps bound the work of one request.
const (
	maxUploadKeys  = 1000  // one-time keys, and fallback keys, per upload
	maxKeyBytes    = 4096  // one key object
	maxQueryDevice = 10000 // devices (or users asked for all) per query or claim
	defaultTimeout = 10 * time.Second
)

// UploadRequest is the body of POST /_matrix/client/v3/keys/upload.
type UploadRequest struct {
	DeviceKeys   json.RawMessage            `json:"device_keys,omitempty"`
	OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys,omitempty"`
	FallbackKeys map[string]json.RawMessage `json:"fallback_keys,omitempty"`
}

// UploadKeys stores the keys a device uploads and returns its unclaimed
// one-time key counts per algorithm (signed_curve25519 always present, as
// Synapse). New or changed device keys are a device list change.
//
// Errors: M_INVALID_PARAM when device_keys names another user or device,
// M_BAD_JSON when it lacks algorithms, keys or signatures,
// when a one-time key ID is uploaded again with other content (the same
// content is ignored), or for a malformed key ID; M_BAD_JSON for keys that
// are not JSON objects (or strings, for unsigned one-time keys);
// M_TOO_LARGE beyond the limits.
func (s *Service) UploadKeys(ctx context.Context, user id.UserID, device id.DeviceID, req UploadRequest) (map[string]int, error) {
	var dk []byte
	if len(req.DeviceKeys) > 0 && string(req.DeviceKeys) != "null" {
		c, err := canonicalObject(req.DeviceKeys, "device_keys")
		if err != nil {
			return nil, err
		}
		var head deviceKeysHead
		if err := json.Unmarshal(c, &head); err != nil {
			return nil, mxerr.BadJSON("device_keys: %v", err)
		}
		if head.UserID != user || head.DeviceID != device {
			return nil, mxerr.InvalidParam("device_keys must be those of %s's device %s, not of %s's device %s",
				user, device, head.UserID, head.DeviceID)
		}
		// The spec's DeviceKeys requires them all (Complement TestUploadKey
		// "Rejects invalid device keys").
		var req struct {
			Algorithms []string          `json:"algorithms"`
			Keys       map[string]string `json:"keys"`
			Signatures json.RawMessage   `json:"signatures"`
		}
		if err := json.Unmarshal(c, &req); err != nil || req.Algorithms == nil || req.Keys == nil || len(req.Signatures) == 0 || req.Signatures[0] != '{' {
			return nil, mxerr.BadJSON("device_keys must have algorithms, keys and signatures")
		}
		if len(c) > maxKeyBytes {
			return nil, mxerr.TooLarge("device_keys is larger than %d bytes", maxKeyBytes)
		}
		dk = c
	}
	otks, err := parseOneTimeKeys(req.OneTimeKeys, "one_time_keys")
	if err != nil {
		return nil, err
	}
	fbks, err := parseOneTimeKeys(req.FallbackKeys, "fallback_keys")
	if err != nil {
		return nil, err
	}
	defer s.pos.keysChanged(user)
	err = s.changeDevices(ctx, user, func(tx *store.Tx) ([]id.DeviceID, bool, error) {
		var changed bool
		if dk != nil {
			old, err := tx.DeviceKeysJSON(ctx, user, device)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, false, err
			}
			if !bytes.Equal(old, dk) {
				if err := tx.SetDeviceKeys(ctx, user, device, dk); err != nil {
					return nil, false, err
				}
				changed = true
			}
		}
		if err := tx.AddOneTimeKeys(ctx, user, device, otks); err != nil {
			var ce *store.KeyConflictError
			if errors.As(err, &ce) {
				return nil, false, mxerr.InvalidParam("One time key %s:%s already exists. Old key: %s; new key: %s",
					ce.Algorithm, ce.KeyID, ce.Old, ce.New)
			}
			return nil, false, err
		}
		if err := tx.SetFallbackKeys(ctx, user, device, fbks); err != nil {
			return nil, false, err
		}
		if !changed {
			return nil, false, nil
		}
		return []id.DeviceID{device}, false, nil
	})
	if err != nil {
		return nil, err
	}
	counts, _, err := s.db.KeyCounts(ctx, user, device)
	if err != nil {
		return nil, err
	}
	if _, ok := counts["signed_curve25519"]; !ok {
		counts["signed_curve25519"] = 0
	}
	return counts, nil
}

// parseOneTimeKeys checks one-time or fallback keys ("algorithm:key_id" →
// a signed key object, or a string for unsigned keys).
func parseOneTimeKeys(in map[string]json.RawMessage, what string) ([]store.OneTimeKey, error) {
	if len(in) > maxUploadKeys {
		return nil, mxerr.TooLarge("at most %d %s per upload", maxUploadKeys, what)
	}
	out := make([]store.OneTimeKey, 0, len(in))
	for name, raw := range in {
		alg, keyID, ok := strings.Cut(name, ":")
		if !ok || alg == "" || keyID == "" {
			return nil, mxerr.InvalidParam("%s: %q is not algorithm:key_id", what, name)
		}
		c, err := canonicalKey(raw)
		if err != nil {
			return nil, mxerr.BadJSON("%s %s: %v", what, name, err)
		}
		if len(c) > maxKeyBytes {
			return nil, mxerr.TooLarge("%s %s is larger than %d bytes", what, name, maxKeyBytes)
		}
		out = append(out, store.OneTimeKey{Algorithm: alg, KeyID: keyID, JSON: c})
	}
	return out, nil
}

// canonicalKey is a one-time key object or string in canonical form.
func canonicalKey(raw []byte) ([]byte, error) {
	c, err := canonicalObject(raw, "key")
	if err == nil {
		return c, nil
	}
	var str string
	if json.Unmarshal(raw, &str) == nil {
		return json.Marshal(str)
	}
	return nil, errors.New("a key must be an object or a string")
}

// KeyCounts returns the device's unclaimed one-time keys per algorithm and
// the algorithms of its unused fallback keys (sync.OneTimeKeys).
func (s *Service) KeyCounts(ctx context.Context, user id.UserID, device id.DeviceID) (map[string]int, []string, error) {
	if s.cfg.SoleWriter {
		if counts, fallback, ok := s.pos.cachedKeyCounts(user, device); ok {
			return maps.Clone(counts), slices.Clone(fallback), nil
		}
	}
	gen := s.pos.keyGeneration(user)
	counts, fallback, err := s.db.KeyCounts(ctx, user, device)
	if err != nil {
		return nil, nil, err
	}
	if fallback == nil {
		fallback = []string{}
	}
	s.pos.keyCountsRead(user, device, gen, maps.Clone(counts), slices.Clone(fallback))
	return counts, fallback, nil
}

// Query answers POST /_matrix/client/v3/keys/query for requester: the
// device keys of the devices in want (an empty list: all the user's
// devices), with their display names and the signatures of their owner's
// self-signing key; the users' master and self-signing keys with the
// signatures requester made on them; requester's own user-signing key.
// Users of other servers are asked within timeout (0: 10 s); the servers
// that did not answer are in failures.
func (s *Service) Query(ctx context.Context, requester id.UserID, want map[id.UserID][]id.DeviceID, timeout time.Duration) (*QueryResponse, error) {
	n := 0
	for _, devs := range want {
		n += max(len(devs), 1)
	}
	if n > maxQueryDevice {
		return nil, mxerr.TooLarge("at most %d devices per query", maxQueryDevice)
	}
	out := &QueryResponse{}
	initQueryResponse(out)
	local := map[id.UserID][]id.DeviceID{}
	remote := map[id.UserID][]id.DeviceID{}
	for u, devs := range want {
		if s.isLocal(u) {
			local[u] = devs
		} else {
			remote[u] = devs
		}
	}
	if err := s.queryLocal(ctx, requester, local, out); err != nil {
		return nil, err
	}
	if len(remote) > 0 {
		if timeout <= 0 {
			timeout = defaultTimeout
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		s.queryRemote(rctx, remote, out)
		cancel()
		if err := s.addRequesterSignatures(ctx, requester, remote, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// addRequesterSignatures merges into the master keys of users of other
// servers the signatures requester made on them with its user-signing key
// (POST /keys/signatures/upload keeps those here; the other server never
// sees them). Without them a client never sees the users it verified as
// verified.
func (s *Service) addRequesterSignatures(ctx context.Context, requester id.UserID, remote map[id.UserID][]id.DeviceID, out *QueryResponse) error {
	if requester == "" {
		return nil
	}
	var users []id.UserID
	for u := range remote {
		if _, ok := out.MasterKeys[u]; ok {
			users = append(users, u)
		}
	}
	if len(users) == 0 {
		return nil
	}
	sigs, err := s.db.SignaturesOn(ctx, users)
	if err != nil {
		return err
	}
	for _, u := range users {
		k, err := parseCrossSigningKey(out.MasterKeys[u], u, store.MasterKey)
		if err != nil {
			continue
		}
		var mine []store.Signature
		for _, sg := range sigs {
			if sg.TargetUser == u && sg.TargetKey == k.name && sg.SignerUser == requester {
				mine = append(mine, sg)
			}
		}
		if len(mine) == 0 {
			continue
		}
		b, err := withExtras(out.MasterKeys[u], mine, "")
		if err != nil {
			return err
		}
		out.MasterKeys[u] = b
	}
	return nil
}

// queryLocal adds the keys of local users to out: a statement per user for
// device keys, and one each for all users' cross-signing keys and
// signatures. requester "" is another server: it gets no user-signing key
// and no signatures beyond the owners'.
func (s *Service) queryLocal(ctx context.Context, requester id.UserID, want map[id.UserID][]id.DeviceID, out *QueryResponse) error {
	if len(want) == 0 {
		return nil
	}
	users := make([]id.UserID, 0, len(want))
	for u := range want {
		users = append(users, u)
	}
	sigs, err := s.db.SignaturesOn(ctx, users)
	if err != nil {
		return err
	}
	// Signatures by target: device keys carry their owner's (self-signing
	// key's) signatures; cross-signing keys those requester made.
	type target struct {
		user id.UserID
		key  string
	}
	byTarget := map[target][]store.Signature{}
	for _, sg := range sigs {
		t := target{sg.TargetUser, sg.TargetKey}
		byTarget[t] = append(byTarget[t], sg)
	}
	ownerSigs := func(t target) []store.Signature {
		var o []store.Signature
		for _, sg := range byTarget[t] {
			if sg.SignerUser == t.user {
				o = append(o, sg)
			}
		}
		return o
	}
	requesterSigs := func(t target) []store.Signature {
		if requester == "" {
			return nil
		}
		var o []store.Signature
		for _, sg := range byTarget[t] {
			if sg.SignerUser == requester {
				o = append(o, sg)
			}
		}
		return o
	}
	dks, err := s.db.DeviceKeysOfUsers(ctx, users)
	if err != nil {
		return err
	}
	localparts := make([]string, len(users))
	for i, u := range users {
		localparts[i] = u.Localpart()
	}
	names, err := s.db.DeviceNames(ctx, localparts)
	if err != nil {
		return err
	}
	for _, u := range users {
		out.DeviceKeys[u] = map[id.DeviceID]json.RawMessage{}
	}
	for _, k := range dks {
		if devs := want[k.UserID]; len(devs) > 0 && !slices.Contains(devs, k.DeviceID) {
			continue
		}
		b, err := withExtras(k.JSON, ownerSigs(target{k.UserID, string(k.DeviceID)}), names[k.UserID.Localpart()][k.DeviceID])
		if err != nil {
			return err
		}
		out.DeviceKeys[k.UserID][k.DeviceID] = b
	}
	csks, err := s.db.CrossSigningKeys(ctx, users)
	if err != nil {
		return err
	}
	for u, ks := range csks {
		for typ, k := range ks {
			if typ == store.UserSigningKey && u != requester {
				continue
			}
			b, err := withExtras(k.JSON, requesterSigs(target{u, k.KeyID}), "")
			if err != nil {
				return err
			}
			switch typ {
			case store.MasterKey:
				out.MasterKeys[u] = b
			case store.SelfSigningKey:
				out.SelfSigningKeys[u] = b
			case store.UserSigningKey:
				out.UserSigningKeys[u] = b
			}
		}
	}
	return nil
}

// Claim answers POST /_matrix/client/v3/keys/claim: per user and device,
// a one-time key of the algorithm asked for, or else the device's fallback
// key of it (marked used). Users of other servers are asked within timeout
// (0: 10 s).
func (s *Service) Claim(ctx context.Context, want map[id.UserID]map[id.DeviceID]string, timeout time.Duration) (*ClaimResponse, error) {
	n := 0
	for _, devs := range want {
		n += len(devs)
	}
	if n > maxQueryDevice {
		return nil, mxerr.TooLarge("at most %d devices per claim", maxQueryDevice)
	}
	out := &ClaimResponse{
		OneTimeKeys: map[id.UserID]map[id.DeviceID]map[string]json.RawMessage{},
		Failures:    map[string]json.RawMessage{},
	}
	local := map[id.UserID]map[id.DeviceID]string{}
	remote := map[id.UserID]map[id.DeviceID]string{}
	for u, devs := range want {
		if s.isLocal(u) {
			local[u] = devs
		} else {
			remote[u] = devs
		}
	}
	if err := s.claimLocal(ctx, local, out.OneTimeKeys); err != nil {
		return nil, err
	}
	if len(remote) > 0 {
		if timeout <= 0 {
			timeout = defaultTimeout
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		s.claimRemote(rctx, remote, out)
		cancel()
	}
	return out, nil
}

func (s *Service) claimLocal(ctx context.Context, want map[id.UserID]map[id.DeviceID]string, out map[id.UserID]map[id.DeviceID]map[string]json.RawMessage) error {
	var claims []store.KeyClaim
	for u, devs := range want {
		for d, alg := range devs {
			claims = append(claims, store.KeyClaim{UserID: u, DeviceID: d, Algorithm: alg})
		}
	}
	if len(claims) == 0 {
		return nil
	}
	got, err := s.db.ClaimKeys(ctx, claims)
	for u := range want {
		s.pos.keysChanged(u)
	}
	if err != nil {
		return err
	}
	for _, k := range got {
		if out[k.UserID] == nil {
			out[k.UserID] = map[id.DeviceID]map[string]json.RawMessage{}
		}
		out[k.UserID][k.DeviceID] = map[string]json.RawMessage{k.Algorithm + ":" + k.KeyID: k.JSON}
	}
	return nil
}

// DeviceRenamed reports a local device's new display name to the user's
// rooms and their servers.
func (s *Service) DeviceRenamed(ctx context.Context, user id.UserID, device id.DeviceID) error {
	return s.changeDevices(ctx, user, func(tx *store.Tx) ([]id.DeviceID, bool, error) {
		return []id.DeviceID{device}, false, nil
	})
}

// keysDevicesDeleted deletes the keys of deleted devices (nil: all of the
// user's) and reports the change.
func (s *Service) keysDevicesDeleted(ctx context.Context, user id.UserID, devices []id.DeviceID) error {
	defer s.pos.keysChanged(user)
	return s.changeDevices(ctx, user, func(tx *store.Tx) ([]id.DeviceID, bool, error) {
		had, err := tx.DeleteDeviceKeys(ctx, user, devices)
		if err != nil {
			return nil, false, err
		}
		if devices == nil {
			devices = had
		}
		return devices, true, nil
	})
}

// LocalUserDevices answers GET /_matrix/federation/v1/user/devices/{userId}
// for a local user: every device, with its keys and display name, the
// stream_id of the latest device list update sent about the user, and its
// master and self-signing keys.
func (s *Service) LocalUserDevices(ctx context.Context, user id.UserID) (*federation.UserDevicesResponse, error) {
	out := &federation.UserDevicesResponse{UserID: user, Devices: []federation.UserDevice{}}
	streamID, err := s.db.DeviceListStreamID(ctx, user)
	if err != nil {
		return nil, err
	}
	out.StreamID = streamID
	devs, err := s.db.Devices(ctx, user.Localpart())
	if err != nil {
		return nil, err
	}
	dks, err := s.db.DeviceKeysOf(ctx, user, user.Localpart(), nil)
	if err != nil {
		return nil, err
	}
	sigs, err := s.db.SignaturesOn(ctx, []id.UserID{user})
	if err != nil {
		return nil, err
	}
	keysOf := map[id.DeviceID][]byte{}
	for _, k := range dks {
		keysOf[k.DeviceID] = k.JSON
	}
	seen := map[id.DeviceID]bool{}
	add := func(d id.DeviceID, name string) error {
		seen[d] = true
		ud := federation.UserDevice{DeviceID: d, DeviceDisplayName: name}
		if k, ok := keysOf[d]; ok {
			b, err := withExtras(k, ownSignatures(sigs, user, string(d)), "")
			if err != nil {
				return err
			}
			ud.Keys = b
		}
		out.Devices = append(out.Devices, ud)
		return nil
	}
	for _, d := range devs {
		if err := add(id.DeviceID(d.DeviceID), d.DisplayName); err != nil {
			return nil, err
		}
	}
	// Devices with keys but no session (dehydrated devices) too.
	for _, k := range dks {
		if !seen[k.DeviceID] {
			if err := add(k.DeviceID, k.DisplayName); err != nil {
				return nil, err
			}
		}
	}
	csks, err := s.db.CrossSigningKeys(ctx, []id.UserID{user})
	if err != nil {
		return nil, err
	}
	if k, ok := csks[user][store.MasterKey]; ok {
		out.MasterKey = k.JSON
	}
	if k, ok := csks[user][store.SelfSigningKey]; ok {
		out.SelfSigningKey = k.JSON
	}
	return out, nil
}

// ownSignatures are the signatures user made on its own key.
func ownSignatures(sigs []store.Signature, user id.UserID, key string) []store.Signature {
	var o []store.Signature
	for _, sg := range sigs {
		if sg.TargetUser == user && sg.TargetKey == key && sg.SignerUser == user {
			o = append(o, sg)
		}
	}
	return o
}

// QueryLocal answers POST /_matrix/federation/v1/user/keys/query for local
// users (users of other servers in the request are ignored).
func (s *Service) QueryLocal(ctx context.Context, req federation.UserKeysQueryRequest) (*federation.UserKeysQueryResponse, error) {
	want := map[id.UserID][]id.DeviceID{}
	n := 0
	for u, devs := range req.DeviceKeys {
		if s.isLocal(u) {
			want[u] = devs
			n += max(len(devs), 1)
		}
	}
	if n > maxQueryDevice {
		return nil, mxerr.TooLarge("at most %d devices per query", maxQueryDevice)
	}
	var q QueryResponse
	q.DeviceKeys = map[id.UserID]map[id.DeviceID]json.RawMessage{}
	q.MasterKeys = map[id.UserID]json.RawMessage{}
	q.SelfSigningKeys = map[id.UserID]json.RawMessage{}
	q.UserSigningKeys = map[id.UserID]json.RawMessage{}
	if err := s.queryLocal(ctx, "", want, &q); err != nil {
		return nil, err
	}
	return &federation.UserKeysQueryResponse{DeviceKeys: q.DeviceKeys, MasterKeys: q.MasterKeys, SelfSigningKeys: q.SelfSigningKeys}, nil
}

// ClaimLocal answers POST /_matrix/federation/v1/user/keys/claim for local
// users (users of other servers in the request are ignored).
func (s *Service) ClaimLocal(ctx context.Context, req federation.UserKeysClaimRequest) (*federation.UserKeysClaimResponse, error) {
	want := map[id.UserID]map[id.DeviceID]string{}
	n := 0
	for u, devs := range req.OneTimeKeys {
		if s.isLocal(u) {
			want[u] = devs
			n += len(devs)
		}
	}
	if n > maxQueryDevice {
		return nil, mxerr.TooLarge("at most %d devices per claim", maxQueryDevice)
	}
	out := &federation.UserKeysClaimResponse{OneTimeKeys: map[id.UserID]map[id.DeviceID]map[string]json.RawMessage{}}
	if err := s.claimLocal(ctx, want, out.OneTimeKeys); err != nil {
		return nil, err
	}
	return out, nil
}

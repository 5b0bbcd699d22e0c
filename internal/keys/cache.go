package keys

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
)

var (
	// ErrKeyNotFound is wrapped by Cache errors when a server does not
	// publish the key asked for.
	ErrKeyNotFound = errors.New("server key not found")
	// ErrKeyExpired is wrapped by RequestKey errors for a key that is not
	// valid now: an old key, or one past its valid_until_ts that could not
	// be refreshed.
	ErrKeyExpired = errors.New("server key expired")
)

// MaxKeyValidity caps a response's valid_until_ts: "Servers MUST use the
// lesser of this field and 7 days into the future" (keys_server, room
// version 5 "Signing key validity period").
const MaxKeyValidity = 7 * 24 * time.Hour

// RemoteKey is a verify key another server published, as the Cache keeps
// and persists it.
type RemoteKey struct {
	KeyID  id.KeyID
	Public ed25519.PublicKey
	// ValidUntil is the valid_until_ts of the response that published the
	// key, capped at 7 days after it was fetched; for an old key (Expired)
	// it is its expired_ts.
	ValidUntil time.Time
	// Expired marks a key of old_verify_keys: good for events signed
	// before ValidUntil, never for requests.
	Expired bool
	Fetched time.Time
	// Response is the verified body that published the key, in canonical
	// form with only its server's signatures: what a notary answers.
	Response []byte
}

// CacheConfig configures a Cache. Only Fetch is required.
type CacheConfig struct {
	// ServerName and Key are this server's: its own key is answered
	// without any fetch.
	ServerName string
	Key        *SigningKey
	// Fetch returns the raw body of GET /_matrix/key/v2/server of server
	// (federation.Client.ServerKeys).
	Fetch func(ctx context.Context, server string) ([]byte, error)
	// Notary, if not nil, is asked when Fetch fails: it returns key
	// responses for the servers asked, as notaries answer
	// /_matrix/key/v2/query (federation.Client.NotaryQuery with a trusted
	// notary). Each response must still be self-signed by its server.
	Notary func(ctx context.Context, want map[string][]id.KeyID) ([][]byte, error)
	// Load returns the keys of server persisted earlier; Store persists the
	// keys of a fetch. Both may be nil (nothing survives a restart).
	Load  func(ctx context.Context, server string) ([]RemoteKey, error)
	Store func(ctx context.Context, server string, keys []RemoteKey) error
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Log receives warnings about keys that could not be persisted.
	Log *slog.Logger
	// RetryAfter is how long after a fetch of a server's keys, successful
	// or not, no other fetch of them is made: a key it did not publish is
	// not found, and a failure is answered again. 0 means 1 minute.
	RetryAfter time.Duration
	// FetchTimeout bounds one fetch (and Notary fallback); 0 means 1
	// minute.
	FetchTimeout time.Duration
	// Concurrency bounds the servers Prefetch fetches at once; 0 means 8.
	Concurrency int
}

// Cache holds other servers' verify keys (server-server API, "Retrieving
// server keys"). It fetches a server's keys when a key is missing or its
// response's valid_until_ts has passed, one fetch per server at a time,
// checks each response (its server_name, and a signature by each of its
// verify_keys), and persists what it fetched through CacheConfig.Store so
// that a restart does not fetch again. It does no network I/O itself. It is
// safe for concurrent use.
type Cache struct {
	cfg CacheConfig
	sf  singleflight.Group

	mu      sync.Mutex
	servers map[string]*serverEntry
}

type serverEntry struct {
	loaded bool
	keys   map[id.KeyID]RemoteKey
	tried  time.Time // last fetch, zero if none since start
	err    error     // its error
}

// NewCache returns a cache.
func NewCache(cfg CacheConfig) *Cache {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Minute
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = time.Minute
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Cache{cfg: cfg, servers: map[string]*serverEntry{}}
}

// VerifyKey returns the public key server published as keyID, with the
// time it is valid until: the (capped) valid_until_ts of the response that
// published it, or its expired_ts if it is an old key. It fetches the
// server's keys if the key is unknown or its validity has passed; if that
// fetch fails, a key known from before is still returned with its past
// validity, for the caller to judge (an event signed before it passed is
// fine).
//
// Errors: ErrKeyNotFound (wrapped) if the server's keys do not hold
// keyID; the fetch's error, wrapped, if the key is unknown and the fetch
// failed; the context's error if ctx ends first.
func (c *Cache) VerifyKey(ctx context.Context, server string, keyID id.KeyID) (ed25519.PublicKey, time.Time, error) {
	k, err := c.key(ctx, server, keyID)
	if err != nil {
		return nil, time.Time{}, err
	}
	return k.Public, k.ValidUntil, nil
}

// RequestKey returns the key a request signed now must be verified with
// (federation.VerifyRequest's key func): a current key, valid now. Errors
// are VerifyKey's, and ErrKeyExpired (wrapped) for an old key or one past
// its validity.
func (c *Cache) RequestKey(ctx context.Context, server string, keyID id.KeyID) (ed25519.PublicKey, error) {
	k, err := c.key(ctx, server, keyID)
	if err != nil {
		return nil, err
	}
	if k.Expired {
		return nil, fmt.Errorf("%w: %s of %s is an old key", ErrKeyExpired, keyID, server)
	}
	if !c.cfg.Now().Before(k.ValidUntil) {
		return nil, fmt.Errorf("%w: %s of %s was valid until %s", ErrKeyExpired, keyID, server, k.ValidUntil.UTC().Format(time.RFC3339))
	}
	return k.Public, nil
}

func (c *Cache) key(ctx context.Context, server string, keyID id.KeyID) (RemoteKey, error) {
	now := c.cfg.Now()
	if c.isSelf(server) {
		if keyID != c.cfg.Key.KeyID() {
			return RemoteKey{}, fmt.Errorf("%w: %s of %s (this server)", ErrKeyNotFound, keyID, server)
		}
		return RemoteKey{KeyID: keyID, Public: c.cfg.Key.Public(), ValidUntil: now.Add(MaxKeyValidity), Fetched: now}, nil
	}
	if err := c.load(ctx, server); err != nil {
		return RemoteKey{}, err
	}
	k, ok := c.lookup(server, keyID)
	if ok && (k.Expired || now.Before(k.ValidUntil)) {
		return k, nil
	}
	ferr := c.refresh(ctx, server)
	if k, ok := c.lookup(server, keyID); ok {
		return k, nil
	}
	if ferr != nil {
		if ctx.Err() != nil {
			return RemoteKey{}, ctx.Err()
		}
		return RemoteKey{}, fmt.Errorf("key %s of %s: %w", keyID, server, ferr)
	}
	return RemoteKey{}, fmt.Errorf("%w: %s of %s", ErrKeyNotFound, keyID, server)
}

// Responses returns the responses that published server's keys keyIDs
// (all its keys if none are given), as verified and stripped of other
// servers' signatures: what a notary answers for
// /_matrix/key/v2/query. It fetches the keys first if one is missing or
// a current key is valid until before minValidUntil, at most once per
// RetryAfter. For this server's own name it returns a fresh response
// signed with its key.
//
// A failed fetch still returns what was known before; it is an error only
// when nothing is known (the fetch's error, wrapped).
func (c *Cache) Responses(ctx context.Context, server string, keyIDs []id.KeyID, minValidUntil time.Time) ([][]byte, error) {
	if c.isSelf(server) {
		body, err := ServerKeysResponse(server, c.cfg.Key, nil, c.cfg.Now().Add(24*time.Hour))
		if err != nil {
			return nil, err
		}
		return [][]byte{body}, nil
	}
	if err := c.load(ctx, server); err != nil {
		return nil, err
	}
	var ferr error
	if !c.satisfied(server, keyIDs, minValidUntil) {
		ferr = c.refresh(ctx, server)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	c.mu.Lock()
	e := c.servers[server]
	var out [][]byte
	seen := map[string]bool{}
	add := func(k RemoteKey) {
		if len(k.Response) > 0 && !seen[string(k.Response)] {
			seen[string(k.Response)] = true
			out = append(out, k.Response)
		}
	}
	if len(keyIDs) == 0 {
		ids := make([]id.KeyID, 0, len(e.keys))
		for kid := range e.keys {
			ids = append(ids, kid)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		for _, kid := range ids {
			add(e.keys[kid])
		}
	} else {
		for _, kid := range keyIDs {
			if k, ok := e.keys[kid]; ok {
				add(k)
			}
		}
	}
	c.mu.Unlock()
	if len(out) == 0 && ferr != nil {
		return nil, fmt.Errorf("keys of %s: %w", server, ferr)
	}
	return out, nil
}

// satisfied reports whether the known keys of server answer a query for
// keyIDs valid until minValidUntil: each key is known and old or valid
// long enough; with no keyIDs, some current key is valid long enough.
func (c *Cache) satisfied(server string, keyIDs []id.KeyID, minValidUntil time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.servers[server]
	if len(keyIDs) == 0 {
		for _, k := range e.keys {
			if !k.Expired && !k.ValidUntil.Before(minValidUntil) {
				return true
			}
		}
		return false
	}
	for _, kid := range keyIDs {
		k, ok := e.keys[kid]
		if !ok || (!k.Expired && k.ValidUntil.Before(minValidUntil)) {
			return false
		}
	}
	return true
}

// Prefetch makes sure the keys in want are known, fetching for several
// servers at once (at most Concurrency): want maps a server to key IDs, or
// to none for a current key of any ID. It returns the errors of the
// servers whose keys could not be had, joined; what was fetched is cached
// either way.
func (c *Cache) Prefetch(ctx context.Context, want map[string][]id.KeyID) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, c.cfg.Concurrency)
	)
	for server, keyIDs := range want {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var err error
			if len(keyIDs) == 0 {
				_, err = c.Responses(ctx, server, nil, c.cfg.Now())
			}
			for _, kid := range keyIDs {
				if _, _, kerr := c.VerifyKey(ctx, server, kid); kerr != nil {
					err = errors.Join(err, kerr)
				}
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.Join(errs...)
}

func (c *Cache) isSelf(server string) bool {
	return c.cfg.Key != nil && server == c.cfg.ServerName
}

// entry returns server's entry, creating it. c.mu must be held.
func (c *Cache) entry(server string) *serverEntry {
	e := c.servers[server]
	if e == nil {
		e = &serverEntry{keys: map[id.KeyID]RemoteKey{}}
		c.servers[server] = e
	}
	return e
}

func (c *Cache) lookup(server string, keyID id.KeyID) (RemoteKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.entry(server).keys[keyID]
	return k, ok
}

// shared runs fn once for all callers of the same key at the same time,
// detached from any one caller's context (bounded by FetchTimeout), so
// that a caller going away does not fail the others.
func (c *Cache) shared(ctx context.Context, key string, fn func(ctx context.Context) error) error {
	ch := c.sf.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.FetchTimeout)
		defer cancel()
		return nil, fn(fctx)
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// load reads server's persisted keys once.
func (c *Cache) load(ctx context.Context, server string) error {
	c.mu.Lock()
	e := c.entry(server)
	if c.cfg.Load == nil {
		e.loaded = true
	}
	loaded := e.loaded
	c.mu.Unlock()
	if loaded {
		return nil
	}
	return c.shared(ctx, "load\x00"+server, func(ctx context.Context) error {
		c.mu.Lock()
		loaded := e.loaded
		c.mu.Unlock()
		if loaded {
			return nil
		}
		ks, err := c.cfg.Load(ctx, server)
		if err != nil {
			return fmt.Errorf("load keys of %s: %w", server, err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, k := range ks {
			if _, ok := e.keys[k.KeyID]; !ok { // a fetch meanwhile is newer
				e.keys[k.KeyID] = k
			}
		}
		e.loaded = true
		return nil
	})
}

// refresh fetches server's keys unless that was done less than RetryAfter
// ago, in which case it returns that fetch's error.
func (c *Cache) refresh(ctx context.Context, server string) error {
	recent := func(e *serverEntry) (bool, error) {
		if !e.tried.IsZero() && c.cfg.Now().Sub(e.tried) < c.cfg.RetryAfter {
			return true, e.err
		}
		return false, nil
	}
	c.mu.Lock()
	e := c.entry(server)
	done, err := recent(e)
	c.mu.Unlock()
	if done {
		return err
	}
	return c.shared(ctx, "fetch\x00"+server, func(ctx context.Context) error {
		c.mu.Lock()
		done, err := recent(e)
		c.mu.Unlock()
		if done {
			return err
		}
		ks, err := c.fetch(ctx, server)
		c.mu.Lock()
		e.tried, e.err = c.cfg.Now(), err
		for _, k := range ks {
			e.keys[k.KeyID] = k
		}
		c.mu.Unlock()
		if err != nil {
			return err
		}
		if c.cfg.Store != nil {
			if serr := c.cfg.Store(ctx, server, ks); serr != nil {
				// The keys are in memory; only a restart will fetch them again.
				c.cfg.Log.Warn("could not persist server keys", "server_name", server, "err", serr)
			}
		}
		return nil
	})
}

// fetch gets server's keys directly, or through the notary when that
// fails.
func (c *Cache) fetch(ctx context.Context, server string) ([]RemoteKey, error) {
	var err error
	if c.cfg.Fetch == nil {
		err = errors.New("no key fetcher")
	} else {
		var body []byte
		if body, err = c.cfg.Fetch(ctx, server); err == nil {
			ks, verr := VerifyServerKeys(body, server, c.cfg.Now())
			if verr == nil {
				return ks, nil
			}
			err = verr
		}
	}
	if c.cfg.Notary == nil {
		return nil, err
	}
	resps, nerr := c.cfg.Notary(ctx, map[string][]id.KeyID{server: nil})
	if nerr != nil {
		return nil, errors.Join(err, fmt.Errorf("notary: %w", nerr))
	}
	byID := map[id.KeyID]RemoteKey{}
	for _, r := range resps {
		ks, verr := VerifyServerKeys(r, server, c.cfg.Now())
		if verr != nil {
			nerr = verr
			continue
		}
		for _, k := range ks {
			if prev, ok := byID[k.KeyID]; !ok || k.ValidUntil.After(prev.ValidUntil) {
				byID[k.KeyID] = k
			}
		}
	}
	if len(byID) == 0 {
		if nerr == nil {
			nerr = errors.New("no keys")
		}
		return nil, errors.Join(err, fmt.Errorf("notary: %w", nerr))
	}
	out := make([]RemoteKey, 0, len(byID))
	for _, k := range byID {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KeyID < out[j].KeyID })
	return out, nil
}

// VerifyServerKeys checks a server keys response (the body of GET
// /_matrix/key/v2/server, or one entry of a notary's answer) published by
// server, fetched at now, and returns its keys: each of verify_keys with
// the response's valid_until_ts capped at now+MaxKeyValidity, and each of
// old_verify_keys with its expired_ts. Keys of algorithms other than
// ed25519 are skipped.
//
// It returns an error if the body is not canonical-JSON material, its
// server_name is not server, it has no ed25519 verify key, or it is not
// signed by every ed25519 verify key it lists (server-server API,
// "Publishing Keys": signatures "using the verify_keys").
func VerifyServerKeys(body []byte, server string, now time.Time) ([]RemoteKey, error) {
	canon, err := cjson.Canonical(body)
	if err != nil {
		return nil, fmt.Errorf("keys of %s: %w", server, err)
	}
	var r struct {
		ServerName   string `json:"server_name"`
		ValidUntilTS int64  `json:"valid_until_ts"`
		VerifyKeys   map[id.KeyID]struct {
			Key string `json:"key"`
		} `json:"verify_keys"`
		OldVerifyKeys map[id.KeyID]struct {
			ExpiredTS int64  `json:"expired_ts"`
			Key       string `json:"key"`
		} `json:"old_verify_keys"`
	}
	if err := json.Unmarshal(canon, &r); err != nil {
		return nil, fmt.Errorf("keys of %s: %w", server, err)
	}
	if r.ServerName != server {
		return nil, fmt.Errorf("keys of %s: server_name is %q", server, r.ServerName)
	}
	validUntil := time.UnixMilli(r.ValidUntilTS)
	if limit := now.Add(MaxKeyValidity); validUntil.After(limit) {
		validUntil = limit
	}
	stored := ownSignaturesOnly(canon, server)
	var out []RemoteKey
	for kid, vk := range r.VerifyKeys {
		if !strings.HasPrefix(string(kid), Algorithm+":") {
			continue
		}
		pub, err := DecodeBase64(vk.Key)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("keys of %s: verify key %s is not a base64 ed25519 key", server, kid)
		}
		if err := VerifyCanonical(canon, server, kid, pub); err != nil {
			return nil, fmt.Errorf("keys of %s: not self-signed with %s: %w", server, kid, err)
		}
		out = append(out, RemoteKey{KeyID: kid, Public: pub, ValidUntil: validUntil, Fetched: now, Response: stored})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("keys of %s: no ed25519 verify key", server)
	}
	for kid, ok := range r.OldVerifyKeys {
		if _, current := r.VerifyKeys[kid]; current || !strings.HasPrefix(string(kid), Algorithm+":") {
			continue
		}
		pub, err := DecodeBase64(ok.Key)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			continue // an old key that cannot be used is no reason to refuse the current ones
		}
		out = append(out, RemoteKey{KeyID: kid, Public: pub, ValidUntil: time.UnixMilli(ok.ExpiredTS), Expired: true, Fetched: now, Response: stored})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KeyID < out[j].KeyID })
	return out, nil
}

// ownSignaturesOnly returns the canonical object canon with only server's
// signatures kept (a notary's answer carries the notary's too).
func ownSignaturesOnly(canon []byte, server string) []byte {
	sigs, ok := cjson.Get(canon, "signatures")
	if !ok {
		return canon
	}
	enc := cjson.AppendString(nil, server)
	own, ok := cjson.Get(sigs, string(enc[1:len(enc)-1]))
	if !ok {
		return canon
	}
	return cjson.Set(nil, canon, "signatures", cjson.Set(nil, []byte("{}"), server, own))
}

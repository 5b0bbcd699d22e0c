package keys_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/keys"
)

// clock is a fake time source that tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{now: time.UnixMilli(1_700_000_000_000)} }

func mustGenerate(tb testing.TB, version string) *keys.SigningKey {
	tb.Helper()
	k, err := keys.Generate(version)
	if err != nil {
		tb.Fatalf("Generate(%q): %v", version, err)
	}
	return k
}

func mustResponse(tb testing.TB, server string, k *keys.SigningKey, old []keys.OldKey, until time.Time) []byte {
	tb.Helper()
	body, err := keys.ServerKeysResponse(server, k, old, until)
	if err != nil {
		tb.Fatalf("ServerKeysResponse(%s): %v", server, err)
	}
	return body
}

// remote is a fake server whose key responses the Fetch func returns.
type remote struct {
	mu    sync.Mutex
	body  map[string][]byte
	err   error
	calls map[string]int
}

func newRemote() *remote { return &remote{body: map[string][]byte{}, calls: map[string]int{}} }

func (r *remote) set(server string, body []byte) {
	r.mu.Lock()
	r.body[server] = body
	r.mu.Unlock()
}

func (r *remote) fetch(_ context.Context, server string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[server]++
	if r.err != nil {
		return nil, r.err
	}
	b, ok := r.body[server]
	if !ok {
		return nil, errors.New("connection refused")
	}
	return b, nil
}

func (r *remote) count(server string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[server]
}

func mustVerifyKey(tb testing.TB, c *keys.Cache, server string, keyID id.KeyID) (ed25519.PublicKey, time.Time) {
	tb.Helper()
	pub, until, err := c.VerifyKey(context.Background(), server, keyID)
	if err != nil {
		tb.Fatalf("VerifyKey(%s, %s): %v", server, keyID, err)
	}
	return pub, until
}

func TestCacheFetchesOnceAndRefetchesWhenExpired(t *testing.T) {
	clk := newClock()
	k := mustGenerate(t, "k1")
	r := newRemote()
	r.set("remote.example", mustResponse(t, "remote.example", k, nil, clk.Now().Add(time.Hour)))
	c := keys.NewCache(keys.CacheConfig{Fetch: r.fetch, Now: clk.Now})

	pub, until := mustVerifyKey(t, c, "remote.example", k.KeyID())
	if !bytes.Equal(pub, k.Public()) {
		t.Errorf("VerifyKey = %x, want %x", pub, k.Public())
	}
	if want := clk.Now().Add(time.Hour); !until.Equal(want) {
		t.Errorf("VerifyKey valid until %v, want %v", until, want)
	}
	clk.Add(30 * time.Minute)
	mustVerifyKey(t, c, "remote.example", k.KeyID())
	if n := r.count("remote.example"); n != 1 {
		t.Errorf("fetches after two lookups within validity = %d, want 1", n)
	}

	// Past valid_until_ts the keys are fetched again.
	clk.Add(31 * time.Minute)
	r.set("remote.example", mustResponse(t, "remote.example", k, nil, clk.Now().Add(2*time.Hour)))
	_, until = mustVerifyKey(t, c, "remote.example", k.KeyID())
	if n := r.count("remote.example"); n != 2 {
		t.Errorf("fetches after the validity passed = %d, want 2", n)
	}
	if want := clk.Now().Add(2 * time.Hour); !until.Equal(want) {
		t.Errorf("VerifyKey after refetch valid until %v, want %v", until, want)
	}

	// A refetch that fails still returns the stale key with its validity.
	clk.Add(3 * time.Hour)
	r.mu.Lock()
	r.err = errors.New("timeout")
	r.mu.Unlock()
	_, staleUntil, err := c.VerifyKey(context.Background(), "remote.example", k.KeyID())
	if err != nil || !staleUntil.Equal(until) {
		t.Errorf("VerifyKey with the remote down = (%v, %v), want the stale key valid until %v", staleUntil, err, until)
	}
	if _, err := c.RequestKey(context.Background(), "remote.example", k.KeyID()); !errors.Is(err, keys.ErrKeyExpired) {
		t.Errorf("RequestKey of a stale key = %v, want ErrKeyExpired", err)
	}
}

func TestCacheCapsValidityAtSevenDays(t *testing.T) {
	clk := newClock()
	k := mustGenerate(t, "k1")
	r := newRemote()
	r.set("remote.example", mustResponse(t, "remote.example", k, nil, clk.Now().Add(365*24*time.Hour)))
	c := keys.NewCache(keys.CacheConfig{Fetch: r.fetch, Now: clk.Now})
	_, until := mustVerifyKey(t, c, "remote.example", k.KeyID())
	if want := clk.Now().Add(7 * 24 * time.Hour); !until.Equal(want) {
		t.Errorf("valid until %v, want capped at %v", until, want)
	}
}

func TestCacheRefusesBadResponses(t *testing.T) {
	clk := newClock()
	k := mustGenerate(t, "k1")
	other := mustGenerate(t, "k1")
	good := mustResponse(t, "remote.example", k, nil, clk.Now().Add(time.Hour))
	tests := []struct {
		name string
		body []byte
	}{
		{"wrong server_name", mustResponse(t, "evil.example", k, nil, clk.Now().Add(time.Hour))},
		{"listed key did not sign", bytes.Replace(good, []byte(k.PublicBase64()), []byte(other.PublicBase64()), 1)},
		{"body changed after signing", bytes.Replace(good, []byte(`"valid_until_ts":`), []byte(`"valid_until_ts":1`), 1)},
		{"signature removed", []byte(strings.Replace(string(good), `"signatures":{"remote.example":{"ed25519:k1":`, `"signatures":{"remote.example":{"ed25519:zz":`, 1))},
		{"not JSON", []byte(`<html>`)},
		{"no verify keys", []byte(`{"server_name":"remote.example","valid_until_ts":1,"verify_keys":{},"signatures":{}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRemote()
			r.set("remote.example", tt.body)
			c := keys.NewCache(keys.CacheConfig{Fetch: r.fetch, Now: clk.Now})
			_, _, err := c.VerifyKey(context.Background(), "remote.example", k.KeyID())
			if err == nil {
				t.Fatalf("VerifyKey with a bad response = nil error, want refused")
			}
			if errors.Is(err, keys.ErrKeyNotFound) {
				t.Errorf("VerifyKey error %v is ErrKeyNotFound; want the response's fault", err)
			}
			if _, err := keys.VerifyServerKeys(tt.body, "remote.example", clk.Now()); err == nil {
				t.Errorf("VerifyServerKeys accepted the bad response")
			}
		})
	}
}

func TestCacheOldKeys(t *testing.T) {
	clk := newClock()
	cur := mustGenerate(t, "new")
	old := mustGenerate(t, "old")
	expired := clk.Now().Add(-24 * time.Hour)
	r := newRemote()
	r.set("remote.example", mustResponse(t, "remote.example", cur, []keys.OldKey{{KeyID: old.KeyID(), Public: old.Public(), Expired: expired}}, clk.Now().Add(time.Hour)))
	c := keys.NewCache(keys.CacheConfig{Fetch: r.fetch, Now: clk.Now})

	pub, until := mustVerifyKey(t, c, "remote.example", old.KeyID())
	if !bytes.Equal(pub, old.Public()) || !until.Equal(expired) {
		t.Errorf("VerifyKey(old) = %x until %v, want %x until %v (its expired_ts)", pub, until, old.Public(), expired)
	}
	if _, err := c.RequestKey(context.Background(), "remote.example", old.KeyID()); !errors.Is(err, keys.ErrKeyExpired) {
		t.Errorf("RequestKey(old key) = %v, want ErrKeyExpired: old keys do not sign requests", err)
	}
	if got, err := c.RequestKey(context.Background(), "remote.example", cur.KeyID()); err != nil || !bytes.Equal(got, cur.Public()) {
		t.Errorf("RequestKey(current) = %x, %v; want %x", got, err, cur.Public())
	}
	// An old key's past expiry does not make it fetch again.
	clk.Add(30 * time.Minute)
	mustVerifyKey(t, c, "remote.example", old.KeyID())
	if n := r.count("remote.example"); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
}

func TestCacheNegative(t *testing.T) {
	clk := newClock()
	k := mustGenerate(t, "k1")
	r := newRemote()
	r.set("remote.example", mustResponse(t, "remote.example", k, nil, clk.Now().Add(24*time.Hour)))
	c := keys.NewCache(keys.CacheConfig{Fetch: r.fetch, Now: clk.Now, RetryAfter: time.Minute})
	ctx := context.Background()

	// A key the server does not publish: not found, and not asked again
	// for RetryAfter.
	for range 3 {
		if _, _, err := c.VerifyKey(ctx, "remote.example", "ed25519:nope"); !errors.Is(err, keys.ErrKeyNotFound) {
			t.Fatalf("VerifyKey(unpublished key) = %v, want ErrKeyNotFound", err)
		}
	}
	if n := r.count("remote.example"); n != 1 {
		t.Errorf("fetches for an unpublished key within RetryAfter = %d, want 1", n)
	}
	clk.Add(2 * time.Minute)
	c.VerifyKey(ctx, "remote.example", "ed25519:nope")
	if n := r.count("remote.example"); n != 2 {
		t.Errorf("fetches after RetryAfter = %d, want 2", n)
	}

	// A server that cannot be reached: its error, not ErrKeyNotFound, and
	// not asked again for RetryAfter.
	for range 3 {
		_, _, err := c.VerifyKey(ctx, "down.example", "ed25519:k1")
		if err == nil || errors.Is(err, keys.ErrKeyNotFound) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("VerifyKey(unreachable server) = %v, want the fetch's error", err)
		}
	}
	if n := r.count("down.example"); n != 1 {
		t.Errorf("fetches of an unreachable server within RetryAfter = %d, want 1", n)
	}
}

func TestCacheOneFetchForConcurrentCallers(t *testing.T) {
	clk := newClock()
	k := mustGenerate(t, "k1")
	body := mustResponse(t, "remote.example", k, nil, clk.Now().Add(time.Hour))
	var calls atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	fetch := func(ctx context.Context, server string) ([]byte, error) {
		if calls.Add(1) == 1 {
			close(started)
		}
		<-release
		return body, nil
	}
	c := keys.NewCache(keys.CacheConfig{Fetch: fetch, Now: clk.Now})

	// A caller that gives up does not fail the fetch for the others.
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, _, err := c.VerifyKey(ctx, "remote.example", k.KeyID())
		first <- err
	}()
	<-started
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := c.VerifyKey(context.Background(), "remote.example", k.KeyID())
			errs <- err
		}()
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("VerifyKey of the caller that gave up = %v, want context.Canceled", err)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("VerifyKey of a waiting caller: %v", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
}

func TestCachePersists(t *testing.T) {
	clk := newClock()
	k := mustGenerate(t, "k1")
	r := newRemote()
	r.set("remote.example", mustResponse(t, "remote.example", k, nil, clk.Now().Add(time.Hour)))
	var mu sync.Mutex
	stored := map[string][]keys.RemoteKey{}
	load := func(_ context.Context, server string) ([]keys.RemoteKey, error) {
		mu.Lock()
		defer mu.Unlock()
		return stored[server], nil
	}
	store := func(_ context.Context, server string, ks []keys.RemoteKey) error {
		mu.Lock()
		defer mu.Unlock()
		stored[server] = append(stored[server], ks...)
		return nil
	}
	c := keys.NewCache(keys.CacheConfig{Fetch: r.fetch, Load: load, Store: store, Now: clk.Now})
	mustVerifyKey(t, c, "remote.example", k.KeyID())
	if got := stored["remote.example"]; len(got) != 1 || got[0].KeyID != k.KeyID() || len(got[0].Response) == 0 {
		t.Fatalf("stored = %+v, want the one key with its response", got)
	}

	// A new cache (a restart) finds the key without fetching.
	c2 := keys.NewCache(keys.CacheConfig{Fetch: r.fetch, Load: load, Store: store, Now: clk.Now})
	pub, _ := mustVerifyKey(t, c2, "remote.example", k.KeyID())
	if !bytes.Equal(pub, k.Public()) {
		t.Errorf("VerifyKey after a restart = %x, want %x", pub, k.Public())
	}
	if n := r.count("remote.example"); n != 1 {
		t.Errorf("fetches after a restart = %d, want 1 (the persisted key)", n)
	}
}

func TestCacheNotaryFallback(t *testing.T) {
	clk := newClock()
	k := mustGenerate(t, "k1")
	notaryKey := mustGenerate(t, "n")
	r := newRemote() // knows nothing: every direct fetch fails
	var asked map[string][]id.KeyID
	notary := func(_ context.Context, want map[string][]id.KeyID) ([][]byte, error) {
		asked = want
		signed, err := keys.SignJSON(mustResponse(t, "remote.example", k, nil, clk.Now().Add(time.Hour)), "notary.example", notaryKey)
		if err != nil {
			return nil, err
		}
		// A response for another server than asked is ignored.
		return [][]byte{mustResponse(t, "other.example", notaryKey, nil, clk.Now().Add(time.Hour)), signed}, nil
	}
	c := keys.NewCache(keys.CacheConfig{Fetch: r.fetch, Notary: notary, Now: clk.Now})
	pub, _ := mustVerifyKey(t, c, "remote.example", k.KeyID())
	if !bytes.Equal(pub, k.Public()) {
		t.Errorf("VerifyKey through the notary = %x, want %x", pub, k.Public())
	}
	if _, ok := asked["remote.example"]; !ok || len(asked) != 1 {
		t.Errorf("notary asked for %v, want remote.example", asked)
	}
	// What a notary answers keeps only the server's own signature.
	resps, err := c.Responses(context.Background(), "remote.example", nil, clk.Now())
	if err != nil || len(resps) != 1 {
		t.Fatalf("Responses = %d, %v; want 1", len(resps), err)
	}
	if bytes.Contains(resps[0], []byte("notary.example")) {
		t.Errorf("Responses kept the notary's signature: %s", resps[0])
	}
	if err := keys.VerifyJSON(resps[0], "remote.example", k.KeyID(), k.Public()); err != nil {
		t.Errorf("VerifyJSON(response): %v", err)
	}
}

func TestCacheResponses(t *testing.T) {
	clk := newClock()
	self := mustGenerate(t, "self")
	k := mustGenerate(t, "k1")
	r := newRemote()
	r.set("remote.example", mustResponse(t, "remote.example", k, nil, clk.Now().Add(time.Hour)))
	c := keys.NewCache(keys.CacheConfig{ServerName: "us.example", Key: self, Fetch: r.fetch, Now: clk.Now})
	ctx := context.Background()

	// This server's own keys need no fetch.
	own, err := c.Responses(ctx, "us.example", nil, clk.Now())
	if err != nil || len(own) != 1 {
		t.Fatalf("Responses(self) = %d, %v", len(own), err)
	}
	if err := keys.VerifyJSON(own[0], "us.example", self.KeyID(), self.Public()); err != nil {
		t.Errorf("own response does not verify: %v", err)
	}
	if pub, _ := mustVerifyKey(t, c, "us.example", self.KeyID()); !bytes.Equal(pub, self.Public()) {
		t.Errorf("VerifyKey(self) = %x, want %x", pub, self.Public())
	}
	if _, _, err := c.VerifyKey(ctx, "us.example", "ed25519:other"); !errors.Is(err, keys.ErrKeyNotFound) {
		t.Errorf("VerifyKey(self, unknown key) = %v, want ErrKeyNotFound", err)
	}

	if _, err := c.Responses(ctx, "remote.example", []id.KeyID{k.KeyID()}, clk.Now()); err != nil {
		t.Fatalf("Responses: %v", err)
	}
	// Cached keys valid long enough answer without a fetch; asking for
	// keys valid later than they are makes a fetch (once per RetryAfter).
	c.Responses(ctx, "remote.example", nil, clk.Now().Add(30*time.Minute))
	if n := r.count("remote.example"); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
	r.set("remote.example", mustResponse(t, "remote.example", k, nil, clk.Now().Add(5*time.Hour)))
	clk.Add(2 * time.Minute)
	resps, err := c.Responses(ctx, "remote.example", nil, clk.Now().Add(4*time.Hour))
	if err != nil || len(resps) != 1 {
		t.Fatalf("Responses(min 4h) = %d, %v", len(resps), err)
	}
	if n := r.count("remote.example"); n != 2 {
		t.Errorf("fetches after asking for keys valid longer = %d, want 2", n)
	}
	if !bytes.Contains(resps[0], []byte(`"valid_until_ts":`)) {
		t.Errorf("response %s has no valid_until_ts", resps[0])
	}
	// A server never reached and unknown: an error.
	if _, err := c.Responses(ctx, "down.example", nil, clk.Now()); err == nil {
		t.Errorf("Responses(unreachable, unknown) = nil error, want one")
	}
}

func TestCachePrefetch(t *testing.T) {
	clk := newClock()
	r := newRemote()
	ks := map[string]*keys.SigningKey{}
	for _, s := range []string{"a.example", "b.example", "c.example"} {
		ks[s] = mustGenerate(t, "k1")
		r.set(s, mustResponse(t, s, ks[s], nil, clk.Now().Add(time.Hour)))
	}
	c := keys.NewCache(keys.CacheConfig{Fetch: r.fetch, Now: clk.Now, Concurrency: 2})
	err := c.Prefetch(context.Background(), map[string][]id.KeyID{
		"a.example":    {"ed25519:k1"},
		"b.example":    nil,
		"c.example":    {"ed25519:k1", "ed25519:missing"},
		"down.example": {"ed25519:k1"},
	})
	if err == nil || !errors.Is(err, keys.ErrKeyNotFound) {
		t.Errorf("Prefetch = %v, want the joined errors of c.example (a missing key) and down.example", err)
	}
	for s, k := range ks {
		mustVerifyKey(t, c, s, k.KeyID())
		if n := r.count(s); n != 1 {
			t.Errorf("fetches of %s = %d, want 1 (prefetched)", s, n)
		}
	}
}

package federation_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"polder.dev/polder/internal/federation"
)

// fakeDNS answers SRV lookups from a table: "_service._tcp.name" → records.
// A name in fail answers with a server failure.
type fakeDNS struct {
	srv  map[string][]*net.SRV
	fail map[string]bool

	mu      sync.Mutex
	lookups []string
}

func (d *fakeDNS) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	q := "_" + service + "._" + proto + "." + name
	d.mu.Lock()
	d.lookups = append(d.lookups, q)
	d.mu.Unlock()
	if d.fail[q] {
		return "", nil, &net.DNSError{Err: "server misbehaving", Name: q, IsTemporary: true}
	}
	recs, ok := d.srv[q]
	if !ok {
		return "", nil, &net.DNSError{Err: "no such host", Name: q, IsNotFound: true}
	}
	return q, recs, nil
}

// wellKnownSite serves /.well-known/matrix/server for several host names
// over TLS (the httptest certificate is for example.com and
// *.example.com). Hosts in down refuse connections.
type wellKnownSite struct {
	srv  *httptest.Server
	down map[string]bool

	mu      sync.Mutex
	answers map[string]func(w http.ResponseWriter)
	fetches map[string]int // answered requests per host
	dials   map[string]int // connection attempts per host
}

func newWellKnownSite(t *testing.T) *wellKnownSite {
	s := &wellKnownSite{answers: map[string]func(http.ResponseWriter){}, fetches: map[string]int{}, dials: map[string]int{}, down: map[string]bool{}}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/matrix/server" {
			http.NotFound(w, r)
			return
		}
		s.mu.Lock()
		s.fetches[r.Host]++
		answer := s.answers[r.Host]
		s.mu.Unlock()
		if answer == nil {
			http.NotFound(w, r)
			return
		}
		answer(w)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *wellKnownSite) set(host string, answer func(w http.ResponseWriter)) {
	s.mu.Lock()
	s.answers[host] = answer
	s.mu.Unlock()
}

func (s *wellKnownSite) setDown(host string) {
	s.mu.Lock()
	s.down[host] = true
	s.mu.Unlock()
}

func (s *wellKnownSite) dialCount(host string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dials[host]
}

func (s *wellKnownSite) count(host string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches[host]
}

// transport dials the site for every host, and fails for hosts in down.
func (s *wellKnownSite) transport(t *testing.T) http.RoundTripper {
	tr := s.srv.Client().Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true // each fetch dials, so that down hosts fail
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		s.mu.Lock()
		s.dials[host]++
		down := s.down[host]
		s.mu.Unlock()
		if down {
			return nil, fmt.Errorf("dial %s: connection refused", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", s.srv.Listener.Addr().String())
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func mServer(name string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"m.server": %q}`, name)
	}
}

func body(s string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) { fmt.Fprint(w, s) }
}

func TestDiscoveryResolve(t *testing.T) {
	site := newWellKnownSite(t)
	site.set("ip.example.com", mServer("10.0.0.1"))
	site.set("ipport.example.com", mServer("[2001:db8::2]:99"))
	site.set("port.example.com", mServer("delegated.example.com:1234"))
	site.set("srv.example.com", mServer("dsrv.example.com"))
	site.set("legacy.example.com", mServer("dlegacy.example.com"))
	site.set("plain.example.com", mServer("dplain.example.com"))
	site.set("badjson.example.com", body(`{"m.server":`))
	site.set("badname.example.com", mServer("not a server name"))
	site.set("nonstring.example.com", body(`{"m.server": 12}`))
	site.set("error.example.com", func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusInternalServerError)
		mServer("x.example.com")(w)
	})
	site.setDown("down.example.com")

	dns := &fakeDNS{
		srv: map[string][]*net.SRV{
			"_matrix-fed._tcp.dsrv.example.com":      {{Target: "fed.example.net.", Port: 5555}},
			"_matrix._tcp.dsrv.example.com":          {{Target: "wrong.example.net.", Port: 1}},
			"_matrix._tcp.dlegacy.example.com":       {{Target: "old.example.net.", Port: 6666}},
			"_matrix-fed._tcp.nowk.example.com":      {{Target: "fed2.example.net.", Port: 7777}},
			"_matrix._tcp.nowklegacy.example.com":    {{Target: "old2.example.net.", Port: 8888}},
			"_matrix-fed._tcp.dotsrv.example.com":    {{Target: ".", Port: 0}},
			"_matrix-fed._tcp.badjson.example.com":   {{Target: "bj.example.net.", Port: 1111}},
			"_matrix-fed._tcp.badname.example.com":   {{Target: "bn.example.net.", Port: 2222}},
			"_matrix-fed._tcp.down.example.com":      {{Target: "dn.example.net.", Port: 3333}},
			"_matrix-fed._tcp.error.example.com":     {{Target: "er.example.net.", Port: 4444}},
			"_matrix-fed._tcp.nonstring.example.com": {{Target: "ns.example.net.", Port: 5151}},
		},
		fail: map[string]bool{"_matrix-fed._tcp.servfail.example.com": true},
	}
	d := federation.NewDiscovery(federation.DiscoveryConfig{LookupSRV: dns.LookupSRV, Transport: site.transport(t)})

	tests := []struct {
		name   string
		server string
		want   federation.Target
	}{
		// Step 1: IP literals, with the given port or 8448; the certificate
		// is for the IP, and the Host header the server name.
		{"ipv4", "192.0.2.1", federation.Target{Addr: "192.0.2.1:8448", Host: "192.0.2.1", ServerName: "192.0.2.1"}},
		{"ipv4 port", "192.0.2.1:1234", federation.Target{Addr: "192.0.2.1:1234", Host: "192.0.2.1:1234", ServerName: "192.0.2.1"}},
		{"ipv6", "[2001:db8::1]", federation.Target{Addr: "[2001:db8::1]:8448", Host: "[2001:db8::1]", ServerName: "2001:db8::1"}},
		{"ipv6 port", "[2001:db8::1]:1234", federation.Target{Addr: "[2001:db8::1]:1234", Host: "[2001:db8::1]:1234", ServerName: "2001:db8::1"}},
		// Step 2: a host name with a port; no well-known, no SRV.
		{"host port", "srv.example.com:4321", federation.Target{Addr: "srv.example.com:4321", Host: "srv.example.com:4321", ServerName: "srv.example.com"}},
		// Step 3: well-known delegation.
		{"3.1 delegated ip", "ip.example.com", federation.Target{Addr: "10.0.0.1:8448", Host: "10.0.0.1", ServerName: "10.0.0.1"}},
		{"3.1 delegated ip port", "ipport.example.com", federation.Target{Addr: "[2001:db8::2]:99", Host: "[2001:db8::2]:99", ServerName: "2001:db8::2"}},
		{"3.2 delegated port", "port.example.com", federation.Target{Addr: "delegated.example.com:1234", Host: "delegated.example.com:1234", ServerName: "delegated.example.com"}},
		{"3.3 delegated SRV", "srv.example.com", federation.Target{Addr: "fed.example.net:5555", Host: "dsrv.example.com", ServerName: "dsrv.example.com"}},
		{"3.4 delegated legacy SRV", "legacy.example.com", federation.Target{Addr: "old.example.net:6666", Host: "dlegacy.example.com", ServerName: "dlegacy.example.com"}},
		{"3.5 delegated 8448", "plain.example.com", federation.Target{Addr: "dplain.example.com:8448", Host: "dplain.example.com", ServerName: "dplain.example.com"}},
		// Steps 4 to 6: no (valid) well-known.
		{"4 SRV", "nowk.example.com", federation.Target{Addr: "fed2.example.net:7777", Host: "nowk.example.com", ServerName: "nowk.example.com"}},
		{"5 legacy SRV", "nowklegacy.example.com", federation.Target{Addr: "old2.example.net:8888", Host: "nowklegacy.example.com", ServerName: "nowklegacy.example.com"}},
		{"6 8448", "nothing.example.com", federation.Target{Addr: "nothing.example.com:8448", Host: "nothing.example.com", ServerName: "nothing.example.com"}},
		{"SRV target . is no record", "dotsrv.example.com", federation.Target{Addr: "dotsrv.example.com:8448", Host: "dotsrv.example.com", ServerName: "dotsrv.example.com"}},
		{"well-known bad JSON", "badjson.example.com", federation.Target{Addr: "bj.example.net:1111", Host: "badjson.example.com", ServerName: "badjson.example.com"}},
		{"well-known bad m.server", "badname.example.com", federation.Target{Addr: "bn.example.net:2222", Host: "badname.example.com", ServerName: "badname.example.com"}},
		{"well-known m.server not a string", "nonstring.example.com", federation.Target{Addr: "ns.example.net:5151", Host: "nonstring.example.com", ServerName: "nonstring.example.com"}},
		{"well-known 500", "error.example.com", federation.Target{Addr: "er.example.net:4444", Host: "error.example.com", ServerName: "error.example.com"}},
		{"well-known unreachable", "down.example.com", federation.Target{Addr: "dn.example.net:3333", Host: "down.example.com", ServerName: "down.example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.Resolve(context.Background(), tt.server)
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.server, err)
			}
			if got != tt.want {
				t.Errorf("Resolve(%q) = %+v, want %+v", tt.server, got, tt.want)
			}
		})
	}
	if n := site.count("srv.example.com"); n != 1 {
		t.Errorf("well-known fetches of srv.example.com = %d, want 1 (not for srv.example.com:4321)", n)
	}

	t.Run("SRV lookup failure", func(t *testing.T) {
		if got, err := d.Resolve(context.Background(), "servfail.example.com"); err == nil {
			t.Errorf("Resolve with a failing DNS server = %+v, want an error", got)
		}
	})
	for _, bad := range []string{"", "a b.example.com", "example.com:", "example.com:0", "example.com:65536", "example.com:123456",
		"[2001:db8::1", "[192.0.2.1]", "[fe80::1%eth0]", "exa_mple.com", "example.com:12a", ":8448"} {
		t.Run("invalid "+bad, func(t *testing.T) {
			if got, err := d.Resolve(context.Background(), bad); !errors.Is(err, federation.ErrInvalidServerName) {
				t.Errorf("Resolve(%q) = %+v, %v; want ErrInvalidServerName", bad, got, err)
			}
		})
	}
}

// TestDiscoveryWellKnownCache checks how long well-known answers are kept
// (server-server API, "Resolving server names", step 3).
func TestDiscoveryWellKnownCache(t *testing.T) {
	site := newWellKnownSite(t)
	dns := &fakeDNS{}
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	d := federation.NewDiscovery(federation.DiscoveryConfig{LookupSRV: dns.LookupSRV, Transport: site.transport(t), Now: clk.Now})
	resolve := func(name string) federation.Target {
		t.Helper()
		got, err := d.Resolve(context.Background(), name)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", name, err)
		}
		return got
	}
	// step moves the clock and resolves again, expecting the well-known to
	// have been fetched fetches times in all.
	step := func(name string, d time.Duration, fetches int) federation.Target {
		t.Helper()
		clk.Add(d)
		got := resolve(name)
		if n := site.count(name); n != fetches {
			t.Errorf("after %v more: well-known of %s fetched %d times, want %d", d, name, n, fetches)
		}
		return got
	}

	t.Run("default 24h", func(t *testing.T) {
		site.set("a.example.com", mServer("a1.example.com:1"))
		step("a.example.com", 0, 1)
		step("a.example.com", 10*time.Minute, 1)
		step("a.example.com", 23*time.Hour, 1)
		step("a.example.com", 2*time.Hour, 2)
	})
	t.Run("max-age", func(t *testing.T) {
		site.set("b.example.com", func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "public, max-age=3600")
			mServer("b1.example.com:1")(w)
		})
		step("b.example.com", 0, 1)
		step("b.example.com", 59*time.Minute, 1)
		step("b.example.com", 2*time.Minute, 2)
	})
	t.Run("max-age capped at 48h", func(t *testing.T) {
		site.set("c.example.com", func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "max-age=31536000")
			mServer("c1.example.com:1")(w)
		})
		step("c.example.com", 0, 1)
		step("c.example.com", 47*time.Hour, 1)
		step("c.example.com", 2*time.Hour, 2)
	})
	t.Run("no-store kept 5 minutes", func(t *testing.T) {
		site.set("e.example.com", func(w http.ResponseWriter) {
			w.Header().Set("Cache-Control", "no-store")
			mServer("e1.example.com:1")(w)
		})
		step("e.example.com", 0, 1)
		step("e.example.com", 6*time.Minute, 2)
	})
	t.Run("invalid answer kept an hour", func(t *testing.T) {
		step("f.example.com", 0, 1) // 404
		step("f.example.com", 59*time.Minute, 1)
		site.set("f.example.com", mServer("f1.example.com:1"))
		got := step("f.example.com", 2*time.Minute, 2)
		if got.Addr != "f1.example.com:1" {
			t.Errorf("Resolve after the well-known appeared = %+v, want f1.example.com:1", got)
		}
	})
	t.Run("no answer backs off and keeps the last valid one", func(t *testing.T) {
		site.set("g.example.com", mServer("g1.example.com:1"))
		step("g.example.com", 0, 1)
		site.setDown("g.example.com")
		// attempt moves the clock, resolves, and checks the number of
		// attempts to reach the well-known so far and the delegation kept.
		attempt := func(d time.Duration, attempts int) {
			t.Helper()
			clk.Add(d)
			if got := resolve("g.example.com"); got.Addr != "g1.example.com:1" {
				t.Errorf("Resolve with the well-known down = %+v, want the last valid delegation g1.example.com:1", got)
			}
			if n := site.dialCount("g.example.com"); n != attempts {
				t.Errorf("after %v more: %d attempts to fetch the well-known, want %d", d, n, attempts)
			}
		}
		attempt(25*time.Hour, 2)  // expired: fetch fails, kept 2 minutes
		attempt(6*time.Minute, 3) // fails again, kept 4 minutes
		attempt(6*time.Minute, 4) // kept 8 minutes
		attempt(6*time.Minute, 4) // within the 8
		attempt(3*time.Minute, 5) // kept 16 minutes
	})
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestDiscoveryContext(t *testing.T) {
	// A caller whose context ends gets its error; the fetch goes on for
	// the others and is cached.
	release := make(chan struct{})
	site := newWellKnownSite(t)
	site.set("slow.example.com", func(w http.ResponseWriter) {
		<-release
		mServer("s1.example.com:1")(w)
	})
	d := federation.NewDiscovery(federation.DiscoveryConfig{LookupSRV: (&fakeDNS{}).LookupSRV, Transport: site.transport(t)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Resolve(ctx, "slow.example.com"); !errors.Is(err, context.Canceled) {
		t.Errorf("Resolve with a cancelled context = %v, want context.Canceled", err)
	}
	close(release)
	got, err := d.Resolve(context.Background(), "slow.example.com")
	if err != nil || got.Addr != "s1.example.com:1" {
		t.Errorf("Resolve = %+v, %v; want s1.example.com:1", got, err)
	}
	if n := site.count("slow.example.com"); n != 1 {
		t.Errorf("well-known fetches = %d, want 1", n)
	}
}

package federation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// ErrInvalidServerName is returned (wrapped) for a name that does not match
// the server name grammar (appendix "Server Name").
var ErrInvalidServerName = errors.New("invalid server name")

// ResolverFunc adapts a function to a Resolver (tests, fixed targets).
type ResolverFunc func(ctx context.Context, serverName string) (Target, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, serverName string) (Target, error) {
	return f(ctx, serverName)
}

// The discovery timings. The well-known ones are the spec's
// recommendations (server-server API, "Resolving server names", step 3).
const (
	wellKnownDefaultTTL = 24 * time.Hour
	wellKnownMaxTTL     = 48 * time.Hour
	// wellKnownMinTTL keeps a max-age of 0 from costing a fetch per
	// request.
	wellKnownMinTTL = 5 * time.Minute
	// wellKnownInvalidTTL is how long an answer that is not a valid
	// well-known (404, bad JSON, no m.server) is kept: "errors are
	// recommended to be cached for up to an hour".
	wellKnownInvalidTTL = time.Hour
	// wellKnownDownTTL is how long a failure to get any answer (DNS,
	// connection, TLS, timeout) is kept the first time; it doubles with
	// each failure in a row up to wellKnownInvalidTTL ("exponentially back
	// off for repeated failures").
	wellKnownDownTTL      = 2 * time.Minute
	wellKnownTimeout      = 10 * time.Second
	wellKnownMaxBytes     = 64 << 10
	wellKnownRedirects    = 10
	defaultFederationPort = "8448"
	// targetTTL is how long a resolved target is reused before DNS is
	// asked again. Go's resolver does not tell the records' TTLs.
	targetTTL = 5 * time.Minute
)

// DiscoveryConfig configures a Discovery. Every field is optional.
type DiscoveryConfig struct {
	// LookupSRV looks up SRV records as net.Resolver.LookupSRV does. nil
	// uses net.DefaultResolver.
	LookupSRV func(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
	// Transport fetches https://<hostname>/.well-known/matrix/server. nil
	// uses an HTTPS transport that trusts the system roots and RootCAs.
	Transport http.RoundTripper
	// RootCAs are trusted for the well-known fetch besides the system
	// roots (see Config.RootCAs).
	RootCAs *x509.CertPool
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Discovery is the Resolver that follows the spec (server-server API,
// "Resolving server names"): IP literals and names with a port are used as
// they are; other names are looked up through
// https://<hostname>/.well-known/matrix/server, then SRV records for
// _matrix-fed._tcp and the deprecated _matrix._tcp, then port 8448.
//
// Well-known answers are cached as the spec recommends: per Cache-Control
// max-age (24 hours without one, between 5 minutes and 48 hours), invalid
// answers for an hour, and failures to get an answer for 2 minutes doubling
// up to an hour, during which an earlier valid answer stays in use.
// Resolved targets are reused for up to 5 minutes (no longer than the
// well-known answer they came from), as Go's resolver does not tell DNS
// TTLs.
//
// Host names of targets are left for the dialer to resolve (CNAME, AAAA,
// A). It is safe for concurrent use.
type Discovery struct {
	cfg  DiscoveryConfig
	http *http.Client
	sf   singleflight.Group

	mu        sync.Mutex
	wellKnown map[string]*wellKnownEntry
	targets   map[string]targetEntry
}

type wellKnownEntry struct {
	server   string    // m.server, "" if there is no valid one
	until    time.Time // when to ask again
	failures int       // failures to get an answer in a row
}

type targetEntry struct {
	target Target
	until  time.Time
}

var _ Resolver = (*Discovery)(nil)

// NewDiscovery returns a Discovery.
func NewDiscovery(cfg DiscoveryConfig) *Discovery {
	if cfg.LookupSRV == nil {
		cfg.LookupSRV = net.DefaultResolver.LookupSRV
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tr := cfg.Transport
	if tr == nil {
		tr = &http.Transport{
			DialTLSContext:      wellKnownDialTLS(cfg.RootCAs),
			TLSHandshakeTimeout: wellKnownTimeout,
			IdleConnTimeout:     30 * time.Second,
			MaxIdleConnsPerHost: 1,
		}
	}
	return &Discovery{
		cfg: cfg,
		http: &http.Client{
			Transport: tr,
			Timeout:   wellKnownTimeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= wellKnownRedirects {
					return errors.New("too many redirects")
				}
				if req.URL.Scheme != "https" {
					return fmt.Errorf("redirect to %s, not https", req.URL.Scheme)
				}
				return nil
			},
		},
		wellKnown: map[string]*wellKnownEntry{},
		targets:   map[string]targetEntry{},
	}
}

// CloseIdleConnections closes the idle connections of the well-known
// fetches.
func (d *Discovery) CloseIdleConnections() { d.http.CloseIdleConnections() }

// Resolve returns where serverName is served. Errors: ErrInvalidServerName
// (wrapped) for a malformed name, a DNS error when an SRV lookup fails for
// another reason than the name having no such record, or the context's
// error.
func (d *Discovery) Resolve(ctx context.Context, serverName string) (Target, error) {
	host, port, ip, err := splitServerName(serverName)
	if err != nil {
		return Target{}, err
	}
	// Step 1: an IP literal, with its port or 8448. No SNI is sent for an
	// IP, and the certificate must be for the IP.
	if ip.IsValid() {
		return Target{Addr: net.JoinHostPort(host, portOr(port)), Host: serverName, ServerName: host}, nil
	}
	// Step 2: a host name with an explicit port.
	if port != "" {
		return Target{Addr: net.JoinHostPort(host, port), Host: serverName, ServerName: host}, nil
	}
	now := d.cfg.Now()
	d.mu.Lock()
	te, ok := d.targets[serverName]
	d.mu.Unlock()
	if ok && now.Before(te.until) {
		return te.target, nil
	}
	t, until, err := d.resolveName(ctx, host)
	if err != nil {
		return Target{}, err
	}
	d.mu.Lock()
	if limit := now.Add(targetTTL); until.After(limit) {
		until = limit
	}
	d.targets[serverName] = targetEntry{target: t, until: until}
	d.mu.Unlock()
	return t, nil
}

// resolveName runs steps 3 to 6 for a host name without a port. It also
// returns when the well-known answer it used is to be fetched again.
func (d *Discovery) resolveName(ctx context.Context, host string) (Target, time.Time, error) {
	// Step 3: .well-known delegation.
	delegated, until, err := d.delegation(ctx, host)
	if err != nil {
		return Target{}, until, err
	}
	if delegated == "" {
		// Steps 4 to 6, on the server's own host name.
		t, err := d.resolveSRV(ctx, host)
		return t, until, err
	}
	dhost, dport, dip, err := splitServerName(delegated)
	if err != nil { // checked when the answer was read
		return Target{}, until, err
	}
	switch {
	case dip.IsValid(): // 3.1
		return Target{Addr: net.JoinHostPort(dhost, portOr(dport)), Host: delegated, ServerName: dhost}, until, nil
	case dport != "": // 3.2
		return Target{Addr: net.JoinHostPort(dhost, dport), Host: delegated, ServerName: dhost}, until, nil
	default: // 3.3 to 3.5
		t, err := d.resolveSRV(ctx, dhost)
		return t, until, err
	}
}

// resolveSRV looks up _matrix-fed._tcp.<host>, then the deprecated
// _matrix._tcp.<host>, and falls back to <host>:8448. The Host header and
// certificate name are host in every case (steps 3.3–3.5 and 4–6).
func (d *Discovery) resolveSRV(ctx context.Context, host string) (Target, error) {
	for _, service := range []string{"matrix-fed", "matrix"} {
		addr, err := d.lookupSRV(ctx, service, host)
		if err != nil {
			return Target{}, err
		}
		if addr != "" {
			return Target{Addr: addr, Host: host, ServerName: host}, nil
		}
	}
	return Target{Addr: net.JoinHostPort(host, defaultFederationPort), Host: host, ServerName: host}, nil
}

// lookupSRV returns the host:port of the first SRV record of
// _service._tcp.host (Go orders them by priority and weight), or "" if
// there is none. A target of "." says the service is not offered there
// (RFC 2782) and counts as none.
func (d *Discovery) lookupSRV(ctx context.Context, service, host string) (string, error) {
	_, addrs, err := d.cfg.LookupSRV(ctx, service, "tcp", host)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return "", nil
		}
		return "", fmt.Errorf("look up SRV _%s._tcp.%s: %w", service, host, err)
	}
	for _, a := range addrs {
		target := strings.TrimSuffix(a.Target, ".")
		if target == "" || a.Port == 0 {
			continue
		}
		return net.JoinHostPort(target, strconv.Itoa(int(a.Port))), nil
	}
	return "", nil
}

// delegation returns the m.server of host's .well-known, or "" if it has
// no valid one, and until when that answer is kept. It fails only when
// ctx ends.
func (d *Discovery) delegation(ctx context.Context, host string) (string, time.Time, error) {
	now := d.cfg.Now()
	d.mu.Lock()
	if e, ok := d.wellKnown[host]; ok && now.Before(e.until) {
		server, until := e.server, e.until
		d.mu.Unlock()
		return server, until, nil
	}
	d.mu.Unlock()
	// One fetch per host at a time, detached from the caller so that a
	// caller going away does not cache a failure for the others.
	ch := d.sf.DoChan(host, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wellKnownTimeout)
		defer cancel()
		server, ttl, answered := d.fetchWellKnown(fctx, host)
		now := d.cfg.Now()
		d.mu.Lock()
		defer d.mu.Unlock()
		e := d.wellKnown[host]
		if e == nil {
			e = &wellKnownEntry{}
			d.wellKnown[host] = e
		}
		switch {
		case server != "":
			e.server, e.failures = server, 0
			e.until = now.Add(ttl)
		case answered:
			e.server, e.failures = "", 0
			e.until = now.Add(wellKnownInvalidTTL)
		default:
			// No answer: back off, and keep an earlier valid answer
			// meanwhile.
			e.failures++
			backoff := wellKnownDownTTL
			for i := 1; i < e.failures && backoff < wellKnownInvalidTTL; i++ {
				backoff *= 2
			}
			e.until = now.Add(min(backoff, wellKnownInvalidTTL))
		}
		return *e, nil
	})
	select {
	case r := <-ch:
		e := r.Val.(wellKnownEntry)
		return e.server, e.until, nil
	case <-ctx.Done():
		return "", time.Time{}, ctx.Err()
	}
}

// fetchWellKnown gets https://host/.well-known/matrix/server. It returns
// the m.server it names and how long to keep it; "" and answered=true for
// an answer that is not a valid well-known, and answered=false when no
// answer came.
func (d *Discovery) fetchWellKnown(ctx context.Context, host string) (server string, ttl time.Duration, answered bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/.well-known/matrix/server", nil)
	if err != nil {
		return "", 0, true
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return "", 0, false
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, wellKnownMaxBytes+1))
	if err != nil {
		return "", 0, false
	}
	if resp.StatusCode != http.StatusOK || len(data) > wellKnownMaxBytes {
		return "", 0, true
	}
	// The Content-Type is not checked: "servers parsing the response should
	// assume that the body is JSON regardless of type".
	var wk struct {
		Server any `json:"m.server"`
	}
	if err := json.Unmarshal(data, &wk); err != nil {
		return "", 0, true
	}
	s, ok := wk.Server.(string)
	if !ok {
		return "", 0, true
	}
	if _, _, _, err := splitServerName(s); err != nil {
		return "", 0, true
	}
	return s, cacheTTL(resp.Header), true
}

// cacheTTL reads max-age from Cache-Control, clamped to [5 min, 48 h];
// no-store and no-cache give the minimum, no header 24 hours.
func cacheTTL(h http.Header) time.Duration {
	ttl := wellKnownDefaultTTL
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			switch {
			case d == "no-store" || d == "no-cache":
				return wellKnownMinTTL
			case strings.HasPrefix(d, "max-age="):
				if n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64); err == nil && n >= 0 {
					ttl = time.Duration(min(n, int64(wellKnownMaxTTL/time.Second))) * time.Second
				}
			}
		}
	}
	return min(max(ttl, wellKnownMinTTL), wellKnownMaxTTL)
}

// splitServerName parses a server name (appendix "Server Name"):
// hostname [":" port], where hostname is an IPv4 address, an IPv6 address
// in brackets or a DNS name of [0-9A-Za-z.-], and port 1 to 5 digits.
// host is returned without brackets; ip is valid for an IP literal.
func splitServerName(name string) (host, port string, ip netip.Addr, err error) {
	bad := func(why string) (string, string, netip.Addr, error) {
		return "", "", netip.Addr{}, fmt.Errorf("%w: %q: %s", ErrInvalidServerName, name, why)
	}
	if name == "" || len(name) > 255 {
		return bad("length")
	}
	rest := ""
	if name[0] == '[' {
		end := strings.IndexByte(name, ']')
		if end < 0 {
			return bad("unclosed [")
		}
		host, rest = name[1:end], name[end+1:]
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return bad("not an IPv6 address in brackets")
		}
		ip = a
	} else {
		host = name
		if i := strings.LastIndexByte(name, ':'); i >= 0 {
			host, rest = name[:i], name[i:]
		}
		if host == "" {
			return bad("empty host")
		}
		for _, c := range []byte(host) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
				return bad("host has characters outside [0-9A-Za-z.-]")
			}
		}
		if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
			ip = a
		}
	}
	if rest != "" {
		digits, ok := strings.CutPrefix(rest, ":")
		if !ok || len(digits) == 0 || len(digits) > 5 || strings.Trim(digits, "0123456789") != "" {
			return bad("bad port")
		}
		n, _ := strconv.Atoi(digits)
		if n < 1 || n > 65535 {
			return bad("port out of range")
		}
		port = strconv.Itoa(n)
	}
	return host, port, ip, nil
}

func portOr(port string) string {
	if port == "" {
		return defaultFederationPort
	}
	return port
}

// tlsConfig returns the client TLS config for a server whose certificate
// must be valid for name (a host name or an IP address; no SNI is sent for
// an IP). With extra roots it verifies the chain itself, against the
// system roots and then extra, since a CertPool cannot be merged.
func tlsConfig(name string, extra *x509.CertPool) *tls.Config {
	if extra == nil {
		return &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12}
	}
	return &tls.Config{
		ServerName:         name,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified below, always (VerifyConnection runs regardless)
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: server sent no certificate")
			}
			opts := x509.VerifyOptions{DNSName: name, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(opts) // system roots
			if err == nil {
				return nil
			}
			opts.Roots = extra
			if _, err2 := cs.PeerCertificates[0].Verify(opts); err2 == nil {
				return nil
			}
			return err
		},
	}
}

// dialTLS dials addr and completes a TLS handshake expecting a
// certificate for name.
func dialTLS(ctx context.Context, addr, name string, extra *x509.CertPool) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, tlsConfig(name, extra))
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

// wellKnownDialTLS dials the well-known's host (or a redirect's) with the
// certificate checked for that host.
func wellKnownDialTLS(extra *x509.CertPool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		return dialTLS(ctx, addr, host, extra)
	}
}

package hstest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/server"
	"polder.dev/polder/internal/store/storetest"
)

// Federation is a set of test servers that federate with each other, all
// in this process. Each one runs on SQLite (or Options.Engine) and serves HTTPS
// on its own loopback port with a certificate that Polder itself mints at
// startup (tls_ca_cert, tls_ca_key) from one CA the harness makes for the
// set, and trusts that CA for outbound federation. Server names resolve
// through the Federation itself (server.WithResolver): each name maps to
// its server's HTTPS listener, with the name as Host header and TLS server
// name, as the spec's discovery would give for a name with an explicit
// port.
//
// Stop makes a server unreachable (its peers get "connection refused");
// Restart brings it back on the same data dir and, where the port is still
// free, the same port (the resolver follows it either way).
type Federation struct {
	// CACert and CAKey are the PEM files of the CA.
	CACert, CAKey string

	tb     testing.TB
	pool   *x509.CertPool
	client *http.Client

	mu      sync.RWMutex
	servers []*Server
	byName  map[string]*Server
	remotes map[string]*Remote // scripted remote servers (remote.go)
}

// DefaultFederationNames are the server names NewFederation uses when it
// is given none.
var DefaultFederationNames = []string{"hs1.polder.test", "hs2.polder.test"}

// NewFederation starts one server per name, made from opts (its ServerName
// is replaced by the name; opts.Config still runs last). Without names it
// starts DefaultFederationNames. The servers stop when the test ends.
func NewFederation(tb testing.TB, opts Options, names ...string) *Federation {
	tb.Helper()
	if len(names) == 0 {
		names = DefaultFederationNames
	}
	dir := tb.TempDir()
	f := &Federation{
		CACert: filepath.Join(dir, "ca.crt"),
		CAKey:  filepath.Join(dir, "ca.key"),
		tb:     tb,
		byName: map[string]*Server{},
	}
	ca := writeTestCA(tb, f.CACert, f.CAKey)
	f.pool = x509.NewCertPool()
	f.pool.AddCert(ca)
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: f.pool},
		DialContext:       f.dial,
		ForceAttemptHTTP2: true,
		IdleConnTimeout:   30 * time.Second,
	}
	f.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	tb.Cleanup(tr.CloseIdleConnections)

	engine := storetest.Engines(tb)[0] // SQLite
	if opts.Engine != nil {
		engine = *opts.Engine
	}
	for _, name := range names {
		if f.lookup(name) != nil {
			tb.Fatalf("NewFederation: server name %s given twice", name)
		}
		o := opts
		o.ServerName = name
		o.fed = f
		user := opts.Config
		o.Config = func(c *config.Config) {
			c.TLSCACert, c.TLSCAKey = f.CACert, f.CAKey
			if user != nil {
				user(c)
			}
		}
		s := Start(tb, engine, o)
		f.mu.Lock()
		f.byName[name] = s
		f.servers = append(f.servers, s)
		f.mu.Unlock()
	}
	return f
}

func (f *Federation) lookup(name string) *Server {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.byName[name]
}

// Server returns the server named name; it fails the test if there is none.
func (f *Federation) Server(name string) *Server {
	s := f.lookup(name)
	if s == nil {
		f.tb.Fatalf("hstest: no server named %q in the federation", name)
	}
	return s
}

// Servers returns the servers in the order of their names.
func (f *Federation) Servers() []*Server {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return append([]*Server(nil), f.servers...)
}

// RootCAs is a pool holding the federation's CA only.
func (f *Federation) RootCAs() *x509.CertPool { return f.pool }

// Resolve implements federation.Resolver: a server name of the federation
// maps to its HTTPS listener on the loopback address (the last one it had,
// if it is stopped), the name of a Remote to its listener; any other name
// is an error.
func (f *Federation) Resolve(_ context.Context, serverName string) (federation.Target, error) {
	if r := f.remote(serverName); r != nil {
		return federation.Target{Addr: r.addr, Host: serverName, ServerName: hostOnly(serverName)}, nil
	}
	s := f.lookup(serverName)
	if s == nil || s.FederationAddr() == "" {
		return federation.Target{}, fmt.Errorf("hstest: no server named %q in the federation", serverName)
	}
	return federation.Target{Addr: s.FederationAddr(), Host: serverName, ServerName: hostOnly(serverName)}, nil
}

var _ federation.Resolver = (*Federation)(nil)

// HTTPClient makes plain (unsigned) HTTPS requests to URLs like
// "https://hs2.polder.test/_matrix/key/v2/server": it resolves the host
// through the federation and trusts its CA only. For the endpoints that
// need no X-Matrix signature, and for looking at the TLS a server offers.
func (f *Federation) HTTPClient() *http.Client { return f.client }

func (f *Federation) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	name := addr
	if f.lookup(name) == nil {
		name = strings.TrimSuffix(addr, ":443") // https://name/ without a port
	}
	t, err := f.Resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, t.Addr)
}

// FederationAddr is the host:port of the server's HTTPS listener (the last
// one it had, if it is stopped); "" if it does not federate.
func (s *Server) FederationAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fedAddr
}

// federationOptions opens the HTTPS listener of a server of a federation,
// on its previous port if it had one and the port is free, and returns the
// server options that make it serve and resolve there. It returns nothing
// for a server outside a federation.
func (s *Server) federationOptions(tb testing.TB, cfg *config.Config) (net.Listener, []server.Option) {
	tb.Helper()
	if s.fed == nil {
		return nil, nil
	}
	var ln net.Listener
	if prev := s.FederationAddr(); prev != "" {
		ln, _ = net.Listen("tcp", prev)
	}
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			tb.Fatalf("listen: %v", err)
		}
	}
	cfg.TLSListen = ln.Addr().String()
	s.mu.Lock()
	s.fedAddr = ln.Addr().String()
	s.mu.Unlock()
	return ln, []server.Option{server.WithTLSListener(ln), server.WithResolver(s.fed)}
}

// hostOnly is a server name without its port.
func hostOnly(serverName string) string {
	if h, _, err := net.SplitHostPort(serverName); err == nil {
		return h
	}
	return serverName
}

// writeTestCA makes a CA (ECDSA P-256, valid for a day) and writes its
// certificate and key as PEM files.
func writeTestCA(tb testing.TB, certPath, keyPath string) *x509.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "hstest federation CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return ca
}

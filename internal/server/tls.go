package server

// The HTTPS listener and the certificates it serves, and the CAs that
// outbound federation trusts.
//
// Server-server API "TLS": federation takes place over HTTPS with a
// certificate signed by a known CA; servers may let administrators add
// trusted authorities. Polder serves the same handler on the HTTPS listener
// as on the plain one (client and federation APIs), as Synapse does on 8448.
// The certificate comes either from files (tls_cert, tls_key; read again
// when they change, so that a renewal needs no restart) or is minted at
// startup from a CA (tls_ca_cert, tls_ca_key) for the server name and kept
// in memory only; the minting CA is then trusted for outbound federation
// too, which is what a private federation and Complement need.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/config"
	fedclient "polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
)

// Option changes how New builds a server. The options exist for the test
// harness (internal/hstest); a deployment configures everything through
// config.Config.
type Option func(*options)

type options struct {
	resolver    fedclient.Resolver
	tlsListener net.Listener
}

// WithResolver makes outbound federation find servers through r instead of
// DNS (hstest maps its server names to loopback listeners).
func WithResolver(r fedclient.Resolver) Option {
	return func(o *options) { o.resolver = r }
}

// WithTLSListener makes Serve serve HTTPS on ln instead of opening
// tls_listen. Serve closes it. The config must name a certificate or a CA.
func WithTLSListener(ln net.Listener) Option {
	return func(o *options) { o.tlsListener = ln }
}

// mintedValidity is how long a certificate minted from tls_ca_cert is
// valid (at most as long as the CA). It is minted anew at every start.
const mintedValidity = 365 * 24 * time.Hour

// certCheckInterval is how often the certificate files are checked for a
// change, at most.
const certCheckInterval = time.Minute

// tlsSetup is what the HTTPS listener serves and what outbound federation
// trusts.
type tlsSetup struct {
	config *tls.Config // nil: no HTTPS listener
	// roots are the CAs outbound federation trusts: the system's plus
	// federation_trusted_ca and the minting CA; nil when there are no
	// extra CAs (the system's only).
	roots *x509.CertPool
	about string // where the certificate comes from, for the startup log
}

// loadTLS reads the certificate files, or mints a certificate from the CA,
// and the extra trusted CAs. Errors name the setting and the file.
func loadTLS(cfg config.Config, now time.Time, log *slog.Logger) (*tlsSetup, error) {
	t := &tlsSetup{about: "off"}
	var extra []*x509.Certificate
	switch {
	case cfg.TLSCert != "":
		f := &certFiles{certPath: cfg.TLSCert, keyPath: cfg.TLSKey, every: certCheckInterval, log: log}
		if err := f.load(now); err != nil {
			return nil, err
		}
		t.config = serverTLSConfig()
		t.config.GetCertificate = f.get
		t.about = fmt.Sprintf("certificate %s (expires %s)", cfg.TLSCert, f.cert.Leaf.NotAfter.Format(time.DateOnly))
	case cfg.TLSCACert != "":
		caPEM, err := os.ReadFile(cfg.TLSCACert)
		if err != nil {
			return nil, fmt.Errorf("tls_ca_cert: %w", err)
		}
		keyPEM, err := os.ReadFile(cfg.TLSCAKey)
		if err != nil {
			return nil, fmt.Errorf("tls_ca_key: %w", err)
		}
		cert, ca, err := mintCertificate(caPEM, keyPEM, cfg.ServerName, now)
		if err != nil {
			return nil, fmt.Errorf("tls_ca_cert %s: %w", cfg.TLSCACert, err)
		}
		t.config = serverTLSConfig()
		t.config.Certificates = []tls.Certificate{cert}
		t.about = fmt.Sprintf("certificate for %s minted from CA %q (expires %s)",
			hostOf(cfg.ServerName), ca.Subject.CommonName, cert.Leaf.NotAfter.Format(time.DateOnly))
		extra = append(extra, ca)
	}
	for _, name := range cfg.TrustedCAFiles() {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("federation_trusted_ca: %w", err)
		}
		certs, err := parseCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("federation_trusted_ca %s: %w", name, err)
		}
		extra = append(extra, certs...)
	}
	if len(extra) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool() // no system roots (an image FROM scratch without a bundle)
		}
		for _, c := range extra {
			pool.AddCert(c)
		}
		t.roots = pool
	}
	return t, nil
}

// serverTLSConfig is the HTTPS listener's TLS configuration without its
// certificate. NextProtos names h2 so that the http.Server, which also
// serves the plain listener, sets HTTP/2 up for TLS (it decides that once,
// from TLSConfig, on whichever listener it serves first).
func serverTLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
}

// listenTLS returns the HTTPS listener: the one given with WithTLSListener,
// or tls_listen opened now; nil when there is none.
func (s *Server) listenTLS() (net.Listener, error) {
	if s.opts.tlsListener != nil {
		if s.tls.config == nil {
			s.opts.tlsListener.Close()
			return nil, errors.New("a TLS listener was given but no certificate is configured (tls_cert or tls_ca_cert)")
		}
		return s.opts.tlsListener, nil
	}
	addr := s.cfg.TLSAddr()
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tls_listen %s: %w", addr, err)
	}
	return ln, nil
}

// federationResolver is the resolver outbound federation uses: the one
// given with WithResolver, one that refuses every server when federation
// is off, or nil (DNS).
func (s *Server) federationResolver() fedclient.Resolver {
	if !s.cfg.FederationEnabled {
		return disabledResolver{}
	}
	return s.opts.resolver
}

// errFederationDisabled is why no remote server is reached when
// federation_enabled is false.
var errFederationDisabled = errors.New("federation is disabled on this server (federation_enabled: false)")

type disabledResolver struct{}

func (disabledResolver) Resolve(context.Context, string) (fedclient.Target, error) {
	return fedclient.Target{}, errFederationDisabled
}

var _ fedclient.Resolver = disabledResolver{}

// federationGate answers the federation and key APIs with 404 M_UNRECOGNIZED
// when federation is off, as if they did not exist; otherwise it is h.
func federationGate(cfg config.Config, h http.Handler) http.Handler {
	if cfg.FederationEnabled {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/_matrix/federation/") || strings.HasPrefix(r.URL.Path, "/_matrix/key/") {
			api.WriteError(w, mxerr.Unrecognized("Federation is disabled on this server"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// certFiles serves the certificate in tls_cert and tls_key, reading the
// files again when their size or modification time changes (checked at
// most every interval). A renewal that does not load (a half-written file)
// keeps the old certificate and is logged.
type certFiles struct {
	certPath, keyPath string
	every             time.Duration
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

func (f *certFiles) fileStamp() string {
	var b strings.Builder
	for _, p := range []string{f.certPath, f.keyPath} {
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// load reads both files. Errors name the setting.
func (f *certFiles) load(now time.Time) error {
	stamp := f.fileStamp()
	cert, err := tls.LoadX509KeyPair(f.certPath, f.keyPath)
	if err != nil {
		return fmt.Errorf("tls_cert %s, tls_key %s: %w", f.certPath, f.keyPath, err)
	}
	if now.After(cert.Leaf.NotAfter) {
		f.log.Warn("the TLS certificate has expired", "file", f.certPath, "not_after", cert.Leaf.NotAfter)
	}
	f.cert, f.stamp, f.checked = &cert, stamp, now
	return nil
}

func (f *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if now.Sub(f.checked) < f.every {
		return f.cert, nil
	}
	f.checked = now
	if f.fileStamp() == f.stamp {
		return f.cert, nil
	}
	old := f.cert
	if err := f.load(now); err != nil {
		f.log.Warn("the TLS certificate files changed but do not load; serving the previous certificate", "err", err)
		f.stamp = f.fileStamp() // try again only after the next change
		return old, nil
	}
	f.log.Info("loaded a new TLS certificate", "file", f.certPath, "not_after", f.cert.Leaf.NotAfter)
	return f.cert, nil
}

// mintCertificate returns a certificate for serverName's host (a DNS name
// or an IP address, without the port) with a new ECDSA P-256 key, signed by
// the CA in caPEM and keyPEM, valid from an hour before now for
// mintedValidity or until the CA expires; the chain includes the CA. It
// also returns the CA.
func mintCertificate(caPEM, keyPEM []byte, serverName string, now time.Time) (tls.Certificate, *x509.Certificate, error) {
	cas, err := parseCertificates(caPEM)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca := cas[0]
	if !ca.IsCA {
		return tls.Certificate{}, nil, errors.New("not a CA certificate (no basicConstraints CA:TRUE)")
	}
	caKey, err := parsePrivateKey(keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("CA key: %w", err)
	}
	if pub, ok := caKey.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(ca.PublicKey) {
		return tls.Certificate{}, nil, errors.New("the CA key does not belong to the CA certificate")
	}
	if !now.Before(ca.NotAfter) {
		return tls.Certificate{}, nil, fmt.Errorf("the CA expired on %s", ca.NotAfter.Format(time.DateOnly))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	host := hostOf(serverName)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(mintedValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if ca.NotAfter.Before(tmpl.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("sign: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key, Leaf: leaf}, ca, nil
}

// hostOf is a server name without its port and IPv6 brackets.
func hostOf(serverName string) string {
	if strings.HasPrefix(serverName, "[") {
		if end := strings.IndexByte(serverName, ']'); end > 0 {
			return serverName[1:end]
		}
	}
	if i := strings.LastIndexByte(serverName, ':'); i >= 0 {
		return serverName[:i]
	}
	return serverName
}

// parseCertificates returns every CERTIFICATE block of a PEM file; it is
// an error if there is none.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE in the file")
	}
	return out, nil
}

// parsePrivateKey reads the first private key of a PEM file: PKCS #8,
// PKCS #1 (RSA) or SEC 1 (EC), as openssl and Go write them.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key in the file")
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		if strings.Contains(b.Type, "ENCRYPTED") || b.Headers["Proc-Type"] != "" {
			return nil, errors.New("the key is encrypted; give it without a passphrase")
		}
		var key any
		var err error
		switch b.Type {
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		}
		if err != nil {
			return nil, err
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", key)
		}
		return signer, nil
	}
}

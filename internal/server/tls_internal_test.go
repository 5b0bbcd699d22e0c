package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"polder.dev/polder/internal/config"
)

// testCA makes a CA certificate signed by key, valid until notAfter.
func testCA(t *testing.T, key crypto.Signer, isCA bool, notAfter time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Test CA"},
		NotBefore:             time.Now().Add(-48 * time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A certificate minted from the CA verifies against it for the server
// name's host (a DNS name or an IP address, never with the port), for CA
// keys in every PEM form openssl and Go write.
func TestMintCertificate(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey := newECKey(t)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := func(k crypto.Signer) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf("PRIVATE KEY", der)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	keys := []struct {
		name   string
		key    crypto.Signer
		keyPEM []byte
	}{
		{"RSA PKCS#1", rsaKey, pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))},
		{"RSA PKCS#8", rsaKey, pkcs8(rsaKey)},
		{"EC SEC1", ecKey, pemOf("EC PRIVATE KEY", ecDER)},
		{"EC PKCS#8", ecKey, pkcs8(ecKey)},
		{"Ed25519 PKCS#8", edKey, pkcs8(edKey)},
	}
	names := []struct{ serverName, host string }{
		{"hs1", "hs1"},
		{"matrix.example.org:8448", "matrix.example.org"},
		{"127.0.0.1:8448", "127.0.0.1"},
		{"[::1]:8448", "::1"},
		{"[::1]", "::1"},
	}
	now := time.Now()
	for _, k := range keys {
		ca := testCA(t, k.key, true, now.Add(10*365*24*time.Hour))
		// The key file may carry other blocks (openssl's EC PARAMETERS) first.
		keyPEM := append(pemOf("EC PARAMETERS", []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}), k.keyPEM...)
		for _, n := range names {
			t.Run(k.name+"/"+n.serverName, func(t *testing.T) {
				cert, gotCA, err := mintCertificate(pemOf("CERTIFICATE", ca.Raw), keyPEM, n.serverName, now)
				if err != nil {
					t.Fatalf("mintCertificate: %v", err)
				}
				if !gotCA.Equal(ca) {
					t.Errorf("mintCertificate returned CA %s, want %s", gotCA.Subject, ca.Subject)
				}
				pool := x509.NewCertPool()
				pool.AddCert(ca)
				if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: n.host, Roots: pool}); err != nil {
					t.Errorf("minted certificate does not verify for %s: %v", n.host, err)
				}
				if _, ok := cert.PrivateKey.(*ecdsa.PrivateKey); !ok {
					t.Errorf("minted key is %T, want *ecdsa.PrivateKey", cert.PrivateKey)
				}
				if d := cert.Leaf.NotAfter.Sub(now); d < 364*24*time.Hour || d > mintedValidity {
					t.Errorf("minted certificate valid for %s, want about a year", d)
				}
				if len(cert.Certificate) != 2 {
					t.Errorf("chain has %d certificates, want leaf and CA", len(cert.Certificate))
				}
			})
		}
	}
	t.Run("valid no longer than the CA", func(t *testing.T) {
		ca := testCA(t, ecKey, true, now.Add(24*time.Hour))
		cert, _, err := mintCertificate(pemOf("CERTIFICATE", ca.Raw), pemOf("EC PRIVATE KEY", ecDER), "hs1", now)
		if err != nil {
			t.Fatalf("mintCertificate: %v", err)
		}
		if !cert.Leaf.NotAfter.Equal(ca.NotAfter) {
			t.Errorf("NotAfter = %s, want the CA's %s", cert.Leaf.NotAfter, ca.NotAfter)
		}
	})
}

func TestMintCertificateErrors(t *testing.T) {
	now := time.Now()
	ecKey := newECKey(t)
	other := newECKey(t)
	der := func(k *ecdsa.PrivateKey) []byte {
		d, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf("EC PRIVATE KEY", d)
	}
	ca := pemOf("CERTIFICATE", testCA(t, ecKey, true, now.Add(time.Hour)).Raw)
	tests := []struct {
		name        string
		caPEM, key  []byte
		errContains string
	}{
		{"no certificate", []byte("junk"), der(ecKey), "no PEM CERTIFICATE"},
		{"no key", ca, []byte("junk"), "no PEM private key"},
		{"key of another CA", ca, der(other), "does not belong"},
		{"not a CA", pemOf("CERTIFICATE", testCA(t, ecKey, false, now.Add(time.Hour)).Raw), der(ecKey), "not a CA"},
		{"expired CA", pemOf("CERTIFICATE", testCA(t, ecKey, true, now.Add(-time.Hour)).Raw), der(ecKey), "expired"},
		{"encrypted key", ca, pemOf("ENCRYPTED PRIVATE KEY", []byte{1}), "encrypted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := mintCertificate(tt.caPEM, tt.key, "hs1", now)
			if err == nil || !strings.Contains(err.Error(), tt.errContains) {
				t.Errorf("mintCertificate: error %v, want one containing %q", err, tt.errContains)
			}
		})
	}
}

// writeCertFiles mints a certificate for host from a fresh CA and writes it
// and its key as PEM files; it returns the CA.
func writeCertFiles(t *testing.T, certPath, keyPath, host string) *x509.Certificate {
	t.Helper()
	caKey := newECKey(t)
	ca := testCA(t, caKey, true, time.Now().Add(time.Hour))
	caKeyDER, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := mintCertificate(pemOf("CERTIFICATE", ca.Raw), pemOf("PRIVATE KEY", caKeyDER), host, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pemOf("CERTIFICATE", cert.Certificate[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pemOf("PRIVATE KEY", keyDER), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// Certificate files are read again once they change; a change that does
// not load keeps the previous certificate.
func TestCertFilesReload(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeCertFiles(t, certPath, keyPath, "one.example")
	f := &certFiles{certPath: certPath, keyPath: keyPath, every: 0, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := f.load(time.Now()); err != nil {
		t.Fatalf("load: %v", err)
	}
	name := func() string {
		t.Helper()
		c, err := f.get(nil)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		return c.Leaf.DNSNames[0]
	}
	if got := name(); got != "one.example" {
		t.Fatalf("certificate for %s, want one.example", got)
	}
	writeCertFiles(t, certPath, keyPath, "two.example")
	// Same size and a coarse clock could hide the change; make sure it shows.
	later := time.Now().Add(time.Minute)
	os.Chtimes(certPath, later, later)
	if got := name(); got != "two.example" {
		t.Errorf("after renewal: certificate for %s, want two.example", got)
	}
	if err := os.WriteFile(keyPath, []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := name(); got != "two.example" {
		t.Errorf("after a broken renewal: certificate for %s, want the previous two.example", got)
	}
}

// loadTLS: the minting CA and federation_trusted_ca are trusted for
// outbound federation; bad files name their setting.
func TestLoadTLS(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	extraCA := writeCertFiles(t, certPath, keyPath, "hs.example")
	extraPath := filepath.Join(dir, "extra.pem")
	if err := os.WriteFile(extraPath, pemOf("CERTIFICATE", extraCA.Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	caKey := newECKey(t)
	mintCA := testCA(t, caKey, true, time.Now().Add(time.Hour))
	caKeyDER, _ := x509.MarshalPKCS8PrivateKey(caKey)
	caPath, caKeyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	os.WriteFile(caPath, pemOf("CERTIFICATE", mintCA.Raw), 0o600)
	os.WriteFile(caKeyPath, pemOf("PRIVATE KEY", caKeyDER), 0o600)

	base := config.Default()
	base.ServerName = "hs.example"

	t.Run("nothing configured", func(t *testing.T) {
		ts, err := loadTLS(base, time.Now(), log)
		if err != nil || ts.config != nil || ts.roots != nil {
			t.Errorf("loadTLS = %+v, %v; want no listener, system roots", ts, err)
		}
	})
	t.Run("minting CA and an extra CA", func(t *testing.T) {
		c := base
		c.TLSCACert, c.TLSCAKey, c.FederationTrustedCA = caPath, caKeyPath, extraPath
		ts, err := loadTLS(c, time.Now(), log)
		if err != nil {
			t.Fatalf("loadTLS: %v", err)
		}
		leaf := ts.config.Certificates[0].Leaf
		for _, ca := range []*x509.Certificate{mintCA, extraCA} {
			if _, err := ca.Verify(x509.VerifyOptions{Roots: ts.roots}); err != nil {
				t.Errorf("CA %s is not trusted for federation: %v", ca.Subject, err)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "hs.example", Roots: ts.roots}); err != nil {
			t.Errorf("minted certificate does not verify against the federation roots: %v", err)
		}
	})
	t.Run("certificate files", func(t *testing.T) {
		c := base
		c.TLSCert, c.TLSKey = certPath, keyPath
		ts, err := loadTLS(c, time.Now(), log)
		if err != nil {
			t.Fatalf("loadTLS: %v", err)
		}
		cert, err := ts.config.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil || cert.Leaf.DNSNames[0] != "hs.example" {
			t.Errorf("GetCertificate = %v, %v; want the certificate for hs.example", cert, err)
		}
	})
	errs := []struct {
		name    string
		change  func(c *config.Config)
		setting string
	}{
		{"missing CA", func(c *config.Config) { c.TLSCACert, c.TLSCAKey = filepath.Join(dir, "nope.crt"), caKeyPath }, "tls_ca_cert"},
		{"missing CA key", func(c *config.Config) { c.TLSCACert, c.TLSCAKey = caPath, filepath.Join(dir, "nope.key") }, "tls_ca_key"},
		{"CA key that is no key", func(c *config.Config) { c.TLSCACert, c.TLSCAKey = caPath, caPath }, "tls_ca_cert"},
		{"missing certificate", func(c *config.Config) { c.TLSCert, c.TLSKey = filepath.Join(dir, "nope.crt"), keyPath }, "tls_cert"},
		{"certificate and key mismatch", func(c *config.Config) { c.TLSCert, c.TLSKey = certPath, caKeyPath }, "tls_cert"},
		{"missing trusted CA", func(c *config.Config) { c.FederationTrustedCA = filepath.Join(dir, "nope.pem") }, "federation_trusted_ca"},
		{"trusted CA file without certificates", func(c *config.Config) { c.FederationTrustedCA = caKeyPath }, "federation_trusted_ca"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.change(&c)
			_, err := loadTLS(c, time.Now(), log)
			if err == nil || !strings.Contains(err.Error(), tt.setting) || strings.Contains(err.Error(), "\n") {
				t.Errorf("loadTLS: error %v, want one line naming %s", err, tt.setting)
			}
		})
	}
}

func TestHostOf(t *testing.T) {
	for in, want := range map[string]string{
		"example.org": "example.org", "example.org:8448": "example.org",
		"1.2.3.4": "1.2.3.4", "1.2.3.4:80": "1.2.3.4", "[::1]": "::1", "[::1]:8448": "::1",
	} {
		if got := hostOf(in); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", in, got, want)
		}
		if net.ParseIP(want) == nil && strings.Contains(want, ":") {
			t.Errorf("hostOf(%q) kept a port", in)
		}
	}
}

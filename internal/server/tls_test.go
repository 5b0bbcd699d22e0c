package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

// getJSON GETs url with c and decodes the JSON answer into out; it returns
// the response (body closed) or the error of the request.
func getJSON(c *http.Client, url string, out any) (*http.Response, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return resp, err
		}
	}
	return resp, nil
}

// Two servers of an hstest federation reach each other over HTTPS: each
// serves a certificate minted from the harness's CA for its own name, the
// resolver maps names to listeners, and a stopped server is unreachable
// until it restarts.
func TestFederationOverTLS(t *testing.T) {
	t.Parallel()
	f := hstest.NewFederation(t, hstest.Options{}, "hs1.polder.test", "hs2.polder.test")
	c := f.HTTPClient()
	for _, hs := range f.Servers() {
		name := hs.ServerName()
		var keys struct {
			ServerName string                    `json:"server_name"`
			VerifyKeys map[string]map[string]any `json:"verify_keys"`
		}
		resp, err := getJSON(c, "https://"+name+"/_matrix/key/v2/server", &keys)
		if err != nil {
			t.Fatalf("GET https://%s/_matrix/key/v2/server: %v", name, err)
		}
		if resp.StatusCode != 200 || keys.ServerName != name || len(keys.VerifyKeys) == 0 {
			t.Errorf("GET https://%s/_matrix/key/v2/server = %d, server_name %q, %d keys; want 200, %s, a key", name, resp.StatusCode, keys.ServerName, len(keys.VerifyKeys), name)
		}
		leaf := resp.TLS.PeerCertificates[0]
		if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != name {
			t.Errorf("https://%s presents a certificate for %v, want [%s]", name, leaf.DNSNames, name)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: f.RootCAs()}); err != nil {
			t.Errorf("certificate of %s does not verify against the harness CA: %v", name, err)
		}
		var version struct {
			Server struct{ Name string } `json:"server"`
		}
		if resp, err := getJSON(c, "https://"+name+"/_matrix/federation/v1/version", &version); err != nil || resp.StatusCode != 200 || version.Server.Name != "Polder" {
			t.Errorf("GET https://%s/_matrix/federation/v1/version = %v, %+v; want 200 Polder", name, err, version)
		}
	}
	target, err := f.Resolve(t.Context(), "hs2.polder.test")
	if err != nil || target.Addr != f.Server("hs2.polder.test").FederationAddr() || target.Host != "hs2.polder.test" || target.ServerName != "hs2.polder.test" {
		t.Errorf("Resolve(hs2.polder.test) = %+v, %v; want its listener with the name as Host and TLS name", target, err)
	}
	if _, err := f.Resolve(t.Context(), "elsewhere.test"); err == nil {
		t.Errorf("Resolve(elsewhere.test) = nil error, want one for a name outside the federation")
	}

	// hs1's own federation client: the resolver and the minting CA are
	// wired into it.
	fed := f.Server("hs1.polder.test").Process().Federation
	raw, err := fed.ServerKeys(t.Context(), "hs2.polder.test")
	if err != nil || !json.Valid(raw) {
		t.Errorf("hs1 Federation.ServerKeys(hs2.polder.test) = %.100q, %v; want hs2's keys", raw, err)
	}
	var version struct {
		Server struct{ Name string } `json:"server"`
	}
	if err := fed.Do(t.Context(), "hs2.polder.test", "GET", "/_matrix/federation/v1/version", nil, &version); err != nil || version.Server.Name != "Polder" {
		t.Errorf("hs1 Federation.Do(GET hs2.polder.test /_matrix/federation/v1/version) = %v, %+v; want Polder", err, version)
	}

	hs2 := f.Server("hs2.polder.test")
	hs2.Stop(t)
	c.Transport.(*http.Transport).CloseIdleConnections()
	if _, err := getJSON(c, "https://hs2.polder.test/_matrix/federation/v1/version", nil); err == nil {
		t.Errorf("GET https://hs2.polder.test/... after Stop succeeded, want it unreachable")
	}
	hs2.Restart(t)
	if resp, err := getJSON(c, "https://hs2.polder.test/_matrix/federation/v1/version", nil); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET https://hs2.polder.test/... after Restart = %v, %v; want 200", resp, err)
	}
}

// federation_enabled: false hides the federation and key APIs; the client
// API stays.
func TestFederationDisabled(t *testing.T) {
	t.Parallel()
	hs := hstest.Start(t, storetest.Engines(t)[0], hstest.Options{Config: func(c *config.Config) { c.FederationEnabled = false }})
	for _, path := range []string{"/_matrix/federation/v1/version", "/_matrix/key/v2/server"} {
		hstest.MustErr(t, hs.Anon().Do(t, "GET", path, nil), 404, "M_UNRECOGNIZED")
	}
	hstest.MustOK(t, hs.Anon().Do(t, "GET", "/_matrix/client/versions", nil))
}

// A server with certificate files opens tls_listen itself and serves the
// same APIs over HTTPS; the startup summary names the listener.
func TestTLSListenerFromFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cert := writeSelfSigned(t, certPath, keyPath, "hs1.polder.test")
	hs := hstest.Start(t, storetest.Engines(t)[0], hstest.Options{Config: func(c *config.Config) {
		c.TLSCert, c.TLSKey, c.TLSListen = certPath, keyPath, "127.0.0.1:0"
	}})
	// Serve logs the summary once it has opened tls_listen; Start does not
	// wait for that.
	var m []string
	for deadline := time.Now().Add(10 * time.Second); m == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		m = regexp.MustCompile(`tls_listen=https://(127\.0\.0\.1:\d+)`).FindStringSubmatch(hs.Logs())
	}
	if m == nil {
		t.Fatalf("startup summary names no tls_listen:\n%s", hs.Logs())
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "hs1.polder.test"}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	var versions struct {
		Versions []string `json:"versions"`
	}
	resp, err := getJSON(&http.Client{Transport: tr, Timeout: 10 * time.Second}, "https://"+m[1]+"/_matrix/client/versions", &versions)
	if err != nil || resp.StatusCode != 200 || len(versions.Versions) == 0 {
		t.Fatalf("GET https://%s/_matrix/client/versions = %v, %v; want 200 with versions", m[1], resp, err)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("HTTPS answered over %s, want HTTP/2", resp.Proto)
	}
}

// writeSelfSigned writes a self-signed certificate for host and its key.
func writeSelfSigned(t *testing.T, certPath, keyPath, host string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

// writeCA writes a CA's ca.crt and ca.key into dir, as Complement mounts
// them, and returns the CA.
func writeCA(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Complement test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// `polder container` takes SERVER_NAME as the server name, and turns
// Complement mode on only when the CA is mounted; variables that are set
// win over its defaults.
func TestContainerEnv(t *testing.T) {
	withCA := t.TempDir()
	writeCA(t, withCA)
	halfCA := t.TempDir()
	os.WriteFile(filepath.Join(halfCA, "ca.crt"), []byte("x"), 0o644)
	tests := []struct {
		name   string
		env    map[string]string
		want   map[string]string // "" = unset
		caMode bool
	}{
		{"no CA: SERVER_NAME only", map[string]string{"SERVER_NAME": "hs1", "POLDER_CONTAINER_CA_DIR": t.TempDir()},
			map[string]string{"POLDER_SERVER_NAME": "hs1", "POLDER_ENABLE_REGISTRATION": "", "POLDER_REGISTRATION_SHARED_SECRET": "", "POLDER_TLS_CA_CERT": ""}, false},
		{"CA without its key", map[string]string{"POLDER_CONTAINER_CA_DIR": halfCA},
			map[string]string{"POLDER_REGISTRATION_SHARED_SECRET": "", "POLDER_TLS_CA_CERT": ""}, false},
		{"POLDER_SERVER_NAME wins", map[string]string{"SERVER_NAME": "hs1", "POLDER_SERVER_NAME": "real.example", "POLDER_CONTAINER_CA_DIR": t.TempDir()},
			map[string]string{"POLDER_SERVER_NAME": "real.example"}, false},
		{"Complement mode", map[string]string{"SERVER_NAME": "hs2", "POLDER_CONTAINER_CA_DIR": withCA},
			map[string]string{
				"POLDER_SERVER_NAME": "hs2", "POLDER_ENABLE_REGISTRATION": "true", "POLDER_REGISTRATION_SHARED_SECRET": "complement",
				"POLDER_TLS_CA_CERT": filepath.Join(withCA, "ca.crt"), "POLDER_TLS_CA_KEY": filepath.Join(withCA, "ca.key"),
				"POLDER_TLS_LISTEN": "0.0.0.0:8448", "POLDER_LOGIN_RATE_LIMIT_PER_SECOND": "0",
			}, true},
		{"Complement mode under set variables", map[string]string{"POLDER_CONTAINER_CA_DIR": withCA, "POLDER_TLS_LISTEN": "0.0.0.0:9448", "POLDER_PASSWORD_HASH_COST": "10"},
			map[string]string{"POLDER_TLS_LISTEN": "0.0.0.0:9448", "POLDER_PASSWORD_HASH_COST": "10", "POLDER_SERVER_NAME": ""}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv, dir := containerEnv(func(k string) string { return tt.env[k] })
			if (dir != "") != tt.caMode {
				t.Errorf("containerEnv: CA dir %q, want Complement mode %v", dir, tt.caMode)
			}
			for k, want := range tt.want {
				if got := getenv(k); got != want {
					t.Errorf("getenv(%s) = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestLoopbackAddr(t *testing.T) {
	for in, want := range map[string]string{
		":8008": "127.0.0.1:8008", "0.0.0.0:8008": "127.0.0.1:8008", "[::]:8008": "[::1]:8008",
		"127.0.0.1:8008": "127.0.0.1:8008", "10.1.2.3:80": "10.1.2.3:80", "example.org:8008": "example.org:8008",
	} {
		if got := loopbackAddr(in); got != want {
			t.Errorf("loopbackAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// `polder healthcheck` exits 0 when the listener answers /versions with
// 200, and 1 when it does not answer or answers otherwise.
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	hs := hstest.Start(t, storetest.Engines(t)[0], hstest.Options{})
	listen := strings.TrimPrefix(hs.URL(), "http://")
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"configured listener", []string{"--listen", listen}, 0},
		{"unspecified host", []string{"--listen", "0.0.0.0:" + listen[strings.LastIndexByte(listen, ':')+1:]}, 0},
		{"url", []string{"--url", hs.URL() + "/_matrix/client/versions"}, 0},
		{"nothing listening", []string{"--listen", closedAddr}, 1},
		{"not 200", []string{"--url", notFound.URL}, 1},
		{"bad setting", []string{"--listen", "nonsense"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := polder(t, "", append([]string{"healthcheck"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("polder healthcheck %v = %d (%s), want %d", tt.args, code, strings.TrimSpace(stderr), tt.code)
			}
		})
	}
}

// The container entrypoint in Complement mode, as a real process: the
// server name comes from SERVER_NAME, anyone may register with
// m.login.dummy, shared-secret registration is on, and HTTPS serves a
// certificate for the server name minted from the mounted CA.
func TestContainerComplementMode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process")
	}
	caDir := t.TempDir()
	ca := writeCA(t, caDir)
	t.Setenv("SERVER_NAME", "hs1.polder.test")
	t.Setenv("POLDER_CONTAINER_CA_DIR", caDir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsAddr := ln.Addr().String()
	ln.Close()
	base, proc := startProcess(t, []string{"container", "--data-dir", t.TempDir(), "--tls-listen", tlsAddr, "--log-level", "warn"})
	defer func() { proc.Process.Signal(syscall.SIGTERM); proc.Wait() }()

	if !registerOnce(context.Background(), base, "alice") {
		t.Errorf("POST /register with m.login.dummy failed, want open registration")
	}
	resp, err := http.Get(base + "/_synapse/admin/v1/register")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /_synapse/admin/v1/register = %d, want 200 (shared-secret registration on)", resp.StatusCode)
	}

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, tlsAddr)
		},
	}
	defer tr.CloseIdleConnections()
	resp, err = (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://hs1.polder.test/_matrix/key/v2/server")
	if err != nil {
		t.Fatalf("GET https://hs1.polder.test/_matrix/key/v2/server (verified against the mounted CA): %v", err)
	}
	defer resp.Body.Close()
	var keys struct {
		ServerName string `json:"server_name"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&keys); err != nil || resp.StatusCode != 200 || keys.ServerName != "hs1.polder.test" {
		t.Errorf("GET /_matrix/key/v2/server over HTTPS = %d, server_name %q (%v), want 200 and hs1.polder.test", resp.StatusCode, keys.ServerName, err)
	}

	if code, _, stderr := polder(t, "", "healthcheck", "--listen", strings.TrimPrefix(base, "http://")); code != 0 {
		t.Errorf("polder healthcheck = %d (%s), want 0", code, stderr)
	}

	// Another command given to the entrypoint runs on the same settings.
	cmd := exec.Command(os.Args[0], "container", "user", "create", "bob", "--password", "pw", "--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "POLDER_TEST_EXEC=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "@bob:hs1.polder.test") {
		t.Errorf("polder container user create bob = %v, %q; want @bob:hs1.polder.test created", err, out)
	}
}

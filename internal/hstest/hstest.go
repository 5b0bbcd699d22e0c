// Package hstest runs real Polder homeservers for tests: each one is
// server.New on a loopback listener, served by the same Serve code path as
// `polder serve`, with its data dir in t.TempDir() and its database on every
// engine the store is tested on (SQLite always, PostgreSQL when
// POLDER_TEST_POSTGRES is set and required when CI=true; see
// internal/store/storetest). Tests drive it over HTTP with the small Client
// in client.go.
//
// Password hashing uses bcrypt cost 4 and rate limits are off unless a test
// asks for them, so that the suite stays fast on a small CI machine.
//
// Test-only: imported only by _test.go files.
package hstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/server"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
	"polder.dev/polder/internal/user"
)

// DefaultServerName is the server name of test servers unless Options says
// otherwise. It is deliberately not "localhost", so that a handler that uses
// the wrong host name shows up.
const DefaultServerName = "hs1.polder.test"

// Registration is how a test server lets users register.
type Registration int

const (
	// RegistrationOpen allows anyone to register with m.login.dummy.
	RegistrationOpen Registration = iota
	// RegistrationClosed refuses POST /register.
	RegistrationClosed
	// RegistrationToken requires m.login.registration_token.
	RegistrationToken
)

// RateLimit is a token bucket: PerSecond requests per second with Burst.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// Options configure a test server. The zero value is an open server with
// no guests, no shared secret and no rate limits.
type Options struct {
	ServerName   string // default DefaultServerName
	Registration Registration
	SharedSecret string // registration_shared_secret; empty disables
	Guests       bool   // allow_guest_access
	// RateLimit limits every request per user or IP; LoginRateLimit limits
	// login and registration per IP. nil turns a limit off.
	RateLimit      *RateLimit
	LoginRateLimit *RateLimit
	// Config, if set, changes anything else; it runs last.
	Config func(*config.Config)
	// Engine, if set, is the database engine of the servers NewFederation
	// starts (default SQLite); Start and Each take theirs as an argument.
	Engine *storetest.Engine

	fed *Federation // set by NewFederation (federation.go)
}

// Server is one running Polder. Restart replaces the process behind it while
// keeping its data dir and database.
type Server struct {
	Engine string
	Config config.Config

	t         testing.TB
	transport *http.Transport
	http      *http.Client
	logs      *logSink
	fed       *Federation // nil: not part of a federation

	mu     sync.Mutex
	url    string
	srv    *server.Server
	cancel context.CancelFunc
	done   chan error
	// fedAddr is the HTTPS listener of a server in a Federation.
	fedAddr string
}

// Each runs fn as a parallel subtest per engine, each with a fresh server
// made from opts.
func Each(t *testing.T, opts Options, fn func(t *testing.T, hs *Server)) {
	t.Helper()
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, Start(t, e, opts))
		})
	}
}

// Start starts a server on a fresh database of engine e. It stops when the
// test ends.
func Start(tb testing.TB, e storetest.Engine, opts Options) *Server {
	tb.Helper()
	so := e.Options(tb)
	cfg := config.Default()
	cfg.ServerName = DefaultServerName
	if opts.ServerName != "" {
		cfg.ServerName = opts.ServerName
	}
	cfg.DataDir = so.DataDir
	cfg.Database = so.Database
	cfg.PasswordHashCost = 4
	cfg.RateLimitPerSecond, cfg.LoginRateLimitPerSecond = 0, 0
	if r := opts.RateLimit; r != nil {
		cfg.RateLimitPerSecond, cfg.RateLimitBurst = r.PerSecond, r.Burst
	}
	if r := opts.LoginRateLimit; r != nil {
		cfg.LoginRateLimitPerSecond, cfg.LoginRateLimitBurst = r.PerSecond, r.Burst
	}
	switch opts.Registration {
	case RegistrationOpen:
		cfg.EnableRegistration = true
	case RegistrationToken:
		cfg.EnableRegistration, cfg.RegistrationRequiresToken = true, true
	}
	cfg.RegistrationSharedSecret = opts.SharedSecret
	cfg.AllowGuestAccess = opts.Guests
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.Metrics = true
	if opts.Config != nil {
		opts.Config(&cfg)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}
	s := &Server{
		Engine:    e.Name,
		Config:    cfg,
		t:         tb,
		transport: tr,
		http:      &http.Client{Transport: tr, Timeout: 30 * time.Second},
		logs:      newLogSink(tb, cfg.ServerName),
		fed:       opts.fed,
	}
	tb.Cleanup(func() {
		s.stop(tb)
		s.logs.close()
	})
	s.start(tb)
	return s
}

// start runs a new Polder process on s's config.
func (s *Server) start(tb testing.TB) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	cfg := s.Config
	cfg.Listen = ln.Addr().String()
	if cfg.PublicBaseURL == "" {
		cfg.PublicBaseURL = "http://" + cfg.Listen
	}
	tlsLn, sopts := s.federationOptions(tb, &cfg)
	srv, err := server.New(context.Background(), cfg, s.logs.logger(), sopts...)
	if err != nil {
		ln.Close()
		if tlsLn != nil {
			tlsLn.Close()
		}
		tb.Fatalf("server.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	s.mu.Lock()
	s.url, s.srv, s.cancel, s.done = "http://"+ln.Addr().String(), srv, cancel, done
	s.mu.Unlock()
}

// stop shuts the running process down gracefully and closes its database.
// It does nothing if none is running.
func (s *Server) stop(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	srv, cancel, done := s.srv, s.cancel, s.done
	s.srv, s.cancel, s.done = nil, nil, nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			tb.Errorf("Serve returned %v, want nil after a graceful shutdown", err)
		}
	case <-time.After(15 * time.Second):
		tb.Errorf("Serve did not return within 15s of its context ending")
	}
	if err := srv.Close(); err != nil {
		tb.Errorf("Close: %v", err)
	}
	s.transport.CloseIdleConnections()
}

// Stop stops the server before the test ends. Later requests fail.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	s.stop(tb)
}

// Restart stops the server and starts a new process on the same data dir
// and database, as an operator restarting polder would. Its URL may change;
// Clients follow it.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.stop(tb)
	s.start(tb)
}

// URL is the base URL of the running process, like "http://127.0.0.1:1234".
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// ServerName is the server's name.
func (s *Server) ServerName() string { return s.Config.ServerName }

// UserID returns the full user ID of a localpart on this server.
func (s *Server) UserID(localpart string) string { return "@" + localpart + ":" + s.Config.ServerName }

// Process is the running server.Server, for set-up shortcuts and for
// looking behind the API in assertions.
func (s *Server) Process() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		s.t.Fatalf("hstest: server is not running")
	}
	return s.srv
}

// Users is the running process's account service.
func (s *Server) Users() *user.Service { return s.Process().Users }

// DB is the running process's database.
func (s *Server) DB() *store.DB { return s.Process().DB() }

// Logs returns what the server has logged so far.
func (s *Server) Logs() string { return s.logs.String() }

// logSink collects the server's logs and copies lines at Warn and above to
// the test's output (shown on failure or with -v). POLDER_TEST_LOG=debug or
// info shows more. After the test ends it drops what comes late.
//
// POLDER_TEST_LOGDIR=dir also writes every line (all levels, no size
// limit) to dir/<test>.<server name>.log, for the failures that only
// happen under load: run the test in a loop and read the file of the run
// that failed.
type logSink struct {
	t      testing.TB
	mu     sync.Mutex
	buf    []byte
	closed bool
	level  slog.Level
	file   *os.File
}

func newLogSink(tb testing.TB, serverName string) *logSink {
	l := &logSink{t: tb, level: slog.LevelWarn}
	if v := os.Getenv("POLDER_TEST_LOG"); v != "" {
		_ = l.level.UnmarshalText([]byte(v))
	}
	if dir := os.Getenv("POLDER_TEST_LOGDIR"); dir != "" {
		name := strings.NewReplacer("/", "_", " ", "_").Replace(tb.Name()) + "." + serverName + ".log"
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			tb.Fatalf("POLDER_TEST_LOGDIR: %v", err)
		}
		l.file = f
	}
	return l
}

func (l *logSink) logger() *slog.Logger {
	return slog.New(&fanout{
		all:  slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}),
		echo: slog.NewTextHandler(writerFunc(l.echo), &slog.HandlerOptions{Level: l.level}),
	})
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) < 4<<20 {
		l.buf = append(l.buf, p...)
	}
	if l.file != nil {
		_, _ = l.file.Write(p)
	}
	return len(p), nil
}

func (l *logSink) echo(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.t.Logf("polder: %s", bytes.TrimSuffix(p, []byte("\n")))
	}
	return len(p), nil
}

func (l *logSink) close() {
	l.mu.Lock()
	l.closed = true
	if l.file != nil {
		_ = l.file.Close()
		l.file = nil
	}
	l.mu.Unlock()
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// fanout sends every record to all (the sink) and to echo (the test log,
// which filters by its own level).
type fanout struct{ all, echo slog.Handler }

func (f *fanout) Enabled(context.Context, slog.Level) bool { return true }

func (f *fanout) Handle(ctx context.Context, r slog.Record) error {
	if f.echo.Enabled(ctx, r.Level) {
		_ = f.echo.Handle(ctx, r.Clone())
	}
	return f.all.Handle(ctx, r)
}

func (f *fanout) WithAttrs(as []slog.Attr) slog.Handler {
	return &fanout{all: f.all.WithAttrs(as), echo: f.echo.WithAttrs(as)}
}

func (f *fanout) WithGroup(name string) slog.Handler {
	return &fanout{all: f.all.WithGroup(name), echo: f.echo.WithGroup(name)}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// errStopped is returned for requests to a stopped server.
var errStopped = errors.New("hstest: server is stopped")

func (s *Server) baseURL() (string, error) {
	u := s.URL()
	s.mu.Lock()
	running := s.srv != nil
	s.mu.Unlock()
	if !running {
		return "", fmt.Errorf("%w", errStopped)
	}
	return u, nil
}

package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/server"
)

func TestMain(m *testing.M) { os.Exit(hstest.Main(m)) }

// Accounts, access tokens, refresh tokens, devices, UIA sessions and
// registration tokens survive a restart (issue 2: "access tokens that
// survive a restart").
func TestRestartKeepsState(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		r := hs.Anon().Do(t, "POST", "/_matrix/client/v3/login", map[string]any{
			"type": "m.login.password", "user": "alice", "password": "pw", "refresh_token": true,
			"device_id": "PHONE", "initial_device_display_name": "Phone",
		})
		m := hstest.MustOK(t, r)
		phone := &hstest.Client{HS: hs, UserID: alice.UserID, DeviceID: "PHONE", AccessToken: hstest.Str(t, m, "access_token"), RefreshToken: hstest.Str(t, m, "refresh_token"), Password: "pw"}
		admin := hs.Admin(t, "root")
		hstest.MustOK(t, admin.Do(t, "POST", "/_synapse/admin/v1/registration_tokens/new", map[string]any{"token": "keepme", "uses_allowed": 7}))
		// A UIA session begun before the restart.
		f := hstest.MustUIA(t, alice.Do(t, "POST", "/_matrix/client/v3/account/password", map[string]any{"new_password": "new"}), "m.login.password")
		// Last-seen times are buffered in memory and flushed at shutdown.
		loginSeen := lastSeen(t, alice, "PHONE")
		time.Sleep(5 * time.Millisecond)
		phone.MustWhoami(t)
		usedAt := time.Now().UnixMilli()

		hs.Restart(t)

		t.Run("access tokens still work", func(t *testing.T) {
			alice.MustWhoami(t)
			phone.MustWhoami(t)
			admin.MustWhoami(t)
		})
		t.Run("devices kept with their names", func(t *testing.T) {
			ids := alice.DeviceIDs(t)
			slices.Sort(ids)
			want := []string{alice.DeviceID, "PHONE"}
			slices.Sort(want)
			if !slices.Equal(ids, want) {
				t.Errorf("devices after restart = %v, want %v", ids, want)
			}
			d := hstest.MustOK(t, alice.Do(t, "GET", "/_matrix/client/v3/devices/PHONE", nil))
			if d["display_name"] != "Phone" {
				t.Errorf("PHONE after restart = %v", d)
			}
		})
		t.Run("last-seen time flushed at shutdown", func(t *testing.T) {
			if got := lastSeen(t, alice, "PHONE"); got <= loginSeen || got > usedAt {
				t.Errorf("PHONE last_seen_ts after restart = %d, want the whoami before the restart (after login %d, at most %d)", got, loginSeen, usedAt)
			}
		})
		t.Run("registration token kept", func(t *testing.T) {
			tok := hstest.MustOK(t, admin.Do(t, "GET", "/_synapse/admin/v1/registration_tokens/keepme", nil))
			if tok["uses_allowed"] != 7.0 {
				t.Errorf("registration token after restart = %v", tok)
			}
		})
		t.Run("a UIA session begun before the restart completes after it", func(t *testing.T) {
			auth := alice.PasswordAuth()
			auth["session"] = f.Session
			hstest.MustOK(t, alice.Do(t, "POST", "/_matrix/client/v3/account/password", map[string]any{"new_password": "new", "logout_devices": false, "auth": auth}))
			hs.Login(t, "alice", "new")
		})
		t.Run("refresh token still works", func(t *testing.T) {
			m := hstest.MustOK(t, hs.Anon().Do(t, "POST", "/_matrix/client/v3/refresh", map[string]any{"refresh_token": phone.RefreshToken}))
			phone.WithToken(hstest.Str(t, m, "access_token")).MustWhoami(t)
		})
		t.Run("a second restart", func(t *testing.T) {
			hs.Restart(t)
			alice.MustWhoami(t)
			hs.Login(t, "root", "admin password")
		})
	})
}

func lastSeen(t *testing.T, c *hstest.Client, dev string) int64 {
	t.Helper()
	d := hstest.MustOK(t, c.Do(t, "GET", "/_matrix/client/v3/devices/"+dev, nil))
	ts, _ := d["last_seen_ts"].(float64)
	return int64(ts)
}

// GET /metrics (issue 2: "requests by endpoint and status, latency
// histograms, database timings"): the endpoint label is the route pattern,
// never the raw path.
func TestMetrics(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		alice.MustWhoami(t)
		alice.MustWhoami(t)
		hstest.MustOK(t, alice.Do(t, "GET", "/_matrix/client/v3/devices/"+alice.DeviceID, nil))
		hs.Anon().Do(t, "GET", "/_matrix/client/v3/no/such/"+alice.DeviceID, nil)
		r := hs.Anon().Do(t, "GET", "/metrics", nil)
		if r.Status != 200 {
			t.Fatalf("GET /metrics: status %d", r.Status)
		}
		body := string(r.Body)
		samples := parseSamples(body)
		tests := []struct {
			name   string
			metric string
			labels map[string]string
			min    float64
		}{
			{"whoami counted by pattern", "polder_http_requests_total", map[string]string{"endpoint": "/_matrix/client/v3/account/whoami", "method": "GET", "code": "200"}, 2},
			{"register 401 and 200 counted", "polder_http_requests_total", map[string]string{"endpoint": "/_matrix/client/v3/register", "method": "POST", "code": "401"}, 1},
			{"register 200", "polder_http_requests_total", map[string]string{"endpoint": "/_matrix/client/v3/register", "method": "POST", "code": "200"}, 1},
			{"path with an ID labelled by its pattern", "polder_http_requests_total", map[string]string{"endpoint": "/_matrix/client/v3/devices/{deviceId}", "method": "GET", "code": "200"}, 1},
			{"unknown path labelled unmatched", "polder_http_requests_total", map[string]string{"endpoint": "unmatched", "method": "GET", "code": "404"}, 1},
			{"latency histogram", "polder_http_request_duration_seconds_count", map[string]string{"endpoint": "/_matrix/client/v3/account/whoami", "method": "GET"}, 2},
			{"database timings", "polder_db_operation_duration_seconds_count", map[string]string{"op": "register"}, 1},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, ok := samples.find(tt.metric, tt.labels)
				if !ok || got < tt.min {
					t.Errorf("%s%v = %v (found %v), want >= %v", tt.metric, tt.labels, got, ok, tt.min)
				}
			})
		}
		t.Run("no raw IDs or tokens in labels", func(t *testing.T) {
			for _, secret := range []string{alice.DeviceID, alice.AccessToken, "alice"} {
				if strings.Contains(body, secret) {
					t.Errorf("GET /metrics contains %q", secret)
				}
			}
		})
	})
}

// With metrics off, /metrics is an unknown endpoint.
func TestMetricsOff(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{Config: func(c *config.Config) { c.Metrics = false }}, func(t *testing.T, hs *hstest.Server) {
		hstest.MustErr(t, hs.Anon().Do(t, "GET", "/metrics", nil), 404, "M_UNRECOGNIZED")
	})
}

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type sampleSet []sample

var sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// parseSamples reads the Prometheus text format, enough for these tests.
func parseSamples(text string) sampleSet {
	var out sampleSet
	for _, line := range strings.Split(text, "\n") {
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		s := sample{name: m[1], labels: map[string]string{}, value: v}
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			s.labels[l[1]] = l[2]
		}
		out = append(out, s)
	}
	return out
}

// find sums the samples of the metric whose labels include want.
func (ss sampleSet) find(name string, want map[string]string) (float64, bool) {
	var sum float64
	found := false
	for _, s := range ss {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
			}
		}
		if match {
			sum += s.value
			found = true
		}
	}
	return sum, found
}

// Logs (STYLE.md §5, issue 2 "Structured logs with a startup summary"): a
// startup summary, one access-log line per request, and never a token or a
// password.
func TestLogs(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{SharedSecret: "very secret"}, func(t *testing.T, hs *hstest.Server) {
		const password = "hunter2-correct-horse"
		alice := hs.Register(t, "alice", password)
		refreshed := hs.Anon().Do(t, "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password", "user": "alice", "password": password, "refresh_token": true})
		m := hstest.MustOK(t, refreshed)
		hs.Anon().Do(t, "GET", "/_matrix/client/v3/account/whoami?access_token="+alice.AccessToken, nil)
		hs.Anon().Do(t, "POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password", "user": "alice", "password": "wrong-" + password})
		logs := hs.Logs()

		for _, secret := range []string{password, alice.AccessToken, hstest.Str(t, m, "access_token"), hstest.Str(t, m, "refresh_token"), "very secret"} {
			if strings.Contains(logs, secret) {
				t.Errorf("the logs contain a secret %q:\n%s", secret, logs)
			}
		}
		for _, want := range []string{
			`msg="Polder is serving"`, "server_name=" + hs.ServerName(), "registration=", "database=",
			`method=GET path=/_matrix/client/v3/account/whoami status=200`,
			`path=/_matrix/client/v3/login status=403`,
		} {
			if !strings.Contains(logs, want) {
				t.Errorf("the logs lack %q:\n%s", want, logs)
			}
		}
	})
}

// A request in flight when shutdown begins still gets its answer (issue 2:
// "graceful shutdown").
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		hs.Register(t, "alice", "pw")
		pr, pw := io.Pipe()
		done := make(chan *hstest.Response, 1)
		go func() {
			done <- hs.Anon().Do(t, "POST", "/_matrix/client/v3/login", io.Reader(pr))
		}()
		// Wait until the server has the headers and waits for the body: two
		// requests in flight, that one and the /metrics request asking.
		io.WriteString(pw, `{"type":"m.login.password",`)
		deadline := time.Now().Add(10 * time.Second)
		for {
			m := parseSamples(string(hs.Anon().Do(t, "GET", "/metrics", nil).Body))
			if n, _ := m.find("polder_http_requests_in_flight", nil); n >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the login request never reached the server")
			}
			time.Sleep(10 * time.Millisecond)
		}
		stopped := make(chan struct{})
		go func() {
			hs.Stop(t)
			close(stopped)
		}()
		time.Sleep(100 * time.Millisecond)
		select {
		case <-stopped:
			t.Fatalf("Stop returned while a request was in flight")
		default:
		}
		io.WriteString(pw, `"user":"alice","password":"pw"}`)
		pw.Close()
		select {
		case r := <-done:
			hstest.MustOK(t, r)
		case <-time.After(10 * time.Second):
			t.Fatalf("the request in flight got no answer")
		}
		<-stopped
		if !strings.Contains(hs.Logs(), `msg="shutting down"`) {
			t.Errorf("no shutdown line in the logs")
		}
	})
}

// Many clients at once: registrations and logins all succeed (SQLite has one
// writer; PostgreSQL a pool).
func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		const n = 16
		var wg sync.WaitGroup
		clients := make([]*hstest.Client, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("user%d", i)
				hs.Register(t, name, "pw")
				clients[i] = hs.Login(t, name, "pw")
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for i, c := range clients {
			if c.UserID != hs.UserID(fmt.Sprintf("user%d", i)) {
				t.Errorf("client %d is %s", i, c.UserID)
			}
			c.MustWhoami(t)
		}
	})
}

// server.New refuses a bad config and names the setting.
func TestNewBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		change  func(*config.Config)
		setting string
	}{
		{"server name with a space", func(c *config.Config) { c.ServerName = "bad name" }, "server_name"},
		{"listen without a port", func(c *config.Config) { c.Listen = "localhost" }, "listen"},
		{"database not postgres", func(c *config.Config) { c.Database = "mysql://x" }, "database"},
		{"bcrypt cost too low", func(c *config.Config) { c.PasswordHashCost = 3 }, "password_hash_cost"},
		{"token lifetime under a minute", func(c *config.Config) { c.AccessTokenLifetime = time.Second }, "refreshable_access_token_lifetime"},
		{"token registration without registration", func(c *config.Config) {
			c.EnableRegistration, c.RegistrationRequiresToken = false, true
		}, "registration_requires_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Default()
			cfg.DataDir = t.TempDir()
			tt.change(&cfg)
			srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				srv.Close()
				t.Fatalf("server.New: got nil error, want one naming %s", tt.setting)
			}
			if !strings.Contains(err.Error(), tt.setting) {
				t.Errorf("server.New: error %q does not name %s", err, tt.setting)
			}
		})
	}
}

// A PostgreSQL database that cannot be reached fails server.New with an
// error, not a hang.
func TestNewUnreachableDatabase(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Database = "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := server.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		srv.Close()
		t.Fatalf("server.New with an unreachable database: got nil error")
	}
}

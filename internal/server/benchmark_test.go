package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/server"
	"polder.dev/polder/internal/store/storetest"
)

// Benchmarks of the account hot paths over real HTTP on loopback, on every
// engine (PostgreSQL when POLDER_TEST_POSTGRES is set):
//
//	go test -run '^$' -bench . -benchtime 3s ./internal/server/
//
// Figures are in docs/benchmarks.md.

func benchServer(b *testing.B, engine storetest.Engine) string {
	b.Helper()
	o := engine.Options(b)
	cfg := config.Default()
	cfg.DataDir = o.DataDir
	cfg.Database = o.Database
	cfg.EnableRegistration = true
	cfg.PasswordHashCost = 4 // the bcrypt cost dominates otherwise; see docs/benchmarks.md
	cfg.RateLimitPerSecond = 0
	cfg.LoginRateLimitPerSecond = 0
	cfg.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); srv.Close(); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func benchPost(b *testing.B, url, token string, body any) map[string]any {
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(data))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return benchDo(b, req)
}

func benchDo(b *testing.B, req *http.Request) map[string]any {
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		b.Fatalf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, data)
	}
	var out map[string]any
	json.Unmarshal(data, &out)
	return out
}

// register runs the two-step UIA dummy registration.
func benchRegister(b *testing.B, base, name string) string {
	data, _ := json.Marshal(map[string]any{"username": name, "password": "pw", "auth": map[string]string{"type": "m.login.dummy"}})
	resp, err := benchClient.Post(base+"/_matrix/client/v3/register", "application/json", bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 {
		b.Fatalf("register: %d %v", resp.StatusCode, out)
	}
	return out["access_token"].(string)
}

// BenchmarkRegisterLogin: one op is a registration (UIA dummy, one round
// trip with auth given up front) followed by a password login, from
// parallel clients.
func BenchmarkRegisterLogin(b *testing.B) {
	for _, e := range storetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			base := benchServer(b, e)
			var n atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					name := fmt.Sprintf("u%d", n.Add(1))
					benchRegister(b, base, name)
					benchPost(b, base+"/_matrix/client/v3/login", "", map[string]any{
						"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": name}, "password": "pw",
					})
				}
			})
		})
	}
}

// BenchmarkWhoami: an authenticated no-op request from parallel clients.
func BenchmarkWhoami(b *testing.B) {
	for _, e := range storetest.Engines(b) {
		b.Run(e.Name, func(b *testing.B) {
			base := benchServer(b, e)
			tok := benchRegister(b, base, "alice")
			req, _ := http.NewRequest(http.MethodGet, base+"/_matrix/client/v3/account/whoami", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					benchDo(b, req.Clone(context.Background()))
				}
			})
		})
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"polder.dev/polder/internal/store/storetest"
)

// Issue 2: SQLite is "safe against a killed process". Every registration
// that was acknowledged before a SIGKILL must be there after a restart, and
// the database must open cleanly. The server runs as a real process (this
// test binary re-executed as polder); clients register concurrently and the
// kill lands while requests are in flight.
func TestKillDuringWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			o := e.Options(t)
			args := []string{"serve", "--data-dir", o.DataDir, "--enable-registration", "--password-hash-cost", "4",
				"--rate-limit-per-second", "0", "--login-rate-limit-per-second", "0", "--log-level", "warn"}
			if o.Database != "" {
				args = append(args, "--database", o.Database)
			}
			base, proc := startProcess(t, args)

			var mu sync.Mutex
			var acked []string
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ctx.Err() == nil; i++ {
						name := fmt.Sprintf("w%du%d", w, i)
						if registerOnce(ctx, base, name) {
							mu.Lock()
							acked = append(acked, name)
							mu.Unlock()
						}
					}
				}()
			}
			time.Sleep(700 * time.Millisecond)
			if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			proc.Wait()
			cancel()
			wg.Wait()
			if len(acked) == 0 {
				t.Fatal("no registration was acknowledged before the kill")
			}

			base, proc = startProcess(t, args)
			defer func() { proc.Process.Signal(syscall.SIGTERM); proc.Wait() }()
			for _, name := range acked {
				resp, err := http.Get(base + "/_matrix/client/v3/register/available?username=" + name)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 400 {
					t.Errorf("after SIGKILL and restart: %s was acknowledged but /register/available says %d, want 400 M_USER_IN_USE", name, resp.StatusCode)
				}
			}
			t.Logf("%d registrations acknowledged before SIGKILL; all present after restart", len(acked))
		})
	}
}

// registerOnce registers name and reports whether the server acknowledged it.
func registerOnce(ctx context.Context, base, name string) bool {
	body, _ := json.Marshal(map[string]any{"username": name, "password": "pw", "auth": map[string]string{"type": "m.login.dummy"}})
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/_matrix/client/v3/register", bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == 200
}

// startProcess runs this test binary as `polder args...` on a free port
// and waits until it answers.
func startProcess(t *testing.T, args []string) (string, *exec.Cmd) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(os.Args[0], append(args, "--listen", addr)...)
	cmd.Env = append(os.Environ(), "POLDER_TEST_EXEC=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(base + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			return base, cmd
		}
	}
	cmd.Process.Kill()
	t.Fatalf("polder did not start: %s", strings.TrimSpace(stderr.String()))
	return "", nil
}

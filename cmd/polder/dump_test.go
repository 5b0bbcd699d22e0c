package main

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGUSR1 writes a goroutine dump to stderr and the server keeps serving
// (docs/operation.md).
func TestDumpOnSIGUSR1(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process")
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logPath := filepath.Join(dir, "stderr")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(os.Args[0], "serve", "--data-dir", filepath.Join(dir, "data"), "--listen", addr, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "POLDER_TEST_EXEC=1")
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	versions := func() error {
		resp, err := http.Get("http://" + addr + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	wait := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(logPath)
				t.Fatalf("%s: timed out; stderr:\n%s", what, b)
			}
		}
	}
	wait("start", func() bool { return versions() == nil })
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	wait("goroutine dump", func() bool {
		b, _ := os.ReadFile(logPath)
		s := string(b)
		return strings.Contains(s, "--- end of goroutine dump ---") && strings.Contains(s, "goroutine ")
	})
	if err := versions(); err != nil {
		t.Fatalf("after SIGUSR1 the server does not answer: %v", err)
	}
}

package bench_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"polder.dev/polder/internal/bench"
)

// TestCrash runs the crash scenario against a polder subprocess (SQLite):
// four senders, SIGKILL while they send, a restart on the same data, and
// every acknowledged event read back.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs cmd/polder")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build cmd/polder")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "polder")
	build := exec.Command(gobin, "build", "-buildvcs=false", "-o", bin, "polder.dev/polder/cmd/polder")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/polder: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	base := "http://" + addr
	c := &bench.Client{Base: base, HTTP: bench.NewHTTPClient(16)}
	defer c.HTTP.CloseIdleConnections()

	p := startPolder(t, bin, dir, addr)
	crashFile := filepath.Join(dir, "acked.json")
	sz := bench.QuickSizes()
	sz.CrashAfter = 700 * time.Millisecond
	scen, _ := bench.Select("crash")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep := bench.Run(ctx, bench.Config{Client: c, PID: p.cmd.Process.Pid, AllowKill: true, CrashFile: crashFile, Sizes: sz}, scen)
	p.cmd.Process.Kill() // already killed, unless the scenario failed early
	<-p.exited
	res := rep.Results[0]
	if res.Error != "" || res.Skipped != "" || len(res.Series) == 0 || res.Series[0].Ops == 0 {
		t.Fatalf("crash scenario: %+v", res)
	}
	// Sends still in flight when the kill lands fail with a connection
	// error, and a sender may start one more before it sees the kill:
	// those are the kill's, not the server's. Any other error fails.
	if s := res.Series[0]; s.Errors != 0 {
		killed := strings.Contains(s.LastError, "connection refused") || strings.Contains(s.LastError, "connection reset") || strings.Contains(s.LastError, "EOF")
		if killed {
			t.Logf("crash scenario: %d sends failed around the kill (last: %s)", s.Errors, s.LastError)
		} else {
			t.Errorf("crash scenario: %d errors before the kill (last: %s)", s.Errors, s.LastError)
		}
	}
	c.HTTP.CloseIdleConnections()

	p = startPolder(t, bin, dir, addr)
	defer p.stop()
	total, missing, err := bench.VerifyCrash(ctx, c, crashFile)
	if err != nil {
		t.Fatalf("VerifyCrash: %v", err)
	}
	t.Logf("%d acknowledged events before SIGKILL, %d missing after restart", total, len(missing))
	if len(missing) > 0 {
		t.Errorf("acknowledged events lost: %v", missing)
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a polder subprocess.
type proc struct {
	cmd    *exec.Cmd
	exited chan error
}

// stop interrupts the process (a graceful shutdown) and waits for it.
func (p *proc) stop() {
	p.cmd.Process.Signal(os.Interrupt)
	<-p.exited
}

// startPolder starts bin on dir/data listening on addr and waits until it
// answers.
func startPolder(t *testing.T, bin, dir, addr string) *proc {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(dir, "polder.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "POLDER_DATA_DIR="+filepath.Join(dir, "data"), "POLDER_LISTEN="+addr,
		"POLDER_ENABLE_REGISTRATION=true", "POLDER_RATE_LIMIT_PER_SECOND=0", "POLDER_LOGIN_RATE_LIMIT_PER_SECOND=0",
		"POLDER_PASSWORD_HASH_COST=4", "POLDER_FEDERATION_ENABLED=false", "POLDER_LOG_LEVEL=warn", "POLDER_CONFIG=")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.exited:
			log, _ := os.ReadFile(filepath.Join(dir, "polder.log"))
			t.Fatalf("polder exited while starting (%v):\n%s", err, log)
		default:
		}
		resp, err := http.Get("http://" + addr + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-p.exited
	t.Fatalf("polder did not answer on %s within 60 s", addr)
	return nil
}

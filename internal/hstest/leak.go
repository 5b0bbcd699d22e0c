package hstest

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// leakMarkers are stack frames that no goroutine should still be in once
// every test server has stopped: Polder's own code, the HTTP server and its
// connections, the client transport, and database/sql pools.
var leakMarkers = []string{
	"polder.dev/polder/internal/",
	"net/http.(*Server).Serve",
	"net/http.(*conn).serve",
	"net/http.(*persistConn)",
	"database/sql.(*DB).connectionOpener",
	"github.com/jackc/pgx",
}

// Main runs the tests and then checks that the servers they started left no
// goroutines behind (T tstest/resource.go ResourceCheck, coarser). Use it
// from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(hstest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if code != 0 {
		return code
	}
	if leaked := Leaks(5 * time.Second); leaked != "" {
		fmt.Fprintf(os.Stderr, "hstest: goroutines left behind after every test ended:\n%s\n", leaked)
		return 1
	}
	return 0
}

// Leaks waits up to wait for goroutines in leakMarkers to end and returns
// the stacks of those that did not ("" if none).
func Leaks(wait time.Duration) string {
	deadline := time.Now().Add(wait)
	for {
		leaked := leakedStacks()
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func leakedStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 { // this goroutine
			continue
		}
		for _, m := range leakMarkers {
			if strings.Contains(g, m) && !strings.Contains(g, "polder.dev/polder/internal/hstest.leakedStacks") {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

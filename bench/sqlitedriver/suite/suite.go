// Package suite holds the correctness checks and benchmarks that every
// driver package in this module runs against its own driver: each driver
// package is a separate test binary because mattn and ncruces both register
// the database/sql name "sqlite3".
package suite

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"polder.dev/polder/bench/sqlitedriver/sqlitebench"
)

const crashChildEnv = "SQLITEBENCH_CRASH_CHILD"

// Main is the TestMain of every driver package. In a crash-test child
// process it runs the child's write loop instead of the tests.
func Main(m *testing.M, d sqlitebench.Driver) {
	if path := os.Getenv(crashChildEnv); path != "" {
		if err := crashChild(d, path); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	flag.Parse()
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		// Configuration lines for benchstat, printed before any result.
		if v, err := sqliteVersion(d); err == nil {
			fmt.Printf("driver: %s\nsqlite: %s\n", d.Name, v)
		}
	}
	code := m.Run()
	fixture.cleanup()
	os.Exit(code)
}

func sqliteVersion(d sqlitebench.Driver) (string, error) {
	db, err := sql.Open(d.SQLName, ":memory:")
	if err != nil {
		return "", err
	}
	defer db.Close()
	var v string
	err = db.QueryRow(`SELECT sqlite_version()`).Scan(&v)
	return v, err
}

// Fixture sizes: 100k access tokens; 100 rooms × 1,000 events, interleaved
// so that one room's events are spread over the table as in real traffic.
const (
	nTokens       = 100_000
	nRooms        = 100
	eventsPerRoom = 1_000
	nEvents       = nRooms * eventsPerRoom
)

// fixtureDB is the read-only database shared by the read benchmarks of one
// test binary, built once.
type fixtureDB struct {
	once   sync.Once
	dir    string
	path   string
	tokens []string
	err    error
}

var fixture fixtureDB

func (f *fixtureDB) cleanup() {
	if f.dir != "" {
		os.RemoveAll(f.dir)
	}
}

// mustFixture returns the path of the shared fixture database and its
// access tokens, building it on first use.
func mustFixture(tb testing.TB, d sqlitebench.Driver) (string, []string) {
	tb.Helper()
	fixture.once.Do(func() {
		fixture.dir, fixture.err = os.MkdirTemp("", "sqlitebench-"+d.Name)
		if fixture.err != nil {
			return
		}
		fixture.path = filepath.Join(fixture.dir, "fixture.db")
		fixture.tokens, fixture.err = buildFixture(context.Background(), d, fixture.path)
	})
	if fixture.err != nil {
		tb.Fatalf("build fixture: %v", fixture.err)
	}
	return fixture.path, fixture.tokens
}

// token returns the i-th access token: "syt_" and 32 hex digits.
func token(i int) string {
	r := rand.New(rand.NewPCG(uint64(i), 0x9e3779b97f4a7c15))
	return fmt.Sprintf("syt_%016x%016x", r.Uint64(), r.Uint64())
}

func buildFixture(ctx context.Context, d sqlitebench.Driver, path string) ([]string, error) {
	p, err := sqlitebench.Open(ctx, d, path, "OFF", 1)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if err := sqlitebench.Migrate(ctx, p.W); err != nil {
		return nil, err
	}
	if err := insertRooms(ctx, p.W); err != nil {
		return nil, err
	}
	tokens := make([]string, nTokens)
	for i := range tokens {
		tokens[i] = token(i)
	}
	const chunk = 10_000
	for start := 0; start < nEvents; start += chunk {
		err := withTx(ctx, p.W, func(tx *sql.Tx) error {
			for i := start; i < start+chunk; i++ {
				room := i%nRooms + 1
				if _, err := tx.ExecContext(ctx, sqlitebench.InsertEvent, room, "$ev"+strconv.Itoa(i),
					"@user"+strconv.Itoa(i%997)+":example.org", "m.room.message", sqlitebench.Content); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, sqlitebench.InsertToken, tokens[i], "@user"+strconv.Itoa(i)+":example.org",
					"DEVICE"+strconv.Itoa(i), int64(1_795_000_000_000+i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("load rows from %d: %w", start, err)
		}
	}
	if _, err := p.W.ExecContext(ctx, `ANALYZE`); err != nil {
		return nil, err
	}
	if _, err := p.W.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return nil, err
	}
	return tokens, nil
}

func insertRooms(ctx context.Context, w *sql.DB) error {
	return withTx(ctx, w, func(tx *sql.Tx) error {
		for r := 1; r <= nRooms; r++ {
			var nid int64
			if err := tx.QueryRowContext(ctx, sqlitebench.InsertRoom, r, "!room"+strconv.Itoa(r)+":example.org").Scan(&nid); err != nil {
				return fmt.Errorf("insert room %d: %w", r, err)
			}
		}
		return nil
	})
}

func withTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// mustOpen opens pools on path and closes them when tb ends.
func mustOpen(tb testing.TB, d sqlitebench.Driver, path, sync string, readers int) *sqlitebench.Pools {
	tb.Helper()
	p, err := sqlitebench.Open(context.Background(), d, path, sync, readers)
	if err != nil {
		tb.Fatalf("sqlitebench.Open(%s, sync=%s): %v", path, sync, err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// mustCopyFixture copies the fixture into a fresh directory for benchmarks
// that write to it.
func mustCopyFixture(tb testing.TB, d sqlitebench.Driver) (string, []string) {
	tb.Helper()
	src, tokens := mustFixture(tb, d)
	data, err := os.ReadFile(src)
	if err != nil {
		tb.Fatalf("read fixture: %v", err)
	}
	dst := filepath.Join(tb.TempDir(), "copy.db")
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		tb.Fatalf("write fixture copy: %v", err)
	}
	return dst, tokens
}

package suite

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"polder.dev/polder/bench/sqlitedriver/sqlitebench"
)

// Correctness checks what Polder's store needs from d: parameter binding for
// "$N" SQL, RETURNING and ON CONFLICT, per-connection pragmas from the DSN,
// busy handling, time values, and durability of acknowledged commits when
// the process is killed.
func Correctness(t *testing.T, d sqlitebench.Driver) {
	t.Run("placeholders", func(t *testing.T) { testPlaceholders(t, d) })
	t.Run("returning", func(t *testing.T) { testReturning(t, d) })
	t.Run("pragmas", func(t *testing.T) { testPragmas(t, d) })
	t.Run("busy", func(t *testing.T) { testBusy(t, d) })
	t.Run("time", func(t *testing.T) { testTime(t, d) })
	t.Run("kill9", func(t *testing.T) { testKill(t, d) })
	t.Run("conn memory", func(t *testing.T) { testConnMemory(t, d) })
}

// testConnMemory logs how much resident memory each open reader connection
// costs (Go heap and C heap alike, from /proc/self/statm).
func testConnMemory(t *testing.T, d sqlitebench.Driver) {
	ctx := context.Background()
	path, _ := mustFixture(t, d)
	const n = 16
	debug.FreeOSMemory()
	before := rss(t)
	p := mustOpen(t, d, path, "NORMAL", n)
	var conns []*sql.Conn
	for i := range n {
		c, err := p.R.Conn(ctx)
		if err != nil {
			t.Fatalf("Conn %d: %v", i, err)
		}
		defer c.Close()
		// Read one room's 1,000 events, spread over the table, so that
		// the connection's page cache fills up.
		var k int
		if err := c.QueryRowContext(ctx, `SELECT sum(length(content)) FROM events WHERE room_nid = $1`, i+1).Scan(&k); err != nil {
			t.Fatalf("count on conn %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	debug.FreeOSMemory()
	after := rss(t)
	t.Logf("RSS %d MiB before, %d MiB with %d reader connections open: about %d KiB per connection",
		before>>20, after>>20, len(conns), (after-before)/int64(len(conns))>>10)
}

// rss returns the resident set size of this process in bytes.
func rss(t *testing.T) int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	f := strings.Fields(string(data))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatalf("parse statm %q: %v", data, err)
	}
	return pages * int64(os.Getpagesize())
}

func testPlaceholders(t *testing.T, d sqlitebench.Driver) {
	ctx := context.Background()
	p := mustOpen(t, d, filepath.Join(t.TempDir(), "p.db"), "NORMAL", 2)
	if _, err := p.W.ExecContext(ctx, `CREATE TABLE kv (a INTEGER, b TEXT);
		INSERT INTO kv VALUES (1, 'x'), (2, 'y'), (1, 'y'), (3, 'z')`); err != nil {
		t.Fatalf("create kv: %v", err)
	}
	tests := []struct {
		name       string
		q          string
		args       []any
		want       string
		outOfOrder bool // first appearance order differs from $N order
	}{
		{name: "in order", q: `SELECT $1 || '-' || $2`, args: []any{"a", "b"}, want: "a-b"},
		{name: "out of order", q: `SELECT $2 || '-' || $1`, args: []any{"a", "b"}, want: "b-a", outOfOrder: true},
		{name: "repeated", q: `SELECT $1 || '-' || $1`, args: []any{"a"}, want: "a-a"},
		{name: "repeated out of order", q: `SELECT $2 || '-' || $1 || '-' || $2`, args: []any{"a", "b"}, want: "b-a-b", outOfOrder: true},
		{name: "where out of order", q: `SELECT count(*) FROM kv WHERE b = $2 AND a = $1`, args: []any{1, "y"}, want: "1", outOfOrder: true},
		{name: "where repeated", q: `SELECT count(*) FROM kv WHERE a = $1 OR a = $1 + 1`, args: []any{1}, want: "3"},
		{name: "dollar in literal", q: `SELECT '$2' || $1`, args: []any{"x"}, want: "$2x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, rawErr := queryString(ctx, p.R, tt.q, tt.args...)
			rawOK := rawErr == nil && raw == tt.want
			wantRawOK := !(d.DollarByPosition && tt.outOfOrder)
			if rawOK != wantRawOK {
				t.Errorf("QueryRow(%q, %v) = %q, %v; want correct=%v (want %q)", tt.q, tt.args, raw, rawErr, wantRawOK, tt.want)
			}
			if !rawOK {
				t.Logf("raw $N binds wrongly, as expected of %s: QueryRow(%q, %v) = %q, %v; want %q", d.Name, tt.q, tt.args, raw, rawErr, tt.want)
			}
			q := sqlitebench.Numbered(tt.q)
			got, err := queryString(ctx, p.R, q, tt.args...)
			if err != nil || got != tt.want {
				t.Errorf("QueryRow(%q, %v) = %q, %v; want %q", q, tt.args, got, err, tt.want)
			}
		})
	}
	// The same through a write: an out-of-order INSERT.
	q := `INSERT INTO kv (b, a) VALUES ($2, $1) RETURNING a, b`
	if d.DollarByPosition {
		q = sqlitebench.Numbered(q)
	}
	var a int64
	var b string
	if err := p.W.QueryRowContext(ctx, q, 7, "seven").Scan(&a, &b); err != nil || a != 7 || b != "seven" {
		t.Errorf("QueryRow(%q, 7, seven) = %d, %q, %v; want 7, seven", q, a, b, err)
	}
}

func queryString(ctx context.Context, db *sql.DB, q string, args ...any) (string, error) {
	var s string
	err := db.QueryRowContext(ctx, q, args...).Scan(&s)
	return s, err
}

func testReturning(t *testing.T, d sqlitebench.Driver) {
	ctx := context.Background()
	p := mustOpen(t, d, filepath.Join(t.TempDir(), "r.db"), "NORMAL", 2)
	if _, err := p.W.ExecContext(ctx, `
		CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
		CREATE TABLE counters (k TEXT PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
		t.Fatalf("create tables: %v", err)
	}

	t.Run("insert returning", func(t *testing.T) {
		for want := int64(1); want <= 2; want++ {
			var id int64
			err := p.W.QueryRowContext(ctx, `INSERT INTO items (name) VALUES ($1) RETURNING id`, "n"+strconv.FormatInt(want, 10)).Scan(&id)
			if err != nil || id != want {
				t.Errorf("INSERT … RETURNING id = %d, %v; want %d", id, err, want)
			}
		}
	})
	t.Run("upsert returning", func(t *testing.T) {
		const q = `INSERT INTO counters (k, n) VALUES ($1, 1)
			ON CONFLICT (k) DO UPDATE SET n = counters.n + 1 RETURNING n`
		for want := int64(1); want <= 3; want++ {
			var n int64
			if err := p.W.QueryRowContext(ctx, q, "c").Scan(&n); err != nil || n != want {
				t.Errorf("upsert #%d RETURNING n = %d, %v; want %d", want, n, err, want)
			}
		}
	})
	t.Run("do nothing returning", func(t *testing.T) {
		var id int64
		err := p.W.QueryRowContext(ctx, `INSERT INTO items (name) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id`, "n1").Scan(&id)
		if !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("INSERT of a duplicate … ON CONFLICT DO NOTHING RETURNING id: got %d, %v; want sql.ErrNoRows", id, err)
		}
	})
	t.Run("returning in tx", func(t *testing.T) {
		tx, err := p.W.BeginTx(ctx, nil)
		if err != nil {
			t.Fatalf("BeginTx: %v", err)
		}
		defer tx.Rollback()
		var id int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO items (name) VALUES ($1) RETURNING id`, "tx").Scan(&id); err != nil {
			t.Fatalf("tx INSERT … RETURNING: %v", err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		var name string
		if err := p.R.QueryRowContext(ctx, `SELECT name FROM items WHERE id = $1`, id).Scan(&name); err != nil || name != "tx" {
			t.Errorf("reader SELECT name of id %d = %q, %v; want tx", id, name, err)
		}
	})
	t.Run("exec multi-row returning", func(t *testing.T) {
		// Exec discards the RETURNING rows; every row must still be written.
		res, err := p.W.ExecContext(ctx, `INSERT INTO items (name) VALUES ($1), ($2), ($3) RETURNING id`, "e1", "e2", "e3")
		if err != nil {
			t.Fatalf("Exec INSERT … RETURNING: %v", err)
		}
		var n int
		if err := p.R.QueryRowContext(ctx, `SELECT count(*) FROM items WHERE name LIKE 'e%'`).Scan(&n); err != nil || n != 3 {
			t.Errorf("rows after Exec INSERT … RETURNING = %d, %v; want 3", n, err)
		}
		if ra, err := res.RowsAffected(); err != nil || ra != 3 {
			t.Logf("note: RowsAffected after Exec INSERT … RETURNING = %d, %v", ra, err)
		}
	})
}

// testPragmas holds every connection of both pools at once and reads the
// per-connection pragmas from each: journal_mode is stored in the file, but
// synchronous, foreign_keys, busy_timeout and query_only are per connection
// and must come from the DSN.
func testPragmas(t *testing.T, d sqlitebench.Driver) {
	ctx := context.Background()
	for _, sync := range []string{"NORMAL", "FULL"} {
		t.Run("sync="+sync, func(t *testing.T) {
			const readers = 4
			path := filepath.Join(t.TempDir(), "pragma.db")
			p := mustOpen(t, d, path, sync, readers)
			if err := sqlitebench.Migrate(ctx, p.W); err != nil {
				t.Fatal(err)
			}
			t.Logf("writer DSN: %s", d.DSN(path, sqlitebench.Writer(sync)))
			t.Logf("reader DSN: %s", d.DSN(path, sqlitebench.Reader()))
			wantSync := map[string]int64{"NORMAL": 1, "FULL": 2}
			type conn struct {
				name  string
				c     *sql.Conn
				sync  int64
				query int64
			}
			var conns []conn
			wc, err := p.W.Conn(ctx)
			if err != nil {
				t.Fatalf("writer Conn: %v", err)
			}
			defer wc.Close()
			conns = append(conns, conn{"writer", wc, wantSync[sync], 0})
			for i := range readers {
				rc, err := p.R.Conn(ctx)
				if err != nil {
					t.Fatalf("reader Conn %d: %v", i, err)
				}
				defer rc.Close()
				conns = append(conns, conn{"reader " + strconv.Itoa(i), rc, 1, 1})
			}
			for _, c := range conns {
				var journal string
				var syncV, fk, busy, qo int64
				err := errors.Join(
					c.c.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&journal),
					c.c.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&syncV),
					c.c.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk),
					c.c.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&busy),
					c.c.QueryRowContext(ctx, `PRAGMA query_only`).Scan(&qo),
				)
				if err != nil {
					t.Fatalf("%s: read pragmas: %v", c.name, err)
				}
				if journal != "wal" || syncV != c.sync || fk != 1 || busy != 5000 || qo != c.query {
					t.Errorf("%s: journal_mode=%s synchronous=%d foreign_keys=%d busy_timeout=%d query_only=%d; want wal %d 1 5000 %d",
						c.name, journal, syncV, fk, busy, qo, c.sync, c.query)
				}
			}
			_, err = wc.ExecContext(ctx, sqlitebench.InsertEvent, 999, "$orphan", "@a:b", "m.room.message", sqlitebench.Content)
			if err == nil {
				t.Errorf("insert of an event into a missing room: got no error; want a FOREIGN KEY constraint error")
			}
			_, err = conns[1].c.ExecContext(ctx, `INSERT INTO rooms (room_nid, room_id) VALUES (1, '!r:x')`)
			if err == nil {
				t.Errorf("insert through a query_only reader: got no error; want one")
			}
		})
	}
}

// testBusy checks that busy_timeout makes a second writer wait for the lock,
// that BEGIN (with _txlock=immediate) is where it waits, and how the driver
// reports SQLITE_BUSY.
func testBusy(t *testing.T, d sqlitebench.Driver) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "busy.db")
	p := mustOpen(t, d, path, "NORMAL", 1)
	if err := sqlitebench.Migrate(ctx, p.W); err != nil {
		t.Fatal(err)
	}
	other := func(o sqlitebench.Options) *sql.DB {
		db, err := sql.Open(d.SQLName, d.DSN(path, o))
		if err != nil {
			t.Fatalf("sql.Open: %v", err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		return db
	}
	hold := func(dur time.Duration) *sql.Tx {
		tx, err := p.W.BeginTx(ctx, nil)
		if err != nil {
			t.Fatalf("writer BeginTx: %v", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO access_tokens VALUES ($1, 'u', 'd', 0)`, strconv.FormatInt(time.Now().UnixNano(), 10)); err != nil {
			t.Fatalf("writer insert: %v", err)
		}
		if dur > 0 {
			time.AfterFunc(dur, func() { tx.Commit() })
		}
		return tx
	}

	t.Run("waits", func(t *testing.T) {
		w2 := other(sqlitebench.Writer("NORMAL"))
		hold(300 * time.Millisecond)
		start := time.Now()
		tx, err := w2.BeginTx(ctx, nil)
		waited := time.Since(start)
		if err != nil {
			t.Fatalf("second writer BeginTx while the lock is held for 300ms: %v; want it to wait", err)
		}
		defer tx.Rollback()
		if waited < 200*time.Millisecond {
			t.Errorf("second writer BeginTx returned after %v; want it to block ~300ms in BEGIN IMMEDIATE", waited)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO access_tokens VALUES ('w2', 'u', 'd', 0)`); err != nil {
			t.Errorf("second writer insert: %v", err)
		}
		if err := tx.Commit(); err != nil {
			t.Errorf("second writer Commit: %v", err)
		}
	})
	t.Run("times out", func(t *testing.T) {
		o := sqlitebench.Writer("NORMAL")
		o.BusyTimeout = 100 * time.Millisecond
		w3 := other(o)
		tx1 := hold(0)
		defer tx1.Rollback()
		start := time.Now()
		tx, err := w3.BeginTx(ctx, nil)
		waited := time.Since(start)
		if err == nil {
			tx.Rollback()
			t.Fatalf("BeginTx with busy_timeout=100ms while the lock is held: no error; want SQLITE_BUSY")
		}
		if !d.IsBusy(err) {
			t.Errorf("BeginTx error %q (%T): IsBusy = false; want true", err, err)
		}
		if waited < 80*time.Millisecond || waited > 3*time.Second {
			t.Errorf("BeginTx failed after %v; want about 100ms", waited)
		}
		t.Logf("busy error: %T %q after %v", err, err, waited)
	})
	t.Run("deferred upgrade", func(t *testing.T) {
		// A deferred transaction that has read, then writes after another
		// connection committed, fails at once with SQLITE_BUSY_SNAPSHOT,
		// whatever busy_timeout says. One writer connection with
		// BEGIN IMMEDIATE never gets here.
		o := sqlitebench.Writer("NORMAL")
		o.Immediate = false
		w4 := other(o)
		tx, err := w4.BeginTx(ctx, nil)
		if err != nil {
			t.Fatalf("deferred BeginTx: %v", err)
		}
		defer tx.Rollback()
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM access_tokens`).Scan(&n); err != nil {
			t.Fatalf("deferred read: %v", err)
		}
		if _, err := p.W.ExecContext(ctx, `INSERT INTO access_tokens VALUES ('other', 'u', 'd', 0)`); err != nil {
			t.Fatalf("writer insert: %v", err)
		}
		start := time.Now()
		_, err = tx.ExecContext(ctx, `INSERT INTO access_tokens VALUES ('deferred', 'u', 'd', 0)`)
		if err == nil {
			t.Fatalf("write in a deferred tx with a stale snapshot: no error; want SQLITE_BUSY (snapshot)")
		}
		if !d.IsBusy(err) {
			t.Errorf("stale-snapshot write error %q (%T): IsBusy = false; want true", err, err)
		}
		t.Logf("stale snapshot error: %q after %v", err, time.Since(start))
	})
}

// testTime records how the driver stores and reads back a time.Time.
// Polder stores timestamps as INTEGER milliseconds (origin_server_ts), so
// this is informational except that an int64 must round-trip.
func testTime(t *testing.T, d sqlitebench.Driver) {
	ctx := context.Background()
	p := mustOpen(t, d, filepath.Join(t.TempDir(), "t.db"), "NORMAL", 1)
	if _, err := p.W.ExecContext(ctx, `CREATE TABLE times (ts TIMESTAMP, tx TEXT, ms INTEGER)`); err != nil {
		t.Fatal(err)
	}
	in := time.Date(2026, 11, 21, 12, 34, 56, 789_000_000, time.FixedZone("CET", 3600))
	if _, err := p.W.ExecContext(ctx, `INSERT INTO times VALUES ($1, $1, $2)`, in, in.UnixMilli()); err != nil {
		t.Fatalf("insert time: %v", err)
	}
	var typ, text, txtyp, txtext string
	var ms int64
	if err := p.R.QueryRowContext(ctx, `SELECT typeof(ts), CAST(ts AS TEXT), typeof(tx), CAST(tx AS TEXT), ms FROM times`).Scan(&typ, &text, &txtyp, &txtext, &ms); err != nil {
		t.Fatalf("select time: %v", err)
	}
	if ms != in.UnixMilli() {
		t.Errorf("ms column = %d; want %d", ms, in.UnixMilli())
	}
	var ts, tsx time.Time
	errTS := p.R.QueryRowContext(ctx, `SELECT ts FROM times`).Scan(&ts)
	errTX := p.R.QueryRowContext(ctx, `SELECT tx FROM times`).Scan(&tsx)
	t.Logf("time.Time bound as: TIMESTAMP column %s %q, TEXT column %s %q", typ, text, txtyp, txtext)
	t.Logf("scan TIMESTAMP column into time.Time: %v (equal=%v) err=%v", ts, ts.Equal(in), errTS)
	t.Logf("scan TEXT column into time.Time: %v (equal=%v) err=%v", tsx, tsx.Equal(in), errTX)
}

// testKill runs a child process that commits one row per transaction and
// prints each acknowledged id, kills it with SIGKILL mid-stream, and checks
// that every acknowledged row survived and the database is intact.
func testKill(t *testing.T, d sqlitebench.Driver) {
	if testing.Short() {
		t.Skip("kill -9 test skipped in -short mode")
	}
	ctx := context.Background()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kill.db")
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	const wantAcks = 500
	var acked []int64
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(60 * time.Second)
	for len(acked) < wantAcks && time.Now().Before(deadline) && sc.Scan() {
		id, err := strconv.ParseInt(sc.Text(), 10, 64)
		if err != nil {
			t.Fatalf("child printed %q", sc.Text())
		}
		acked = append(acked, id)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	cmd.Wait()
	if len(acked) < wantAcks {
		t.Fatalf("child acknowledged %d commits before the deadline; want %d", len(acked), wantAcks)
	}

	p := mustOpen(t, d, path, "NORMAL", 1)
	var check string
	if err := p.R.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check after kill -9 = %q, %v; want ok", check, err)
	}
	var n, maxID int64
	if err := p.R.QueryRowContext(ctx, `SELECT count(*), coalesce(max(stream_pos), 0) FROM events`).Scan(&n, &maxID); err != nil {
		t.Fatalf("count events: %v", err)
	}
	last := acked[len(acked)-1]
	if maxID < last || n < int64(len(acked)) {
		t.Errorf("after kill -9: %d events, max stream_pos %d; want at least %d acknowledged, up to %d", n, maxID, len(acked), last)
	}
	for _, id := range acked {
		var got int64
		if err := p.R.QueryRowContext(ctx, `SELECT stream_pos FROM events WHERE stream_pos = $1`, id).Scan(&got); err != nil {
			t.Errorf("acknowledged event %d after kill -9: %v", id, err)
			break
		}
	}
	t.Logf("child acknowledged %d commits (last %d); after kill -9 the database has %d events", len(acked), last, n)
}

// crashChild commits single-row transactions until it is killed, printing
// each committed stream position after Commit returns.
func crashChild(d sqlitebench.Driver, path string) error {
	ctx := context.Background()
	p, err := sqlitebench.Open(ctx, d, path, "NORMAL", 1)
	if err != nil {
		return err
	}
	if err := sqlitebench.Migrate(ctx, p.W); err != nil {
		return err
	}
	if _, err := p.W.ExecContext(ctx, `INSERT INTO rooms VALUES (1, '!r:x')`); err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		tx, err := p.W.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		var pos int64
		if err := tx.QueryRowContext(ctx, sqlitebench.InsertEvent, 1, "$k"+strconv.Itoa(i), "@a:x", "m.room.message", sqlitebench.Content).Scan(&pos); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		fmt.Fprintln(w, pos)
		w.Flush()
	}
}

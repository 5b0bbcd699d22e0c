// Package store holds ALL of Polder's SQL: the schema, its numbered
// migrations and every query, for both engines. It is the only package that
// imports database/sql and the drivers.
//
// Two engines sit behind one DB type:
//   - SQLite (embedded default, modernc.org/sqlite, pure Go so the binary stays
//     static): WAL, foreign keys, a busy timeout, exactly one writer connection
//     and a pool of read-only connections. synchronous=NORMAL: a committed
//     transaction survives a killed process (the WAL is in the page cache) but
//     not a power loss; set sqlite_synchronous=FULL for that.
//   - PostgreSQL (pgx through database/sql) for scale and for several Polder
//     processes sharing one database.
//
// Queries are written once in the subset both accept ($1 placeholders,
// ON CONFLICT, RETURNING); where the dialects differ, both strings sit side by
// side behind a dialect switch. Migrations are numbered .sql files shared by
// both dialects (see migrate.go), each applied in its own transaction and
// recorded in schema_migrations. Numeric IDs may be used inside store but never leave it.
//
// Absent rows are reported with ErrNotFound (test with errors.Is).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// ErrNotFound is returned when a row that was asked for does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a row to be created already exists.
var ErrConflict = errors.New("already exists")

// Dialect is the SQL engine behind a DB.
type Dialect int

const (
	SQLite Dialect = iota
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// Observer is told the duration of every store operation, for metrics.
type Observer func(op string, d time.Duration, err error)

// Options configure Open.
type Options struct {
	// Database is empty for SQLite in DataDir, or a postgres:// URL.
	Database string
	DataDir  string
	// SQLiteSynchronous is NORMAL (default) or FULL.
	SQLiteSynchronous string
	Logger            *slog.Logger
	Observe           Observer
}

// DB is Polder's database.
type DB struct {
	dialect Dialect
	w       *sql.DB // writes; one connection on SQLite
	r       *sql.DB // reads; read-only connections on SQLite, the same pool on Postgres
	log     *slog.Logger
	observe Observer
	where   string // for logs: a path or a host, never a password
	// snapshots caches state snapshots (see state.go).
	snapshots *snapshotCache
	// wstmts and rstmts cache prepared statements on SQLite (nil on
	// PostgreSQL; see stmtcache.go).
	wstmts, rstmts *stmtCache
	// roomNIDs caches room_id → room_nid (id.RoomID → int64) for rooms
	// read in committed transactions (see Tx.roomNID).
	roomNIDs sync.Map
	// group shares write transactions on SQLite (nil on PostgreSQL).
	group *groupCommit
	// unindexed counts, on SQLite, the events persisted and not yet
	// known to be in the search index, to batch their indexing (see
	// searchindex.go).
	unindexed atomic.Int64
	// pushStaged counts, on SQLite, the rows of event_push_staging (see
	// Tx.rotatePush).
	pushStaged atomic.Int64
	// ckpt checkpoints SQLite's WAL off the write path (nil on
	// PostgreSQL; see checkpoint.go).
	ckpt *checkpointer
}

// Open opens (creating if needed) the database and applies pending migrations.
func Open(ctx context.Context, o Options) (*DB, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observe == nil {
		o.Observe = func(string, time.Duration, error) {}
	}
	db := &DB{log: o.Logger, observe: o.Observe, snapshots: &snapshotCache{}}
	var err error
	if o.Database == "" {
		err = db.openSQLite(o)
	} else {
		err = db.openPostgres(o.Database)
	}
	if err != nil {
		return nil, err
	}
	if err := db.w.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s database %s: %w", db.dialect, db.where, err)
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if db.dialect == SQLite {
		var n int64
		if err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM event_push_staging`).Scan(&n); err != nil {
			db.Close()
			return nil, fmt.Errorf("count staged push actions: %w", err)
		}
		db.pushStaged.Store(n)
	}
	return db, nil
}

func (db *DB) openSQLite(o Options) error {
	db.dialect = SQLite
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(o.DataDir, "polder.db")
	db.where = path
	sync := o.SQLiteSynchronous
	if sync == "" {
		sync = "NORMAL"
	}
	// temp_store(MEMORY): the statement journals of grouped calls'
	// savepoints (see groupCommit) and of multi-row statements stay in
	// memory. In a temporary file they cost a pwrite for every page first
	// changed in a savepoint: 15% of the CPU of sends into a shared room.
	base := "file:" + (&url.URL{Path: path}).EscapedPath() + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)" +
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(" + sync + ")&_pragma=temp_store(MEMORY)&_time_format=sqlite"
	w, err := sql.Open("sqlite", base+"&_txlock=immediate&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// Exactly one writer: SQLite serialises writers anyway, and one
	// connection turns lock contention (SQLITE_BUSY) into a queue in Go.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	r.SetConnMaxLifetime(0)
	ck, err := sql.Open("sqlite", base)
	if err != nil {
		w.Close()
		r.Close()
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	ck.SetMaxOpenConns(1)
	ck.SetMaxIdleConns(1)
	ck.SetConnMaxLifetime(0)
	db.w, db.r = w, r
	db.wstmts, db.rstmts = newStmtCache(w, true), newStmtCache(r, false)
	db.group = &groupCommit{db: db}
	db.ckpt = startCheckpointer(ck)
	return nil
}

func (db *DB) openPostgres(dsn string) error {
	db.dialect = Postgres
	u, err := url.Parse(dsn)
	if err != nil {
		return fmt.Errorf("database url: %w", err)
	}
	db.where = u.Host + u.Path
	p, err := sql.Open("pgx", dsn)
	if err != nil {
		return fmt.Errorf("open postgres %s: %w", db.where, err)
	}
	p.SetMaxOpenConns(32)
	p.SetMaxIdleConns(16)
	p.SetConnMaxIdleTime(5 * time.Minute)
	db.w, db.r = p, p
	return nil
}

// Dialect says which engine this is.
func (db *DB) Dialect() Dialect { return db.dialect }

// Where says where the database is, for logs (no credentials).
func (db *DB) Where() string { return db.where }

// Close closes every connection.
func (db *DB) Close() error {
	var err error
	db.wstmts.close()
	db.rstmts.close()
	if db.ckpt != nil {
		err = db.ckpt.close()
	}
	if db.r != nil && db.r != db.w {
		err = errors.Join(err, db.r.Close())
	}
	if db.w != nil {
		err = errors.Join(err, db.w.Close())
	}
	return err
}

// Tx is a write transaction.
type Tx struct {
	*sql.Tx
	dialect Dialect
	stmts   *stmtCache
	db      *DB
	// ctx, if set, replaces the context of every statement (a grouped
	// transaction's: see groupCommit).
	ctx context.Context
	// newNIDs are the room numbers read in this transaction, for
	// db.roomNIDs once it commits.
	newNIDs map[id.RoomID]int64
	// indexed is how many pending events indexSearch covered in this
	// transaction, for db.unindexed once it commits.
	indexed int64
}

// committed runs what waits for the transaction's commit.
func (tx *Tx) committed() {
	for r, nid := range tx.newNIDs {
		tx.db.roomNIDs.Store(r, nid)
	}
	if tx.indexed > 0 {
		tx.db.unindexed.Add(-tx.indexed)
	}
}

// WithTx runs fn in one write transaction, committing when fn returns nil and
// rolling back otherwise. op names the operation for metrics. It returns
// only once the outcome is durable: after the commit (or the rollback).
//
// On SQLite, calls that arrive while another commits share one
// transaction (group commit, see groupCommit): fn then runs inside a
// savepoint, and an error rolls back only its own work. fn must not keep
// tx after it returns nor wait for another WithTx call.
func (db *DB) WithTx(ctx context.Context, op string, fn func(tx *Tx) error) (err error) {
	start := time.Now()
	defer func() { db.observe(op, time.Since(start), err) }()
	if db.group != nil {
		return db.group.do(ctx, op, fn)
	}
	db.wstmts.preparePending(ctx)
	sqlTx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", op, err)
	}
	defer sqlTx.Rollback()
	tx := &Tx{Tx: sqlTx, dialect: db.dialect, stmts: db.wstmts, db: db}
	if err := fn(tx); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", op, err)
	}
	tx.committed()
	return nil
}

// groupCommit shares SQLite's one write transaction between the WithTx
// calls that queue up while a commit is under way. On SQLite a commit
// (writing the WAL frames) costs about as much as a message's statements;
// sends into different rooms, each holding only its room's lock, meet
// here and pay for one commit together.
//
// The first caller to find no batch running leads: it takes every queued
// call, runs each fn in turn inside SAVEPOINT (an fn that fails is rolled
// back to it and gets its error; the others keep their work), commits
// once, hands the lead to the first call queued meanwhile, and wakes the
// callers of its batch, which return only now, after the commit: an
// acknowledged write survives a killed process. A batch of one runs
// without savepoints.
//
// Statements of a grouped fn run on a context without cancellation: on
// SQLite, interrupting a write statement may roll back the whole
// transaction, the other callers' work with it. A caller whose context is
// done before its fn starts gets ctx.Err() and its fn is not run.
//
// PostgreSQL does not group: its connections commit in parallel.
type groupCommit struct {
	db      *DB
	mu      sync.Mutex
	leading bool
	queue   []*txCall
	// batches and calls count what ran, for benchmarks.
	batches, calls atomic.Int64
}

type txCall struct {
	ctx context.Context
	op  string
	fn  func(*Tx) error
	tx  *Tx
	err error
	// panicked holds what fn panicked with, re-raised in the caller.
	panicked any
	// wake gets true to lead the next batch, false once the call is done.
	wake chan bool
}

func (g *groupCommit) do(ctx context.Context, op string, fn func(*Tx) error) error {
	return g.enqueue(ctx, op, fn).wait()
}

// enqueue puts a call at the end of the queue. The caller must then call
// wait, which runs the batch if the call leads it.
func (g *groupCommit) enqueue(ctx context.Context, op string, fn func(*Tx) error) *Queued {
	c := &txCall{ctx: ctx, op: op, fn: fn, wake: make(chan bool, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	return &Queued{g: g, c: c, lead: lead}
}

// Queued is a write transaction function queued with DB.Enqueue.
type Queued struct {
	g     *groupCommit
	c     *txCall
	lead  bool
	start time.Time
}

// Wait returns the queued function's outcome once it is durable, as
// WithTx does. It must be called exactly once, and soon: the calls queued
// behind a leading call wait for it.
func (q *Queued) Wait() (err error) {
	defer func() { q.g.db.observe(q.c.op, time.Since(q.start), err) }()
	return q.wait()
}

func (q *Queued) wait() error {
	c := q.c
	lead := q.lead
	if !lead {
		lead = <-c.wake
	}
	if lead {
		q.g.lead(c)
	}
	if c.panicked != nil {
		panic(c.panicked)
	}
	return c.err
}

// Enqueue queues fn for the next shared write transaction and returns at
// once; Queued.Wait returns its outcome. Functions run in the order they
// were queued, each seeing the writes of those before it, and a commit
// covers a prefix of the queue. This lets a caller that orders its writes
// under a lock of its own (a room's, for a message) release that lock
// before the commit, so that the next write of the same room can share
// the commit instead of waiting for it.
//
// fn runs even when the caller's context is done (what queued behind it
// may depend on it): ctx only carries values. ok is false on PostgreSQL,
// which does not group transactions; use WithTx there.
func (db *DB) Enqueue(ctx context.Context, op string, fn func(tx *Tx) error) (q *Queued, ok bool) {
	if db.group == nil {
		return nil, false
	}
	start := time.Now()
	q = db.group.enqueue(context.WithoutCancel(ctx), op, fn)
	q.start = start
	return q, true
}

// Grouped reports whether write transactions are shared (SQLite), that is
// whether Enqueue works.
func (db *DB) Grouped() bool { return db.group != nil }

// lead runs one batch, which holds self, and passes the lead on.
func (g *groupCommit) lead(self *txCall) {
	g.mu.Lock()
	batch := g.queue
	g.queue = nil
	g.mu.Unlock()
	g.batches.Add(1)
	g.calls.Add(int64(len(batch)))
	g.run(batch)
	g.mu.Lock()
	var next *txCall
	if len(g.queue) > 0 {
		next = g.queue[0]
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	if next != nil {
		next.wake <- true
	}
	for _, c := range batch {
		if c != self {
			c.wake <- false
		}
	}
}

// run runs a batch in one transaction and sets each call's outcome.
func (g *groupCommit) run(batch []*txCall) {
	db := g.db
	bctx := context.WithoutCancel(batch[0].ctx)
	fail := func(err error) {
		for _, c := range batch {
			if c.err == nil && c.panicked == nil {
				c.err = fmt.Errorf("%s: %w", c.op, err)
			}
		}
	}
	db.wstmts.preparePending(bctx)
	sqlTx, err := db.w.BeginTx(bctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	defer sqlTx.Rollback()
	grouped := len(batch) > 1
	base := &Tx{Tx: sqlTx, dialect: db.dialect, stmts: db.wstmts, db: db, ctx: bctx}
	done := 0
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			continue
		}
		if grouped {
			if _, err := base.ExecContext(bctx, `SAVEPOINT grouped`); err != nil {
				fail(fmt.Errorf("savepoint: %w", err))
				return
			}
		}
		c.tx = &Tx{Tx: sqlTx, dialect: db.dialect, stmts: db.wstmts, db: db, ctx: bctx}
		c.err, c.panicked = runFn(c.fn, c.tx)
		if c.err == nil && c.panicked == nil {
			done++
		} else if !grouped {
			return // the deferred rollback
		} else if _, err := base.ExecContext(bctx, `ROLLBACK TO grouped`); err != nil {
			fail(fmt.Errorf("roll back to savepoint: %w", err))
			return
		}
		if grouped {
			if _, err := base.ExecContext(bctx, `RELEASE grouped`); err != nil {
				fail(fmt.Errorf("release savepoint: %w", err))
				return
			}
		}
	}
	if done == 0 {
		return
	}
	if err := sqlTx.Commit(); err != nil {
		fail(fmt.Errorf("commit: %w", err))
		return
	}
	if db.ckpt != nil {
		db.ckpt.commits.Add(1)
	}
	for _, c := range batch {
		if c.err == nil && c.panicked == nil && c.tx != nil {
			c.tx.committed()
		}
	}
}

// runFn runs fn, turning a panic into a value for its caller to re-raise.
func runFn(fn func(*Tx) error, tx *Tx) (err error, panicked any) {
	defer func() {
		if p := recover(); p != nil {
			panicked = p
		}
	}()
	return fn(tx), nil
}

// read runs a read-only query function against the read pool and times it.
func (db *DB) read(ctx context.Context, op string, fn func(q querier) error) (err error) {
	start := time.Now()
	defer func() { db.observe(op, time.Since(start), err) }()
	if db.rstmts != nil {
		return fn(cachedPool{DB: db.r, stmts: db.rstmts})
	}
	return fn(db.r)
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// isUniqueViolation reports whether err is a unique or primary key conflict.
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || // sqlite
		strings.Contains(s, "SQLSTATE 23505") // postgres unique_violation
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

func nowMS() int64 { return time.Now().UnixMilli() }

// column reads the one column of every row of a query and closes rows.
func column[T any](rows *sql.Rows, err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

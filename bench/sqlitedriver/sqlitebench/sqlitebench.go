// Package sqlitebench describes an SQLite database/sql driver the way
// Polder would use it: one writer pool with exactly one connection, one
// reader pool, WAL, busy_timeout and foreign_keys=ON set through the DSN so
// that every pooled connection gets them.
//
// It is part of the driver benchmark module polder.dev/polder/bench/sqlitedriver
// and is imported only by that module's driver packages and by package suite.
// It does not import testing, so the driver smoke programs built from it
// measure the driver's real binary cost.
package sqlitebench

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Driver is one SQLite driver under test.
type Driver struct {
	// Name is a short label: "modernc", "ncruces", "mattn".
	Name string
	// SQLName is the name the driver registers with database/sql.
	SQLName string
	// DSN returns the data source name that opens path with o applied on
	// every connection the pool opens.
	DSN func(path string, o Options) string
	// IsBusy reports whether err is SQLITE_BUSY (or an extended BUSY code).
	IsBusy func(err error) bool
	// DollarByPosition is true when the driver binds the k-th database/sql
	// argument to the k-th parameter *in order of appearance*, so "$2 … $1"
	// binds the wrong values. SQLite itself treats "$1" as a named parameter
	// called "$1", numbered by first appearance; only "?1" is numbered.
	// Such a driver needs [Numbered] applied to every query.
	DollarByPosition bool
}

// Options are the per-connection settings a DSN carries.
type Options struct {
	// Synchronous is "NORMAL" or "FULL" (or "OFF" for bulk fixture loads).
	Synchronous string
	// BusyTimeout is how long a connection waits for a lock before SQLITE_BUSY.
	BusyTimeout time.Duration
	// Immediate makes BeginTx issue BEGIN IMMEDIATE (the writer pool).
	Immediate bool
	// QueryOnly sets PRAGMA query_only=1 (the reader pool).
	QueryOnly bool
}

// Writer returns the options of Polder's writer pool with the given
// synchronous level.
func Writer(sync string) Options {
	return Options{Synchronous: sync, BusyTimeout: 5 * time.Second, Immediate: true}
}

// Reader returns the options of Polder's reader pool.
func Reader() Options {
	return Options{Synchronous: "NORMAL", BusyTimeout: 5 * time.Second, QueryOnly: true}
}

// Pools is a writer pool of one connection and a reader pool.
type Pools struct {
	W, R *sql.DB
}

// Close closes both pools.
func (p *Pools) Close() error {
	werr := p.W.Close()
	rerr := p.R.Close()
	if werr != nil {
		return werr
	}
	return rerr
}

// Open opens db at path: a writer pool limited to one connection with
// synchronous=sync and BEGIN IMMEDIATE, and a reader pool of readers
// connections with query_only=1. It creates the file (WAL) if needed.
func Open(ctx context.Context, d Driver, path, sync string, readers int) (*Pools, error) {
	w, err := sql.Open(d.SQLName, d.DSN(path, Writer(sync)))
	if err != nil {
		return nil, fmt.Errorf("open writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// The first connection creates the file and switches it to WAL before
	// any query_only reader can try to.
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("ping writer: %w", err)
	}
	r, err := sql.Open(d.SQLName, d.DSN(path, Reader()))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open readers: %w", err)
	}
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(0)
	return &Pools{W: w, R: r}, nil
}

// Numbered rewrites PostgreSQL-style "$N" parameters into SQLite's numbered
// "?N" form, leaving string literals, quoted identifiers and comments alone.
// SQLite parses "$1" as a *named* parameter whose index is its order of
// first appearance, so "WHERE b = $2 AND a = $1" puts $2 at index 1; "?2"
// always has index 2. The result binds correctly with every driver.
func Numbered(q string) string {
	if !strings.Contains(q, "$") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q))
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for j < len(q) {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			if j >= len(q) {
				j = len(q) - 1
			}
			b.WriteString(q[i : j+1])
			i = j
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i - 1
			}
			b.WriteString(q[i : i+j+1])
			i += j
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := strings.Index(q[i+2:], "*/")
			end := len(q)
			if j >= 0 {
				end = i + 2 + j + 2
			}
			b.WriteString(q[i:end])
			i = end - 1
		case c == '$' && i+1 < len(q) && q[i+1] >= '1' && q[i+1] <= '9':
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

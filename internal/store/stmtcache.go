package store

import (
	"context"
	"database/sql"
	"sync"
)

// SQLite statements are cached prepared: preparing one costs about a fifth
// of a message send on the pure-Go driver (DESIGN-NOTES "Prepared
// statements and one writer"). PostgreSQL needs no cache here: pgx caches
// prepared statements per connection itself.
//
// Tx's ExecContext, QueryContext and QueryRowContext shadow those of the
// embedded *sql.Tx, so every query in this package goes through the cache
// without being written differently; reads go through the same cache on
// the read pool. Queries built at run time with a varying number of
// placeholders would fill the cache: it stops growing at maxCachedStmts
// and further queries are prepared each time, as before.
const maxCachedStmts = 512

type stmtCache struct {
	pool *sql.DB
	// deferred: statements met inside a transaction are not prepared
	// there — the writer's only connection is the transaction's, and
	// preparing on the pool would wait for it forever. They are noted
	// and prepared before the next transaction begins.
	deferred bool
	mu       sync.Mutex
	m        map[string]*sql.Stmt
	pending  map[string]bool
}

func newStmtCache(pool *sql.DB, deferred bool) *stmtCache {
	return &stmtCache{pool: pool, deferred: deferred, m: make(map[string]*sql.Stmt), pending: make(map[string]bool)}
}

// get returns the prepared statement of query, or nil if it is not cached
// (yet), the cache is full, or preparing failed (the caller then runs the
// query unprepared, which reports any error).
func (c *stmtCache) get(ctx context.Context, query string) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[query]; ok {
		return st
	}
	if len(c.m)+len(c.pending) >= maxCachedStmts {
		return nil
	}
	if c.deferred {
		c.pending[query] = true
		return nil
	}
	st, err := c.pool.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.m[query] = st
	return st
}

// preparePending prepares the statements noted inside transactions. Call
// it while holding no connection of the pool.
func (c *stmtCache) preparePending(ctx context.Context) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return
	}
	var qs []string
	for q := range c.pending {
		qs = append(qs, q)
		delete(c.pending, q)
	}
	// Prepare without the lock: preparing waits for a free connection, and
	// the transaction that holds it may need the lock to look up a
	// statement.
	c.mu.Unlock()
	done := make(map[string]*sql.Stmt, len(qs))
	for _, q := range qs {
		st, err := c.pool.PrepareContext(ctx, q)
		if err != nil {
			st = nil // not preparable (several statements, say): run it plainly
		}
		done[q] = st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil { // closed meanwhile
		for _, st := range done {
			if st != nil {
				st.Close()
			}
		}
		return
	}
	for q, st := range done {
		if old, ok := c.m[q]; ok && old != nil {
			if st != nil {
				st.Close()
			}
			continue
		}
		c.m[q] = st
	}
}

func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		if st != nil {
			st.Close()
		}
	}
	c.m = nil
}

// ExecContext runs a statement in the transaction, prepared once per
// connection on SQLite.
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if tx.ctx != nil {
		ctx = tx.ctx
	}
	if st := tx.stmts.get(ctx, query); st != nil {
		return tx.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.Tx.ExecContext(ctx, query, args...)
}

// QueryContext runs a query in the transaction (see ExecContext).
func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if tx.ctx != nil {
		ctx = tx.ctx
	}
	if st := tx.stmts.get(ctx, query); st != nil {
		return tx.Tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return tx.Tx.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a one-row query in the transaction (see
// ExecContext).
func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if tx.ctx != nil {
		ctx = tx.ctx
	}
	if st := tx.stmts.get(ctx, query); st != nil {
		return tx.Tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return tx.Tx.QueryRowContext(ctx, query, args...)
}

// cachedPool is a querier over a pool that prepares through a cache.
type cachedPool struct {
	*sql.DB
	stmts *stmtCache
}

func (p cachedPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := p.stmts.get(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return p.DB.ExecContext(ctx, query, args...)
}

func (p cachedPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.stmts.get(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.DB.QueryContext(ctx, query, args...)
}

func (p cachedPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := p.stmts.get(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.DB.QueryRowContext(ctx, query, args...)
}

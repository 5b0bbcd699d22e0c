package store

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"
)

// checkpointer runs SQLite's WAL checkpoints on a connection of its own,
// off the write path. With automatic checkpoints (the default) the
// connection whose commit takes the WAL past 1,000 pages copies them into
// the database file and syncs it and the WAL to disk before its caller
// gets its answer: in a send's profile 3% of the CPU, and each of those
// fsyncs a stall of the one writer that every queued write waits behind.
// Here the writer only appends to the WAL (wal_autocheckpoint(0) on its
// connection) and the checkpointer, every checkpointEvery while commits
// come in, runs a PASSIVE checkpoint, which does not block the writer or
// the readers. A crash between the two loses nothing: the WAL is the
// record, and SQLite replays it on open. Closing the database runs a
// last checkpoint.
type checkpointer struct {
	conn *sql.DB
	// commits counts write transactions committed (groupCommit.run).
	commits atomic.Int64
	// paused stops checkpoints, for the WAL page counts of benchmarks.
	paused atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
	closed sync.Once
}

const checkpointEvery = 100 * time.Millisecond

func startCheckpointer(conn *sql.DB) *checkpointer {
	c := &checkpointer{conn: conn, stop: make(chan struct{})}
	c.wg.Add(1)
	go c.run()
	return c
}

func (c *checkpointer) run() {
	defer c.wg.Done()
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		n := c.commits.Load()
		if n == last || c.paused.Load() {
			continue
		}
		last = n
		// A failure (SQLITE_BUSY while another checkpoint runs) is
		// retried on the next tick; the WAL only grows meanwhile.
		c.conn.ExecContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`)
	}
}

// close stops the checkpointer; closing again does nothing (DB.Close may
// be called twice).
func (c *checkpointer) close() error {
	c.closed.Do(func() { close(c.stop) })
	c.wg.Wait()
	return c.conn.Close()
}

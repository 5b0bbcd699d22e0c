package store

import (
	"context"

	"maunium.net/go/mautrix/id"
)

// QueuedTx is how many WithTx calls wait for the next grouped batch, or -1
// where calls are not grouped (PostgreSQL).
func (db *DB) QueuedTx() int {
	if db.group == nil {
		return -1
	}
	db.group.mu.Lock()
	defer db.group.mu.Unlock()
	return len(db.group.queue)
}

// GroupedPerCommit is how many WithTx calls shared a commit on average
// (0 where calls are not grouped).
func (db *DB) GroupedPerCommit() float64 {
	if db.group == nil || db.group.batches.Load() == 0 {
		return 0
	}
	return float64(db.group.calls.Load()) / float64(db.group.batches.Load())
}

// WALFramesStart turns SQLite's automatic checkpoints off and empties the
// WAL, so that WALFrames counts the pages written from now on. No-op on
// PostgreSQL.
func (db *DB) WALFramesStart(ctx context.Context) error {
	if db.dialect != SQLite {
		return nil
	}
	if db.ckpt != nil {
		db.ckpt.paused.Store(true)
	}
	return db.WithTx(ctx, "test", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `PRAGMA wal_autocheckpoint = 0`)
		return err
	})
}

// WALFrames checkpoints the WAL and returns how many frames (pages) it
// held: the pages written since WALFramesStart, if no other checkpoint ran.
func (db *DB) WALFrames(ctx context.Context) (int64, error) {
	if db.dialect != SQLite {
		return 0, nil
	}
	var busy, log, done int64
	if err := db.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done); err != nil {
		return 0, err
	}
	// TRUNCATE reports no counts: it only empties the WAL for the next count.
	_, err := db.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	return log, err
}

// RoomNID is roomNID, for tests of what a transaction sees.
func (tx *Tx) RoomNID(ctx context.Context, roomID id.RoomID) (int64, error) {
	return tx.roomNID(ctx, roomID)
}

// RotatePush is MovePushStaging, and PushStaged is how many rows are
// counted as staged.
func (db *DB) RotatePush(ctx context.Context) error { return db.MovePushStaging(ctx) }

func (db *DB) PushStaged() int64 { return db.pushStaged.Load() }

package store

import (
	"context"
	"fmt"
)

// NextStreamPos takes the next position of the server's stream. Every
// persisted change that /sync reports takes one inside its write
// transaction. The counter row stays locked until the transaction ends, so
// positions commit in order: a reader that sees position N committed has
// every change below N too.
func (tx *Tx) NextStreamPos(ctx context.Context) (int64, error) {
	var pos int64
	err := tx.QueryRowContext(ctx, `UPDATE stream_counter SET pos = pos + 1 WHERE id = 1 RETURNING pos`).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("next stream position: %w", err)
	}
	return pos, nil
}

// StreamPos is the latest committed stream position.
func (db *DB) StreamPos(ctx context.Context) (int64, error) {
	var pos int64
	err := db.read(ctx, "stream_pos", func(q querier) error {
		return q.QueryRowContext(ctx, `SELECT pos FROM stream_counter WHERE id = 1`).Scan(&pos)
	})
	return pos, err
}

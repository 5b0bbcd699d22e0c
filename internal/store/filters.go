package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// CreateFilter stores a user's filter (canonical JSON) and returns its ID:
// the next number of the user's filters, counting from 0, or the ID the
// same filter already has.
func (db *DB) CreateFilter(ctx context.Context, user id.UserID, filter []byte) (int64, error) {
	var fid int64
	var err error
	// On PostgreSQL two uploads at once could pick the same next number, so
	// the transaction first takes an advisory lock on the user: the uploads
	// of one user queue, those of different users do not. (Retrying on the
	// primary key alone ran out of attempts with ten uploads at once.) The
	// retry on a conflict stays as a safety net.
	for range 5 {
		err = db.WithTx(ctx, "create_filter", func(tx *Tx) error {
			if db.dialect == Postgres {
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('polder.filters:' || $1, 0))`, string(user)); err != nil {
					return fmt.Errorf("lock filters: %w", err)
				}
			}
			err := tx.QueryRowContext(ctx, `SELECT filter_id FROM filters WHERE user_id = $1 AND filter = $2 ORDER BY filter_id LIMIT 1`,
				string(user), filter).Scan(&fid)
			if err == nil {
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("look up filter: %w", err)
			}
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(filter_id) + 1, 0) FROM filters WHERE user_id = $1`, string(user)).Scan(&fid); err != nil {
				return fmt.Errorf("next filter id: %w", err)
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO filters (user_id, filter_id, filter) VALUES ($1, $2, $3)`, string(user), fid, filter)
			if isUniqueViolation(err) {
				return ErrConflict
			}
			return err
		})
		if !errors.Is(err, ErrConflict) {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("create filter: %w", err)
	}
	return fid, nil
}

// Filter returns a user's filter, or ErrNotFound.
func (db *DB) Filter(ctx context.Context, user id.UserID, filterID int64) ([]byte, error) {
	var f []byte
	err := db.read(ctx, "filter", func(q querier) error {
		return notFound(q.QueryRowContext(ctx, `SELECT filter FROM filters WHERE user_id = $1 AND filter_id = $2`, string(user), filterID).Scan(&f))
	})
	return f, err
}

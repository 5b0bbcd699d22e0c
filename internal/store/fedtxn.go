package store

import (
	"context"
	"fmt"
	"time"
)

// InboundTxn returns the stored answer to the inbound federation
// transaction txnID of origin, or ErrNotFound if it was never answered
// (or was pruned).
func (db *DB) InboundTxn(ctx context.Context, origin, txnID string) ([]byte, error) {
	var resp []byte
	err := db.read(ctx, "inbound_txn", func(q querier) error {
		return notFound(q.QueryRowContext(ctx, `SELECT response FROM federation_inbound_txns WHERE origin = $1 AND txn_id = $2`,
			origin, txnID).Scan(&resp))
	})
	return resp, err
}

// PutInboundTxn records the answer to an inbound transaction. A second
// answer to the same (origin, txnID) keeps the first.
func (db *DB) PutInboundTxn(ctx context.Context, origin, txnID string, response []byte) error {
	return db.WithTx(ctx, "put_inbound_txn", func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO federation_inbound_txns (origin, txn_id, response, received_ts)
			VALUES ($1, $2, $3, $4) ON CONFLICT (origin, txn_id) DO NOTHING`,
			origin, txnID, response, nowMS()); err != nil {
			return fmt.Errorf("insert inbound txn: %w", err)
		}
		return nil
	})
}

// PruneInboundTxns forgets the answers to inbound transactions received
// before before and returns how many it forgot.
func (db *DB) PruneInboundTxns(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := db.WithTx(ctx, "prune_inbound_txns", func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM federation_inbound_txns WHERE received_ts < $1`, before.UnixMilli())
		if err != nil {
			return fmt.Errorf("delete inbound txns: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"maunium.net/go/mautrix/id"
)

// The durable outbound federation queue (migration 0007): PDUs stored
// once with a row per destination that still waits for them, persistent
// EDUs per destination, and each destination's backoff and transaction in
// flight. internal/federation drives it; see docs/federation.md.

// FedDestination is the sending state of a destination.
type FedDestination struct {
	Name string
	// Failures counts the failed attempts since the last success.
	Failures int
	// Backoff is the current backoff before jitter; RetryAt is when the
	// next attempt may start (zero: not backing off).
	Backoff time.Duration
	RetryAt time.Time
	// FailingSince is the first failure since the last success (zero if
	// none); LastSuccess the last acknowledgement recorded with
	// FedTxnSent (zero if none).
	FailingSince, LastSuccess time.Time
	// PendingPDUs and PendingEDUs count what waits for the destination,
	// the transaction in flight included.
	PendingPDUs, PendingEDUs int
}

// FedEDU is a queued EDU.
type FedEDU struct {
	Type    string
	Content []byte
}

// FedTxn is a transaction's worth of what waits for a destination.
type FedTxn struct {
	// ID is the transaction ID; "" when nothing waits.
	ID string
	// Retry is true when this is the transaction already in flight,
	// claimed before and not acknowledged: it must be sent again as it is.
	Retry bool
	PDUs  [][]byte // in queue order
	EDUs  []FedEDU // in queue order
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func timeMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// jsonValues is a subquery giving the elements of the JSON array of
// strings in parameter $n, one per row: one statement (and one cached
// prepared statement) however many values.
func (d Dialect) jsonValues(n int) string {
	if d == Postgres {
		return `SELECT jsonb_array_elements_text($` + strconv.Itoa(n) + `::jsonb)`
	}
	return `SELECT value FROM json_each($` + strconv.Itoa(n) + `)`
}

// dedupJSON returns ss without repeats (order kept), as a JSON array.
func dedupJSON(ss []string) (string, error) {
	seen := make(map[string]bool, len(ss))
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	b, err := json.Marshal(out)
	return string(b), err
}

// FedPDU is a PDU to queue for destinations.
type FedPDU struct {
	EventID      id.EventID
	RoomID       id.RoomID
	PDU          []byte // federation format, as sent
	Destinations []string
}

// QueueFedPDUs queues PDUs, in order, in one transaction. Each PDU is
// stored once; queueing an event again adds only the destinations that do
// not wait for it yet.
func (db *DB) QueueFedPDUs(ctx context.Context, pdus []FedPDU) error {
	return db.WithTx(ctx, "queue_fed_pdus", func(tx *Tx) error {
		for _, p := range pdus {
			if len(p.Destinations) == 0 {
				continue
			}
			dests, err := dedupJSON(p.Destinations)
			if err != nil {
				return err
			}
			var nid int64
			// DO UPDATE (a no-op) rather than DO NOTHING so that RETURNING
			// gives the existing row's number too.
			if err := tx.QueryRowContext(ctx, `INSERT INTO fed_queue_pdus (event_id, room_id, pdu) VALUES ($1, $2, $3)
				ON CONFLICT (event_id) DO UPDATE SET room_id = excluded.room_id RETURNING pdu_nid`,
				string(p.EventID), string(p.RoomID), p.PDU).Scan(&nid); err != nil {
				return fmt.Errorf("queue pdu %s: %w", p.EventID, err)
			}
			q := `INSERT INTO fed_queue_pdu_dests (destination, pdu_nid) SELECT value, $1 FROM json_each($2) WHERE true
				ON CONFLICT (destination, pdu_nid) DO NOTHING`
			if tx.dialect == Postgres {
				q = `INSERT INTO fed_queue_pdu_dests (destination, pdu_nid) SELECT jsonb_array_elements_text($2::jsonb), $1::bigint
				ON CONFLICT (destination, pdu_nid) DO NOTHING`
			}
			if _, err := tx.ExecContext(ctx, q, nid, dests); err != nil {
				return fmt.Errorf("queue pdu %s for destinations: %w", p.EventID, err)
			}
		}
		return nil
	})
}

// QueueFedEDU queues an EDU for destinations. With a coalesceKey, it
// replaces any EDU of the same type and key still waiting for a
// destination (even one in a transaction in flight: the newer one is sent
// next); without one ("") every EDU is sent, in order.
func (db *DB) QueueFedEDU(ctx context.Context, destinations []string, eduType string, content []byte, coalesceKey string) error {
	if len(destinations) == 0 {
		return nil
	}
	dests, err := dedupJSON(destinations)
	if err != nil {
		return err
	}
	return db.WithTx(ctx, "queue_fed_edu", func(tx *Tx) error {
		if coalesceKey != "" {
			if _, err := tx.ExecContext(ctx, `DELETE FROM fed_queue_edus WHERE edu_type = $1 AND coalesce_key = $2
				AND destination IN (`+tx.dialect.jsonValues(3)+`)`, eduType, coalesceKey, dests); err != nil {
				return fmt.Errorf("coalesce %s edu: %w", eduType, err)
			}
		}
		q := `INSERT INTO fed_queue_edus (destination, edu_type, coalesce_key, content) SELECT value, $1, $2, $3 FROM json_each($4)`
		if tx.dialect == Postgres {
			q = `INSERT INTO fed_queue_edus (destination, edu_type, coalesce_key, content)
				SELECT jsonb_array_elements_text($4::jsonb), $1::text, $2::text, $3::bytea`
		}
		if _, err := tx.ExecContext(ctx, q, eduType, nullString(coalesceKey), content, dests); err != nil {
			return fmt.Errorf("queue %s edu: %w", eduType, err)
		}
		return nil
	})
}

// ClaimFedTxn returns the next transaction for destination. If one is in
// flight (claimed and not acknowledged by FedTxnSent), it is returned again
// with Retry set, under the same ID, with what of it is still queued (a
// coalesced EDU may have been replaced since). Otherwise the oldest
// maxPDUs PDUs and maxEDUs EDUs not yet sent make a new transaction with a
// new ID. When nothing waits, the FedTxn is empty (ID "").
func (db *DB) ClaimFedTxn(ctx context.Context, destination string, maxPDUs, maxEDUs int) (FedTxn, error) {
	var t FedTxn
	err := db.WithTx(ctx, "claim_fed_txn", func(tx *Tx) error {
		t = FedTxn{}
		if _, err := tx.ExecContext(ctx, `INSERT INTO fed_destinations (destination, txn_epoch) VALUES ($1, $2)
			ON CONFLICT (destination) DO NOTHING`, destination, nowMS()); err != nil {
			return fmt.Errorf("create destination: %w", err)
		}
		var epoch, seq, maxPDU, maxEDU int64
		if err := tx.QueryRowContext(ctx, `SELECT txn_epoch, txn_seq, txn_id, txn_max_pdu, txn_max_edu FROM fed_destinations WHERE destination = $1`,
			destination).Scan(&epoch, &seq, &t.ID, &maxPDU, &maxEDU); err != nil {
			return fmt.Errorf("read destination: %w", err)
		}
		if t.ID != "" {
			t.Retry = true
		} else {
			seq++
			// The oldest rows not in a transaction are those up to the
			// highest of the first max: claim them by that range.
			var p, e sql.NullInt64
			if err := tx.QueryRowContext(ctx, `SELECT MAX(pdu_nid) FROM (SELECT pdu_nid FROM fed_queue_pdu_dests
				WHERE destination = $1 AND txn = 0 ORDER BY pdu_nid LIMIT $2) AS f`, destination, maxPDUs).Scan(&p); err != nil {
				return fmt.Errorf("claim pdus: %w", err)
			}
			if err := tx.QueryRowContext(ctx, `SELECT MAX(edu_nid) FROM (SELECT edu_nid FROM fed_queue_edus
				WHERE destination = $1 AND txn = 0 ORDER BY edu_nid LIMIT $2) AS f`, destination, maxEDUs).Scan(&e); err != nil {
				return fmt.Errorf("claim edus: %w", err)
			}
			if !p.Valid && !e.Valid {
				return nil
			}
			maxPDU, maxEDU = p.Int64, e.Int64
			if _, err := tx.ExecContext(ctx, `UPDATE fed_queue_pdu_dests SET txn = $2 WHERE destination = $1 AND txn = 0 AND pdu_nid <= $3`,
				destination, seq, maxPDU); err != nil {
				return fmt.Errorf("claim pdus: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE fed_queue_edus SET txn = $2 WHERE destination = $1 AND txn = 0 AND edu_nid <= $3`,
				destination, seq, maxEDU); err != nil {
				return fmt.Errorf("claim edus: %w", err)
			}
			t.ID = strconv.FormatInt(epoch, 36) + "." + strconv.FormatInt(seq, 10)
			if _, err := tx.ExecContext(ctx, `UPDATE fed_destinations SET txn_seq = $2, txn_id = $3, txn_max_pdu = $4, txn_max_edu = $5
				WHERE destination = $1`, destination, seq, t.ID, maxPDU, maxEDU); err != nil {
				return fmt.Errorf("start transaction: %w", err)
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT p.pdu FROM fed_queue_pdu_dests d JOIN fed_queue_pdus p ON p.pdu_nid = d.pdu_nid
			WHERE d.destination = $1 AND d.pdu_nid <= $3 AND d.txn = $2 ORDER BY d.pdu_nid`, destination, seq, maxPDU)
		if t.PDUs, err = column[[]byte](rows, err); err != nil {
			return fmt.Errorf("read pdus: %w", err)
		}
		rows, err = tx.QueryContext(ctx, `SELECT edu_type, content FROM fed_queue_edus
			WHERE destination = $1 AND edu_nid <= $3 AND txn = $2 ORDER BY edu_nid`, destination, seq, maxEDU)
		if err != nil {
			return fmt.Errorf("read edus: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var e FedEDU
			if err := rows.Scan(&e.Type, &e.Content); err != nil {
				return err
			}
			t.EDUs = append(t.EDUs, e)
		}
		return rows.Err()
	})
	return t, err
}

// FedTxnSent records that destination acknowledged transaction txnID at
// now: if it is the transaction in flight, what it carried leaves the
// queue. In any case the destination's backoff is reset. txnID may be one
// ClaimFedTxn never gave (a transaction of EDUs that were not stored).
func (db *DB) FedTxnSent(ctx context.Context, destination, txnID string, now time.Time) error {
	return db.WithTx(ctx, "fed_txn_sent", func(tx *Tx) error {
		var seq, maxPDU, maxEDU int64
		var inFlight string
		err := tx.QueryRowContext(ctx, `SELECT txn_seq, txn_id, txn_max_pdu, txn_max_edu FROM fed_destinations WHERE destination = $1`,
			destination).Scan(&seq, &inFlight, &maxPDU, &maxEDU)
		if errors.Is(err, sql.ErrNoRows) {
			_, err = tx.ExecContext(ctx, `INSERT INTO fed_destinations (destination, txn_epoch, last_success_ts) VALUES ($1, $2, $2)`,
				destination, timeMS(now))
			return err
		}
		if err != nil {
			return fmt.Errorf("read destination: %w", err)
		}
		if inFlight != "" && inFlight == txnID {
			nids, err := column[int64](tx.QueryContext(ctx, `DELETE FROM fed_queue_pdu_dests
				WHERE destination = $1 AND pdu_nid <= $3 AND txn = $2 RETURNING pdu_nid`, destination, seq, maxPDU))
			if err != nil {
				return fmt.Errorf("dequeue pdus: %w", err)
			}
			if len(nids) > 0 {
				if err := tx.dropOrphanPDUs(ctx, nids); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM fed_queue_edus WHERE destination = $1 AND edu_nid <= $3 AND txn = $2`,
				destination, seq, maxEDU); err != nil {
				return fmt.Errorf("dequeue edus: %w", err)
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE fed_destinations SET failures = 0, backoff_ms = 0, retry_ts = 0, failing_since_ts = 0,
			last_success_ts = $2, txn_id = CASE WHEN txn_id = $3 THEN '' ELSE txn_id END WHERE destination = $1`,
			destination, timeMS(now), txnID)
		return err
	})
}

// dropOrphanPDUs deletes those of the PDUs nids that no destination waits
// for any more.
func (tx *Tx) dropOrphanPDUs(ctx context.Context, nids []int64) error {
	list, err := json.Marshal(nids)
	if err != nil {
		return err
	}
	in := `SELECT value FROM json_each($1)`
	if tx.dialect == Postgres {
		in = `SELECT jsonb_array_elements_text($1::jsonb)::bigint`
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM fed_queue_pdus WHERE pdu_nid IN (`+in+`)
		AND NOT EXISTS (SELECT 1 FROM fed_queue_pdu_dests d WHERE d.pdu_nid = fed_queue_pdus.pdu_nid)`, string(list)); err != nil {
		return fmt.Errorf("drop sent pdus: %w", err)
	}
	return nil
}

// FedTxnFailed records a failed attempt to reach destination at now: the
// number of failures since the last success, the backoff before jitter,
// and when to try again. The transaction in flight stays in flight.
func (db *DB) FedTxnFailed(ctx context.Context, destination string, failures int, backoff time.Duration, retryAt, now time.Time) error {
	return db.WithTx(ctx, "fed_txn_failed", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO fed_destinations (destination, txn_epoch, failures, backoff_ms, retry_ts, failing_since_ts)
			VALUES ($1, $5, $2, $3, $4, $5)
			ON CONFLICT (destination) DO UPDATE SET failures = excluded.failures, backoff_ms = excluded.backoff_ms, retry_ts = excluded.retry_ts,
				failing_since_ts = CASE WHEN fed_destinations.failing_since_ts = 0 THEN excluded.failing_since_ts ELSE fed_destinations.failing_since_ts END`,
			destination, failures, backoff.Milliseconds(), timeMS(retryAt), timeMS(now))
		return err
	})
}

const fedDestinationCols = `f.destination, f.failures, f.backoff_ms, f.retry_ts, f.failing_since_ts, f.last_success_ts,
	(SELECT COUNT(*) FROM fed_queue_pdu_dests p WHERE p.destination = f.destination),
	(SELECT COUNT(*) FROM fed_queue_edus e WHERE e.destination = f.destination)`

func scanFedDestination(s scanner) (FedDestination, error) {
	var d FedDestination
	var backoff, retry, since, success int64
	err := s.Scan(&d.Name, &d.Failures, &backoff, &retry, &since, &success, &d.PendingPDUs, &d.PendingEDUs)
	d.Backoff = time.Duration(backoff) * time.Millisecond
	d.RetryAt, d.FailingSince, d.LastSuccess = msTime(retry), msTime(since), msTime(success)
	return d, err
}

// FedDestination returns the state of a destination, or ErrNotFound if
// nothing was ever sent or queued to it (queueing alone creates no state:
// ClaimFedTxn, FedTxnSent and FedTxnFailed do).
func (db *DB) FedDestination(ctx context.Context, destination string) (FedDestination, error) {
	var d FedDestination
	err := db.read(ctx, "fed_destination", func(q querier) error {
		var err error
		d, err = scanFedDestination(q.QueryRowContext(ctx, `SELECT `+fedDestinationCols+` FROM fed_destinations f WHERE f.destination = $1`, destination))
		return notFound(err)
	})
	return d, err
}

// FedDestinations returns the destinations that something waits for or
// that are backing off, with their state, by name.
func (db *DB) FedDestinations(ctx context.Context) ([]FedDestination, error) {
	var out []FedDestination
	err := db.WithTx(ctx, "fed_destinations", func(tx *Tx) error {
		// Destinations with queued rows get a state row first, so that
		// one query reads them all.
		if _, err := tx.ExecContext(ctx, `INSERT INTO fed_destinations (destination, txn_epoch)
			SELECT u.destination, CAST($1 AS BIGINT) FROM (SELECT destination FROM fed_queue_pdu_dests UNION SELECT destination FROM fed_queue_edus) AS u
			WHERE true ON CONFLICT (destination) DO NOTHING`, nowMS()); err != nil {
			return fmt.Errorf("create destinations: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+fedDestinationCols+` FROM fed_destinations f
			WHERE f.failures > 0
				OR EXISTS (SELECT 1 FROM fed_queue_pdu_dests p WHERE p.destination = f.destination)
				OR EXISTS (SELECT 1 FROM fed_queue_edus e WHERE e.destination = f.destination)
			ORDER BY f.destination`)
		if err != nil {
			return err
		}
		defer rows.Close()
		out = nil
		for rows.Next() {
			d, err := scanFedDestination(rows)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return rows.Err()
	})
	return out, err
}

// FedPending counts the PDUs and EDUs waiting for destination, the
// transaction in flight included.
func (db *DB) FedPending(ctx context.Context, destination string) (pdus, edus int, err error) {
	err = db.read(ctx, "fed_pending", func(q querier) error {
		return q.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM fed_queue_pdu_dests WHERE destination = $1),
			(SELECT COUNT(*) FROM fed_queue_edus WHERE destination = $1)`, destination).Scan(&pdus, &edus)
	})
	return pdus, edus, err
}

// TrimFedPDUs is catch-up for a destination that was unreachable for long:
// of the PDUs waiting for it and not in the transaction in flight, it
// keeps the newest perRoom of each room and drops the rest, which the
// destination fetches itself through get_missing_events when it sees the
// newer ones. It returns how many were dropped.
func (db *DB) TrimFedPDUs(ctx context.Context, destination string, perRoom int) (int, error) {
	var n int
	err := db.WithTx(ctx, "trim_fed_pdus", func(tx *Tx) error {
		nids, err := column[int64](tx.QueryContext(ctx, `DELETE FROM fed_queue_pdu_dests WHERE destination = $1 AND txn = 0 AND pdu_nid IN (
			SELECT r.pdu_nid FROM (
				SELECT d.pdu_nid, ROW_NUMBER() OVER (PARTITION BY p.room_id ORDER BY d.pdu_nid DESC) AS rn
				FROM fed_queue_pdu_dests d JOIN fed_queue_pdus p ON p.pdu_nid = d.pdu_nid
				WHERE d.destination = $1 AND d.txn = 0) AS r
			WHERE r.rn > $2) RETURNING pdu_nid`, destination, perRoom))
		if err != nil {
			return fmt.Errorf("trim pdus: %w", err)
		}
		n = len(nids)
		for chunk := range chunks(nids, 500) {
			if err := tx.dropOrphanPDUs(ctx, chunk); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

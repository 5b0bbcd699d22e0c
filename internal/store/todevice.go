package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"
)

// Send-to-device messages (client-server API, "Send-to-Device
// messaging"): the messages waiting for local devices, what /sync
// responses carried of them, and the IDs that make sending idempotent
// (migration 0013_to_device.sql). User and device IDs are full Matrix IDs
// here ("@alice:example.org"); the localpart only joins the devices table.

// ToDeviceDedupeRetention is how long client transaction IDs and inbound
// EDU message IDs are remembered: a retry comes within minutes, not days.
const ToDeviceDedupeRetention = 24 * time.Hour

// toDeviceDeliveriesKept bounds the responses remembered per device (see
// to_device_deliveries): more only happen when a client keeps syncing
// from an old token; forgetting the oldest only means that its messages
// are sent again.
const toDeviceDeliveriesKept = 10

// ToDeviceMessage is a message waiting for a device.
type ToDeviceMessage struct {
	// Pos is the stream position it arrived at; a device's messages have
	// distinct positions, in order of arrival.
	Pos          int64
	Sender, Type string
	// Content is the JSON object sent.
	Content json.RawMessage
}

// ToDeviceBatch is one request's or one EDU's messages for local users.
// At most one of TxnID and MessageID is set: with TxnID the batch is a
// client's PUT /sendToDevice, stored once per (TxnUser, TxnDevice,
// TxnID); with MessageID an m.direct_to_device EDU, stored once per
// (Origin, MessageID).
type ToDeviceBatch struct {
	Sender, Type string

	TxnUser, TxnDevice, TxnID string
	Origin, MessageID         string

	Recipients []ToDeviceRecipient
}

// ToDeviceRecipient is a local user and its messages. Only devices that
// exist (the devices table) receive one.
type ToDeviceRecipient struct {
	UserID, Localpart string
	// All is the content for each of the user's devices not in Devices
	// ("*" in the request); nil for none.
	All json.RawMessage
	// Devices maps a device ID to its content.
	Devices map[string]json.RawMessage
}

// ToDeviceTxnSeen reports whether the client transaction was stored
// (within ToDeviceDedupeRetention).
func (db *DB) ToDeviceTxnSeen(ctx context.Context, user, device, txnID string) (bool, error) {
	var n int
	err := db.read(ctx, "to_device_txn_seen", func(q querier) error {
		return q.QueryRowContext(ctx, `SELECT COUNT(*) FROM to_device_txns WHERE user_id = $1 AND device_id = $2 AND txn_id = $3`,
			user, device, txnID).Scan(&n)
	})
	return n > 0, err
}

// PutToDevice stores a batch of messages, one row per existing recipient
// device, at one new stream position, and records its transaction or
// message ID. It returns the position (0 if no device was found, then
// nothing takes a position) and the users who got a message. Errors:
// ErrConflict if the transaction or message ID was stored before (nothing
// is stored again).
func (db *DB) PutToDevice(ctx context.Context, b ToDeviceBatch) (pos int64, users []string, err error) {
	err = db.WithTx(ctx, "put_to_device", func(tx *Tx) error {
		pos, users = 0, nil
		now := nowMS()
		old := now - ToDeviceDedupeRetention.Milliseconds()
		var dedupe sql.Result
		var err error
		switch {
		case b.TxnID != "":
			if _, err := tx.ExecContext(ctx, `DELETE FROM to_device_txns WHERE created_ts < $1`, old); err != nil {
				return fmt.Errorf("prune to-device txns: %w", err)
			}
			dedupe, err = tx.ExecContext(ctx, `INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4)
				ON CONFLICT (user_id, device_id, txn_id) DO NOTHING`, b.TxnUser, b.TxnDevice, b.TxnID, now)
		case b.MessageID != "":
			if _, err := tx.ExecContext(ctx, `DELETE FROM to_device_inbound WHERE received_ts < $1`, old); err != nil {
				return fmt.Errorf("prune to-device message ids: %w", err)
			}
			dedupe, err = tx.ExecContext(ctx, `INSERT INTO to_device_inbound (origin, message_id, received_ts) VALUES ($1, $2, $3)
				ON CONFLICT (origin, message_id) DO NOTHING`, b.Origin, b.MessageID, now)
		}
		if err != nil {
			return fmt.Errorf("record to-device id: %w", err)
		}
		if dedupe != nil {
			n, err := dedupe.RowsAffected()
			if err != nil {
				return err
			}
			if n == 0 {
				return ErrConflict
			}
		}
		if len(b.Recipients) == 0 {
			return nil
		}

		// The recipients' devices, in one statement.
		lps := make([]string, len(b.Recipients))
		for i, r := range b.Recipients {
			lps[i] = r.Localpart
		}
		arr, err := dedupJSON(lps)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT localpart, device_id FROM devices WHERE localpart IN (`+tx.dialect.jsonValues(1)+`)`, arr)
		if err != nil {
			return fmt.Errorf("recipient devices: %w", err)
		}
		devices := map[string][]string{}
		for rows.Next() {
			var lp, dev string
			if err := rows.Scan(&lp, &dev); err != nil {
				rows.Close()
				return err
			}
			devices[lp] = append(devices[lp], dev)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("recipient devices: %w", err)
		}

		const cols = 6
		var args []any
		for _, r := range b.Recipients {
			devs := devices[r.Localpart]
			slices.Sort(devs)
			got := false
			for _, d := range devs {
				content, ok := r.Devices[d]
				if !ok {
					content = r.All
				}
				if content == nil {
					continue
				}
				args = append(args, r.UserID, d, int64(0), b.Sender, b.Type, []byte(content))
				got = true
			}
			if got {
				users = append(users, r.UserID)
			}
		}
		if len(args) == 0 {
			return nil
		}
		// The position is taken last: on PostgreSQL it locks the counter
		// until commit.
		if pos, err = tx.NextStreamPos(ctx); err != nil {
			return err
		}
		for i := 2; i < len(args); i += cols {
			args[i] = pos
		}
		if err := tx.insertRows(ctx, `INSERT INTO to_device_messages (user_id, device_id, pos, sender, type, content) VALUES `, "", cols, args); err != nil {
			return fmt.Errorf("insert to-device messages: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return pos, users, nil
}

// ToDeviceAfter returns up to limit messages of the device after stream
// position afterPos, oldest first. Reading deletes nothing (see
// DeleteToDeviceUpTo). Positions commit in order (Tx.NextStreamPos), so a
// reader that saw position p never later finds a new message below p.
func (db *DB) ToDeviceAfter(ctx context.Context, user, device string, afterPos int64, limit int) ([]ToDeviceMessage, error) {
	return db.toDevice(ctx, user, device, afterPos, math.MaxInt64, limit)
}

func (db *DB) toDevice(ctx context.Context, user, device string, after, to int64, limit int) ([]ToDeviceMessage, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []ToDeviceMessage
	err := db.read(ctx, "to_device", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT pos, sender, type, content FROM to_device_messages
			WHERE user_id = $1 AND device_id = $2 AND pos > $3 AND pos <= $4 ORDER BY pos LIMIT $5`,
			user, device, after, to, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m ToDeviceMessage
			var content []byte
			if err := rows.Scan(&m.Pos, &m.Sender, &m.Type, &content); err != nil {
				return err
			}
			m.Content = content
			out = append(out, m)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read to-device messages: %w", err)
	}
	return out, nil
}

// DeleteToDeviceUpTo deletes the device's messages at or below stream
// position pos.
func (db *DB) DeleteToDeviceUpTo(ctx context.Context, user, device string, pos int64) error {
	return db.WithTx(ctx, "delete_to_device", func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND pos <= $3`,
			user, device, pos); err != nil {
			return fmt.Errorf("delete to-device messages: %w", err)
		}
		return nil
	})
}

// ToDeviceSync serves a device's /sync, in two reads and at most one
// write. It first acknowledges: the device's messages that its responses
// with next_batch at or before stream position since carried are deleted
// (the client synced from such a token, so it received that response).
// Then it returns up to limit of the remaining messages at or below
// position to, oldest first, and records that the response with
// next_batch at to carries them. If more than limit wait, it also takes a
// new stream position and returns it as bumped (0 otherwise): the
// client's next sync, from to, must not wait for news to get the rest.
func (db *DB) ToDeviceSync(ctx context.Context, user, device string, since, to int64, limit int) (msgs []ToDeviceMessage, bumped int64, err error) {
	var acked sql.NullInt64
	if since > 0 {
		if err := db.read(ctx, "to_device_acked", func(q querier) error {
			return q.QueryRowContext(ctx, `SELECT MAX(up_to) FROM to_device_deliveries WHERE user_id = $1 AND device_id = $2 AND token <= $3`,
				user, device, since).Scan(&acked)
		}); err != nil {
			return nil, 0, fmt.Errorf("read to-device deliveries: %w", err)
		}
	}
	// What is acknowledged is deleted below: read after it.
	msgs, err = db.toDevice(ctx, user, device, acked.Int64, to, limit+1)
	if err != nil {
		return nil, 0, err
	}
	more := len(msgs) > limit
	if more {
		msgs = msgs[:limit]
	}
	if !acked.Valid && len(msgs) == 0 {
		return nil, 0, nil
	}
	err = db.WithTx(ctx, "to_device_sync", func(tx *Tx) error {
		bumped = 0
		if acked.Valid {
			if _, err := tx.ExecContext(ctx, `DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND pos <= $3`,
				user, device, acked.Int64); err != nil {
				return fmt.Errorf("delete delivered to-device messages: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM to_device_deliveries WHERE user_id = $1 AND device_id = $2 AND token <= $3`,
				user, device, since); err != nil {
				return fmt.Errorf("delete to-device deliveries: %w", err)
			}
		}
		if len(msgs) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO to_device_deliveries (user_id, device_id, token, up_to) VALUES ($1, $2, $3, $4)
			ON CONFLICT (user_id, device_id, token) DO UPDATE SET
				up_to = CASE WHEN excluded.up_to > to_device_deliveries.up_to THEN excluded.up_to ELSE to_device_deliveries.up_to END`,
			user, device, to, msgs[len(msgs)-1].Pos); err != nil {
			return fmt.Errorf("record to-device delivery: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM to_device_deliveries WHERE user_id = $1 AND device_id = $2
			AND token < (SELECT token FROM to_device_deliveries WHERE user_id = $1 AND device_id = $2 ORDER BY token DESC LIMIT 1 OFFSET $3)`,
			user, device, toDeviceDeliveriesKept-1); err != nil {
			return fmt.Errorf("prune to-device deliveries: %w", err)
		}
		if more {
			var err error
			bumped, err = tx.NextStreamPos(ctx)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return msgs, bumped, nil
}

// DeleteToDeviceOfGoneDevices deletes the messages, deliveries and
// transaction IDs of a local user's devices that are no longer in the
// devices table: of those in devices, or of any when devices is nil
// (after a logout of all devices or a deactivation). A device still in
// the table (logged in again under the same ID) keeps its rows.
func (db *DB) DeleteToDeviceOfGoneDevices(ctx context.Context, userID, localpart string, devices []string) error {
	var only string
	var args = []any{userID, localpart}
	if devices != nil {
		if len(devices) == 0 {
			return nil
		}
		arr, err := dedupJSON(devices)
		if err != nil {
			return err
		}
		args = append(args, arr)
	}
	return db.WithTx(ctx, "delete_to_device_of_devices", func(tx *Tx) error {
		if devices != nil {
			only = ` AND device_id IN (` + tx.dialect.jsonValues(3) + `)`
		}
		for _, table := range []string{"to_device_messages", "to_device_deliveries", "to_device_txns"} {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE user_id = $1
				AND device_id NOT IN (SELECT device_id FROM devices WHERE localpart = $2)`+only, args...); err != nil {
				return fmt.Errorf("delete from %s: %w", table, err)
			}
		}
		return nil
	})
}

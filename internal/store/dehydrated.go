package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// DehydratedDevice is a user's dehydrated device (MSC3814): a device
// without access tokens and the data its owner stored to rehydrate it.
type DehydratedDevice struct {
	DeviceID   string
	DeviceData []byte // a JSON object
}

// PutDehydratedDevice makes deviceID the user's dehydrated device: it
// deletes the previous dehydrated device (its devices row, which takes the
// dehydrated_devices row with it), creates the device (display name
// displayName, "" for none) and stores data. It returns the previous
// dehydrated device's ID, "" if there was none; the caller cleans up after
// it as after any deleted device. The previous one may have the same ID.
//
// Returns ErrConflict when deviceID is one of the user's other devices.
func (db *DB) PutDehydratedDevice(ctx context.Context, localpart, deviceID, displayName string, data []byte) (old string, err error) {
	err = db.WithTx(ctx, "put_dehydrated_device", func(tx *Tx) error {
		old = ""
		err := tx.QueryRowContext(ctx, `SELECT device_id FROM dehydrated_devices WHERE localpart = $1`, localpart).Scan(&old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read dehydrated device: %w", err)
		}
		if old != "" {
			if _, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE localpart = $1 AND device_id = $2`, localpart, old); err != nil {
				return fmt.Errorf("delete old dehydrated device: %w", err)
			}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO devices (localpart, device_id, display_name, created_ts)
			VALUES ($1, $2, $3, $4) ON CONFLICT (localpart, device_id) DO NOTHING`,
			localpart, deviceID, nullString(displayName), nowMS())
		if err != nil {
			return fmt.Errorf("insert dehydrated device: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrConflict
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO dehydrated_devices (localpart, device_id, device_data) VALUES ($1, $2, $3)`,
			localpart, deviceID, data); err != nil {
			return fmt.Errorf("insert dehydrated device data: %w", err)
		}
		return nil
	})
	return old, err
}

// DehydratedDevice returns the user's dehydrated device, or ErrNotFound.
func (db *DB) DehydratedDevice(ctx context.Context, localpart string) (DehydratedDevice, error) {
	var d DehydratedDevice
	err := db.read(ctx, "dehydrated_device", func(q querier) error {
		return notFound(q.QueryRowContext(ctx, `SELECT device_id, device_data FROM dehydrated_devices WHERE localpart = $1`,
			localpart).Scan(&d.DeviceID, &d.DeviceData))
	})
	return d, err
}

// DeleteDehydratedDevice deletes the user's dehydrated device and returns
// its ID. Returns ErrNotFound when the user has none.
func (db *DB) DeleteDehydratedDevice(ctx context.Context, localpart string) (deviceID string, err error) {
	err = db.WithTx(ctx, "delete_dehydrated_device", func(tx *Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT device_id FROM dehydrated_devices WHERE localpart = $1`, localpart).Scan(&deviceID); err != nil {
			return notFound(err)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE localpart = $1 AND device_id = $2`, localpart, deviceID)
		return err
	})
	return deviceID, err
}

package store

import (
	"context"
	"database/sql"
	"fmt"
)

// Device is one of a user's devices (one login session).
type Device struct {
	Localpart     string
	DeviceID      string
	DisplayName   string
	CreatedTS     int64
	LastSeenTS    int64
	LastSeenIP    string
	LastSeenAgent string
}

// NewSession is a login: a device (created if missing) and its tokens.
type NewSession struct {
	Localpart   string
	DeviceID    string
	DisplayName string // used only when the device is new
	AccessHash  []byte
	ExpiresTS   int64  // 0: the access token never expires
	RefreshHash []byte // nil: no refresh token
	IP, Agent   string
}

// CreateSession creates the device if it does not exist and issues its
// tokens. Tokens previously issued to the same device are revoked (spec:
// "the server may invalidate any access token previously associated with
// that device").
func (db *DB) CreateSession(ctx context.Context, s NewSession) error {
	return db.WithTx(ctx, "create_session", func(tx *Tx) error { return tx.CreateSession(ctx, s) })
}

// CreateSession is CreateSession inside a transaction.
func (tx *Tx) CreateSession(ctx context.Context, s NewSession) error {
	now := nowMS()
	_, err := tx.ExecContext(ctx, `INSERT INTO devices (localpart, device_id, display_name, created_ts, last_seen_ts, last_seen_ip, last_seen_agent)
		VALUES ($1, $2, $3, $4, $4, $5, $6)
		ON CONFLICT (localpart, device_id) DO UPDATE SET last_seen_ts = $4, last_seen_ip = $5, last_seen_agent = $6`,
		s.Localpart, s.DeviceID, nullString(s.DisplayName), now, nullString(s.IP), nullString(s.Agent))
	if err != nil {
		return fmt.Errorf("upsert device: %w", err)
	}
	for _, q := range []string{
		`DELETE FROM access_tokens WHERE localpart = $1 AND device_id = $2`,
		`DELETE FROM refresh_tokens WHERE localpart = $1 AND device_id = $2`,
	} {
		if _, err := tx.ExecContext(ctx, q, s.Localpart, s.DeviceID); err != nil {
			return fmt.Errorf("revoke old tokens: %w", err)
		}
	}
	return tx.insertTokens(ctx, s.Localpart, s.DeviceID, s.AccessHash, s.ExpiresTS, s.RefreshHash, nil, now)
}

func (tx *Tx) insertTokens(ctx context.Context, localpart, deviceID string, access []byte, expires int64, refresh, prevRefresh []byte, now int64) error {
	var exp sql.NullInt64
	if expires != 0 {
		exp = sql.NullInt64{Int64: expires, Valid: true}
	}
	if refresh != nil {
		if _, err := tx.ExecContext(ctx, `INSERT INTO refresh_tokens (token_hash, localpart, device_id, created_ts) VALUES ($1, $2, $3, $4)`,
			refresh, localpart, deviceID, now); err != nil {
			return fmt.Errorf("insert refresh token: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO access_tokens (token_hash, localpart, device_id, created_ts, expires_ts, refresh_hash, prev_refresh_hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, access, localpart, deviceID, now, exp, refresh, prevRefresh); err != nil {
		return fmt.Errorf("insert access token: %w", err)
	}
	return nil
}

// TokenOwner is what an access token authenticates.
type TokenOwner struct {
	Localpart       string
	DeviceID        string
	ExpiresTS       int64 // 0: never
	IsAdmin         bool
	IsGuest         bool
	Deactivated     bool
	PrevRefreshHash []byte // set until the token's first use after a refresh
}

// AccessToken returns the owner of an access token by its hash, or ErrNotFound.
func (db *DB) AccessToken(ctx context.Context, hash []byte) (TokenOwner, error) {
	var o TokenOwner
	err := db.read(ctx, "access_token", func(q querier) error {
		var exp sql.NullInt64
		err := q.QueryRowContext(ctx, `SELECT t.localpart, t.device_id, t.expires_ts, t.prev_refresh_hash, a.is_admin, a.is_guest, a.deactivated
			FROM access_tokens t JOIN accounts a ON a.localpart = t.localpart WHERE t.token_hash = $1`, hash).
			Scan(&o.Localpart, &o.DeviceID, &exp, &o.PrevRefreshHash, &o.IsAdmin, &o.IsGuest, &o.Deactivated)
		o.ExpiresTS = exp.Int64
		return notFound(err)
	})
	return o, err
}

// RevokeReplacedRefresh deletes the refresh token that the access token's
// refresh replaced, now that the new access token has been used.
func (db *DB) RevokeReplacedRefresh(ctx context.Context, accessHash, prevRefresh []byte) error {
	return db.WithTx(ctx, "revoke_replaced_refresh", func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE token_hash = $1`, prevRefresh); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE access_tokens SET prev_refresh_hash = NULL WHERE token_hash = $1`, accessHash)
		return err
	})
}

// Refresh exchanges a refresh token for a new access token and refresh token
// (spec: POST /refresh). The old access token is revoked at once; the old
// refresh token stays valid until the new access token is first used.
// Returns ErrNotFound for an unknown refresh token.
func (db *DB) Refresh(ctx context.Context, oldRefresh, access []byte, expires int64, refresh []byte) (localpart, deviceID string, err error) {
	err = db.WithTx(ctx, "refresh", func(tx *Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT localpart, device_id FROM refresh_tokens WHERE token_hash = $1`, oldRefresh).Scan(&localpart, &deviceID)
		if err != nil {
			return notFound(err)
		}
		// Using this refresh token revokes the one it replaced.
		if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE token_hash IN
			(SELECT prev_refresh_hash FROM access_tokens WHERE refresh_hash = $1 AND prev_refresh_hash IS NOT NULL)`, oldRefresh); err != nil {
			return err
		}
		// Tokens issued from this refresh token before (a retried refresh)
		// and the access token issued with it are replaced.
		if _, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE refresh_hash = $1 OR prev_refresh_hash = $1`, oldRefresh); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE token_hash IN
			(SELECT refresh_hash FROM access_tokens WHERE prev_refresh_hash = $1)`, oldRefresh); err != nil {
			return err
		}
		return tx.insertTokens(ctx, localpart, deviceID, access, expires, refresh, oldRefresh, nowMS())
	})
	return localpart, deviceID, err
}

// DeleteAccessTokenDevice deletes the device an access token belongs to,
// with every token of that device (spec: POST /logout).
func (db *DB) DeleteAccessTokenDevice(ctx context.Context, hash []byte) (localpart, deviceID string, err error) {
	err = db.WithTx(ctx, "logout", func(tx *Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT localpart, device_id FROM access_tokens WHERE token_hash = $1`, hash).Scan(&localpart, &deviceID); err != nil {
			return notFound(err)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE localpart = $1 AND device_id = $2`, localpart, deviceID)
		return err
	})
	return localpart, deviceID, err
}

// Devices lists a user's devices, oldest first.
func (db *DB) Devices(ctx context.Context, localpart string) ([]Device, error) {
	var out []Device
	err := db.read(ctx, "devices", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT localpart, device_id, display_name, created_ts, last_seen_ts, last_seen_ip, last_seen_agent
			FROM devices WHERE localpart = $1 ORDER BY created_ts, device_id`, localpart)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			d, err := scanDevice(rows)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return rows.Err()
	})
	return out, err
}

// Device returns one device, or ErrNotFound.
func (db *DB) Device(ctx context.Context, localpart, deviceID string) (Device, error) {
	var d Device
	err := db.read(ctx, "device", func(q querier) error {
		var err error
		d, err = scanDevice(q.QueryRowContext(ctx, `SELECT localpart, device_id, display_name, created_ts, last_seen_ts, last_seen_ip, last_seen_agent
			FROM devices WHERE localpart = $1 AND device_id = $2`, localpart, deviceID))
		return notFound(err)
	})
	return d, err
}

type scanner interface{ Scan(dest ...any) error }

func scanDevice(s scanner) (Device, error) {
	var d Device
	var name, ip, agent sql.NullString
	var seen sql.NullInt64
	err := s.Scan(&d.Localpart, &d.DeviceID, &name, &d.CreatedTS, &seen, &ip, &agent)
	d.DisplayName, d.LastSeenTS, d.LastSeenIP, d.LastSeenAgent = name.String, seen.Int64, ip.String, agent.String
	return d, err
}

// SetDeviceDisplayName renames a device. Returns ErrNotFound for no device.
func (db *DB) SetDeviceDisplayName(ctx context.Context, localpart, deviceID, name string) error {
	return db.WithTx(ctx, "set_device_name", func(tx *Tx) error {
		return execOne(tx.ExecContext(ctx, `UPDATE devices SET display_name = $3 WHERE localpart = $1 AND device_id = $2`,
			localpart, deviceID, nullString(name)))
	})
}

// DeleteDevices deletes devices with their tokens. Unknown IDs are ignored.
func (db *DB) DeleteDevices(ctx context.Context, localpart string, deviceIDs []string) error {
	return db.WithTx(ctx, "delete_devices", func(tx *Tx) error {
		for _, id := range deviceIDs {
			if _, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE localpart = $1 AND device_id = $2`, localpart, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteAllDevices deletes every device of the user, except keep if not "".
func (db *DB) DeleteAllDevices(ctx context.Context, localpart, keep string) error {
	return db.WithTx(ctx, "delete_all_devices", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE localpart = $1 AND device_id <> $2`, localpart, keep)
		return err
	})
}

// TouchDevice records when and from where a device was last seen.
func (db *DB) TouchDevice(ctx context.Context, localpart, deviceID string, ts int64, ip, agent string) error {
	return db.WithTx(ctx, "touch_device", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE devices SET last_seen_ts = $3, last_seen_ip = $4, last_seen_agent = $5
			WHERE localpart = $1 AND device_id = $2`, localpart, deviceID, ts, nullString(ip), nullString(agent))
		return err
	})
}

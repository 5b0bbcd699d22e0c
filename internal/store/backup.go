package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// KeyBackupVersion is one of a user's server-side key backups (client-server
// API, "Server-side key backups"). Version numbers count up from 1 per user.
type KeyBackupVersion struct {
	Version   int64
	Algorithm string
	AuthData  []byte // a JSON object
	Etag      int64  // counts the changes to the version's keys
	Count     int64  // the number of keys in the version
}

// BackupKey is the backed-up key of one megolm session of a room.
type BackupKey struct {
	RoomID            string
	SessionID         string
	FirstMessageIndex int64
	ForwardedCount    int64
	IsVerified        bool
	SessionData       []byte // a JSON object
}

// WrongBackupVersionError is returned by PutBackupKeys when the version
// exists but is not the user's current one.
type WrongBackupVersionError struct {
	Current int64 // the current version
}

func (e *WrongBackupVersionError) Error() string {
	return fmt.Sprintf("backup version is not the current one (%d)", e.Current)
}

// ErrBackupAlgorithm is returned by UpdateKeyBackupVersion when the
// algorithm given is not the version's.
var ErrBackupAlgorithm = errors.New("backup algorithm differs")

// lockKeyBackups takes the user's backup lock (its key_backup_users row)
// on PostgreSQL; SQLite's single writer serialises writes already. A user
// without the row has no backups, and nothing to lock.
func (tx *Tx) lockKeyBackups(ctx context.Context, user id.UserID) error {
	if tx.dialect != Postgres {
		return nil
	}
	var v int64
	err := tx.QueryRowContext(ctx, `SELECT last_version FROM key_backup_users WHERE user_id = $1 FOR UPDATE`, user).Scan(&v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("lock key backups: %w", err)
	}
	return nil
}

// CreateKeyBackupVersion creates a backup version, which becomes the
// user's current one, and returns its number.
func (db *DB) CreateKeyBackupVersion(ctx context.Context, user id.UserID, algorithm string, authData []byte) (int64, error) {
	var v int64
	err := db.WithTx(ctx, "create_key_backup_version", func(tx *Tx) error {
		err := tx.QueryRowContext(ctx, `INSERT INTO key_backup_users (user_id, last_version) VALUES ($1, 1)
			ON CONFLICT (user_id) DO UPDATE SET last_version = key_backup_users.last_version + 1
			RETURNING last_version`, user).Scan(&v)
		if err != nil {
			return fmt.Errorf("next backup version: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data)
			VALUES ($1, $2, $3, $4)`, user, v, algorithm, authData); err != nil {
			return fmt.Errorf("insert backup version: %w", err)
		}
		return nil
	})
	return v, err
}

const selectBackupVersion = `SELECT version, algorithm, auth_data, etag, key_count FROM key_backup_versions `

func scanBackupVersion(row *sql.Row) (KeyBackupVersion, error) {
	var v KeyBackupVersion
	err := row.Scan(&v.Version, &v.Algorithm, &v.AuthData, &v.Etag, &v.Count)
	return v, notFound(err)
}

// currentBackupVersion returns the user's newest version not deleted, or
// ErrNotFound.
func currentBackupVersion(ctx context.Context, q querier, user id.UserID) (KeyBackupVersion, error) {
	return scanBackupVersion(q.QueryRowContext(ctx, selectBackupVersion+
		`WHERE user_id = $1 AND NOT deleted ORDER BY version DESC LIMIT 1`, user))
}

func backupVersion(ctx context.Context, q querier, user id.UserID, version int64) (KeyBackupVersion, error) {
	return scanBackupVersion(q.QueryRowContext(ctx, selectBackupVersion+
		`WHERE user_id = $1 AND version = $2 AND NOT deleted`, user, version))
}

// KeyBackupVersion returns a backup version of the user, or its current one
// when version is 0. Returns ErrNotFound when there is no such version or it
// was deleted.
func (db *DB) KeyBackupVersion(ctx context.Context, user id.UserID, version int64) (KeyBackupVersion, error) {
	var v KeyBackupVersion
	err := db.read(ctx, "key_backup_version", func(q querier) error {
		var err error
		if version == 0 {
			v, err = currentBackupVersion(ctx, q, user)
		} else {
			v, err = backupVersion(ctx, q, user, version)
		}
		return err
	})
	return v, err
}

// UpdateKeyBackupVersion replaces the auth_data of a version, current or
// not. Returns ErrNotFound for no such version (or a deleted one) and
// ErrBackupAlgorithm when algorithm is not the version's.
func (db *DB) UpdateKeyBackupVersion(ctx context.Context, user id.UserID, version int64, algorithm string, authData []byte) error {
	return db.WithTx(ctx, "update_key_backup_version", func(tx *Tx) error {
		if err := tx.lockKeyBackups(ctx, user); err != nil {
			return err
		}
		v, err := backupVersion(ctx, tx, user, version)
		if err != nil {
			return err
		}
		if v.Algorithm != algorithm {
			return ErrBackupAlgorithm
		}
		_, err = tx.ExecContext(ctx, `UPDATE key_backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2`,
			user, version, authData)
		return err
	})
}

// DeleteKeyBackupVersion deletes a version and its keys. Deleting a
// version deleted before succeeds (spec: "If the backup was previously
// deleted, the call should succeed"); a version that never existed is
// ErrNotFound.
func (db *DB) DeleteKeyBackupVersion(ctx context.Context, user id.UserID, version int64) error {
	return db.WithTx(ctx, "delete_key_backup_version", func(tx *Tx) error {
		if err := tx.lockKeyBackups(ctx, user); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM key_backup_keys WHERE user_id = $1 AND version = $2`, user, version); err != nil {
			return fmt.Errorf("delete backup keys: %w", err)
		}
		return execOne(tx.ExecContext(ctx, `UPDATE key_backup_versions SET deleted = TRUE, key_count = 0, etag = etag + 1
			WHERE user_id = $1 AND version = $2`, user, version))
	})
}

// DeleteAllKeyBackups deletes every backup of the user, with their keys
// (account deactivation). Version numbers are not reused afterwards.
func (db *DB) DeleteAllKeyBackups(ctx context.Context, user id.UserID) error {
	return db.WithTx(ctx, "delete_all_key_backups", func(tx *Tx) error {
		if err := tx.lockKeyBackups(ctx, user); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM key_backup_keys WHERE user_id = $1`,
			`DELETE FROM key_backup_versions WHERE user_id = $1`,
		} {
			if _, err := tx.ExecContext(ctx, q, user); err != nil {
				return fmt.Errorf("delete key backups: %w", err)
			}
		}
		return nil
	})
}

// PutBackupKeys stores keys in the user's backup version, which must be the
// current one. A key for a session the version holds already replaces the
// stored one only when replace(stored, new) says so. The etag changes when
// any key was added or replaced. It returns the version as it is after the
// change (etag, count).
//
// Returns ErrNotFound when the version does not exist (or was deleted),
// and a *WrongBackupVersionError when it exists but is not the current one.
func (db *DB) PutBackupKeys(ctx context.Context, user id.UserID, version int64, keys []BackupKey, replace func(stored, new BackupKey) bool) (KeyBackupVersion, error) {
	var v KeyBackupVersion
	err := db.WithTx(ctx, "put_backup_keys", func(tx *Tx) error {
		if err := tx.lockKeyBackups(ctx, user); err != nil {
			return err
		}
		var err error
		if v, err = currentBackupVersion(ctx, tx, user); err != nil {
			return err
		}
		if v.Version != version {
			if _, err := backupVersion(ctx, tx, user, version); err != nil {
				return err
			}
			return &WrongBackupVersionError{Current: v.Version}
		}
		var added int64
		changed := false
		for _, k := range keys {
			old := BackupKey{RoomID: k.RoomID, SessionID: k.SessionID}
			err := tx.QueryRowContext(ctx, `SELECT first_message_index, forwarded_count, is_verified, session_data
				FROM key_backup_keys WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4`,
				user, version, k.RoomID, k.SessionID).Scan(&old.FirstMessageIndex, &old.ForwardedCount, &old.IsVerified, &old.SessionData)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				if _, err := tx.ExecContext(ctx, `INSERT INTO key_backup_keys (user_id, version, room_id, session_id,
					first_message_index, forwarded_count, is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
					user, version, k.RoomID, k.SessionID, k.FirstMessageIndex, k.ForwardedCount, k.IsVerified, k.SessionData); err != nil {
					return fmt.Errorf("insert backup key: %w", err)
				}
				added++
				changed = true
			case err != nil:
				return fmt.Errorf("read backup key: %w", err)
			case replace(old, k):
				if _, err := tx.ExecContext(ctx, `UPDATE key_backup_keys SET first_message_index = $5, forwarded_count = $6,
					is_verified = $7, session_data = $8 WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4`,
					user, version, k.RoomID, k.SessionID, k.FirstMessageIndex, k.ForwardedCount, k.IsVerified, k.SessionData); err != nil {
					return fmt.Errorf("replace backup key: %w", err)
				}
				changed = true
			}
		}
		if !changed {
			return nil
		}
		v.Etag++
		v.Count += added
		_, err = tx.ExecContext(ctx, `UPDATE key_backup_versions SET etag = $3, key_count = $4 WHERE user_id = $1 AND version = $2`,
			user, version, v.Etag, v.Count)
		return err
	})
	return v, err
}

// BackupKeys returns the keys of a backup version, current or not: all of
// them, a room's (sessionID ""), or one session's (both given), ordered by
// room and session. Returns ErrNotFound when the version does not exist or
// was deleted; no keys is an empty slice.
func (db *DB) BackupKeys(ctx context.Context, user id.UserID, version int64, roomID, sessionID string) ([]BackupKey, error) {
	var out []BackupKey
	err := db.read(ctx, "backup_keys", func(q querier) error {
		if _, err := backupVersion(ctx, q, user, version); err != nil {
			return err
		}
		query := `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
			FROM key_backup_keys WHERE user_id = $1 AND version = $2`
		args := []any{user, version}
		if roomID != "" {
			query += ` AND room_id = $3`
			args = append(args, roomID)
			if sessionID != "" {
				query += ` AND session_id = $4`
				args = append(args, sessionID)
			}
		}
		rows, err := q.QueryContext(ctx, query+` ORDER BY room_id, session_id`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k BackupKey
			if err := rows.Scan(&k.RoomID, &k.SessionID, &k.FirstMessageIndex, &k.ForwardedCount, &k.IsVerified, &k.SessionData); err != nil {
				return err
			}
			out = append(out, k)
		}
		return rows.Err()
	})
	return out, err
}

// DeleteBackupKeys deletes keys from a backup version, current or not: all
// of them, a room's (sessionID ""), or one session's. The etag changes when
// a key was deleted. It returns the version as it is after the change.
// Returns ErrNotFound when the version does not exist or was deleted.
func (db *DB) DeleteBackupKeys(ctx context.Context, user id.UserID, version int64, roomID, sessionID string) (KeyBackupVersion, error) {
	var v KeyBackupVersion
	err := db.WithTx(ctx, "delete_backup_keys", func(tx *Tx) error {
		if err := tx.lockKeyBackups(ctx, user); err != nil {
			return err
		}
		var err error
		if v, err = backupVersion(ctx, tx, user, version); err != nil {
			return err
		}
		query := `DELETE FROM key_backup_keys WHERE user_id = $1 AND version = $2`
		args := []any{user, version}
		if roomID != "" {
			query += ` AND room_id = $3`
			args = append(args, roomID)
			if sessionID != "" {
				query += ` AND session_id = $4`
				args = append(args, sessionID)
			}
		}
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("delete backup keys: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		v.Etag++
		v.Count -= n
		_, err = tx.ExecContext(ctx, `UPDATE key_backup_versions SET etag = $3, key_count = $4 WHERE user_id = $1 AND version = $2`,
			user, version, v.Etag, v.Count)
		return err
	})
	return v, err
}

package store

import (
	"context"
	"database/sql"
	"fmt"
)

// Account is a local user account.
type Account struct {
	Localpart    string
	PasswordHash string // "" when the account has no password
	IsAdmin      bool
	IsGuest      bool
	Deactivated  bool
	UserType     string
	CreatedTS    int64
}

// CreateAccount creates an account and its profile. Returns ErrConflict when
// the localpart is taken.
func (db *DB) CreateAccount(ctx context.Context, a Account, displayName string) error {
	return db.WithTx(ctx, "create_account", func(tx *Tx) error {
		return tx.CreateAccount(ctx, a, displayName)
	})
}

// CreateAccount is CreateAccount inside a transaction.
func (tx *Tx) CreateAccount(ctx context.Context, a Account, displayName string) error {
	if a.CreatedTS == 0 {
		a.CreatedTS = nowMS()
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO accounts (localpart, password_hash, is_admin, is_guest, user_type, created_ts)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		a.Localpart, nullString(a.PasswordHash), a.IsAdmin, a.IsGuest, nullString(a.UserType), a.CreatedTS)
	if isUniqueViolation(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("insert account: %w", err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO profiles (localpart, displayname) VALUES ($1, $2)`, a.Localpart, nullString(displayName))
	if err != nil {
		return fmt.Errorf("insert profile: %w", err)
	}
	return nil
}

// Account returns the account with that localpart, or ErrNotFound.
func (db *DB) Account(ctx context.Context, localpart string) (Account, error) {
	var a Account
	err := db.read(ctx, "account", func(q querier) error {
		var hash, userType sql.NullString
		err := q.QueryRowContext(ctx, `SELECT localpart, password_hash, is_admin, is_guest, deactivated, user_type, created_ts
			FROM accounts WHERE localpart = $1`, localpart).
			Scan(&a.Localpart, &hash, &a.IsAdmin, &a.IsGuest, &a.Deactivated, &userType, &a.CreatedTS)
		a.PasswordHash, a.UserType = hash.String, userType.String
		return notFound(err)
	})
	return a, err
}

// AccountExists reports whether the localpart is taken (deactivated accounts
// keep their localpart: user IDs are never reused).
func (db *DB) AccountExists(ctx context.Context, localpart string) (bool, error) {
	_, err := db.Account(ctx, localpart)
	if err == ErrNotFound {
		return false, nil
	}
	return err == nil, err
}

// CountAccounts counts the accounts that are not deactivated.
func (db *DB) CountAccounts(ctx context.Context) (int, error) {
	var n int
	err := db.read(ctx, "count_accounts", func(q querier) error {
		return q.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts WHERE NOT deactivated`).Scan(&n)
	})
	return n, err
}

// SetPassword replaces the password hash. Returns ErrNotFound for no account.
func (db *DB) SetPassword(ctx context.Context, localpart, hash string) error {
	return db.WithTx(ctx, "set_password", func(tx *Tx) error {
		return execOne(tx.ExecContext(ctx, `UPDATE accounts SET password_hash = $2 WHERE localpart = $1`, localpart, nullString(hash)))
	})
}

// SetAdmin grants or revokes server admin.
func (db *DB) SetAdmin(ctx context.Context, localpart string, admin bool) error {
	return db.WithTx(ctx, "set_admin", func(tx *Tx) error {
		return execOne(tx.ExecContext(ctx, `UPDATE accounts SET is_admin = $2 WHERE localpart = $1`, localpart, admin))
	})
}

// Deactivate marks the account deactivated, removes its password, devices,
// tokens and profile fields. The localpart stays taken.
func (db *DB) Deactivate(ctx context.Context, localpart string) error {
	return db.WithTx(ctx, "deactivate_account", func(tx *Tx) error {
		if err := execOne(tx.ExecContext(ctx, `UPDATE accounts SET deactivated = TRUE, password_hash = NULL WHERE localpart = $1`, localpart)); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM devices WHERE localpart = $1`,
			`DELETE FROM login_tokens WHERE localpart = $1`,
			`UPDATE profiles SET displayname = NULL, avatar_url = NULL WHERE localpart = $1`,
		} {
			if _, err := tx.ExecContext(ctx, q, localpart); err != nil {
				return fmt.Errorf("deactivate: %w", err)
			}
		}
		return nil
	})
}

// Profile is a user's display name and avatar.
type Profile struct {
	DisplayName string
	AvatarURL   string
}

// Profile returns the profile of a local user, or ErrNotFound.
func (db *DB) Profile(ctx context.Context, localpart string) (Profile, error) {
	var p Profile
	err := db.read(ctx, "profile", func(q querier) error {
		var dn, av sql.NullString
		err := q.QueryRowContext(ctx, `SELECT displayname, avatar_url FROM profiles WHERE localpart = $1`, localpart).Scan(&dn, &av)
		p.DisplayName, p.AvatarURL = dn.String, av.String
		return notFound(err)
	})
	return p, err
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// execOne turns "no row changed" into ErrNotFound.
func execOne(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

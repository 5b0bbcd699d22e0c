package store

import (
	"context"
	"fmt"
)

// OpenIDToken is the owner of an OpenID token (client-server API "OpenID").
type OpenIDToken struct {
	Localpart   string
	ExpiresTS   int64 // ms
	Deactivated bool  // the owner's account has been deactivated since
}

// CreateOpenIDToken stores the SHA-256 hash of an OpenID token of a local
// user, valid until expires (ms).
func (db *DB) CreateOpenIDToken(ctx context.Context, hash []byte, localpart string, expires int64) error {
	return db.WithTx(ctx, "create_openid_token", func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO openid_tokens (token_hash, localpart, expires_ts) VALUES ($1, $2, $3)`,
			hash, localpart, expires); err != nil {
			return fmt.Errorf("insert openid token: %w", err)
		}
		return nil
	})
}

// OpenIDToken returns the owner of the OpenID token with this hash, expired
// or not (the caller compares ExpiresTS with its clock), or ErrNotFound.
func (db *DB) OpenIDToken(ctx context.Context, hash []byte) (OpenIDToken, error) {
	var t OpenIDToken
	err := db.read(ctx, "openid_token", func(q querier) error {
		return notFound(q.QueryRowContext(ctx, `SELECT t.localpart, t.expires_ts, a.deactivated
			FROM openid_tokens t JOIN accounts a ON a.localpart = t.localpart WHERE t.token_hash = $1`, hash).
			Scan(&t.Localpart, &t.ExpiresTS, &t.Deactivated))
	})
	return t, err
}

// ExpireOpenIDTokens deletes the OpenID tokens that expire at or before
// before (ms) and returns how many it deleted.
func (db *DB) ExpireOpenIDTokens(ctx context.Context, before int64) (int64, error) {
	var n int64
	err := db.WithTx(ctx, "expire_openid_tokens", func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM openid_tokens WHERE expires_ts <= $1`, before)
		if err != nil {
			return fmt.Errorf("delete openid tokens: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

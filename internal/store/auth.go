package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
)

// UIASession is a user-interactive authentication session (spec:
// client-server API, "User-Interactive Authentication API").
type UIASession struct {
	ID        string
	CreatedTS int64
	Operation string
	Localpart string
	Completed []string
	RegToken  string
}

// CreateUIASession stores a new session.
func (db *DB) CreateUIASession(ctx context.Context, s UIASession) error {
	return db.WithTx(ctx, "create_uia_session", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO uia_sessions (session_id, created_ts, operation, localpart) VALUES ($1, $2, $3, $4)`,
			s.ID, s.CreatedTS, s.Operation, nullString(s.Localpart))
		return err
	})
}

// UIASession returns a session, or ErrNotFound.
func (db *DB) UIASession(ctx context.Context, id string) (UIASession, error) {
	var s UIASession
	err := db.read(ctx, "uia_session", func(q querier) error {
		var lp, tok sql.NullString
		var completed string
		err := q.QueryRowContext(ctx, `SELECT session_id, created_ts, operation, localpart, completed, reg_token FROM uia_sessions WHERE session_id = $1`, id).
			Scan(&s.ID, &s.CreatedTS, &s.Operation, &lp, &completed, &tok)
		if err != nil {
			return notFound(err)
		}
		s.Localpart, s.RegToken = lp.String, tok.String
		return json.Unmarshal([]byte(completed), &s.Completed)
	})
	return s, err
}

// CompleteUIAStage records a completed stage; regToken, if not "", is the
// registration token whose use the session now holds.
func (db *DB) CompleteUIAStage(ctx context.Context, id, stage, regToken string) error {
	return db.WithTx(ctx, "complete_uia_stage", func(tx *Tx) error {
		var completed string
		if err := tx.QueryRowContext(ctx, `SELECT completed FROM uia_sessions WHERE session_id = $1`, id).Scan(&completed); err != nil {
			return notFound(err)
		}
		var stages []string
		if err := json.Unmarshal([]byte(completed), &stages); err != nil {
			return err
		}
		for _, s := range stages {
			if s == stage {
				return nil
			}
		}
		out, _ := json.Marshal(append(stages, stage))
		if regToken != "" {
			_, err := tx.ExecContext(ctx, `UPDATE uia_sessions SET completed = $2, reg_token = $3 WHERE session_id = $1`, id, string(out), regToken)
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE uia_sessions SET completed = $2 WHERE session_id = $1`, id, string(out))
		return err
	})
}

// DeleteUIASession ends a session.
func (db *DB) DeleteUIASession(ctx context.Context, id string) error {
	return db.WithTx(ctx, "delete_uia_session", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM uia_sessions WHERE session_id = $1`, id)
		return err
	})
}

// ExpireUIASessions deletes sessions created before the cutoff, giving back
// the registration token uses they held.
func (db *DB) ExpireUIASessions(ctx context.Context, before int64) (int64, error) {
	var n int64
	err := db.WithTx(ctx, "expire_uia_sessions", func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE registration_tokens SET pending = pending -
			(SELECT COUNT(*) FROM uia_sessions s WHERE s.reg_token = registration_tokens.token AND s.created_ts < $1)
			WHERE token IN (SELECT reg_token FROM uia_sessions WHERE created_ts < $1 AND reg_token IS NOT NULL)`, before); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM uia_sessions WHERE created_ts < $1`, before)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// RegistrationToken is a token that allows registration when registration
// requires one (spec: m.login.registration_token; Synapse admin API
// "Registration Tokens").
type RegistrationToken struct {
	Token       string `json:"token"`
	UsesAllowed *int   `json:"uses_allowed"`
	Pending     int    `json:"pending"`
	Completed   int    `json:"completed"`
	ExpiryTime  *int64 `json:"expiry_time"`
}

// Valid reports whether the token can be used now.
func (t RegistrationToken) Valid(now int64) bool {
	if t.ExpiryTime != nil && *t.ExpiryTime <= now {
		return false
	}
	return t.UsesAllowed == nil || t.Pending+t.Completed < *t.UsesAllowed
}

const regTokenCols = `token, uses_allowed, pending, completed, expiry_time`

func scanRegToken(s scanner) (RegistrationToken, error) {
	var t RegistrationToken
	var uses, exp sql.NullInt64
	err := s.Scan(&t.Token, &uses, &t.Pending, &t.Completed, &exp)
	if uses.Valid {
		n := int(uses.Int64)
		t.UsesAllowed = &n
	}
	if exp.Valid {
		t.ExpiryTime = &exp.Int64
	}
	return t, err
}

// CreateRegistrationToken stores a new token. Returns ErrConflict if it exists.
func (db *DB) CreateRegistrationToken(ctx context.Context, t RegistrationToken) error {
	return db.WithTx(ctx, "create_registration_token", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES ($1, $2, $3)`,
			t.Token, t.UsesAllowed, t.ExpiryTime)
		if isUniqueViolation(err) {
			return ErrConflict
		}
		return err
	})
}

// RegistrationToken returns a token, or ErrNotFound.
func (db *DB) RegistrationToken(ctx context.Context, token string) (RegistrationToken, error) {
	var t RegistrationToken
	err := db.read(ctx, "registration_token", func(q querier) error {
		var err error
		t, err = scanRegToken(q.QueryRowContext(ctx, `SELECT `+regTokenCols+` FROM registration_tokens WHERE token = $1`, token))
		return notFound(err)
	})
	return t, err
}

// RegistrationTokens lists all tokens.
func (db *DB) RegistrationTokens(ctx context.Context) ([]RegistrationToken, error) {
	out := []RegistrationToken{}
	err := db.read(ctx, "registration_tokens", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT `+regTokenCols+` FROM registration_tokens ORDER BY token`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			t, err := scanRegToken(rows)
			if err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	return out, err
}

// UpdateRegistrationToken sets uses_allowed and expiry_time. Returns ErrNotFound.
func (db *DB) UpdateRegistrationToken(ctx context.Context, token string, usesAllowed *int, expiry *int64) error {
	return db.WithTx(ctx, "update_registration_token", func(tx *Tx) error {
		return execOne(tx.ExecContext(ctx, `UPDATE registration_tokens SET uses_allowed = $2, expiry_time = $3 WHERE token = $1`, token, usesAllowed, expiry))
	})
}

// DeleteRegistrationToken deletes a token. Returns ErrNotFound.
func (db *DB) DeleteRegistrationToken(ctx context.Context, token string) error {
	return db.WithTx(ctx, "delete_registration_token", func(tx *Tx) error {
		return execOne(tx.ExecContext(ctx, `DELETE FROM registration_tokens WHERE token = $1`, token))
	})
}

// ReserveRegistrationToken takes one pending use of a valid token for a UIA
// session. Returns ErrNotFound when the token is unknown, expired or used up.
func (db *DB) ReserveRegistrationToken(ctx context.Context, sessionID, token string) error {
	return db.WithTx(ctx, "reserve_registration_token", func(tx *Tx) error {
		t, err := scanRegToken(tx.QueryRowContext(ctx, `SELECT `+regTokenCols+` FROM registration_tokens WHERE token = $1`, token))
		if err != nil {
			return notFound(err)
		}
		if !t.Valid(nowMS()) {
			return ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `UPDATE registration_tokens SET pending = pending + 1 WHERE token = $1`, token); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE uia_sessions SET reg_token = $2 WHERE session_id = $1 AND reg_token IS NULL`, sessionID, token)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("reserve registration token: session %s already holds one", sessionID)
		}
		return nil
	})
}

// CompleteRegistration creates the account and its first session and, if the
// UIA session held a registration token use, turns it into a completed use,
// all in one transaction. session may be nil (inhibit_login). Returns
// ErrConflict when the localpart is taken.
func (db *DB) CompleteRegistration(ctx context.Context, a Account, displayName string, uiaSession string, session *NewSession) error {
	return db.WithTx(ctx, "register", func(tx *Tx) error {
		if err := tx.CreateAccount(ctx, a, displayName); err != nil {
			return err
		}
		if uiaSession != "" {
			var tok sql.NullString
			err := tx.QueryRowContext(ctx, `SELECT reg_token FROM uia_sessions WHERE session_id = $1`, uiaSession).Scan(&tok)
			if err != nil && err != sql.ErrNoRows {
				return err
			}
			if tok.Valid {
				if _, err := tx.ExecContext(ctx, `UPDATE registration_tokens SET pending = pending - 1, completed = completed + 1 WHERE token = $1`, tok.String); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM uia_sessions WHERE session_id = $1`, uiaSession); err != nil {
				return err
			}
		}
		if session != nil {
			return tx.CreateSession(ctx, *session)
		}
		return nil
	})
}

// CreateLoginToken stores a short-lived m.login.token token.
func (db *DB) CreateLoginToken(ctx context.Context, hash []byte, localpart string, expires int64) error {
	return db.WithTx(ctx, "create_login_token", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO login_tokens (token_hash, localpart, expires_ts) VALUES ($1, $2, $3)`, hash, localpart, expires)
		return err
	})
}

// ConsumeLoginToken deletes a login token and returns its user. Returns
// ErrNotFound when it is unknown, used or expired.
func (db *DB) ConsumeLoginToken(ctx context.Context, hash []byte) (string, error) {
	var localpart string
	err := db.WithTx(ctx, "consume_login_token", func(tx *Tx) error {
		err := tx.QueryRowContext(ctx, `DELETE FROM login_tokens WHERE token_hash = $1 AND expires_ts > $2 RETURNING localpart`, hash, nowMS()).Scan(&localpart)
		return notFound(err)
	})
	return localpart, err
}

// CreateNonce stores a shared-secret registration nonce.
func (db *DB) CreateNonce(ctx context.Context, nonce string, expires int64) error {
	return db.WithTx(ctx, "create_nonce", func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM registration_nonces WHERE expires_ts < $1`, nowMS()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO registration_nonces (nonce, expires_ts) VALUES ($1, $2)`, nonce, expires)
		return err
	})
}

// ConsumeNonce deletes a nonce. Returns ErrNotFound when unknown or expired.
func (db *DB) ConsumeNonce(ctx context.Context, nonce string) error {
	return db.WithTx(ctx, "consume_nonce", func(tx *Tx) error {
		return execOne(tx.ExecContext(ctx, `DELETE FROM registration_nonces WHERE nonce = $1 AND expires_ts > $2`, nonce, nowMS()))
	})
}

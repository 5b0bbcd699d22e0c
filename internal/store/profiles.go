package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"polder.dev/polder/internal/cjson"
)

// ErrTooLarge is returned when a write would make a stored object larger
// than its limit.
var ErrTooLarge = errors.New("too large")

// Profile fields kept in the profiles table; every other field is a row of
// profile_fields.
const (
	ProfileDisplayName = "displayname"
	ProfileAvatarURL   = "avatar_url"
)

// ProfileFields returns the extended profile fields of a local user (every
// field but displayname and avatar_url) as JSON values by name. An unknown
// user has none.
func (db *DB) ProfileFields(ctx context.Context, localpart string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := db.read(ctx, "profile_fields", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT field, value FROM profile_fields WHERE localpart = $1`, localpart)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			var v []byte
			if err := rows.Scan(&k, &v); err != nil {
				return err
			}
			out[k] = v
		}
		return rows.Err()
	})
	return out, err
}

// SetProfileField sets one field of a local user's profile to a JSON
// value, or removes it when value is nil. displayname and avatar_url must
// be JSON strings; the empty string removes them too. The profile's size
// (the bytes of every field name and value) must stay within limit, or
// ErrTooLarge is returned and nothing changes. Returns ErrNotFound for an
// unknown user.
func (db *DB) SetProfileField(ctx context.Context, localpart, field string, value []byte, limit int) error {
	return db.WithTx(ctx, "set_profile_field", func(tx *Tx) error {
		var dn, av sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT displayname, avatar_url FROM profiles WHERE localpart = $1`, localpart).Scan(&dn, &av)
		if err != nil {
			return notFound(err)
		}
		size := 0
		if field != ProfileDisplayName && dn.Valid {
			size += len(ProfileDisplayName) + len(dn.String)
		}
		if field != ProfileAvatarURL && av.Valid {
			size += len(ProfileAvatarURL) + len(av.String)
		}
		rows, err := tx.QueryContext(ctx, `SELECT field, value FROM profile_fields WHERE localpart = $1`, localpart)
		if err != nil {
			return err
		}
		for rows.Next() {
			var k string
			var v []byte
			if err := rows.Scan(&k, &v); err != nil {
				rows.Close()
				return err
			}
			if k != field {
				size += len(k) + len(v)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if value != nil && size+len(field)+len(value) > limit {
			return ErrTooLarge
		}
		switch field {
		case ProfileDisplayName, ProfileAvatarURL:
			var s string
			if value != nil {
				if s, err = cjson.Unquote(value); err != nil {
					return fmt.Errorf("profile field %s is not a JSON string: %w", field, err)
				}
			}
			// The column name comes from the two constants above.
			return execOne(tx.ExecContext(ctx, `UPDATE profiles SET `+field+` = $2 WHERE localpart = $1`, localpart, nullString(s)))
		}
		if value == nil {
			_, err := tx.ExecContext(ctx, `DELETE FROM profile_fields WHERE localpart = $1 AND field = $2`, localpart, field)
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO profile_fields (localpart, field, value) VALUES ($1, $2, $3)
			ON CONFLICT (localpart, field) DO UPDATE SET value = excluded.value`, localpart, field, value)
		return err
	})
}

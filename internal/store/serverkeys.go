package store

import (
	"context"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/keys"
)

// ServerKeys returns the persisted verify keys of another server, in key
// ID order (none: an empty slice and no error). It is keys.CacheConfig's
// Load.
func (db *DB) ServerKeys(ctx context.Context, server string) ([]keys.RemoteKey, error) {
	var out []keys.RemoteKey
	err := db.read(ctx, "server_keys", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT key_id, public_key, valid_until_ts, expired, fetched_ts, response
			FROM server_keys WHERE server_name = $1 ORDER BY key_id`, server)
		if err != nil {
			return err
		}
		defer rows.Close()
		out = out[:0]
		for rows.Next() {
			var (
				k            keys.RemoteKey
				keyID        string
				pub, resp    []byte
				until, fetch int64
			)
			if err := rows.Scan(&keyID, &pub, &until, &k.Expired, &fetch, &resp); err != nil {
				return err
			}
			k.KeyID, k.Public, k.Response = id.KeyID(keyID), pub, resp
			k.ValidUntil, k.Fetched = time.UnixMilli(until), time.UnixMilli(fetch)
			out = append(out, k)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("server keys of %s: %w", server, err)
	}
	return out, nil
}

// PutServerKeys persists keys fetched from server: each replaces the row
// of its key ID; keys not given are left as they are. It is
// keys.CacheConfig's Store.
func (db *DB) PutServerKeys(ctx context.Context, server string, ks []keys.RemoteKey) error {
	if len(ks) == 0 {
		return nil
	}
	return db.WithTx(ctx, "put_server_keys", func(tx *Tx) error {
		for _, k := range ks {
			if _, err := tx.ExecContext(ctx, `INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, expired, fetched_ts, response)
				VALUES ($1, $2, $3, $4, $5, $6, $7)
				ON CONFLICT (server_name, key_id) DO UPDATE SET
					public_key = excluded.public_key, valid_until_ts = excluded.valid_until_ts, expired = excluded.expired,
					fetched_ts = excluded.fetched_ts, response = excluded.response`,
				server, string(k.KeyID), []byte(k.Public), k.ValidUntil.UnixMilli(), k.Expired, k.Fetched.UnixMilli(), k.Response); err != nil {
				return fmt.Errorf("write server key %s of %s: %w", k.KeyID, server, err)
			}
		}
		return nil
	})
}

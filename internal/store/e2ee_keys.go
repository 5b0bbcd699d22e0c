package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"
)

// End-to-end encryption keys (migrations/0011_e2ee_keys.sql): device keys,
// one-time and fallback keys, cross-signing keys, signatures, and the
// device list change stream. Key objects are stored as given (the e2ee
// service hands in canonical JSON) and never parsed here.

// OneTimeKey is a one-time or fallback key of a device.
type OneTimeKey struct {
	Algorithm string
	KeyID     string
	JSON      []byte
}

// KeyConflictError is returned by AddOneTimeKeys when a key ID is already
// stored with other content.
type KeyConflictError struct {
	Algorithm, KeyID string
	Old, New         []byte
}

func (e *KeyConflictError) Error() string {
	return fmt.Sprintf("one-time key %s:%s already exists with other content", e.Algorithm, e.KeyID)
}

// DeviceKeys is a device's signed device_keys object with the device's
// display name ("" when it has none or is not a local device).
type DeviceKeys struct {
	UserID      id.UserID
	DeviceID    id.DeviceID
	JSON        []byte
	DisplayName string
}

// DeviceKeysJSON returns the stored device_keys object of a device, or
// ErrNotFound.
func (tx *Tx) DeviceKeysJSON(ctx context.Context, user id.UserID, device id.DeviceID) ([]byte, error) {
	var b []byte
	err := tx.QueryRowContext(ctx, `SELECT key_json FROM e2ee_device_keys WHERE user_id = $1 AND device_id = $2`,
		string(user), string(device)).Scan(&b)
	return b, notFound(err)
}

// SetDeviceKeys stores a device's device_keys object, replacing any.
func (tx *Tx) SetDeviceKeys(ctx context.Context, user id.UserID, device id.DeviceID, keyJSON []byte) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO e2ee_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json`, string(user), string(device), keyJSON)
	if err != nil {
		return fmt.Errorf("set device keys: %w", err)
	}
	return nil
}

// AddOneTimeKeys stores one-time keys of a device. A key whose ID is
// already stored with the same content is skipped; with other content,
// nothing is stored and a *KeyConflictError is returned.
func (tx *Tx) AddOneTimeKeys(ctx context.Context, user id.UserID, device id.DeviceID, keys []OneTimeKey) error {
	if len(keys) == 0 {
		return nil
	}
	type algKey struct{ alg, id string }
	existing := map[algKey][]byte{}
	for chunk := range chunks(keys, 200) {
		args := []any{string(user), string(device)}
		var conds []string
		for _, k := range chunk {
			conds = append(conds, "(algorithm = "+param(&args, k.Algorithm)+" AND key_id = "+param(&args, k.KeyID)+")")
		}
		rows, err := tx.QueryContext(ctx, `SELECT algorithm, key_id, key_json FROM e2ee_one_time_keys
			WHERE user_id = $1 AND device_id = $2 AND (`+strings.Join(conds, " OR ")+`)`, args...)
		if err != nil {
			return fmt.Errorf("read one-time keys: %w", err)
		}
		for rows.Next() {
			var k algKey
			var b []byte
			if err := rows.Scan(&k.alg, &k.id, &b); err != nil {
				rows.Close()
				return err
			}
			existing[k] = b
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	var args []any
	seen := map[algKey]bool{}
	for _, k := range keys {
		ak := algKey{k.Algorithm, k.KeyID}
		if old, ok := existing[ak]; ok {
			if string(old) != string(k.JSON) {
				return &KeyConflictError{Algorithm: k.Algorithm, KeyID: k.KeyID, Old: old, New: k.JSON}
			}
			continue
		}
		if seen[ak] {
			continue
		}
		seen[ak] = true
		args = append(args, string(user), string(device), k.Algorithm, k.KeyID, k.JSON)
	}
	if len(args) == 0 {
		return nil
	}
	if err := tx.insertRows(ctx, `INSERT INTO e2ee_one_time_keys (user_id, device_id, algorithm, key_id, key_json) VALUES `, "", 5, args); err != nil {
		return fmt.Errorf("insert one-time keys: %w", err)
	}
	return nil
}

// SetFallbackKeys stores the fallback keys of a device, one per algorithm,
// each replacing the algorithm's previous one and unused; a key identical
// to the stored one keeps its used mark (as Synapse: re-uploading the same
// key must not make a used key look fresh).
func (tx *Tx) SetFallbackKeys(ctx context.Context, user id.UserID, device id.DeviceID, keys []OneTimeKey) error {
	for _, k := range keys {
		_, err := tx.ExecContext(ctx, `INSERT INTO e2ee_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
			VALUES ($1, $2, $3, $4, $5, FALSE)
			ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = FALSE
			WHERE e2ee_fallback_keys.key_id <> excluded.key_id OR e2ee_fallback_keys.key_json <> excluded.key_json`,
			string(user), string(device), k.Algorithm, k.KeyID, k.JSON)
		if err != nil {
			return fmt.Errorf("set fallback key: %w", err)
		}
	}
	return nil
}

// KeyCounts returns a device's number of unclaimed one-time keys per
// algorithm and the algorithms of its unused fallback keys.
func (db *DB) KeyCounts(ctx context.Context, user id.UserID, device id.DeviceID) (map[string]int, []string, error) {
	counts := map[string]int{}
	var fallback []string
	err := db.read(ctx, "key_counts", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT algorithm, COUNT(*) FROM e2ee_one_time_keys
			WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm`, string(user), string(device))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var alg string
			var n int
			if err := rows.Scan(&alg, &n); err != nil {
				return err
			}
			counts[alg] = n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		fallback, err = column[string](q.QueryContext(ctx, `SELECT algorithm FROM e2ee_fallback_keys
			WHERE user_id = $1 AND device_id = $2 AND NOT used ORDER BY algorithm`, string(user), string(device)))
		return err
	})
	return counts, fallback, err
}

// KeyClaim asks for one key of an algorithm of a device.
type KeyClaim struct {
	UserID    id.UserID
	DeviceID  id.DeviceID
	Algorithm string
}

// ClaimedKey is a key handed out by ClaimKeys.
type ClaimedKey struct {
	KeyClaim
	KeyID    string
	JSON     []byte
	Fallback bool
}

// claimOTKs deletes and returns, for each (user, device, algorithm) of a
// VALUES list, the device's oldest one-time key of the algorithm: one
// statement for many claims. On PostgreSQL, SKIP LOCKED makes concurrent
// claims take different keys rather than one of them finding the key it
// chose gone; SQLite has one writer.
var claimOTKs = map[Dialect][2]string{
	SQLite: {`DELETE FROM e2ee_one_time_keys WHERE otk_nid IN (SELECT (SELECT k.otk_nid FROM e2ee_one_time_keys k
		WHERE k.user_id = w.column1 AND k.device_id = w.column2 AND k.algorithm = w.column3 ORDER BY k.otk_nid LIMIT 1)
		FROM (VALUES `, `) AS w) RETURNING user_id, device_id, algorithm, key_id, key_json`},
	Postgres: {`DELETE FROM e2ee_one_time_keys WHERE otk_nid IN (SELECT k.otk_nid FROM (VALUES `, `) AS w (u, d, a)
		CROSS JOIN LATERAL (SELECT otk_nid FROM e2ee_one_time_keys WHERE user_id = w.u AND device_id = w.d AND algorithm = w.a
			ORDER BY otk_nid LIMIT 1 FOR UPDATE SKIP LOCKED) k)
		RETURNING user_id, device_id, algorithm, key_id, key_json`},
}

// ClaimKeys claims one key per claim, in one transaction: the oldest
// one-time key of the algorithm, deleted as it is handed out, or else the
// fallback key of the algorithm, marked used. Claims finding neither are
// left out of the result. A device may be claimed from once per call.
func (db *DB) ClaimKeys(ctx context.Context, claims []KeyClaim) ([]ClaimedKey, error) {
	var out []ClaimedKey
	err := db.WithTx(ctx, "claim_keys", func(tx *Tx) error {
		out = out[:0]
		got := map[KeyClaim]bool{}
		q := claimOTKs[tx.dialect]
		rest := claims
		for _, n := range bulkChunks {
			for len(rest) >= n {
				args := make([]any, 0, 3*n)
				for _, c := range rest[:n] {
					args = append(args, string(c.UserID), string(c.DeviceID), c.Algorithm)
				}
				rest = rest[n:]
				rows, err := tx.QueryContext(ctx, bulkStatement(tx.dialect, q[0], q[1], 3, n), args...)
				if err != nil {
					return fmt.Errorf("claim one-time keys: %w", err)
				}
				for rows.Next() {
					var k ClaimedKey
					if err := rows.Scan(&k.UserID, &k.DeviceID, &k.Algorithm, &k.KeyID, &k.JSON); err != nil {
						rows.Close()
						return err
					}
					got[k.KeyClaim] = true
					out = append(out, k)
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					return fmt.Errorf("claim one-time keys: %w", err)
				}
			}
		}
		for _, c := range claims {
			if got[c] {
				continue
			}
			k := ClaimedKey{KeyClaim: c, Fallback: true}
			err := tx.QueryRowContext(ctx, `UPDATE e2ee_fallback_keys SET used = TRUE
				WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 RETURNING key_id, key_json`,
				string(c.UserID), string(c.DeviceID), c.Algorithm).Scan(&k.KeyID, &k.JSON)
			if err == sql.ErrNoRows {
				continue
			}
			if err != nil {
				return fmt.Errorf("claim fallback key: %w", err)
			}
			out = append(out, k)
		}
		return nil
	})
	return out, err
}

// DeviceKeysOfUsers returns the device keys of every device of users,
// without display names (two statements per 500 users).
func (db *DB) DeviceKeysOfUsers(ctx context.Context, users []id.UserID) ([]DeviceKeys, error) {
	var out []DeviceKeys
	err := db.read(ctx, "device_keys_of_users", func(q querier) error {
		for chunk := range chunks(users, 500) {
			args := make([]any, len(chunk))
			for i, u := range chunk {
				args[i] = string(u)
			}
			rows, err := q.QueryContext(ctx, `SELECT user_id, device_id, key_json FROM e2ee_device_keys
				WHERE user_id IN (`+placeholders(1, len(chunk))+`) ORDER BY user_id, device_id`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var k DeviceKeys
				if err := rows.Scan(&k.UserID, &k.DeviceID, &k.JSON); err != nil {
					rows.Close()
					return err
				}
				out = append(out, k)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// DeviceNames returns the display names of the named devices of local
// accounts, by localpart and device ID.
func (db *DB) DeviceNames(ctx context.Context, localparts []string) (map[string]map[id.DeviceID]string, error) {
	out := map[string]map[id.DeviceID]string{}
	err := db.read(ctx, "device_names", func(q querier) error {
		for chunk := range chunks(localparts, 500) {
			args := make([]any, len(chunk))
			for i, l := range chunk {
				args[i] = l
			}
			rows, err := q.QueryContext(ctx, `SELECT localpart, device_id, display_name FROM devices
				WHERE localpart IN (`+placeholders(1, len(chunk))+`) AND display_name IS NOT NULL AND display_name <> ''`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var l string
				var d id.DeviceID
				var name string
				if err := rows.Scan(&l, &d, &name); err != nil {
					rows.Close()
					return err
				}
				if out[l] == nil {
					out[l] = map[id.DeviceID]string{}
				}
				out[l][d] = name
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// DeviceKeysOf returns the device keys of a user's devices (all when
// devices is empty). localpart, when not "", names the local account
// whose devices' display names are read too.
func (db *DB) DeviceKeysOf(ctx context.Context, user id.UserID, localpart string, devices []id.DeviceID) ([]DeviceKeys, error) {
	var out []DeviceKeys
	err := db.read(ctx, "device_keys", func(q querier) error {
		args := []any{string(user), localpart}
		query := `SELECT k.device_id, k.key_json, d.display_name FROM e2ee_device_keys k
			LEFT JOIN devices d ON d.localpart = $2 AND d.device_id = k.device_id WHERE k.user_id = $1`
		if len(devices) > 0 {
			ph := make([]string, len(devices))
			for i, d := range devices {
				ph[i] = param(&args, string(d))
			}
			query += ` AND k.device_id IN (` + strings.Join(ph, ", ") + `)`
		}
		rows, err := q.QueryContext(ctx, query+` ORDER BY k.device_id`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			k := DeviceKeys{UserID: user}
			var name sql.NullString
			if err := rows.Scan(&k.DeviceID, &k.JSON, &name); err != nil {
				return err
			}
			k.DisplayName = name.String
			out = append(out, k)
		}
		return rows.Err()
	})
	return out, err
}

// DeleteDeviceKeys deletes the keys of a user's devices (all of them when
// devices is nil) and the signatures on them, and returns the devices that
// had device keys.
func (tx *Tx) DeleteDeviceKeys(ctx context.Context, user id.UserID, devices []id.DeviceID) ([]id.DeviceID, error) {
	if devices == nil {
		had, err := column[id.DeviceID](tx.QueryContext(ctx, `DELETE FROM e2ee_device_keys WHERE user_id = $1 RETURNING device_id`, string(user)))
		if err != nil {
			return nil, fmt.Errorf("delete device keys: %w", err)
		}
		for _, q := range []string{
			`DELETE FROM e2ee_one_time_keys WHERE user_id = $1`,
			`DELETE FROM e2ee_fallback_keys WHERE user_id = $1`,
		} {
			if _, err := tx.ExecContext(ctx, q, string(user)); err != nil {
				return nil, fmt.Errorf("delete device keys: %w", err)
			}
		}
		for _, d := range had {
			if _, err := tx.ExecContext(ctx, `DELETE FROM e2ee_signatures WHERE target_user = $1 AND target_key = $2`, string(user), string(d)); err != nil {
				return nil, fmt.Errorf("delete device signatures: %w", err)
			}
		}
		return had, nil
	}
	var had []id.DeviceID
	for _, d := range devices {
		var x string
		err := tx.QueryRowContext(ctx, `DELETE FROM e2ee_device_keys WHERE user_id = $1 AND device_id = $2 RETURNING device_id`, string(user), string(d)).Scan(&x)
		if err == nil {
			had = append(had, d)
		} else if err != sql.ErrNoRows {
			return nil, fmt.Errorf("delete device keys: %w", err)
		}
		for _, q := range []string{
			`DELETE FROM e2ee_one_time_keys WHERE user_id = $1 AND device_id = $2`,
			`DELETE FROM e2ee_fallback_keys WHERE user_id = $1 AND device_id = $2`,
			`DELETE FROM e2ee_signatures WHERE target_user = $1 AND target_key = $2`,
		} {
			if _, err := tx.ExecContext(ctx, q, string(user), string(d)); err != nil {
				return nil, fmt.Errorf("delete device keys: %w", err)
			}
		}
	}
	return had, nil
}

// Cross-signing key types.
const (
	MasterKey      = "master"
	SelfSigningKey = "self_signing"
	UserSigningKey = "user_signing"
)

// CrossSigningKey is one of a user's cross-signing keys.
type CrossSigningKey struct {
	UserID id.UserID
	Type   string // MasterKey, SelfSigningKey or UserSigningKey
	KeyID  string // the unpadded base64 public key
	JSON   []byte
}

// CrossSigningKeys returns the cross-signing keys of users, by user and
// type.
func (db *DB) CrossSigningKeys(ctx context.Context, users []id.UserID) (map[id.UserID]map[string]CrossSigningKey, error) {
	out := map[id.UserID]map[string]CrossSigningKey{}
	err := db.read(ctx, "cross_signing_keys", func(q querier) error {
		return crossSigningKeys(ctx, q, users, out)
	})
	return out, err
}

// CrossSigningKeys is CrossSigningKeys inside a transaction.
func (tx *Tx) CrossSigningKeys(ctx context.Context, users []id.UserID) (map[id.UserID]map[string]CrossSigningKey, error) {
	out := map[id.UserID]map[string]CrossSigningKey{}
	return out, crossSigningKeys(ctx, tx, users, out)
}

func crossSigningKeys(ctx context.Context, q querier, users []id.UserID, out map[id.UserID]map[string]CrossSigningKey) error {
	for chunk := range chunks(users, 500) {
		args := make([]any, len(chunk))
		for i, u := range chunk {
			args[i] = string(u)
		}
		rows, err := q.QueryContext(ctx, `SELECT user_id, key_type, key_id, key_json FROM e2ee_cross_signing_keys
			WHERE user_id IN (`+placeholders(1, len(chunk))+`)`, args...)
		if err != nil {
			return fmt.Errorf("read cross-signing keys: %w", err)
		}
		for rows.Next() {
			var k CrossSigningKey
			if err := rows.Scan(&k.UserID, &k.Type, &k.KeyID, &k.JSON); err != nil {
				rows.Close()
				return err
			}
			if out[k.UserID] == nil {
				out[k.UserID] = map[string]CrossSigningKey{}
			}
			out[k.UserID][k.Type] = k
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

// SetCrossSigningKey stores a cross-signing key, replacing the user's key
// of its type. Signatures on the key it replaces are deleted.
func (tx *Tx) SetCrossSigningKey(ctx context.Context, k CrossSigningKey) error {
	var old string
	err := tx.QueryRowContext(ctx, `SELECT key_id FROM e2ee_cross_signing_keys WHERE user_id = $1 AND key_type = $2`,
		string(k.UserID), k.Type).Scan(&old)
	if err != nil && err != sql.ErrNoRows {
		return fmt.Errorf("read cross-signing key: %w", err)
	}
	if old != "" && old != k.KeyID {
		if _, err := tx.ExecContext(ctx, `DELETE FROM e2ee_signatures WHERE target_user = $1 AND target_key = $2`, string(k.UserID), old); err != nil {
			return fmt.Errorf("delete signatures: %w", err)
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO e2ee_cross_signing_keys (user_id, key_type, key_id, key_json) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, key_type) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json`,
		string(k.UserID), k.Type, k.KeyID, k.JSON)
	if err != nil {
		return fmt.Errorf("set cross-signing key: %w", err)
	}
	return nil
}

// Signature is a signature made by SignerUser's key SignerKey on
// TargetUser's device or cross-signing key TargetKey.
type Signature struct {
	TargetUser id.UserID
	TargetKey  string
	SignerUser id.UserID
	SignerKey  string
	Signature  string
}

// AddSignatures stores signatures, replacing those of the same signer key
// on the same target.
func (tx *Tx) AddSignatures(ctx context.Context, sigs []Signature) error {
	for _, s := range sigs {
		_, err := tx.ExecContext(ctx, `INSERT INTO e2ee_signatures (target_user, target_key, signer_user, signer_key, signature)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target_user, target_key, signer_user, signer_key) DO UPDATE SET signature = excluded.signature`,
			string(s.TargetUser), s.TargetKey, string(s.SignerUser), s.SignerKey, s.Signature)
		if err != nil {
			return fmt.Errorf("add signature: %w", err)
		}
	}
	return nil
}

// SignaturesOn returns the signatures stored on the keys of users.
func (db *DB) SignaturesOn(ctx context.Context, users []id.UserID) ([]Signature, error) {
	var out []Signature
	err := db.read(ctx, "signatures_on", func(q querier) error {
		for chunk := range chunks(users, 500) {
			args := make([]any, len(chunk))
			for i, u := range chunk {
				args[i] = string(u)
			}
			rows, err := q.QueryContext(ctx, `SELECT target_user, target_key, signer_user, signer_key, signature FROM e2ee_signatures
				WHERE target_user IN (`+placeholders(1, len(chunk))+`) ORDER BY target_user, target_key, signer_user, signer_key`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var s Signature
				if err := rows.Scan(&s.TargetUser, &s.TargetKey, &s.SignerUser, &s.SignerKey, &s.Signature); err != nil {
					rows.Close()
					return err
				}
				out = append(out, s)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// MarkDeviceListChanged takes a stream position and records at it that the
// devices or cross-signing keys of users changed, seen by viewer only
// (viewer "": by everyone sharing a room with them). It returns the
// position.
func (tx *Tx) MarkDeviceListChanged(ctx context.Context, viewer id.UserID, users ...id.UserID) (int64, error) {
	pos, err := tx.NextStreamPos(ctx)
	if err != nil {
		return 0, err
	}
	for _, u := range users {
		_, err := tx.ExecContext(ctx, `INSERT INTO device_list_changes (user_id, viewer, stream_pos) VALUES ($1, $2, $3)
			ON CONFLICT (user_id, viewer) DO UPDATE SET stream_pos = excluded.stream_pos`, string(u), string(viewer), pos)
		if err != nil {
			return 0, fmt.Errorf("mark device list changed: %w", err)
		}
	}
	return pos, nil
}

// NextDeviceListStreamID takes the next stream_id of a local user's
// m.device_list_update EDUs and returns it with the previous one (0: none).
func (tx *Tx) NextDeviceListStreamID(ctx context.Context, user id.UserID) (next, prev int64, err error) {
	err = tx.QueryRowContext(ctx, `SELECT stream_id FROM e2ee_device_list_outbound WHERE user_id = $1`, string(user)).Scan(&prev)
	if err != nil && err != sql.ErrNoRows {
		return 0, 0, fmt.Errorf("read device list stream id: %w", err)
	}
	next = prev + 1
	_, err = tx.ExecContext(ctx, `INSERT INTO e2ee_device_list_outbound (user_id, stream_id) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id`, string(user), next)
	if err != nil {
		return 0, 0, fmt.Errorf("set device list stream id: %w", err)
	}
	return next, prev, nil
}

// DeviceListStreamID returns the stream_id of the latest
// m.device_list_update EDU about a local user (0: none yet).
func (db *DB) DeviceListStreamID(ctx context.Context, user id.UserID) (int64, error) {
	var n int64
	err := db.read(ctx, "device_list_stream_id", func(q querier) error {
		err := q.QueryRowContext(ctx, `SELECT stream_id FROM e2ee_device_list_outbound WHERE user_id = $1`, string(user)).Scan(&n)
		if err == sql.ErrNoRows {
			return nil
		}
		return err
	})
	return n, err
}

// serverOf extracts the server name of a user ID column in SQL.
var serverOf = map[Dialect]string{
	SQLite:   `substr(o.user_id, instr(o.user_id, ':') + 1)`,
	Postgres: `substr(o.user_id, strpos(o.user_id, ':') + 1)`,
}

// ServersSharingRooms returns the servers, other than except, of the users
// joined to a room user is joined to.
func (db *DB) ServersSharingRooms(ctx context.Context, user id.UserID, except string) ([]string, error) {
	var out []string
	err := db.read(ctx, "servers_sharing_rooms", func(q querier) error {
		var err error
		out, err = column[string](q.QueryContext(ctx, `SELECT DISTINCT `+serverOf[db.dialect]+` AS server FROM memberships m
			JOIN memberships o ON o.room_nid = m.room_nid AND o.membership = 'join'
			WHERE m.user_id = $1 AND m.membership = 'join' AND `+serverOf[db.dialect]+` <> $2 ORDER BY server`, string(user), except))
		return err
	})
	return out, err
}

// ServersNewToUser returns the servers, other than except, of the users
// joined to roomID that share no other joined room with user: those a
// join of user to roomID makes share a room with it for the first time
// (server-server API, "Device Management": they must be sent user's
// devices).
func (db *DB) ServersNewToUser(ctx context.Context, user id.UserID, roomID id.RoomID, except string) ([]string, error) {
	var out []string
	other := strings.ReplaceAll(serverOf[db.dialect], "o.", "x.")
	err := db.read(ctx, "servers_new_to_user", func(q querier) error {
		var err error
		out, err = column[string](q.QueryContext(ctx, `SELECT DISTINCT `+serverOf[db.dialect]+` AS server FROM rooms r
			JOIN memberships o ON o.room_nid = r.room_nid AND o.membership = 'join'
			WHERE r.room_id = $2 AND `+serverOf[db.dialect]+` <> $3 AND `+serverOf[db.dialect]+` NOT IN (
				SELECT `+other+` FROM memberships m JOIN memberships x ON x.room_nid = m.room_nid AND x.membership = 'join'
				WHERE m.user_id = $1 AND m.membership = 'join' AND m.room_nid <> r.room_nid)
			ORDER BY server`, string(user), string(roomID), except))
		return err
	})
	return out, err
}

// JoinedRoomsOfUsers returns the rooms any of users is joined to.
func (db *DB) JoinedRoomsOfUsers(ctx context.Context, users []id.UserID) ([]id.RoomID, error) {
	var out []id.RoomID
	err := db.read(ctx, "joined_rooms_of_users", func(q querier) error {
		seen := map[id.RoomID]bool{}
		for chunk := range chunks(users, 500) {
			args := make([]any, len(chunk))
			for i, u := range chunk {
				args[i] = string(u)
			}
			rooms, err := column[id.RoomID](q.QueryContext(ctx, `SELECT DISTINCT r.room_id FROM memberships m JOIN rooms r ON r.room_nid = m.room_nid
				WHERE m.user_id IN (`+placeholders(1, len(chunk))+`) AND m.membership = 'join'`, args...))
			if err != nil {
				return err
			}
			for _, r := range rooms {
				if !seen[r] {
					seen[r] = true
					out = append(out, r)
				}
			}
		}
		return nil
	})
	return out, err
}

// DeviceListChanges returns what /sync's device_lists reports to user for
// the stream positions (from, to] (client-server API, "Tracking the device
// list for a user"; Synapse's _generate_sync_entry_for_device_list):
//
//   - changed: user itself and the users sharing a joined room with it
//     whose devices or cross-signing keys changed (and the private changes
//     for user, viewer = user); the users who joined a room user is
//     joined to; every member of the rooms user joined;
//   - left: the users who left or were removed from a room user is joined
//     to, and the members of the rooms user left, who no longer share a
//     joined room with user.
//
// Three statements whatever the number of rooms.
func (db *DB) DeviceListChanges(ctx context.Context, user id.UserID, from, to int64) (changed, left []id.UserID, err error) {
	err = db.read(ctx, "device_list_changes", func(q querier) error {
		changedSet := map[id.UserID]bool{}
		leftSet := map[id.UserID]bool{}
		// Device list changes of the users sharing a room.
		rows, err := column[id.UserID](q.QueryContext(ctx, `SELECT DISTINCT c.user_id FROM device_list_changes c
			WHERE c.stream_pos > $2 AND c.stream_pos <= $3 AND (c.viewer = $1 OR c.viewer = '' AND (c.user_id = $1 OR EXISTS (
				SELECT 1 FROM memberships o JOIN memberships m ON m.room_nid = o.room_nid
				WHERE o.user_id = c.user_id AND o.membership = 'join' AND m.user_id = $1 AND m.membership = 'join')))`,
			string(user), from, to))
		if err != nil {
			return fmt.Errorf("device list changes: %w", err)
		}
		for _, u := range rows {
			changedSet[u] = true
		}
		// Membership changes: user's own in (from, to] (every member of
		// the room), from its memberships; others' in the rooms user is
		// joined to, from the member events in (from, to] (the stream
		// position index bounds the work by the changes, not by the size
		// of user's rooms). shares (whether the other user still shares a
		// joined room with user) is computed only where it decides.
		const shares = `EXISTS (SELECT 1 FROM memberships a JOIN memberships b ON b.room_nid = a.room_nid
			WHERE a.user_id = $1 AND a.membership = 'join' AND b.user_id = o.user_id AND b.membership = 'join')`
		mrows, err := q.QueryContext(ctx, `SELECT o.user_id, o.membership, m.membership, TRUE,
				CASE WHEN m.membership <> 'join' AND o.membership = 'join' THEN `+shares+` ELSE FALSE END
			FROM memberships m JOIN memberships o ON o.room_nid = m.room_nid
			WHERE m.user_id = $1 AND m.stream_pos > $2 AND m.stream_pos <= $3 AND o.user_id <> $1
			UNION ALL
			SELECT o.user_id, o.membership, 'join', FALSE,
				CASE WHEN o.membership IN ('leave', 'ban') THEN `+shares+` ELSE FALSE END
			FROM events e
			JOIN memberships o ON o.room_nid = e.room_nid AND o.user_id = e.state_key AND o.stream_pos = e.stream_pos
			JOIN memberships m ON m.room_nid = e.room_nid AND m.user_id = $1 AND m.membership = 'join'
			WHERE e.stream_pos > $2 AND e.stream_pos <= $3 AND e.type = 'm.room.member' AND e.state_key <> $1
				AND m.stream_pos <= $2`,
			string(user), from, to)
		if err != nil {
			return fmt.Errorf("device list membership changes: %w", err)
		}
		defer mrows.Close()
		for mrows.Next() {
			var other id.UserID
			var theirs, mine string
			var mineChanged, shares bool
			if err := mrows.Scan(&other, &theirs, &mine, &mineChanged, &shares); err != nil {
				return err
			}
			switch {
			case mineChanged && mine == "join":
				// user joined: every member is new to it.
				if theirs == "join" {
					changedSet[other] = true
				}
			case mineChanged:
				// user left or was removed: the members it shares no other
				// room with are gone.
				if (mine == "leave" || mine == "ban") && theirs == "join" && !shares {
					leftSet[other] = true
				}
			case theirs == "join" || theirs == "invite" || theirs == "knock":
				// As Synapse: invited users get room keys too.
				changedSet[other] = true
			case theirs == "leave" || theirs == "ban":
				if !shares {
					leftSet[other] = true
				}
			}
		}
		if err := mrows.Err(); err != nil {
			return err
		}
		for u := range leftSet {
			delete(changedSet, u)
		}
		changed = sortedUsers(changedSet)
		left = sortedUsers(leftSet)
		return nil
	})
	return changed, left, err
}

func sortedUsers(set map[id.UserID]bool) []id.UserID {
	out := make([]id.UserID, 0, len(set))
	for u := range set {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

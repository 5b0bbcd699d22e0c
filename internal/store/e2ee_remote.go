package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// The device lists of users of other servers (migration 0012): a cache
// that e2ee keeps up to date from their servers' EDUs and resyncs.

// RemoteDevice is one device of a cached remote device list.
type RemoteDevice struct {
	DeviceID    id.DeviceID
	DisplayName string
	Keys        json.RawMessage // the signed device keys; nil: none
}

// RemoteDeviceList is a remote user's cached devices and cross-signing
// keys.
type RemoteDeviceList struct {
	UserID         id.UserID
	StreamID       int64 // the remote's stream_id the list is at
	FetchedPos     int64 // this server's stream position when it was fetched
	Devices        []RemoteDevice
	MasterKey      json.RawMessage // nil: none
	SelfSigningKey json.RawMessage // nil: none
}

// RemoteListState says how far a remote user's cached list can be
// trusted.
type RemoteListState struct {
	StreamID       int64 // the highest stream_id applied
	ResyncStreamID int64 // the stream_id of the last resync
	HasList        bool  // a resync stored a complete list
	FetchedPos     int64 // this server's stream position when the resync fetched it
	Stale          bool  // an update was missed; a resync is due
}

// Tracked reports whether the list is complete and up to date.
func (s RemoteListState) Tracked() bool { return s.HasList && !s.Stale }

// RemoteDeviceUpdate is one change of a remote device list (an
// m.device_list_update EDU).
type RemoteDeviceUpdate struct {
	UserID      id.UserID
	DeviceID    id.DeviceID
	DisplayName string
	Keys        json.RawMessage // nil: none
	Deleted     bool
	StreamID    int64
}

// RemoteUpdateAction is what to do with a RemoteDeviceUpdate.
type RemoteUpdateAction int

const (
	// RemoteIgnore drops the update (already in the list).
	RemoteIgnore RemoteUpdateAction = iota
	// RemoteApply applies it to the list.
	RemoteApply
	// RemoteResync marks the list stale: an update was missed.
	RemoteResync
)

// ApplyRemoteDeviceUpdate applies u to the cached list of u.UserID in one
// transaction, as decide says from the list's current state (found is
// false when the user has no row yet). RemoteApply upserts or deletes the
// device and moves the list's stream_id up to u.StreamID; RemoteResync
// marks the list stale (creating the row), remembering u.StreamID as
// seen. It returns decide's answer.
func (db *DB) ApplyRemoteDeviceUpdate(ctx context.Context, u RemoteDeviceUpdate, decide func(st RemoteListState, found bool) RemoteUpdateAction) (RemoteUpdateAction, error) {
	var act RemoteUpdateAction
	err := db.WithTx(ctx, "apply_remote_device_update", func(tx *Tx) error {
		st, found, err := tx.remoteListState(ctx, u.UserID, true)
		if err != nil {
			return err
		}
		act = decide(st, found)
		switch act {
		case RemoteApply:
			if !found {
				return errors.New("apply remote device update: the user has no list")
			}
			if u.Deleted {
				if _, err := tx.ExecContext(ctx, `DELETE FROM e2ee_remote_devices WHERE user_id = $1 AND device_id = $2`,
					string(u.UserID), string(u.DeviceID)); err != nil {
					return fmt.Errorf("delete remote device: %w", err)
				}
			} else if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_remote_devices (user_id, device_id, display_name, device_keys)
				VALUES ($1, $2, $3, $4)
				ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = excluded.display_name, device_keys = excluded.device_keys`,
				string(u.UserID), string(u.DeviceID), nullString(u.DisplayName), remoteJSONArg(u.Keys)); err != nil {
				return fmt.Errorf("write remote device: %w", err)
			}
			if u.StreamID > st.StreamID {
				if _, err := tx.ExecContext(ctx, `UPDATE e2ee_remote_users SET stream_id = $2, updated_ts = $3 WHERE user_id = $1`,
					string(u.UserID), u.StreamID, nowMS()); err != nil {
					return fmt.Errorf("write remote stream id: %w", err)
				}
			}
		case RemoteResync:
			return tx.markRemoteStale(ctx, u.UserID, u.StreamID)
		}
		return nil
	})
	return act, err
}

// remoteListState reads a remote user's list state; found is false if the
// user has no row. With lock, the row is locked for the transaction (on
// PostgreSQL; SQLite has one writer).
func (tx *Tx) remoteListState(ctx context.Context, user id.UserID, lock bool) (RemoteListState, bool, error) {
	q := `SELECT stream_id, resync_stream_id, has_list, fetched_pos, stale FROM e2ee_remote_users WHERE user_id = $1`
	if lock && tx.dialect == Postgres {
		q += ` FOR UPDATE`
	}
	var st RemoteListState
	err := tx.QueryRowContext(ctx, q, string(user)).Scan(&st.StreamID, &st.ResyncStreamID, &st.HasList, &st.FetchedPos, &st.Stale)
	if errors.Is(err, sql.ErrNoRows) {
		return RemoteListState{}, false, nil
	}
	if err != nil {
		return RemoteListState{}, false, fmt.Errorf("read remote list state: %w", err)
	}
	return st, true, nil
}

// markRemoteStale marks user's list stale, creating its row, and
// remembers streamID (0: none) as seen while stale.
func (tx *Tx) markRemoteStale(ctx context.Context, user id.UserID, streamID int64) error {
	greatest := "GREATEST"
	if tx.dialect == SQLite {
		greatest = "MAX"
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_remote_users (user_id, server_name, stale, pending_stream_id, updated_ts)
		VALUES ($1, $2, TRUE, $3, $4)
		ON CONFLICT (user_id) DO UPDATE SET stale = TRUE,
			pending_stream_id = `+greatest+`(e2ee_remote_users.pending_stream_id, excluded.pending_stream_id), updated_ts = excluded.updated_ts`,
		string(user), user.Homeserver(), streamID, nowMS()); err != nil {
		return fmt.Errorf("mark remote device list stale: %w", err)
	}
	return nil
}

// MarkRemoteDeviceListsStale marks the lists of users stale (creating
// their rows): the resync worker will fetch them.
func (db *DB) MarkRemoteDeviceListsStale(ctx context.Context, users []id.UserID) error {
	return db.WithTx(ctx, "mark_remote_device_lists_stale", func(tx *Tx) error {
		for _, u := range users {
			if err := tx.markRemoteStale(ctx, u, 0); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReplaceRemoteDeviceList stores l as the complete list of its user (a
// resync) and clears the stale mark, unless an EDU newer than l.StreamID
// came while the list was stale; then the list stays stale (once: the
// remembered stream_id is cleared) and ReplaceRemoteDeviceList returns
// true.
func (db *DB) ReplaceRemoteDeviceList(ctx context.Context, l RemoteDeviceList) (stale bool, err error) {
	err = db.WithTx(ctx, "replace_remote_device_list", func(tx *Tx) error {
		var st RemoteListState
		var pending int64
		q := `SELECT stream_id, resync_stream_id, has_list, stale, pending_stream_id FROM e2ee_remote_users WHERE user_id = $1`
		if tx.dialect == Postgres {
			q += ` FOR UPDATE`
		}
		err := tx.QueryRowContext(ctx, q, string(l.UserID)).Scan(&st.StreamID, &st.ResyncStreamID, &st.HasList, &st.Stale, &pending)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read remote list state: %w", err)
		}
		stale = st.Stale && pending > l.StreamID
		if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_remote_users (user_id, server_name, stream_id, resync_stream_id, has_list, fetched_pos,
				stale, pending_stream_id, master_key, self_signing_key, updated_ts)
			VALUES ($1, $2, $3, $3, TRUE, $4, $5, 0, $6, $7, $8)
			ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id, resync_stream_id = excluded.resync_stream_id,
				has_list = TRUE, fetched_pos = excluded.fetched_pos, stale = excluded.stale, pending_stream_id = 0,
				master_key = excluded.master_key, self_signing_key = excluded.self_signing_key, updated_ts = excluded.updated_ts`,
			string(l.UserID), l.UserID.Homeserver(), l.StreamID, l.FetchedPos, stale, remoteJSONArg(l.MasterKey), remoteJSONArg(l.SelfSigningKey), nowMS()); err != nil {
			return fmt.Errorf("write remote device list: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM e2ee_remote_devices WHERE user_id = $1`, string(l.UserID)); err != nil {
			return fmt.Errorf("replace remote devices: %w", err)
		}
		for _, d := range l.Devices {
			if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_remote_devices (user_id, device_id, display_name, device_keys)
				VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO NOTHING`,
				string(l.UserID), string(d.DeviceID), nullString(d.DisplayName), remoteJSONArg(d.Keys)); err != nil {
				return fmt.Errorf("write remote device: %w", err)
			}
		}
		return nil
	})
	return stale, err
}

// SetRemoteCrossSigningKeys replaces a remote user's master key and
// self-signing key; a nil key is left as it is. A user without a row gets
// one, stale (its devices are not known). It returns whether the user was
// new.
func (db *DB) SetRemoteCrossSigningKeys(ctx context.Context, user id.UserID, master, selfSigning json.RawMessage) (bool, error) {
	var created bool
	err := db.WithTx(ctx, "set_remote_cross_signing_keys", func(tx *Tx) error {
		_, found, err := tx.remoteListState(ctx, user, true)
		if err != nil {
			return err
		}
		if !found {
			created = true
			if err := tx.markRemoteStale(ctx, user, 0); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE e2ee_remote_users SET master_key = COALESCE($2, master_key),
			self_signing_key = COALESCE($3, self_signing_key), updated_ts = $4 WHERE user_id = $1`,
			string(user), remoteJSONArg(master), remoteJSONArg(selfSigning), nowMS())
		if err != nil {
			return fmt.Errorf("write remote cross-signing keys: %w", err)
		}
		return nil
	})
	return created, err
}

// RemoteDeviceLists returns the cached lists of those of users that have
// a row, with their states. A list whose state has no HasList holds only
// what came without a resync (cross-signing keys).
func (db *DB) RemoteDeviceLists(ctx context.Context, users []id.UserID) (map[id.UserID]RemoteDeviceList, map[id.UserID]RemoteListState, error) {
	lists := map[id.UserID]RemoteDeviceList{}
	states := map[id.UserID]RemoteListState{}
	err := db.read(ctx, "remote_device_lists", func(q querier) error {
		for chunk := range chunks(users, 200) {
			args := make([]any, len(chunk))
			for i, u := range chunk {
				args[i] = string(u)
			}
			rows, err := q.QueryContext(ctx, `SELECT user_id, stream_id, resync_stream_id, has_list, fetched_pos, stale, master_key, self_signing_key
				FROM e2ee_remote_users WHERE user_id IN (`+placeholders(1, len(chunk))+`)`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var l RemoteDeviceList
				var st RemoteListState
				var master, ssk []byte
				if err := rows.Scan(&l.UserID, &st.StreamID, &st.ResyncStreamID, &st.HasList, &st.FetchedPos, &st.Stale, &master, &ssk); err != nil {
					rows.Close()
					return err
				}
				l.StreamID, l.FetchedPos, l.MasterKey, l.SelfSigningKey = st.StreamID, st.FetchedPos, remoteJSONCol(master), remoteJSONCol(ssk)
				lists[l.UserID], states[l.UserID] = l, st
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			rows, err = q.QueryContext(ctx, `SELECT user_id, device_id, display_name, device_keys FROM e2ee_remote_devices
				WHERE user_id IN (`+placeholders(1, len(chunk))+`) ORDER BY user_id, device_id`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var u id.UserID
				var d RemoteDevice
				var name sql.NullString
				var keys []byte
				if err := rows.Scan(&u, &d.DeviceID, &name, &keys); err != nil {
					rows.Close()
					return err
				}
				d.DisplayName, d.Keys = name.String, remoteJSONCol(keys)
				if l, ok := lists[u]; ok {
					l.Devices = append(l.Devices, d)
					lists[u] = l
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return lists, states, err
}

// StaleRemoteUsers returns up to limit remote users whose lists wait for a
// resync, by server.
func (db *DB) StaleRemoteUsers(ctx context.Context, limit int) ([]id.UserID, error) {
	var out []id.UserID
	err := db.read(ctx, "stale_remote_users", func(q querier) error {
		var err error
		out, err = column[id.UserID](q.QueryContext(ctx, `SELECT user_id FROM e2ee_remote_users WHERE stale
			ORDER BY server_name, user_id LIMIT $1`, limit))
		return err
	})
	return out, err
}

// DeleteRemoteDeviceLists forgets the cached lists of users (they no
// longer share a room with a user of this server).
func (db *DB) DeleteRemoteDeviceLists(ctx context.Context, users []id.UserID) error {
	return db.WithTx(ctx, "delete_remote_device_lists", func(tx *Tx) error {
		for _, u := range users {
			if _, err := tx.ExecContext(ctx, `DELETE FROM e2ee_remote_devices WHERE user_id = $1`, string(u)); err != nil {
				return fmt.Errorf("delete remote devices: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM e2ee_remote_users WHERE user_id = $1`, string(u)); err != nil {
				return fmt.Errorf("delete remote device list: %w", err)
			}
		}
		return nil
	})
}

// SharedRoomsSince returns, for those of users who are joined to a room
// that a user of server is joined to, the stream position since which they
// have shared one without a break, as far as the current memberships tell
// (a room shared since the later of the user's join and the earliest join
// of a user of server still there; the earliest such room). A membership
// that changed since (a new display name) makes it later than it may be,
// never earlier.
func (db *DB) SharedRoomsSince(ctx context.Context, server string, users []id.UserID) (map[id.UserID]int64, error) {
	out := map[id.UserID]int64{}
	suffix := ":" + server
	err := db.read(ctx, "shared_rooms_since", func(q querier) error {
		for chunk := range chunks(users, 200) {
			args := []any{suffix, len(suffix)}
			for _, u := range chunk {
				args = append(args, string(u))
			}
			// A user of server is one whose ID ends with ":" + server
			// (the localpart has no ":").
			rows, err := q.QueryContext(ctx, `SELECT user_id, MIN(CASE WHEN pos > local_pos THEN pos ELSE local_pos END) FROM (
					SELECT m.user_id, m.stream_pos AS pos,
						(SELECT MIN(o.stream_pos) FROM memberships o WHERE o.room_nid = m.room_nid AND o.membership = 'join'
							AND substr(o.user_id, length(o.user_id) - $2 + 1) = $1) AS local_pos
					FROM memberships m WHERE m.membership = 'join' AND m.user_id IN (`+placeholders(3, len(chunk))+`)
				) shared WHERE local_pos IS NOT NULL GROUP BY user_id`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var u id.UserID
				var since int64
				if err := rows.Scan(&u, &since); err != nil {
					rows.Close()
					return err
				}
				out[u] = since
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

// remoteJSONArg is NULL for an absent or null JSON value.
func remoteJSONArg(v json.RawMessage) any {
	if len(v) == 0 || string(v) == "null" {
		return nil
	}
	return []byte(v)
}

// remoteJSONCol is nil for a NULL column.
func remoteJSONCol(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

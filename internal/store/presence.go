package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// Presence is a local user's stored presence (client-server API
// "Presence").
type Presence struct {
	UserID       id.UserID
	State        string // online, unavailable, offline
	StatusMsg    string
	LastActiveTS int64 // ms; 0 if never active
	LastSyncTS   int64 // ms; when a /sync last said the user is there
	StreamPos    int64 // the position of its latest change
}

const presenceCols = `user_id, state, status_msg, last_active_ts, last_sync_ts, stream_pos`

func scanPresence(s scanner) (Presence, error) {
	var p Presence
	var msg sql.NullString
	err := s.Scan(&p.UserID, &p.State, &msg, &p.LastActiveTS, &p.LastSyncTS, &p.StreamPos)
	p.StatusMsg = msg.String
	return p, err
}

// Presence returns a user's presence, or ErrNotFound if it has none.
// On SQLite it answers from the rows this process read before and has not
// written since (presenceRows): every /sync asks.
func (db *DB) Presence(ctx context.Context, user id.UserID) (Presence, error) {
	c := db.presenceRows()
	var gen uint64
	if c != nil {
		if p, found, ok := c.get(user); ok {
			if !found {
				return Presence{}, ErrNotFound
			}
			return p, nil
		}
		gen = c.generation()
	}
	var p Presence
	err := db.read(ctx, "presence", func(q querier) error {
		var err error
		p, err = scanPresence(q.QueryRowContext(ctx, `SELECT `+presenceCols+` FROM presence WHERE user_id = $1`, string(user)))
		return notFound(err)
	})
	if c != nil && (err == nil || errors.Is(err, ErrNotFound)) {
		c.put(user, p, err == nil, gen)
	}
	return p, err
}

// UpdatePresence changes a user's presence in one transaction: fn gets the
// current presence (found is false if there is none) and returns the new
// one and whether to write it. When it writes, UpdatePresence returns the
// new stream position; otherwise 0. An error from fn is returned as is.
func (db *DB) UpdatePresence(ctx context.Context, user id.UserID, fn func(cur Presence, found bool) (Presence, bool, error)) (int64, error) {
	defer db.presenceWritten(user)()
	var pos int64
	err := db.WithTx(ctx, "update_presence", func(tx *Tx) error {
		if err := tx.lockStream(ctx); err != nil {
			return err
		}
		cur, err := scanPresence(tx.QueryRowContext(ctx, `SELECT `+presenceCols+` FROM presence WHERE user_id = $1`, string(user)))
		found := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read presence: %w", err)
		}
		if !found {
			cur = Presence{UserID: user, State: "offline"}
		}
		p, write, err := fn(cur, found)
		if err != nil || !write {
			return err
		}
		if pos, err = tx.NextStreamPos(ctx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO presence (`+presenceCols+`) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg,
				last_active_ts = excluded.last_active_ts, last_sync_ts = excluded.last_sync_ts, stream_pos = excluded.stream_pos`,
			string(user), p.State, nullString(p.StatusMsg), p.LastActiveTS, p.LastSyncTS, pos); err != nil {
			return fmt.Errorf("write presence: %w", err)
		}
		return nil
	})
	return pos, err
}

// SetPresenceTimes moves a user's last active and last sync times forward
// to the given ones (ms; a time that is not later is left alone), without
// a new stream position: the times alone are not a change /sync reports.
// Returns ErrNotFound if the user has no presence.
func (db *DB) SetPresenceTimes(ctx context.Context, user id.UserID, lastActiveTS, lastSyncTS int64) error {
	defer db.presenceWritten(user)()
	greatest := "GREATEST"
	if db.dialect == SQLite {
		greatest = "MAX" // SQLite's scalar max(a, b)
	}
	return db.WithTx(ctx, "set_presence_times", func(tx *Tx) error {
		return execOne(tx.ExecContext(ctx, `UPDATE presence SET last_active_ts = `+greatest+`(last_active_ts, $2),
			last_sync_ts = `+greatest+`(last_sync_ts, $3) WHERE user_id = $1`, string(user), lastActiveTS, lastSyncTS))
	})
}

// PresenceSince returns the presence of users whose latest change has a
// stream position in (from, to] (from 0: everyone's up to to), in stream
// order.
func (db *DB) PresenceSince(ctx context.Context, users []id.UserID, from, to int64) ([]Presence, error) {
	var out []Presence
	err := db.read(ctx, "presence_since", func(q querier) error {
		for chunk := range chunks(users, 200) {
			args := []any{from, to}
			for _, u := range chunk {
				args = append(args, string(u))
			}
			rows, err := q.QueryContext(ctx, `SELECT `+presenceCols+` FROM presence
				WHERE user_id IN (`+placeholders(3, len(chunk))+`) AND stream_pos > $1 AND stream_pos <= $2 ORDER BY stream_pos`, args...)
			if err != nil {
				return err
			}
			ps, err := scanPresences(rows)
			if err != nil {
				return err
			}
			out = append(out, ps...)
		}
		return nil
	})
	return out, err
}

// StalePresence returns the users who are online but were last active
// before activeBefore, and those who are not offline but were last seen
// syncing before syncBefore (both in ms).
func (db *DB) StalePresence(ctx context.Context, activeBefore, syncBefore int64) ([]Presence, error) {
	var out []Presence
	err := db.read(ctx, "stale_presence", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT `+presenceCols+` FROM presence
			WHERE (state = 'online' AND last_active_ts < $1) OR (state <> 'offline' AND last_sync_ts < $2) ORDER BY user_id`, activeBefore, syncBefore)
		if err != nil {
			return err
		}
		out, err = scanPresences(rows)
		return err
	})
	return out, err
}

func scanPresences(rows *sql.Rows) ([]Presence, error) {
	defer rows.Close()
	var out []Presence
	for rows.Next() {
		p, err := scanPresence(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

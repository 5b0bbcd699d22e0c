package sqlitebench

import (
	"context"
	"database/sql"
	"fmt"
)

// Schema is a cut-down version of the tables Polder's hot paths touch:
// access tokens looked up on every request, and events read by /sync through
// a (room, stream position) index.
const Schema = `
CREATE TABLE IF NOT EXISTS rooms (
	room_nid INTEGER PRIMARY KEY,
	room_id  TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS events (
	stream_pos INTEGER PRIMARY KEY,
	room_nid   INTEGER NOT NULL REFERENCES rooms (room_nid),
	event_id   TEXT NOT NULL UNIQUE,
	sender     TEXT NOT NULL,
	type       TEXT NOT NULL,
	content    BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_room_pos ON events (room_nid, stream_pos);
CREATE TABLE IF NOT EXISTS access_tokens (
	token      TEXT PRIMARY KEY,
	user_id    TEXT NOT NULL,
	device_id  TEXT NOT NULL,
	created_ts INTEGER NOT NULL
);
`

// Queries in the SQL subset SQLite ≥ 3.35 and PostgreSQL both accept.
const (
	InsertRoom = `INSERT INTO rooms (room_nid, room_id) VALUES ($1, $2)
		ON CONFLICT (room_id) DO UPDATE SET room_id = excluded.room_id RETURNING room_nid`
	InsertEvent = `INSERT INTO events (room_nid, event_id, sender, type, content)
		VALUES ($1, $2, $3, $4, $5) RETURNING stream_pos`
	InsertToken = `INSERT INTO access_tokens (token, user_id, device_id, created_ts)
		VALUES ($1, $2, $3, $4)`
	SelectToken = `SELECT user_id, device_id, created_ts FROM access_tokens WHERE token = $1`
	RangeEvents = `SELECT stream_pos, event_id, sender, type, content FROM events
		WHERE room_nid = $1 AND stream_pos > $2 ORDER BY stream_pos LIMIT 50`
)

// Content is a typical m.room.message event body, about 400 bytes.
var Content = []byte(`{"auth_events":["$Nn1zuVqRl8aZdNEvQiS6m7iJrDnJ4tMGfQmWm0Q7T9M"],"content":{"body":"Hello, this is a message of ordinary length sent to a room","msgtype":"m.text"},"depth":1234,"hashes":{"sha256":"1qVdGyWZ6Z4Y8pEo2d0n6VmPqQk7kQ1j2Xw0b8ZtC5g"},"origin_server_ts":1795000000000,"prev_events":["$kq3k7Z9yJ1oQ8v2mN4bX5cW6eR7tY8uI9oP0aS1dF2g"],"room_id":"!room:example.org","sender":"@alice:example.org","type":"m.room.message"}`)

// Migrate creates the schema through the writer pool.
func Migrate(ctx context.Context, w *sql.DB) error {
	if _, err := w.ExecContext(ctx, Schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return nil
}

// Smoke opens path with d, creates the schema, writes one event and reads it
// back through the reader pool. It returns SQLite's version and the journal
// mode a reader connection sees.
func Smoke(ctx context.Context, d Driver, path string) (version, journal string, err error) {
	p, err := Open(ctx, d, path, "NORMAL", 2)
	if err != nil {
		return "", "", err
	}
	defer p.Close()
	if err := Migrate(ctx, p.W); err != nil {
		return "", "", err
	}
	var nid int64
	if err := p.W.QueryRowContext(ctx, InsertRoom, 1, "!smoke:example.org").Scan(&nid); err != nil {
		return "", "", fmt.Errorf("insert room: %w", err)
	}
	var pos int64
	if err := p.W.QueryRowContext(ctx, InsertEvent, nid, "$smoke", "@a:example.org", "m.room.message", Content).Scan(&pos); err != nil {
		return "", "", fmt.Errorf("insert event: %w", err)
	}
	var n int
	if err := p.R.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE room_nid = $1`, nid).Scan(&n); err != nil || n < 1 {
		return "", "", fmt.Errorf("count events: n=%d err=%v", n, err)
	}
	if err := p.R.QueryRowContext(ctx, `SELECT sqlite_version()`).Scan(&version); err != nil {
		return "", "", err
	}
	if err := p.R.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&journal); err != nil {
		return "", "", err
	}
	return version, journal, nil
}

package store

import (
	"context"
	"fmt"
)

// On SQLite, events reach the search index in batches (migration 0022):
// FTS5 writes a new segment for every transaction that adds rows, which
// cost a message send about four pages and a fifth of its CPU when each
// message was indexed in its own transaction. PersistEvent counts the
// events it writes (db.unindexed); every searchBatch-th is followed, in
// its transaction, by indexSearch, which indexes every row above the
// search_indexed mark and moves the mark. A search first indexes any row
// above the mark (DB.indexPending), so it finds every event whose send
// has returned, whichever path wrote it. PostgreSQL indexes each event in its own transaction (trigger
// of migration 0004): nothing here runs there.
const searchBatch = 256

// searchText is the searchable text of an events row e of type e.type
// with j its JSON as text: the same as the triggers of migration 0004.
const searchText = `CASE type
	WHEN 'm.room.message' THEN
		CASE WHEN json_type(j, '$.content.body') = 'text' THEN j ->> '$.content.body' END
	WHEN 'm.room.name' THEN
		CASE WHEN json_type(j, '$.content.name') = 'text' THEN j ->> '$.content.name' END
	ELSE COALESCE(
		CASE WHEN json_type(j, '$.content.topic') = 'text' THEN j ->> '$.content.topic' END,
		(SELECT value ->> '$.body' FROM json_each(j, '$.content."m.topic"."m.text"')
			WHERE json_type(value, '$.body') = 'text'
			AND COALESCE(value ->> '$.mimetype', 'text/plain') = 'text/plain' ORDER BY key LIMIT 1))
	END`

// noteUnindexed counts an event written in tx and, every searchBatch
// events, indexes the pending ones in tx. SQLite only.
func (tx *Tx) noteUnindexed(ctx context.Context) error {
	if tx.dialect != SQLite {
		return nil
	}
	if tx.db.unindexed.Add(1) < searchBatch {
		return nil
	}
	return tx.indexSearch(ctx)
}

// indexSearch adds the events above the search_indexed mark to the search
// index and moves the mark to the last event. Once tx commits, the count
// of pending events drops by what it saw (see Tx.committed).
func (tx *Tx) indexSearch(ctx context.Context) error {
	seen := tx.db.unindexed.Load()
	if _, err := tx.ExecContext(ctx, `INSERT INTO event_search (rowid, body)
		SELECT event_nid, t FROM (SELECT event_nid, `+searchText+` AS t
			FROM (SELECT event_nid, type, CAST(json AS TEXT) AS j FROM events
				WHERE event_nid > (SELECT event_nid FROM search_indexed WHERE id = 1)
				AND type IN ('m.room.message', 'm.room.name', 'm.room.topic')
				AND stream_pos IS NOT NULL AND NOT rejected AND NOT soft_failed))
		WHERE t IS NOT NULL AND t <> ''`); err != nil {
		return fmt.Errorf("index events for search: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE search_indexed SET event_nid = (SELECT COALESCE(MAX(event_nid), 0) FROM events) WHERE id = 1`); err != nil {
		return fmt.Errorf("index events for search: %w", err)
	}
	tx.indexed += seen
	return nil
}

// indexPending indexes for search the events persisted since the last
// batch, so that a search that follows finds them. It looks for rows
// above the mark rather than trusting db.unindexed, so that events written
// by other paths (backfill) are found too.
func (db *DB) indexPending(ctx context.Context) error {
	if db.dialect != SQLite {
		return nil
	}
	var pending bool
	err := db.read(ctx, "search_pending", func(q querier) error {
		return q.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM events
			WHERE event_nid > (SELECT event_nid FROM search_indexed WHERE id = 1))`).Scan(&pending)
	})
	if err != nil || !pending {
		return err
	}
	return db.WithTx(ctx, "index_search", func(tx *Tx) error { return tx.indexSearch(ctx) })
}

-- Messages are added to the search index (event_search, migration 0004)
-- in batches instead of one by one by a trigger in the send's transaction
-- (SQLite only; on PostgreSQL the trigger stays, see
-- migrations/postgres/0022_search_deferred.sql). FTS5 writes a new segment
-- for every transaction (and savepoint) that adds rows: about 4 of the 19
-- pages a message's transaction wrote, and a fifth of its CPU.
--
-- search_indexed.event_nid is the row up to which the index is complete.
-- Rows above it (event_nid only grows: events are never deleted) are
-- indexed by store.indexSearch, in the transaction of every 256th event
-- and before every search, so that a search finds every event sent before
-- it. The update trigger re-indexes only indexed rows: a row above the
-- mark is indexed with its content at the time it is reached.
CREATE TABLE search_indexed (
    id        INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    event_nid BIGINT NOT NULL
);
INSERT INTO search_indexed (id, event_nid) VALUES (1, COALESCE((SELECT MAX(event_nid) FROM events), 0));

DROP TRIGGER event_search_insert;
DROP TRIGGER event_search_update;

CREATE TRIGGER event_search_update AFTER UPDATE OF json, stream_pos, rejected, soft_failed ON events
WHEN NEW.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
    AND NEW.event_nid <= (SELECT event_nid FROM search_indexed WHERE id = 1)
BEGIN
    DELETE FROM event_search WHERE rowid = OLD.event_nid;
    INSERT INTO event_search (rowid, body)
    SELECT NEW.event_nid, t FROM (
        SELECT CASE NEW.type
            WHEN 'm.room.message' THEN
                CASE WHEN json_type(j, '$.content.body') = 'text' THEN j ->> '$.content.body' END
            WHEN 'm.room.name' THEN
                CASE WHEN json_type(j, '$.content.name') = 'text' THEN j ->> '$.content.name' END
            ELSE COALESCE(
                CASE WHEN json_type(j, '$.content.topic') = 'text' THEN j ->> '$.content.topic' END,
                (SELECT value ->> '$.body' FROM json_each(j, '$.content."m.topic"."m.text"')
                    WHERE json_type(value, '$.body') = 'text'
                    AND COALESCE(value ->> '$.mimetype', 'text/plain') = 'text/plain' ORDER BY key LIMIT 1))
            END AS t
        FROM (SELECT CAST(NEW.json AS TEXT) AS j))
    WHERE t IS NOT NULL AND t <> ''
        AND NEW.stream_pos IS NOT NULL AND NOT NEW.rejected AND NOT NEW.soft_failed;
END;

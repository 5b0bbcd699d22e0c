-- Notification rows are written first to a small staging table and moved
-- to event_push_actions in batches (store.Tx.AddPushActions; PostgreSQL
-- twin: migrations/postgres/0027_push_staging.sql).
--
-- event_push_actions is keyed by user, so the rows of one message land on
-- one page per member in each of its two B-trees: a message into a room
-- of 1,000 members wrote about 2,800 pages (11 MB) to the WAL and took
-- 67 ms of the one writer (BenchmarkAddPushActions). Here a message's rows
-- are together in the table (keyed by stream_pos), and the user index
-- stays small, so that it spans few pages; a batch move touches each
-- member's page of event_push_actions once for many messages.
--
-- Readers see both tables through push_rows.
CREATE TABLE event_push_staging (
    stream_pos BIGINT NOT NULL,
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    thread_id  TEXT NOT NULL,
    code       INTEGER NOT NULL,
    actions    BLOB,
    ts         BIGINT NOT NULL,
    PRIMARY KEY (stream_pos, user_id)
) WITHOUT ROWID;
CREATE INDEX event_push_staging_user ON event_push_staging (user_id, room_id, stream_pos);

CREATE VIEW push_rows AS
    SELECT user_id, room_id, stream_pos, thread_id, code, actions, ts FROM event_push_actions
    UNION ALL
    SELECT user_id, room_id, stream_pos, thread_id, code, actions, ts FROM event_push_staging;

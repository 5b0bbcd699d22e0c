-- Notification rows, narrowed so that the room service can write them in
-- each event's own transaction (PostgreSQL twin of
-- migrations/sqlite/0023_push_rows.sql, which explains the columns; it is
-- the same but for WITHOUT ROWID, which PostgreSQL does not have).
CREATE TABLE event_push_actions_new (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    thread_id  TEXT NOT NULL,
    code       INTEGER NOT NULL,
    actions    BYTEA,              -- JSON array, only for shape 0
    ts         BIGINT NOT NULL,    -- ms, when the notification was made
    PRIMARY KEY (user_id, room_id, stream_pos)
);
INSERT INTO event_push_actions_new (user_id, room_id, stream_pos, thread_id, code, actions, ts)
    SELECT user_id, room_id, stream_pos, thread_id,
        (CASE WHEN notify THEN 1 ELSE 0 END) + (CASE WHEN highlight THEN 2 ELSE 0 END), actions, ts
    FROM event_push_actions;
DROP TABLE event_push_actions;
ALTER TABLE event_push_actions_new RENAME TO event_push_actions;
ALTER INDEX event_push_actions_new_pkey RENAME TO event_push_actions_pkey;
CREATE INDEX event_push_actions_user ON event_push_actions (user_id, stream_pos);

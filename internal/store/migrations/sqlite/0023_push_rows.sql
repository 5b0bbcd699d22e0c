-- Notification rows, narrowed so that the room service can write them in
-- each event's own transaction (internal/store/push.go, docs/push.md;
-- migrations/postgres/0023_push_rows.sql is the PostgreSQL twin and must
-- stay equivalent).
--
-- code packs what a row says: bit 0 notify, bit 1 highlight, and from bit
-- 2 up the number of the matching rule's actions among the common shapes
-- of store.pushShapes (["notify"], the default sound, highlights …). Only
-- rows whose actions are none of those (shape 0: rules a user wrote, or
-- rows from before this migration) keep their JSON in actions. The event
-- ID is read from events by stream_pos.
--
-- WITHOUT ROWID: the primary key is the table, so an insert touches two
-- B-trees (it and event_push_actions_user), not three.
--
-- Readers: counts per room and thread in /sync (user_id, room_id,
-- stream_pos range: the primary key); the badge count and GET
-- /notifications, newest first across rooms (event_push_actions_user).
CREATE TABLE event_push_actions_new (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    thread_id  TEXT NOT NULL,
    code       INTEGER NOT NULL,
    actions    BLOB,               -- JSON array, only for shape 0
    ts         BIGINT NOT NULL,    -- ms, when the notification was made
    PRIMARY KEY (user_id, room_id, stream_pos)
) WITHOUT ROWID;
INSERT INTO event_push_actions_new (user_id, room_id, stream_pos, thread_id, code, actions, ts)
    SELECT user_id, room_id, stream_pos, thread_id,
        (CASE WHEN notify THEN 1 ELSE 0 END) + (CASE WHEN highlight THEN 2 ELSE 0 END), actions, ts
    FROM event_push_actions;
DROP TABLE event_push_actions;
ALTER TABLE event_push_actions_new RENAME TO event_push_actions;
CREATE INDEX event_push_actions_user ON event_push_actions (user_id, stream_pos);

-- PostgreSQL twin of migrations/sqlite/0027_push_staging.sql, which
-- explains it. PostgreSQL writes notification rows to event_push_actions
-- directly (its WAL logs rows, not pages, so a user-keyed insert costs
-- little more than any other); the staging table stays empty and exists so
-- that push_rows reads the same on both engines.
CREATE TABLE event_push_staging (
    stream_pos BIGINT NOT NULL,
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    thread_id  TEXT NOT NULL,
    code       INTEGER NOT NULL,
    actions    BYTEA,
    ts         BIGINT NOT NULL,
    PRIMARY KEY (stream_pos, user_id)
);
CREATE INDEX event_push_staging_user ON event_push_staging (user_id, room_id, stream_pos);

CREATE VIEW push_rows AS
    SELECT user_id, room_id, stream_pos, thread_id, code, actions, ts FROM event_push_actions
    UNION ALL
    SELECT user_id, room_id, stream_pos, thread_id, code, actions, ts FROM event_push_staging;

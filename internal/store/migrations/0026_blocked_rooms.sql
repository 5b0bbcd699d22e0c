-- Rooms a server admin blocked (Synapse admin API: DELETE
-- /_synapse/admin/v2/rooms/{roomId} with "block": true, and PUT
-- /_synapse/admin/v1/rooms/{roomId}/block): local users may not join them.
-- Named by room ID: a room may be blocked that this server does not know.
CREATE TABLE blocked_rooms (
    room_id    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,           -- the admin who blocked it
    created_ts BIGINT NOT NULL
);

-- Room deletions (DELETE /_synapse/admin/v2/rooms/{roomId}) and their
-- outcome, for the delete_status endpoints; kept for a day. In the
-- database rather than in memory so that every process sharing it answers.
CREATE TABLE room_deletions (
    delete_id  TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    status     TEXT NOT NULL,           -- complete, failed
    error      TEXT,
    result     BLOB NOT NULL,           -- JSON: the shutdown_room object
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_deletions_room ON room_deletions (room_id, created_ts);

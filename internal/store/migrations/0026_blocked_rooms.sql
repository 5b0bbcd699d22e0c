-- Rooms a server admin blocked (Synapse admin API: DELETE
-- /_synapse/admin/v2/rooms/{roomId} with "block": true, and PUT
-- /_synapse/admin/v1/rooms/{roomId}/block): local users may not join them.
-- Named by room ID: a room may be blocked that this server does not know.
CREATE TABLE blocked_rooms (
    room_id    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,           -- the admin who blocked it
    created_ts BIGINT NOT NULL
);

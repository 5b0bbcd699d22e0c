-- Simplified sliding sync (MSC4186; internal/sync/sliding*.go and
-- store/sliding.go).

-- Bump stamps: a room's newest event of each bump type (m.room.message,
-- m.room.encrypted, ...) is one seek at the end of this index's
-- (room, type) range, so that sorting a user's rooms by recency costs a few
-- seeks per room and never reads a timeline.
CREATE INDEX events_room_type_stream ON events (room_nid, type, stream_pos);

-- A connection: one sliding sync loop of a device (user_id, device_id,
-- conn_id). used_ts expires connections unused for long; next_pos numbers
-- its responses.
CREATE TABLE sliding_conns (
    conn_nid   INTEGER PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    conn_id    TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    used_ts    BIGINT NOT NULL,
    next_pos   BIGINT NOT NULL,
    UNIQUE (user_id, device_id, conn_id)
);

-- The positions (pos tokens) a connection handed out and that the client
-- may still send: the stream and typing positions the response was read
-- up to, and the room subscriptions in force (a JSON object, sticky as in
-- MSC3575). A request with pos P deletes the positions before and after P.
CREATE TABLE sliding_positions (
    conn_nid      BIGINT NOT NULL REFERENCES sliding_conns (conn_nid) ON DELETE CASCADE,
    pos           BIGINT NOT NULL,
    stream_pos    BIGINT NOT NULL,
    typing_pos    BIGINT NOT NULL,
    subscriptions BLOB NOT NULL,
    PRIMARY KEY (conn_nid, pos)
);

-- What a connection sent of each room: the response at pos sent the room
-- up to stream position sent_to, with that timeline limit and required
-- state (a canonical key of the config). The state of a room at position
-- P is its row with the greatest pos <= P; rows only one response old
-- are kept so that a retried request finds the state it started from.
CREATE TABLE sliding_rooms (
    conn_nid       BIGINT NOT NULL REFERENCES sliding_conns (conn_nid) ON DELETE CASCADE,
    room_id        TEXT NOT NULL,
    pos            BIGINT NOT NULL,
    sent_to        BIGINT NOT NULL,
    timeline_limit INTEGER NOT NULL,
    required_state TEXT NOT NULL,
    PRIMARY KEY (conn_nid, room_id, pos)
);

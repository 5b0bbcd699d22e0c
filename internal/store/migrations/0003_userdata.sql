-- Per-user data: account data (global and per room, tags included),
-- filters, read receipts and presence. Typing notifications are never
-- persisted.
--
-- Rooms are named by their room ID rather than room_nid: account data and
-- receipts may name rooms this server does not (yet) know, and these
-- tables are read by (user, stream position), not joined to events.

-- Account data of local users (client-server API "Client Config"). A row
-- per (user, room, type); room_id '' is global account data. stream_pos is
-- the position of the latest change: sync reads a user's changes since its
-- token through account_data_user_stream.
CREATE TABLE account_data (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,           -- '' for global account data
    type       TEXT NOT NULL,
    content    BLOB NOT NULL,           -- a JSON object
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_user_stream ON account_data (user_id, stream_pos);

-- Filters uploaded with POST /user/{userId}/filter. filter_id counts up per
-- user; an identical filter uploaded again gets its existing ID back.
CREATE TABLE filters (
    user_id   TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter    BLOB NOT NULL,            -- canonical JSON
    PRIMARY KEY (user_id, filter_id)
);

-- The latest receipt of each (room, user, receipt type, thread): receipts
-- are "up to" markers (client-server API "Receipts"), so only the latest
-- matters. thread_id '' is an unthreaded receipt. event_pos is the stream
-- position of the receipted event, so that a receipt never moves back.
CREATE TABLE receipts (
    room_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,         -- m.read, m.read.private
    thread_id    TEXT NOT NULL,         -- '' unthreaded, 'main' or a thread root
    event_id     TEXT NOT NULL,
    event_pos    BIGINT NOT NULL,
    ts           BIGINT NOT NULL,       -- ms, when the receipt was sent
    stream_pos   BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_room_stream ON receipts (room_id, stream_pos);

-- Presence of local users (client-server API "Presence").
CREATE TABLE presence (
    user_id        TEXT PRIMARY KEY,
    state          TEXT NOT NULL,       -- online, unavailable, offline
    status_msg     TEXT,
    last_active_ts BIGINT NOT NULL,     -- ms; 0 if never active
    -- when a /sync last said the user is there (written at most once a
    -- minute while it keeps syncing)
    last_sync_ts   BIGINT NOT NULL,
    stream_pos     BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_pos);
CREATE INDEX presence_state ON presence (state, last_active_ts);

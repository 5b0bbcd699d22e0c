-- Rooms, events, state snapshots, memberships and the stream counter.
--
-- Numeric IDs (room_nid, event_nid, snapshot_nid) never leave the store.
-- Events are kept as canonical JSON in the federation format of their room
-- version, without unsigned; what the server adds to unsigned when the event
-- is persisted (prev_content, replaces_state) is kept beside it.

-- One counter for every persisted stream (events, account data, receipts,
-- presence, to-device, device lists). Taking the next position updates this
-- single row, which holds a row lock until commit: positions commit in
-- order, so a reader that sees position N has seen everything below it.
CREATE TABLE stream_counter (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    pos BIGINT NOT NULL
);
INSERT INTO stream_counter (id, pos) VALUES (1, 0);

CREATE TABLE rooms (
    room_nid         INTEGER PRIMARY KEY,
    room_id          TEXT NOT NULL UNIQUE,
    version          TEXT NOT NULL,
    created_ts       BIGINT NOT NULL,
    -- the greatest depth of the room's events
    max_depth        BIGINT NOT NULL DEFAULT 0,
    -- public room directory: 'public' or 'private'
    visibility       TEXT NOT NULL DEFAULT 'private'
);

CREATE TABLE events (
    event_nid    INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL UNIQUE,
    room_nid     BIGINT NOT NULL REFERENCES rooms (room_nid),
    type         TEXT NOT NULL,
    state_key    TEXT,                  -- NULL: a message event
    sender       TEXT NOT NULL,
    depth        BIGINT NOT NULL,
    origin_ts    BIGINT NOT NULL,
    -- position in the stream; NULL for outliers (events known but not in
    -- the timeline, such as auth events fetched over federation)
    stream_pos   BIGINT UNIQUE,
    json         BLOB NOT NULL,         -- redacted in place once redacted
    unsigned     BLOB,                  -- server-added unsigned members
    -- snapshot of the state after the event (for a rejected event, the
    -- state before it); NULL for outliers
    state_snapshot BIGINT,
    -- for a state event, the event it replaced in the state ('' if none):
    -- the state before the event is state_snapshot with this swapped back
    replaces     TEXT,
    rejected     BOOLEAN NOT NULL DEFAULT FALSE,
    soft_failed  BOOLEAN NOT NULL DEFAULT FALSE,
    redacted_by  TEXT,                  -- the redaction event that applied
    -- m.relates_to of the content (relations, threads, edits, reactions)
    relates_to   TEXT,
    rel_type     TEXT,
    rel_key      TEXT                   -- m.annotation key
);
CREATE INDEX events_room_stream ON events (room_nid, stream_pos);
CREATE INDEX events_room_topo ON events (room_nid, depth, stream_pos);
CREATE INDEX events_relates ON events (relates_to, rel_type);
CREATE INDEX events_room_ts ON events (room_nid, origin_ts);

-- The room's forward extremities: events without successors.
CREATE TABLE room_extremities (
    room_nid  BIGINT NOT NULL REFERENCES rooms (room_nid),
    event_nid BIGINT NOT NULL REFERENCES events (event_nid),
    PRIMARY KEY (room_nid, event_nid)
);

-- State snapshots are deltas against a parent, with bounded chains
-- (DESIGN-NOTES "Never store the full state per event"). A snapshot without
-- parent lists the full state. In a delta, a NULL event_nid removes the key.
CREATE TABLE state_snapshots (
    snapshot_nid INTEGER PRIMARY KEY,
    room_nid     BIGINT NOT NULL REFERENCES rooms (room_nid),
    parent       BIGINT REFERENCES state_snapshots (snapshot_nid),
    chain_len    INTEGER NOT NULL      -- 0 for a full snapshot
);
CREATE TABLE state_entries (
    snapshot_nid BIGINT NOT NULL REFERENCES state_snapshots (snapshot_nid),
    type         TEXT NOT NULL,
    state_key    TEXT NOT NULL,
    event_nid    BIGINT,
    PRIMARY KEY (snapshot_nid, type, state_key)
);

-- The current state of each room, materialised for reads.
CREATE TABLE current_state (
    room_nid  BIGINT NOT NULL REFERENCES rooms (room_nid),
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_nid BIGINT NOT NULL REFERENCES events (event_nid),
    PRIMARY KEY (room_nid, type, state_key)
);

-- Every user's current membership of every room it has one in, with the
-- stream position of the member event: sync reads a user's rooms and their
-- changes since a token from here.
CREATE TABLE memberships (
    room_nid   BIGINT NOT NULL REFERENCES rooms (room_nid),
    user_id    TEXT NOT NULL,
    membership TEXT NOT NULL,           -- join, invite, leave, ban, knock
    event_nid  BIGINT NOT NULL REFERENCES events (event_nid),
    stream_pos BIGINT NOT NULL,
    sender     TEXT NOT NULL,
    forgotten  BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (room_nid, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id, membership);
CREATE INDEX memberships_user_stream ON memberships (user_id, stream_pos);

-- Transaction IDs of client sends, per device (client-server API,
-- "Transaction identifiers").
CREATE TABLE txn_ids (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX txn_ids_event ON txn_ids (event_id);

-- Room aliases of this server (client-server API, "Room aliases").
CREATE TABLE room_aliases (
    alias      TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    creator    TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

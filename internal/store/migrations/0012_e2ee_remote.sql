-- The device lists of users of other servers (server-server API, "Device
-- Management" and "End-to-End Encryption"; internal/e2ee/remote.go): the
-- cache that answers /keys/query for them, kept up to date by the
-- m.device_list_update and m.signing_key_update EDUs their servers send,
-- and resynchronised with GET /user/devices when an update was missed.
-- Only users who share a room with a user of this server are kept.

-- One row per remote user known here. The list is trusted ("tracked")
-- when has_list and not stale.
CREATE TABLE e2ee_remote_users (
    user_id          TEXT PRIMARY KEY,
    server_name      TEXT NOT NULL,
    -- the highest stream_id applied, from an EDU or a resync
    stream_id        BIGINT NOT NULL DEFAULT 0,
    -- the stream_id of the last resync: EDUs up to it are in the list
    resync_stream_id BIGINT NOT NULL DEFAULT 0,
    -- a resync stored a complete list (e2ee_remote_devices)
    has_list         BOOLEAN NOT NULL DEFAULT FALSE,
    -- this server's stream position when that list was fetched: if the
    -- user has not shared a room with a local user without a break since
    -- (memberships.stream_pos), updates may have been missed
    fetched_pos      BIGINT NOT NULL DEFAULT 0,
    -- an update was missed: the list waits for a resync (kept across
    -- restarts; the resync worker picks these rows)
    stale            BOOLEAN NOT NULL DEFAULT TRUE,
    -- the highest stream_id of the EDUs that came while stale: a resync
    -- whose answer is older leaves the list stale
    pending_stream_id BIGINT NOT NULL DEFAULT 0,
    master_key       BLOB,                      -- signed cross-signing keys (JSON); NULL: none
    self_signing_key BLOB,
    updated_ts       BIGINT NOT NULL            -- ms
);
CREATE INDEX e2ee_remote_users_stale ON e2ee_remote_users (server_name, user_id) WHERE stale;

-- The devices of a remote user's list.
CREATE TABLE e2ee_remote_devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    device_keys  BLOB,                          -- the signed device keys (JSON) as sent; NULL: none
    PRIMARY KEY (user_id, device_id)
);

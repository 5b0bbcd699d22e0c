-- Server-side key backups (client-server API, "Server-side key backups";
-- internal/store/backup.go, internal/e2ee/backup.go). Only local users
-- have backups. The server never reads auth_data or session_data.

-- Each user's version counter and write lock. A new backup version is
-- last_version + 1, so versions are never reused, even after a deletion.
-- Every write to a user's backups locks this row first (PostgreSQL; SQLite
-- has one writer), so that a key upload never lands in a version that a
-- concurrent POST /room_keys/version made old.
CREATE TABLE key_backup_users (
    user_id      TEXT PRIMARY KEY,
    last_version BIGINT NOT NULL
);

-- Every backup version a user created. The current version is the newest
-- one not deleted; only it may be written to. A deleted version keeps its
-- row (deleted, without keys) so that deleting it again succeeds, as the
-- spec asks. etag counts the changes to the version's keys; key_count is
-- the number of keys it holds.
CREATE TABLE key_backup_versions (
    user_id   TEXT NOT NULL,
    version   BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data BLOB NOT NULL,            -- a JSON object, as the client sent it
    etag      BIGINT NOT NULL DEFAULT 0,
    key_count BIGINT NOT NULL DEFAULT 0,
    deleted   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

-- The backed-up key of each (room, megolm session) of a version.
CREATE TABLE key_backup_keys (
    user_id             TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    session_data        BLOB NOT NULL,  -- a JSON object, as the client sent it
    PRIMARY KEY (user_id, version, room_id, session_id),
    FOREIGN KEY (user_id, version) REFERENCES key_backup_versions (user_id, version) ON DELETE CASCADE
);

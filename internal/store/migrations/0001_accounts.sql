-- Accounts, devices, tokens, user-interactive auth and registration tokens.
-- Users are local: the server name is not stored, only the localpart.

CREATE TABLE accounts (
    localpart     TEXT PRIMARY KEY,
    password_hash TEXT,                 -- bcrypt; NULL: no password login
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    is_guest      BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated   BOOLEAN NOT NULL DEFAULT FALSE,
    user_type     TEXT,
    created_ts    BIGINT NOT NULL
);

CREATE TABLE profiles (
    localpart   TEXT PRIMARY KEY REFERENCES accounts (localpart) ON DELETE CASCADE,
    displayname TEXT,
    avatar_url  TEXT
);

CREATE TABLE devices (
    localpart       TEXT NOT NULL REFERENCES accounts (localpart) ON DELETE CASCADE,
    device_id       TEXT NOT NULL,
    display_name    TEXT,
    created_ts      BIGINT NOT NULL,
    last_seen_ts    BIGINT,
    last_seen_ip    TEXT,
    last_seen_agent TEXT,
    PRIMARY KEY (localpart, device_id)
);

-- Tokens are stored as SHA-256 hashes: a copy of the database does not hand
-- out sessions.
CREATE TABLE access_tokens (
    token_hash      BLOB PRIMARY KEY,
    localpart       TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    created_ts      BIGINT NOT NULL,
    expires_ts      BIGINT,             -- NULL: never expires
    refresh_hash    BLOB,               -- the refresh token issued with it
    -- the refresh token this one replaced; revoked on first use (spec: /refresh)
    prev_refresh_hash BLOB,
    FOREIGN KEY (localpart, device_id) REFERENCES devices (localpart, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_device ON access_tokens (localpart, device_id);

CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    localpart  TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    FOREIGN KEY (localpart, device_id) REFERENCES devices (localpart, device_id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (localpart, device_id);

-- Short-lived tokens for m.login.token (POST /login/get_token).
CREATE TABLE login_tokens (
    token_hash BLOB PRIMARY KEY,
    localpart  TEXT NOT NULL REFERENCES accounts (localpart) ON DELETE CASCADE,
    expires_ts BIGINT NOT NULL
);

CREATE TABLE uia_sessions (
    session_id TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL,
    -- what the session authorises: method and path, so it cannot be reused
    -- for another operation
    operation  TEXT NOT NULL,
    localpart  TEXT,                    -- the authenticated user, if any
    completed  TEXT NOT NULL DEFAULT '[]', -- JSON array of completed stage types
    -- the registration token this session consumed a use of, if any
    reg_token  TEXT
);

CREATE TABLE registration_tokens (
    token        TEXT PRIMARY KEY,
    uses_allowed INTEGER,               -- NULL: unlimited
    pending      INTEGER NOT NULL DEFAULT 0,
    completed    INTEGER NOT NULL DEFAULT 0,
    expiry_time  BIGINT                 -- ms; NULL: never
);

-- Nonces for shared-secret registration (/_synapse/admin/v1/register).
CREATE TABLE registration_nonces (
    nonce      TEXT PRIMARY KEY,
    expires_ts BIGINT NOT NULL
);

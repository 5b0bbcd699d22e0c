-- OpenID tokens (client-server API "OpenID", POST
-- /user/{userId}/openid/request_token): a third-party service exchanges
-- one at GET /_matrix/federation/v1/openid/userinfo for the user's ID.
-- They are good for nothing else. Stored as SHA-256 hashes like the other
-- tokens; expired ones are pruned by the user service (expires_ts).
CREATE TABLE openid_tokens (
    token_hash BLOB PRIMARY KEY,
    localpart  TEXT NOT NULL REFERENCES accounts (localpart) ON DELETE CASCADE,
    expires_ts BIGINT NOT NULL           -- ms
);
CREATE INDEX openid_tokens_expires ON openid_tokens (expires_ts);

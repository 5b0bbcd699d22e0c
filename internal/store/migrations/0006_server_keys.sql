-- Other servers' verify keys (server-server API, "Retrieving server keys"),
-- as the key cache (internal/keys) fetched and checked them, so that a
-- restart does not fetch them again. One row per key:
--   valid_until_ts  the valid_until_ts of the response that published a
--                   current key, capped at 7 days after fetched_ts; for an
--                   old key (expired) its expired_ts. Milliseconds.
--   response        that response in canonical JSON with its server's
--                   signatures only: what this server answers as a notary.
CREATE TABLE server_keys (
    server_name    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    public_key     BLOB NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired        BOOLEAN NOT NULL DEFAULT FALSE,
    fetched_ts     BIGINT NOT NULL,
    response       BLOB,
    PRIMARY KEY (server_name, key_id)
);

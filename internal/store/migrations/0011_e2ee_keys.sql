-- End-to-end encryption keys of local users (client-server API, "End-to-End
-- Encryption"; internal/e2ee/keys.go) and the device list change stream
-- (internal/e2ee/devicelists.go). Key objects are kept as the clients
-- uploaded them, in canonical JSON; signatures added later by cross-signing
-- are kept apart (e2ee_signatures) and merged in when the keys are read.

-- The identity keys of a device: its signed device_keys object.
CREATE TABLE e2ee_device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json  BLOB NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Unclaimed one-time keys. A claim deletes the oldest of the device's keys
-- of an algorithm (otk_nid order), so each key is handed out once.
CREATE TABLE e2ee_one_time_keys (
    otk_nid   INTEGER PRIMARY KEY,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  BLOB NOT NULL
);
CREATE UNIQUE INDEX e2ee_one_time_keys_key ON e2ee_one_time_keys (user_id, device_id, algorithm, key_id);
CREATE INDEX e2ee_one_time_keys_claim ON e2ee_one_time_keys (user_id, device_id, algorithm, otk_nid);

-- The fallback key of a device per algorithm: handed out when no one-time
-- key is left, and not deleted then, only marked used.
CREATE TABLE e2ee_fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  BLOB NOT NULL,
    used      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys: key_type is master, self_signing or user_signing;
-- key_id is the unpadded base64 public key (the "ed25519:" key's name).
CREATE TABLE e2ee_cross_signing_keys (
    user_id  TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_id   TEXT NOT NULL,
    key_json BLOB NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload: signer_user's key
-- signer_key ("ed25519:…") signed target_user's device target_key (a
-- device ID) or cross-signing key (its public key).
CREATE TABLE e2ee_signatures (
    target_user TEXT NOT NULL,
    target_key  TEXT NOT NULL,
    signer_user TEXT NOT NULL,
    signer_key  TEXT NOT NULL,
    signature   TEXT NOT NULL,
    PRIMARY KEY (target_user, target_key, signer_user, signer_key)
);

-- The device list stream: the latest stream position at which the devices
-- or cross-signing keys of user_id changed. viewer is '' for a change
-- everyone sharing a room with the user sees, or the one user who sees it
-- (a signature that user made on user_id's master key is private to it).
CREATE TABLE device_list_changes (
    user_id    TEXT NOT NULL,
    viewer     TEXT NOT NULL DEFAULT '',
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, viewer)
);
CREATE INDEX device_list_changes_pos ON device_list_changes (stream_pos);

-- Per local user, the stream_id of the latest m.device_list_update EDU
-- sent about it (server-server API, "Device Management"): the next EDU
-- names it in prev_id, and GET /user/devices answers it as stream_id.
CREATE TABLE e2ee_device_list_outbound (
    user_id   TEXT NOT NULL PRIMARY KEY,
    stream_id BIGINT NOT NULL
);

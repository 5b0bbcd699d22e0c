-- The media repository (internal/store/media.go, internal/media; docs/media.md).
-- Content lives on disk under data_dir/media, one file per SHA-256 (so the
-- same bytes uploaded twice are stored once); these tables hold what
-- points at it.

-- One row per mxc://server_name/media_id: local uploads (user_id is the
-- uploader) and cached remote media (user_id ''). An asynchronous upload
-- (POST /_matrix/media/v1/create) is a row with uploaded_ts 0 until its
-- content comes; expires_ts is when an unused ID is forgotten.
CREATE TABLE media (
    server_name    TEXT NOT NULL,
    media_id       TEXT NOT NULL,
    user_id        TEXT NOT NULL DEFAULT '',
    sha256         TEXT NOT NULL DEFAULT '',  -- hex; '' while pending
    size           BIGINT NOT NULL DEFAULT 0,
    content_type   TEXT NOT NULL DEFAULT '',
    upload_name    TEXT NOT NULL DEFAULT '',
    created_ts     BIGINT NOT NULL,           -- ms
    uploaded_ts    BIGINT NOT NULL DEFAULT 0, -- ms; 0: pending
    expires_ts     BIGINT NOT NULL DEFAULT 0, -- ms; pending IDs only
    last_access_ts BIGINT NOT NULL DEFAULT 0, -- ms; for the remote cache's retention
    quarantined    TEXT NOT NULL DEFAULT '',  -- '' served; else why not (admin, infected: <signature>)
    PRIMARY KEY (server_name, media_id)
);
CREATE INDEX media_user ON media (user_id, uploaded_ts);
CREATE INDEX media_sha256 ON media (sha256);
CREATE INDEX media_access ON media (server_name, last_access_ts);

-- Thumbnails made of a media item, generated once per (size, method,
-- animated) and kept as blobs like media content.
CREATE TABLE media_thumbnails (
    server_name  TEXT NOT NULL,
    media_id     TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    method       TEXT NOT NULL,     -- crop or scale
    animated     INTEGER NOT NULL,  -- 0 or 1
    sha256       TEXT NOT NULL,
    size         BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    PRIMARY KEY (server_name, media_id, width, height, method, animated),
    FOREIGN KEY (server_name, media_id) REFERENCES media (server_name, media_id) ON DELETE CASCADE
);
CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);

-- Antivirus verdicts per content hash: a blob is scanned once, and an
-- infected one is refused at once whoever uploads it again.
CREATE TABLE media_scans (
    sha256     TEXT PRIMARY KEY,
    clean      INTEGER NOT NULL,   -- 1 clean, 0 infected
    signature  TEXT NOT NULL DEFAULT '',
    scanned_ts BIGINT NOT NULL
);

-- Settings the media repository fixes once: legacy_cutover_ts, the time
-- after which media is not served on the unauthenticated endpoints.
CREATE TABLE media_settings (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

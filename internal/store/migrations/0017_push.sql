-- Push notifications (internal/push, internal/store/push.go, docs/push.md).
-- Push rules are not here: a user's rules are its m.push_rules account
-- data (as clients read them from /sync).

-- What a local user's push rules said of an event that notified or
-- highlighted: unread counts in /sync (rows after the user's read
-- position per thread), GET /notifications and push badges come from
-- these rows (Synapse's event_push_actions). thread_id is '' for the main
-- timeline, else the thread root.
CREATE TABLE event_push_actions (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    event_id   TEXT NOT NULL,
    thread_id  TEXT NOT NULL,
    notify     BOOLEAN NOT NULL,
    highlight  BOOLEAN NOT NULL,
    actions    BLOB NOT NULL,        -- the matching rule's actions (JSON array)
    ts         BIGINT NOT NULL,      -- ms, when the notification was made
    PRIMARY KEY (user_id, room_id, stream_pos)
);
CREATE INDEX event_push_actions_user ON event_push_actions (user_id, stream_pos);

-- A pusher (POST /pushers/set): belongs to the device of the access
-- token that set it and goes with it. failures and retry_ts are the
-- delivery backoff, kept across restarts.
CREATE TABLE pushers (
    pusher_nid          INTEGER PRIMARY KEY,
    user_id             TEXT NOT NULL,
    localpart           TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT NOT NULL,
    lang                TEXT NOT NULL,
    data                BLOB NOT NULL,   -- the client's data object (JSON)
    pushkey_ts          BIGINT NOT NULL, -- ms, when the pushkey was last set
    failures            INTEGER NOT NULL DEFAULT 0,
    retry_ts            BIGINT NOT NULL DEFAULT 0,
    UNIQUE (user_id, app_id, pushkey),
    FOREIGN KEY (localpart, device_id) REFERENCES devices (localpart, device_id) ON DELETE CASCADE
);
CREATE INDEX pushers_key ON pushers (app_id, pushkey);

-- Notifications waiting to be sent to a pusher's gateway, in item_nid
-- order: the notification object of the push gateway API without
-- devices (added when sending, from the pusher's current data).
CREATE TABLE push_queue (
    item_nid     INTEGER PRIMARY KEY,
    pusher_nid   BIGINT NOT NULL REFERENCES pushers (pusher_nid) ON DELETE CASCADE,
    notification BLOB NOT NULL
);
CREATE INDEX push_queue_pusher ON push_queue (pusher_nid, item_nid);

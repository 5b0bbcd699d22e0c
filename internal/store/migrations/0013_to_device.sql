-- Send-to-device messages (client-server API, "Send-to-Device
-- messaging"; internal/e2ee/todevice.go and store/todevice.go).

-- Messages waiting for local devices: one row per recipient device. pos
-- is the stream position (store.Tx.NextStreamPos) of the request or EDU
-- that brought the message: one per request, so a device has at most one
-- message at a position and reads them in pos order. A row is deleted when
-- its device acknowledged it (to_device_deliveries), when a dehydrated
-- device's reader deletes it, or with its device.
CREATE TABLE to_device_messages (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    pos       BIGINT NOT NULL,
    sender    TEXT NOT NULL,
    type      TEXT NOT NULL,
    content   BLOB NOT NULL,             -- JSON object, as sent
    PRIMARY KEY (user_id, device_id, pos)
);

-- What /sync responses carried: the response with next_batch at stream
-- position token carried the device's messages up to position up_to. A
-- later sync whose since is at or after token acknowledges them: they are
-- deleted then, not when the response is written, so that a response
-- that never arrived is sent again. Rows of responses not acknowledged
-- (the client retried with an older since) stay until a later token is
-- acknowledged; a device keeps only its newest few.
CREATE TABLE to_device_deliveries (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    token     BIGINT NOT NULL,
    up_to     BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, token)
);

-- Transaction IDs of PUT /sendToDevice, per sending device (client-server
-- API, "Transaction identifiers"), kept for a day.
CREATE TABLE to_device_txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    created_ts BIGINT NOT NULL,          -- ms
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX to_device_txns_ts ON to_device_txns (created_ts);

-- message_id of the m.direct_to_device EDUs received, per origin, kept
-- for a day: an EDU sent again (in a retried or a new transaction) is
-- delivered once.
CREATE TABLE to_device_inbound (
    origin      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    received_ts BIGINT NOT NULL,         -- ms
    PRIMARY KEY (origin, message_id)
);
CREATE INDEX to_device_inbound_ts ON to_device_inbound (received_ts);

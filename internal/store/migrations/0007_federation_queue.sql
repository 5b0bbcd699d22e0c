-- The durable outbound federation queue (internal/federation/queue.go;
-- docs/federation.md "Outbound queue"). Only what must survive a restart
-- is here: PDUs, and the EDUs that may not be lost (receipts, to-device
-- messages, device list updates). Typing and presence EDUs stay in memory.

-- A PDU waiting to be sent, stored once however many servers it goes to.
-- pdu_nid orders the queue. A row is deleted when no destination still
-- waits for it.
CREATE TABLE fed_queue_pdus (
    pdu_nid  INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_id  TEXT NOT NULL,              -- for catch-up: the newest per room
    pdu      BLOB NOT NULL               -- the PDU as sent (federation format)
);

-- Which destination still waits for which PDU. txn is 0 while the PDU is
-- not part of a transaction yet, else the number (fed_destinations.txn_seq)
-- of the transaction in flight that carries it, so that a retry sends the
-- same PDUs under the same transaction ID (the remote deduplicates by ID).
-- A row is deleted when its transaction is acknowledged.
--
-- One index leads with the destination: a PDU for 100 servers touches 100
-- of its pages, and each such index costs as much again (the WAL writes
-- whole pages). A transaction's rows are found without another one: they
-- are the destination's oldest, up to fed_destinations.txn_max_pdu.
CREATE TABLE fed_queue_pdu_dests (
    destination TEXT NOT NULL,
    pdu_nid     BIGINT NOT NULL REFERENCES fed_queue_pdus (pdu_nid),
    txn         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (destination, pdu_nid)
);
CREATE INDEX fed_queue_pdu_dests_pdu ON fed_queue_pdu_dests (pdu_nid);

-- EDUs waiting to be sent, one row per destination, in edu_nid order.
-- coalesce_key, when not NULL, makes an EDU replace the waiting one of the
-- same (destination, type, key): a receipt replaces the same user's older
-- receipt in the room. NULL never coalesces: to-device messages and device
-- list updates are each sent once, in order. txn is as for PDUs.
CREATE TABLE fed_queue_edus (
    edu_nid      INTEGER PRIMARY KEY,
    destination  TEXT NOT NULL,
    edu_type     TEXT NOT NULL,
    coalesce_key TEXT,
    content      BLOB NOT NULL,          -- the EDU's content (JSON)
    txn          BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX fed_queue_edus_dest ON fed_queue_edus (destination, edu_nid);
CREATE UNIQUE INDEX fed_queue_edus_coalesce ON fed_queue_edus (destination, edu_type, coalesce_key);

-- Each destination's sending state: its backoff (kept across restarts, so
-- a dead server is not hammered after each one), the last success, and
-- the transaction in flight. Transaction IDs are txn_epoch (base 36) '.'
-- txn_seq: unique per destination, also across a database reset.
CREATE TABLE fed_destinations (
    destination      TEXT PRIMARY KEY,
    failures         INTEGER NOT NULL DEFAULT 0, -- consecutive failed attempts
    backoff_ms       BIGINT NOT NULL DEFAULT 0,  -- the current backoff, before jitter
    retry_ts         BIGINT NOT NULL DEFAULT 0,  -- ms; no attempt before; 0: not backing off
    failing_since_ts BIGINT NOT NULL DEFAULT 0,  -- ms; first failure since the last success
    last_success_ts  BIGINT NOT NULL DEFAULT 0,  -- ms
    txn_epoch        BIGINT NOT NULL,            -- ms, when the row was created
    txn_seq          BIGINT NOT NULL DEFAULT 0,  -- the last transaction number used
    txn_id           TEXT NOT NULL DEFAULT '',   -- the transaction in flight; '' none
    -- the highest pdu_nid and edu_nid in the transaction in flight: its
    -- rows are found by a range of the destination's, not a scan
    txn_max_pdu      BIGINT NOT NULL DEFAULT 0,
    txn_max_edu      BIGINT NOT NULL DEFAULT 0
);

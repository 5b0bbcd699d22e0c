-- Inbound federation transactions already answered (server-server API,
-- "Transactions"): a sending server retries a transaction with the same
-- txnId until it gets a 200, and must get the same answer without the
-- transaction being processed twice. The answer (the JSON body of the
-- 200) is kept for about a day, then pruned (received_ts).
CREATE TABLE federation_inbound_txns (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    response    BLOB NOT NULL,
    received_ts BIGINT NOT NULL,         -- ms
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX federation_inbound_txns_ts ON federation_inbound_txns (received_ts);

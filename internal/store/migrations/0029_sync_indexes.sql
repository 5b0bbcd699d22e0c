-- What /sync reads on every request, from indexes alone.
--
-- txn_ids_event covers the columns sync reads for the viewer's own events
-- (store.finishEvents: user_id, device_id, txn_id by event_id), so that
-- each own event costs an index step rather than an index step and a
-- table row. It replaces the one-column index: one index row per send
-- either way.
DROP INDEX txn_ids_event;
CREATE INDEX txn_ids_event ON txn_ids (event_id, user_id, device_id, txn_id);

-- receipts_stream answers "did any receipt change in (since, to]" with one
-- index step (store.SyncMoved): an incremental sync then skips the
-- receipts of the user's rooms, one index range per room, when none did.
CREATE INDEX receipts_stream ON receipts (stream_pos);

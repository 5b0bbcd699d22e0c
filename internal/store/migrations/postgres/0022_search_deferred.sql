-- PostgreSQL keeps indexing each event for search in its own transaction
-- (the trigger of migration 0004): its GIN index (fastupdate off) costs no
-- new segment per transaction. migrations/sqlite/0022_search_deferred.sql
-- defers it on SQLite. Nothing to do here.
SELECT 1;

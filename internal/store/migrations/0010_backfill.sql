-- Events fetched with /backfill (history before this server joined a
-- room) get stream positions counting down from 0: they sort by depth in
-- /messages like any event, and sync, which reads positions after a
-- token, never returns them as news.
CREATE TABLE backfill_counter (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    pos BIGINT NOT NULL
);
INSERT INTO backfill_counter (id, pos) VALUES (1, 0);

-- Content reports (client-server API, "Reporting content"): of an event
-- (event_id set) or of a whole room (event_id NULL). Rooms are named by
-- room ID: a room may be reported that this server does not take part in
-- any more. The reported event's sender is kept beside it, for the admin
-- API, so that the report outlives the event's redaction.
CREATE TABLE reports (
    report_id    INTEGER PRIMARY KEY,
    received_ts  BIGINT NOT NULL,
    room_id      TEXT NOT NULL,
    event_id     TEXT,                  -- NULL: a room report
    event_sender TEXT,                  -- the reported event's sender
    user_id      TEXT NOT NULL,         -- who reported
    reason       TEXT,
    score        BIGINT                 -- -100 (most offensive) to 0, if given
);
CREATE INDEX reports_room ON reports (room_id, report_id);
CREATE INDEX reports_user ON reports (user_id, report_id);

-- GET /threads lists a room's threads by their latest event: an index on
-- the relation type per room finds the thread events without reading the
-- whole room.
CREATE INDEX events_room_rel ON events (room_nid, rel_type, stream_pos);

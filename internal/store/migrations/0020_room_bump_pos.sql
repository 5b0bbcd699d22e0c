-- Each room's bump position (MSC4186 "bump_stamp"): the stream position of
-- its newest accepted event of a bump type (store.SlidingBumpTypes), kept
-- by PersistEvent, so that sorting a user's rooms by recency reads one
-- column per room instead of seeking the events of each.
ALTER TABLE rooms ADD COLUMN bump_pos BIGINT NOT NULL DEFAULT 0;
UPDATE rooms SET bump_pos = COALESCE((SELECT MAX(e.stream_pos) FROM events e
    WHERE e.room_nid = rooms.room_nid AND e.stream_pos > 0 AND NOT e.rejected AND NOT e.soft_failed
    AND e.type IN ('m.room.create', 'm.room.message', 'm.room.encrypted', 'm.sticker', 'm.call.invite', 'm.poll.start', 'm.beacon_info')), 0);

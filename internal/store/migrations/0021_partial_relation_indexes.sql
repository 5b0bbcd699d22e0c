-- The relation indexes hold only the events that relate to another: most
-- events (plain messages) have no relation, and every row of an index is a
-- page written by the transaction that inserts the event (one per index on
-- each message sent). Every query that uses them names a relation
-- (relates_to = / IN, rel_type = / IN), which both engines read as
-- "IS NOT NULL", so the partial indexes serve them as before.
DROP INDEX events_relates;
CREATE INDEX events_relates ON events (relates_to, rel_type) WHERE relates_to IS NOT NULL;
DROP INDEX events_room_rel;
CREATE INDEX events_room_rel ON events (room_nid, rel_type, stream_pos) WHERE rel_type IS NOT NULL;

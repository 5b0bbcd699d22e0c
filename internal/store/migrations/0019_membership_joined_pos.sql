-- The stream position at which each joined member last became joined
-- (a join after any other membership; a join that only changes a profile
-- keeps it): the federation fan-out sends an event only to the servers
-- that were in the room when it was sent, not to one that joined between
-- the send and the fan-out (which must not see the room's history unless
-- it asks for it, and would build on an event older than its join).
ALTER TABLE memberships ADD COLUMN joined_pos BIGINT;
UPDATE memberships SET joined_pos = stream_pos WHERE membership = 'join';

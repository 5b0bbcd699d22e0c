-- Sliding sync (store/sliding.go).

-- What a connection sent, by position. Taking a pos deletes the rows
-- written after it and the rows that those written at it supersede; this
-- index finds them without reading every room the connection ever sent,
-- so that the cost of a request does not grow with the rooms a long-lived
-- connection has scrolled through.
CREATE INDEX sliding_rooms_pos ON sliding_rooms (conn_nid, pos);

-- A list's count (and the rows its range is sorted from) read from the
-- index alone: one entry per room of the user, no table row. Membership
-- rows change only with member events.
CREATE INDEX memberships_user_list ON memberships (user_id, forgotten, membership, sender, stream_pos, room_nid);

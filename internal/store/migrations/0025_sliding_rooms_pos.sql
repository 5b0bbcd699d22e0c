-- Sliding sync (store/sliding.go): what a connection sent, by position.
-- Taking a pos deletes the rows written after it and the rows that those
-- written at it supersede; this index finds them without reading every
-- room the connection ever sent, so that the cost of a request does not
-- grow with the rooms a long-lived connection has scrolled through.
CREATE INDEX sliding_rooms_pos ON sliding_rooms (conn_nid, pos);

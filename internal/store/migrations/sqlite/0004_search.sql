-- Full-text search of events, room statistics for the directories, and
-- extended profile fields (SQLite; migrations/postgres/0004_search.sql is
-- the PostgreSQL twin and must stay equivalent).
--
-- The search index and room_stats are kept in step with events,
-- current_state and memberships by triggers, so that no Go code path that
-- persists or redacts an event has to remember them.

-- Full-text index of the searchable text of events (client-server API,
-- "Server Side Search"): content.body of m.room.message, content.name of
-- m.room.name, content.topic of m.room.topic (or, when topic is not a string,
-- the first text/plain body of content["m.topic"]["m.text"]). The rowid is
-- the event_nid. Contentless: the text is already in events.json, the index
-- keeps only the tokens; contentless_delete lets a redaction remove a row.
-- unicode61 folds case and diacritics. No stemming, in any language: the
-- queries match words by prefix instead, as on PostgreSQL ('simple').
CREATE VIRTUAL TABLE event_search USING fts5(
    body,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);

-- Only timeline events (not outliers), neither rejected nor soft-failed,
-- with a non-empty string to index. json is a BLOB: cast it to TEXT, or
-- SQLite would read it as JSONB.
CREATE TRIGGER event_search_insert AFTER INSERT ON events
WHEN NEW.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
    AND NEW.stream_pos IS NOT NULL AND NOT NEW.rejected AND NOT NEW.soft_failed
BEGIN
    INSERT INTO event_search (rowid, body)
    SELECT NEW.event_nid, t FROM (
        SELECT CASE NEW.type
            WHEN 'm.room.message' THEN
                CASE WHEN json_type(j, '$.content.body') = 'text' THEN j ->> '$.content.body' END
            WHEN 'm.room.name' THEN
                CASE WHEN json_type(j, '$.content.name') = 'text' THEN j ->> '$.content.name' END
            ELSE COALESCE(
                CASE WHEN json_type(j, '$.content.topic') = 'text' THEN j ->> '$.content.topic' END,
                (SELECT value ->> '$.body' FROM json_each(j, '$.content."m.topic"."m.text"')
                    WHERE json_type(value, '$.body') = 'text'
                    AND COALESCE(value ->> '$.mimetype', 'text/plain') = 'text/plain' ORDER BY key LIMIT 1))
            END AS t
        FROM (SELECT CAST(NEW.json AS TEXT) AS j))
    WHERE t IS NOT NULL AND t <> '';
END;

-- A redaction rewrites json; a later change of the flags or the stream
-- position (an outlier entering the timeline, a soft failure) may add or
-- remove the event. Re-index from scratch.
CREATE TRIGGER event_search_update AFTER UPDATE OF json, stream_pos, rejected, soft_failed ON events
WHEN NEW.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
BEGIN
    DELETE FROM event_search WHERE rowid = OLD.event_nid;
    INSERT INTO event_search (rowid, body)
    SELECT NEW.event_nid, t FROM (
        SELECT CASE NEW.type
            WHEN 'm.room.message' THEN
                CASE WHEN json_type(j, '$.content.body') = 'text' THEN j ->> '$.content.body' END
            WHEN 'm.room.name' THEN
                CASE WHEN json_type(j, '$.content.name') = 'text' THEN j ->> '$.content.name' END
            ELSE COALESCE(
                CASE WHEN json_type(j, '$.content.topic') = 'text' THEN j ->> '$.content.topic' END,
                (SELECT value ->> '$.body' FROM json_each(j, '$.content."m.topic"."m.text"')
                    WHERE json_type(value, '$.body') = 'text'
                    AND COALESCE(value ->> '$.mimetype', 'text/plain') = 'text/plain' ORDER BY key LIMIT 1))
            END AS t
        FROM (SELECT CAST(NEW.json AS TEXT) AS j))
    WHERE t IS NOT NULL AND t <> ''
        AND NEW.stream_pos IS NOT NULL AND NOT NEW.rejected AND NOT NEW.soft_failed;
END;

CREATE TRIGGER event_search_delete AFTER DELETE ON events
WHEN OLD.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
BEGIN
    DELETE FROM event_search WHERE rowid = OLD.event_nid;
END;

-- Index the events stored before this migration.
INSERT INTO event_search (rowid, body)
SELECT event_nid, t FROM (
    SELECT event_nid, CASE type
        WHEN 'm.room.message' THEN
            CASE WHEN json_type(j, '$.content.body') = 'text' THEN j ->> '$.content.body' END
        WHEN 'm.room.name' THEN
            CASE WHEN json_type(j, '$.content.name') = 'text' THEN j ->> '$.content.name' END
        ELSE COALESCE(
            CASE WHEN json_type(j, '$.content.topic') = 'text' THEN j ->> '$.content.topic' END,
            (SELECT value ->> '$.body' FROM json_each(j, '$.content."m.topic"."m.text"')
                WHERE json_type(value, '$.body') = 'text'
                AND COALESCE(value ->> '$.mimetype', 'text/plain') = 'text/plain' ORDER BY key LIMIT 1))
        END AS t
    FROM (SELECT event_nid, type, CAST(json AS TEXT) AS j FROM events
        WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic')
        AND stream_pos IS NOT NULL AND NOT rejected AND NOT soft_failed))
WHERE t IS NOT NULL AND t <> '';

-- What the published room directory and the user directory need of each
-- room, read from its current state: one row per room, refreshed whenever
-- one of the state events it is read from changes (or is redacted), and a
-- count of joined members kept by the membership triggers. Values that are
-- not strings in the event content are NULL.
CREATE TABLE room_stats (
    room_nid           INTEGER PRIMARY KEY REFERENCES rooms (room_nid),
    name               TEXT,
    topic              TEXT,
    canonical_alias    TEXT,
    avatar_url         TEXT,
    join_rule          TEXT,
    history_visibility TEXT,
    guest_access       TEXT,
    room_type          TEXT,    -- content.type of m.room.create
    encrypted          BOOLEAN NOT NULL DEFAULT FALSE,
    joined_members     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX room_stats_access ON room_stats (join_rule, history_visibility);

CREATE TRIGGER room_stats_room AFTER INSERT ON rooms
BEGIN
    INSERT INTO room_stats (room_nid) VALUES (NEW.room_nid);
END;

-- The refresh statement, repeated in each trigger below (SQLite has no
-- stored procedures): every column from the room's current state.
CREATE TRIGGER room_stats_state_insert AFTER INSERT ON current_state
WHEN NEW.state_key = '' AND NEW.type IN ('m.room.create', 'm.room.name', 'm.room.topic', 'm.room.canonical_alias',
    'm.room.avatar', 'm.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access', 'm.room.encryption')
BEGIN
    UPDATE room_stats SET
        name = (SELECT CASE WHEN json_type(j, '$.content.name') = 'text' THEN j ->> '$.content.name' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.name' AND c.state_key = '')),
        topic = (SELECT COALESCE(CASE WHEN json_type(j, '$.content.topic') = 'text' THEN j ->> '$.content.topic' END,
                (SELECT value ->> '$.body' FROM json_each(j, '$.content."m.topic"."m.text"') WHERE json_type(value, '$.body') = 'text'
                    AND COALESCE(value ->> '$.mimetype', 'text/plain') = 'text/plain' ORDER BY key LIMIT 1)) FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.topic' AND c.state_key = '')),
        canonical_alias = (SELECT CASE WHEN json_type(j, '$.content.alias') = 'text' THEN j ->> '$.content.alias' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.canonical_alias' AND c.state_key = '')),
        avatar_url = (SELECT CASE WHEN json_type(j, '$.content.url') = 'text' THEN j ->> '$.content.url' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.avatar' AND c.state_key = '')),
        join_rule = (SELECT CASE WHEN json_type(j, '$.content.join_rule') = 'text' THEN j ->> '$.content.join_rule' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.join_rules' AND c.state_key = '')),
        history_visibility = (SELECT CASE WHEN json_type(j, '$.content.history_visibility') = 'text' THEN j ->> '$.content.history_visibility' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.history_visibility' AND c.state_key = '')),
        guest_access = (SELECT CASE WHEN json_type(j, '$.content.guest_access') = 'text' THEN j ->> '$.content.guest_access' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.guest_access' AND c.state_key = '')),
        room_type = (SELECT CASE WHEN json_type(j, '$.content.type') = 'text' THEN j ->> '$.content.type' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.create' AND c.state_key = '')),
        encrypted = EXISTS (SELECT 1 FROM current_state c JOIN events e ON e.event_nid = c.event_nid
            WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.encryption' AND c.state_key = ''
            AND json_type(CAST(e.json AS TEXT), '$.content.algorithm') = 'text')
    WHERE room_nid = NEW.room_nid;
END;

CREATE TRIGGER room_stats_state_update AFTER UPDATE OF event_nid ON current_state
WHEN NEW.state_key = '' AND NEW.type IN ('m.room.create', 'm.room.name', 'm.room.topic', 'm.room.canonical_alias',
    'm.room.avatar', 'm.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access', 'm.room.encryption')
BEGIN
    UPDATE room_stats SET
        name = (SELECT CASE WHEN json_type(j, '$.content.name') = 'text' THEN j ->> '$.content.name' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.name' AND c.state_key = '')),
        topic = (SELECT COALESCE(CASE WHEN json_type(j, '$.content.topic') = 'text' THEN j ->> '$.content.topic' END,
                (SELECT value ->> '$.body' FROM json_each(j, '$.content."m.topic"."m.text"') WHERE json_type(value, '$.body') = 'text'
                    AND COALESCE(value ->> '$.mimetype', 'text/plain') = 'text/plain' ORDER BY key LIMIT 1)) FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.topic' AND c.state_key = '')),
        canonical_alias = (SELECT CASE WHEN json_type(j, '$.content.alias') = 'text' THEN j ->> '$.content.alias' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.canonical_alias' AND c.state_key = '')),
        avatar_url = (SELECT CASE WHEN json_type(j, '$.content.url') = 'text' THEN j ->> '$.content.url' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.avatar' AND c.state_key = '')),
        join_rule = (SELECT CASE WHEN json_type(j, '$.content.join_rule') = 'text' THEN j ->> '$.content.join_rule' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.join_rules' AND c.state_key = '')),
        history_visibility = (SELECT CASE WHEN json_type(j, '$.content.history_visibility') = 'text' THEN j ->> '$.content.history_visibility' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.history_visibility' AND c.state_key = '')),
        guest_access = (SELECT CASE WHEN json_type(j, '$.content.guest_access') = 'text' THEN j ->> '$.content.guest_access' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.guest_access' AND c.state_key = '')),
        room_type = (SELECT CASE WHEN json_type(j, '$.content.type') = 'text' THEN j ->> '$.content.type' END FROM (SELECT CAST(e.json AS TEXT) AS j
            FROM current_state c JOIN events e ON e.event_nid = c.event_nid WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.create' AND c.state_key = '')),
        encrypted = EXISTS (SELECT 1 FROM current_state c JOIN events e ON e.event_nid = c.event_nid
            WHERE c.room_nid = room_stats.room_nid AND c.type = 'm.room.encryption' AND c.state_key = ''
            AND json_type(CAST(e.json AS TEXT), '$.content.algorithm') = 'text')
    WHERE room_nid = NEW.room_nid;
END;

CREATE TRIGGER room_stats_state_delete AFTER DELETE ON current_state
WHEN OLD.state_key = '' AND OLD.type IN ('m.room.create', 'm.room.name', 'm.room.topic', 'm.room.canonical_alias',
    'm.room.avatar', 'm.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access', 'm.room.encryption')
BEGIN
    UPDATE room_stats SET
        name = CASE WHEN OLD.type = 'm.room.name' THEN NULL ELSE name END,
        topic = CASE WHEN OLD.type = 'm.room.topic' THEN NULL ELSE topic END,
        canonical_alias = CASE WHEN OLD.type = 'm.room.canonical_alias' THEN NULL ELSE canonical_alias END,
        avatar_url = CASE WHEN OLD.type = 'm.room.avatar' THEN NULL ELSE avatar_url END,
        join_rule = CASE WHEN OLD.type = 'm.room.join_rules' THEN NULL ELSE join_rule END,
        history_visibility = CASE WHEN OLD.type = 'm.room.history_visibility' THEN NULL ELSE history_visibility END,
        guest_access = CASE WHEN OLD.type = 'm.room.guest_access' THEN NULL ELSE guest_access END,
        room_type = CASE WHEN OLD.type = 'm.room.create' THEN NULL ELSE room_type END,
        encrypted = CASE WHEN OLD.type = 'm.room.encryption' THEN FALSE ELSE encrypted END
    WHERE room_nid = OLD.room_nid;
END;

-- A redaction of a state event of the current state changes what it says.
CREATE TRIGGER room_stats_redaction AFTER UPDATE OF json ON events
WHEN NEW.state_key = '' AND NEW.type IN ('m.room.create', 'm.room.name', 'm.room.topic', 'm.room.canonical_alias',
    'm.room.avatar', 'm.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access', 'm.room.encryption')
BEGIN
    -- Touch the current_state row, if the event is in it, to run
    -- room_stats_state_update.
    UPDATE current_state SET event_nid = event_nid WHERE event_nid = NEW.event_nid;
END;

CREATE TRIGGER room_stats_member_insert AFTER INSERT ON memberships
WHEN NEW.membership = 'join'
BEGIN
    UPDATE room_stats SET joined_members = joined_members + 1 WHERE room_nid = NEW.room_nid;
END;

CREATE TRIGGER room_stats_member_update AFTER UPDATE OF membership ON memberships
WHEN (OLD.membership = 'join') <> (NEW.membership = 'join')
BEGIN
    UPDATE room_stats SET joined_members = joined_members + CASE WHEN NEW.membership = 'join' THEN 1 ELSE -1 END
    WHERE room_nid = NEW.room_nid;
END;

CREATE TRIGGER room_stats_member_delete AFTER DELETE ON memberships
WHEN OLD.membership = 'join'
BEGIN
    UPDATE room_stats SET joined_members = joined_members - 1 WHERE room_nid = OLD.room_nid;
END;

-- The rooms stored before this migration.
INSERT INTO room_stats (room_nid, joined_members)
SELECT r.room_nid, (SELECT COUNT(*) FROM memberships m WHERE m.room_nid = r.room_nid AND m.membership = 'join') FROM rooms r;
UPDATE current_state SET event_nid = event_nid WHERE state_key = '' AND type IN ('m.room.create', 'm.room.name', 'm.room.topic',
    'm.room.canonical_alias', 'm.room.avatar', 'm.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access', 'm.room.encryption');

-- Profile fields beyond displayname and avatar_url (client-server API,
-- "Profiles", since v1.16: m.tz and custom namespaced keys). value is the
-- field's JSON value.
CREATE TABLE profile_fields (
    localpart TEXT NOT NULL REFERENCES accounts (localpart) ON DELETE CASCADE,
    field     TEXT NOT NULL,
    value     BLOB NOT NULL,
    PRIMARY KEY (localpart, field)
);

-- Deactivation erases the profile (store.Deactivate clears displayname and
-- avatar_url); the extended fields go with it.
CREATE TRIGGER profile_fields_deactivate AFTER UPDATE OF deactivated ON accounts
WHEN NEW.deactivated
BEGIN
    DELETE FROM profile_fields WHERE localpart = NEW.localpart;
END;

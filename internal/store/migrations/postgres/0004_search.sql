-- Full-text search of events, room statistics for the directories, and
-- extended profile fields (PostgreSQL; migrations/sqlite/0004_search.sql is
-- the SQLite twin and must stay equivalent).
--
-- The search index and room_stats are kept in step with events,
-- current_state and memberships by triggers, so that no Go code path that
-- persists or redacts an event has to remember them.

-- polder_content returns the content of an event's stored JSON, or NULL
-- when it holds the escape \u0000, which canonical JSON allows and jsonb
-- refuses: such an event is left out rather than failing the write that
-- stores it. (A string with an escaped backslash before "u0000" is left out
-- too; an exception handler would decide exactly, but costs a
-- subtransaction on every message sent.)
CREATE FUNCTION polder_content(raw BYTEA) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    t TEXT := convert_from(raw, 'UTF8');
BEGIN
    IF strpos(t, '\u0000') > 0 THEN
        RETURN NULL;
    END IF;
    RETURN t::jsonb -> 'content';
END $$;

-- polder_text is c[key] if it is a string, else NULL.
CREATE FUNCTION polder_text(c jsonb, key TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(c -> key) = 'string' THEN c ->> key END
$$;

-- polder_topic is the plain-text topic of m.room.topic content: topic, or
-- the first text/plain body of m.topic when topic is not a string.
CREATE FUNCTION polder_topic(c jsonb) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(polder_text(c, 'topic'), (
        SELECT b ->> 'body' FROM jsonb_array_elements(
            CASE WHEN jsonb_typeof(c -> 'm.topic' -> 'm.text') = 'array' THEN c -> 'm.topic' -> 'm.text' ELSE '[]'::jsonb END
        ) WITH ORDINALITY AS x (b, n)
        WHERE jsonb_typeof(b) = 'object' AND jsonb_typeof(b -> 'body') = 'string'
            AND COALESCE(b ->> 'mimetype', 'text/plain') = 'text/plain'
        ORDER BY n LIMIT 1))
$$;

-- polder_search_text is the searchable text of an event (client-server API,
-- "Server Side Search"), or NULL.
CREATE FUNCTION polder_search_text(typ TEXT, raw BYTEA) RETURNS TEXT LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    c jsonb := polder_content(raw);
BEGIN
    IF c IS NULL OR jsonb_typeof(c) <> 'object' THEN
        RETURN NULL;
    END IF;
    RETURN CASE typ
        WHEN 'm.room.message' THEN polder_text(c, 'body')
        WHEN 'm.room.name' THEN polder_text(c, 'name')
        WHEN 'm.room.topic' THEN polder_topic(c)
    END;
END $$;

-- Full-text index of the searchable text of events: content.body of
-- m.room.message, content.name of m.room.name, content.topic of
-- m.room.topic. The 'simple' configuration folds case and neither stems
-- nor drops stop words, whatever the language: queries match words by
-- prefix instead, as on SQLite (which also folds diacritics; PostgreSQL
-- does not without the unaccent extension).
--
-- The columns a search filters and orders by are copied from events, so
-- that a search reads only this table and joins events for the page it
-- returns: joining every match to events first costs a random read per
-- match, which for a common word is most of the room.
CREATE TABLE event_search (
    event_nid  BIGINT PRIMARY KEY REFERENCES events (event_nid) ON DELETE CASCADE,
    room_nid   BIGINT NOT NULL,
    stream_pos BIGINT NOT NULL,
    type       TEXT NOT NULL,
    sender     TEXT NOT NULL,
    vector     tsvector NOT NULL
);
-- fastupdate off: new messages go straight into the index. With it on they
-- wait in a pending list until the next vacuum, which every search scans
-- linearly; at 10,000 fresh messages that list made the planner give up on
-- the index (3-5 ms a search instead of under 1 ms).
CREATE INDEX event_search_vector ON event_search USING GIN (vector) WITH (fastupdate = off);
CREATE INDEX event_search_room ON event_search (room_nid, stream_pos);

-- Only timeline events (not outliers), neither rejected nor soft-failed,
-- with a non-empty string to index. On update (a redaction rewrites json; a
-- change of the flags or the stream position may add or remove the event)
-- the row is rebuilt.
CREATE FUNCTION polder_event_search() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t TEXT;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM event_search WHERE event_nid = OLD.event_nid;
    END IF;
    IF NEW.stream_pos IS NOT NULL AND NOT NEW.rejected AND NOT NEW.soft_failed THEN
        t := polder_search_text(NEW.type, NEW.json);
        IF t IS NOT NULL AND t <> '' THEN
            INSERT INTO event_search (event_nid, room_nid, stream_pos, type, sender, vector)
            VALUES (NEW.event_nid, NEW.room_nid, NEW.stream_pos, NEW.type, NEW.sender, to_tsvector('simple', t));
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER event_search_insert AFTER INSERT ON events FOR EACH ROW
WHEN (NEW.type IN ('m.room.message', 'm.room.name', 'm.room.topic'))
EXECUTE FUNCTION polder_event_search();

CREATE TRIGGER event_search_update AFTER UPDATE OF json, stream_pos, rejected, soft_failed ON events FOR EACH ROW
WHEN (NEW.type IN ('m.room.message', 'm.room.name', 'm.room.topic'))
EXECUTE FUNCTION polder_event_search();

-- Index the events stored before this migration.
INSERT INTO event_search (event_nid, room_nid, stream_pos, type, sender, vector)
SELECT event_nid, room_nid, stream_pos, type, sender, to_tsvector('simple', t) FROM (
    SELECT event_nid, room_nid, stream_pos, type, sender, polder_search_text(type, json) AS t FROM events
    WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic')
        AND stream_pos IS NOT NULL AND NOT rejected AND NOT soft_failed) s
WHERE t IS NOT NULL AND t <> '';

-- What the published room directory and the user directory need of each
-- room, read from its current state: one row per room, refreshed whenever
-- one of the state events it is read from changes (or is redacted), and a
-- count of joined members kept by the membership triggers. Values that are
-- not strings in the event content are NULL.
CREATE TABLE room_stats (
    room_nid           BIGINT PRIMARY KEY REFERENCES rooms (room_nid),
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

CREATE FUNCTION polder_room_stats_room() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO room_stats (room_nid) VALUES (NEW.room_nid);
    RETURN NULL;
END $$;

CREATE TRIGGER room_stats_room AFTER INSERT ON rooms FOR EACH ROW EXECUTE FUNCTION polder_room_stats_room();

-- polder_refresh_room_stats rereads every column of a room's row from its
-- current state.
CREATE FUNCTION polder_refresh_room_stats(room BIGINT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
    c jsonb;
    v_name TEXT; v_topic TEXT; v_alias TEXT; v_avatar TEXT; v_join TEXT; v_hist TEXT; v_guest TEXT; v_type TEXT;
    v_enc BOOLEAN := FALSE;
BEGIN
    FOR r IN SELECT cs.type, e.json FROM current_state cs JOIN events e ON e.event_nid = cs.event_nid
        WHERE cs.room_nid = room AND cs.state_key = '' AND cs.type IN ('m.room.create', 'm.room.name', 'm.room.topic',
            'm.room.canonical_alias', 'm.room.avatar', 'm.room.join_rules', 'm.room.history_visibility',
            'm.room.guest_access', 'm.room.encryption')
    LOOP
        c := polder_content(r.json);
        IF c IS NULL OR jsonb_typeof(c) <> 'object' THEN
            CONTINUE;
        END IF;
        CASE r.type
            WHEN 'm.room.name' THEN v_name := polder_text(c, 'name');
            WHEN 'm.room.topic' THEN v_topic := polder_topic(c);
            WHEN 'm.room.canonical_alias' THEN v_alias := polder_text(c, 'alias');
            WHEN 'm.room.avatar' THEN v_avatar := polder_text(c, 'url');
            WHEN 'm.room.join_rules' THEN v_join := polder_text(c, 'join_rule');
            WHEN 'm.room.history_visibility' THEN v_hist := polder_text(c, 'history_visibility');
            WHEN 'm.room.guest_access' THEN v_guest := polder_text(c, 'guest_access');
            WHEN 'm.room.create' THEN v_type := polder_text(c, 'type');
            WHEN 'm.room.encryption' THEN v_enc := polder_text(c, 'algorithm') IS NOT NULL;
        END CASE;
    END LOOP;
    UPDATE room_stats SET name = v_name, topic = v_topic, canonical_alias = v_alias, avatar_url = v_avatar,
        join_rule = v_join, history_visibility = v_hist, guest_access = v_guest, room_type = v_type, encrypted = v_enc
    WHERE room_nid = room;
END $$;

CREATE FUNCTION polder_room_stats_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM polder_refresh_room_stats(OLD.room_nid);
    ELSE
        PERFORM polder_refresh_room_stats(NEW.room_nid);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER room_stats_state_insert AFTER INSERT ON current_state FOR EACH ROW
WHEN (NEW.state_key = '' AND NEW.type IN ('m.room.create', 'm.room.name', 'm.room.topic', 'm.room.canonical_alias',
    'm.room.avatar', 'm.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access', 'm.room.encryption'))
EXECUTE FUNCTION polder_room_stats_state();

CREATE TRIGGER room_stats_state_update AFTER UPDATE OF event_nid ON current_state FOR EACH ROW
WHEN (NEW.state_key = '' AND NEW.type IN ('m.room.create', 'm.room.name', 'm.room.topic', 'm.room.canonical_alias',
    'm.room.avatar', 'm.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access', 'm.room.encryption'))
EXECUTE FUNCTION polder_room_stats_state();

CREATE TRIGGER room_stats_state_delete AFTER DELETE ON current_state FOR EACH ROW
WHEN (OLD.state_key = '' AND OLD.type IN ('m.room.create', 'm.room.name', 'm.room.topic', 'm.room.canonical_alias',
    'm.room.avatar', 'm.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access', 'm.room.encryption'))
EXECUTE FUNCTION polder_room_stats_state();

-- A redaction of a state event of the current state changes what it says.
CREATE FUNCTION polder_room_stats_redaction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM current_state WHERE event_nid = NEW.event_nid) THEN
        PERFORM polder_refresh_room_stats(NEW.room_nid);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER room_stats_redaction AFTER UPDATE OF json ON events FOR EACH ROW
WHEN (NEW.state_key = '' AND NEW.type IN ('m.room.create', 'm.room.name', 'm.room.topic', 'm.room.canonical_alias',
    'm.room.avatar', 'm.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access', 'm.room.encryption'))
EXECUTE FUNCTION polder_room_stats_redaction();

CREATE FUNCTION polder_room_stats_member() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta INT := 0;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.membership = 'join' THEN
        delta := delta - 1;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.membership = 'join' THEN
        delta := delta + 1;
    END IF;
    IF delta <> 0 THEN
        UPDATE room_stats SET joined_members = joined_members + delta
        WHERE room_nid = CASE WHEN TG_OP = 'DELETE' THEN OLD.room_nid ELSE NEW.room_nid END;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER room_stats_member_insert AFTER INSERT ON memberships FOR EACH ROW
WHEN (NEW.membership = 'join')
EXECUTE FUNCTION polder_room_stats_member();

CREATE TRIGGER room_stats_member_update AFTER UPDATE OF membership ON memberships FOR EACH ROW
WHEN ((OLD.membership = 'join') <> (NEW.membership = 'join'))
EXECUTE FUNCTION polder_room_stats_member();

CREATE TRIGGER room_stats_member_delete AFTER DELETE ON memberships FOR EACH ROW
WHEN (OLD.membership = 'join')
EXECUTE FUNCTION polder_room_stats_member();

-- The rooms stored before this migration.
INSERT INTO room_stats (room_nid, joined_members)
SELECT r.room_nid, (SELECT COUNT(*) FROM memberships m WHERE m.room_nid = r.room_nid AND m.membership = 'join') FROM rooms r;
SELECT polder_refresh_room_stats(room_nid) FROM rooms;

-- Profile fields beyond displayname and avatar_url (client-server API,
-- "Profiles", since v1.16: m.tz and custom namespaced keys). value is the
-- field's JSON value.
CREATE TABLE profile_fields (
    localpart TEXT NOT NULL REFERENCES accounts (localpart) ON DELETE CASCADE,
    field     TEXT NOT NULL,
    value     BYTEA NOT NULL,
    PRIMARY KEY (localpart, field)
);

-- Deactivation erases the profile (store.Deactivate clears displayname and
-- avatar_url); the extended fields go with it.
CREATE FUNCTION polder_profile_fields_deactivate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM profile_fields WHERE localpart = NEW.localpart;
    RETURN NULL;
END $$;

CREATE TRIGGER profile_fields_deactivate AFTER UPDATE OF deactivated ON accounts FOR EACH ROW
WHEN (NEW.deactivated)
EXECUTE FUNCTION polder_profile_fields_deactivate();

package store

import (
	"context"
	"database/sql"

	"maunium.net/go/mautrix/id"
)

// RoomStats is what the directories know of a room, read from its current
// state (table room_stats, kept by triggers; see migration 0004). Empty
// strings mean the state event is absent or its value is not a string.
type RoomStats struct {
	RoomID            id.RoomID
	Name              string
	Topic             string
	CanonicalAlias    string
	AvatarURL         string
	JoinRule          string
	HistoryVisibility string
	GuestAccess       string
	// RoomType is content.type of m.room.create ("" for none).
	RoomType      string
	Encrypted     bool
	JoinedMembers int
	// Public is the room's visibility in the published room directory.
	Public bool
}

const roomStatsCols = `r.room_id, s.name, s.topic, s.canonical_alias, s.avatar_url, s.join_rule, s.history_visibility,
	s.guest_access, s.room_type, s.encrypted, s.joined_members, r.visibility`

func scanRoomStats(rows *sql.Rows) ([]RoomStats, error) {
	defer rows.Close()
	var out []RoomStats
	for rows.Next() {
		var (
			s                                               RoomStats
			name, topic, alias, avatar, jr, hv, ga, rt, vis sql.NullString
		)
		if err := rows.Scan(&s.RoomID, &name, &topic, &alias, &avatar, &jr, &hv, &ga, &rt, &s.Encrypted, &s.JoinedMembers, &vis); err != nil {
			return nil, err
		}
		s.Name, s.Topic, s.CanonicalAlias, s.AvatarURL = name.String, topic.String, alias.String, avatar.String
		s.JoinRule, s.HistoryVisibility, s.GuestAccess, s.RoomType = jr.String, hv.String, ga.String, rt.String
		s.Public = vis.String == "public"
		out = append(out, s)
	}
	return out, rows.Err()
}

// PublishedRooms returns the statistics of the rooms published in the room
// directory (visibility "public") that have joined members, in no
// particular order.
func (db *DB) PublishedRooms(ctx context.Context) ([]RoomStats, error) {
	var out []RoomStats
	err := db.read(ctx, "published_rooms", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT `+roomStatsCols+` FROM rooms r JOIN room_stats s ON s.room_nid = r.room_nid
			WHERE r.visibility = 'public' AND s.joined_members > 0`)
		if err != nil {
			return err
		}
		out, err = scanRoomStats(rows)
		return err
	})
	return out, err
}

// RoomStats returns the statistics of one room, or ErrNotFound.
func (db *DB) RoomStats(ctx context.Context, roomID id.RoomID) (RoomStats, error) {
	var out []RoomStats
	err := db.read(ctx, "room_stats", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT `+roomStatsCols+` FROM rooms r JOIN room_stats s ON s.room_nid = r.room_nid
			WHERE r.room_id = $1`, string(roomID))
		if err != nil {
			return err
		}
		out, err = scanRoomStats(rows)
		return err
	})
	if err == nil && len(out) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return RoomStats{}, err
	}
	return out[0], nil
}

package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"

	"maunium.net/go/mautrix/id"
)

// Reads and writes of the Synapse-compatible admin API
// (api/client/admin_users.go, admin_rooms.go): accounts and rooms listed
// with filters, sort orders and offsets, and the blocked_rooms table
// (migration 0026). Offsets, not keyset tokens, because Synapse's API
// pages by offset (its "from" is a row number); an admin list is small
// and read rarely.

// AdminUserQuery selects local accounts (Synapse: GET
// /_synapse/admin/v2/users).
type AdminUserQuery struct {
	Offset, Limit int
	// ServerName makes full user IDs for the UserID filter.
	ServerName string
	// UserID keeps the users whose full user ID contains it.
	// Ignored when Name is set.
	UserID string
	// Name keeps the users whose localpart or display name contains it.
	Name string
	// NoGuests leaves guests out; Deactivated keeps deactivated accounts
	// (left out by default).
	NoGuests, Deactivated bool
	// Admins, when set, keeps only admins (true) or only non-admins.
	Admins *bool
	// NotUserTypes leaves out these user types; "" is the plain user.
	NotUserTypes []string
	// OrderBy is name (the default), is_guest, admin, user_type,
	// deactivated, displayname, avatar_url, creation_ts or last_seen_ts;
	// ties are broken by name, ascending.
	OrderBy   string
	Backwards bool
}

// AdminUser is an account with its profile and last activity.
type AdminUser struct {
	Account
	DisplayName string
	AvatarURL   string
	// LastSeenTS is the latest last-seen time of its devices (0: none).
	LastSeenTS int64
}

var adminUserOrder = map[string]string{
	"name":         "a.localpart",
	"is_guest":     "a.is_guest",
	"admin":        "a.is_admin",
	"user_type":    "COALESCE(a.user_type, '')",
	"deactivated":  "a.deactivated",
	"displayname":  "COALESCE(p.displayname, '')",
	"avatar_url":   "COALESCE(p.avatar_url, '')",
	"creation_ts":  "a.created_ts",
	"last_seen_ts": "last_seen_ts",
}

// AdminUserOrderValid reports whether AdminUsers can sort by o.
func AdminUserOrderValid(o string) bool { _, ok := adminUserOrder[o]; return ok }

const adminUserCols = `a.localpart, a.password_hash, a.is_admin, a.is_guest, a.deactivated, a.user_type, a.created_ts,
	p.displayname, p.avatar_url, COALESCE((SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.localpart = a.localpart), 0) AS last_seen_ts`

const adminUserFrom = ` FROM accounts a LEFT JOIN profiles p ON p.localpart = a.localpart`

func scanAdminUsers(rows *sql.Rows) ([]AdminUser, error) {
	defer rows.Close()
	var out []AdminUser
	for rows.Next() {
		var u AdminUser
		var hash, userType, dn, av sql.NullString
		if err := rows.Scan(&u.Localpart, &hash, &u.IsAdmin, &u.IsGuest, &u.Deactivated, &userType, &u.CreatedTS,
			&dn, &av, &u.LastSeenTS); err != nil {
			return nil, err
		}
		u.PasswordHash, u.UserType, u.DisplayName, u.AvatarURL = hash.String, userType.String, dn.String, av.String
		out = append(out, u)
	}
	return out, rows.Err()
}

// likeContains is a LIKE pattern matching strings that contain s
// (compared in lower case), with LIKE's wildcards in s escaped by '\'.
func likeContains(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(strings.ToLower(s)) + "%"
}

// AdminUsers returns a page of the accounts that match q and how many
// match in all.
func (db *DB) AdminUsers(ctx context.Context, q AdminUserQuery) ([]AdminUser, int, error) {
	var out []AdminUser
	var total int
	err := db.read(ctx, "admin_users", func(qr querier) error {
		w := &where{}
		w.add("TRUE")
		switch {
		case q.Name != "":
			p := w.arg(likeContains(q.Name))
			w.add(`(LOWER(a.localpart) LIKE ` + p + ` ESCAPE '\' OR LOWER(COALESCE(p.displayname, '')) LIKE ` + p + ` ESCAPE '\')`)
		case q.UserID != "":
			w.add(`LOWER('@' || a.localpart || ':' || CAST(` + w.arg(q.ServerName) + ` AS TEXT)) LIKE ` + w.arg(likeContains(q.UserID)) + ` ESCAPE '\'`)
		}
		if q.NoGuests {
			w.add("NOT a.is_guest")
		}
		if !q.Deactivated {
			w.add("NOT a.deactivated")
		}
		if q.Admins != nil {
			w.add("a.is_admin = " + w.arg(*q.Admins))
		}
		if len(q.NotUserTypes) > 0 {
			w.add("COALESCE(a.user_type, '') NOT IN (" + w.in(q.NotUserTypes) + ")")
		}
		if err := qr.QueryRowContext(ctx, `SELECT COUNT(*)`+adminUserFrom+` WHERE `+w.String(), w.args...).Scan(&total); err != nil {
			return err
		}
		col, ok := adminUserOrder[q.OrderBy]
		if !ok {
			col = adminUserOrder["name"]
		}
		dir := "ASC"
		if q.Backwards {
			dir = "DESC"
		}
		rows, err := qr.QueryContext(ctx, `SELECT `+adminUserCols+adminUserFrom+` WHERE `+w.String()+
			` ORDER BY `+col+` `+dir+`, a.localpart ASC LIMIT `+w.arg(q.Limit)+` OFFSET `+w.arg(q.Offset), w.args...)
		if err != nil {
			return err
		}
		out, err = scanAdminUsers(rows)
		return err
	})
	return out, total, err
}

// AdminUser returns one account with its profile, or ErrNotFound.
func (db *DB) AdminUser(ctx context.Context, localpart string) (AdminUser, error) {
	var out []AdminUser
	err := db.read(ctx, "admin_user", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT `+adminUserCols+adminUserFrom+` WHERE a.localpart = $1`, localpart)
		if err != nil {
			return err
		}
		out, err = scanAdminUsers(rows)
		return err
	})
	if err == nil && len(out) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return AdminUser{}, err
	}
	return out[0], nil
}

// Reactivate clears the deactivated flag of an account (reactivation:
// Synapse's PUT /_synapse/admin/v2/users/{userId} with "deactivated":
// false); deactivating goes through Deactivate. Returns ErrNotFound for no
// account.
func (db *DB) Reactivate(ctx context.Context, localpart string) error {
	return db.WithTx(ctx, "reactivate_account", func(tx *Tx) error {
		return execOne(tx.ExecContext(ctx, `UPDATE accounts SET deactivated = FALSE WHERE localpart = $1`, localpart))
	})
}

// SetUserType sets or (with "") clears an account's user type. Returns
// ErrNotFound for no account.
func (db *DB) SetUserType(ctx context.Context, localpart, userType string) error {
	return db.WithTx(ctx, "set_user_type", func(tx *Tx) error {
		return execOne(tx.ExecContext(ctx, `UPDATE accounts SET user_type = $2 WHERE localpart = $1`, localpart, nullString(userType)))
	})
}

// AdminRoomQuery selects rooms (Synapse: GET /_synapse/admin/v1/rooms).
type AdminRoomQuery struct {
	Offset, Limit int
	// LocalSuffix is ":" + the server name: members whose user ID ends
	// with it are local.
	LocalSuffix string
	// Search keeps rooms whose name, canonical alias or room ID contains
	// it (case-insensitively).
	Search string
	// Public keeps only rooms published (true) or not published (false)
	// in the room directory; Empty only rooms with no (true) or some
	// (false) joined members.
	Public, Empty *bool
	// OrderBy is one of AdminRoomOrders (name by default); Backwards
	// reverses it. Ties are broken by room ID, ascending.
	OrderBy   string
	Backwards bool
}

// AdminRoom is what the admin API shows of a room.
type AdminRoom struct {
	RoomStats
	Version            id.RoomVersion
	JoinedLocalMembers int
	// Creator is the sender of the m.room.create event.
	Creator id.UserID
	// Encryption is the algorithm of m.room.encryption ("" for none).
	Encryption string
	// Federatable is m.federate of the create event (true when absent).
	Federatable bool
	StateEvents int
}

// adminRoomOrder maps each sort order to its column and whether "forward"
// means largest first (Synapse's sizes and versions).
var adminRoomOrder = map[string]struct {
	col  string
	desc bool
}{
	"name":                 {"COALESCE(s.name, '')", false},
	"alphabetical":         {"COALESCE(s.name, '')", false},
	"canonical_alias":      {"COALESCE(s.canonical_alias, '')", false},
	"joined_members":       {"s.joined_members", true},
	"size":                 {"s.joined_members", true},
	"joined_local_members": {"local_members", true},
	"version":              {"r.version", true},
	"creator":              {"COALESCE(ce.sender, '')", false},
	"encryption":           {"s.encrypted", false},
	"federatable":          {"", false}, // per dialect: federateExpr
	"public":               {"r.visibility", false},
	"join_rules":           {"COALESCE(s.join_rule, '')", false},
	"guest_access":         {"COALESCE(s.guest_access, '')", false},
	"history_visibility":   {"COALESCE(s.history_visibility, '')", false},
	"state_events":         {"state_events", true},
}

// AdminRoomOrderValid reports whether AdminRooms can sort by o.
func AdminRoomOrderValid(o string) bool { _, ok := adminRoomOrder[o]; return ok }

// federateExpr is m.federate of the create event ce, true when absent.
func (db *DB) federateExpr() string {
	if db.dialect == Postgres {
		return `COALESCE(polder_content(ce.json) -> 'm.federate' <> 'false'::jsonb, TRUE)`
	}
	return `COALESCE(json_extract(CAST(ce.json AS TEXT), '$.content."m.federate"') IS NOT 0, 1)`
}

// adminRoomCols are the columns of an AdminRoom; lenP and sufP are the
// placeholders of the local suffix's length and the suffix. The
// local-member count compares the end of the user ID with the suffix by
// length, not LIKE, so that no character of a server name is a wildcard.
func adminRoomCols(lenP, sufP string) string {
	return `r.room_id, s.name, s.topic, s.canonical_alias, s.avatar_url, s.join_rule, s.history_visibility,
	s.guest_access, s.room_type, s.encrypted, s.joined_members, r.visibility, r.version, ce.sender, ce.json, ee.json,
	(SELECT COUNT(*) FROM memberships m WHERE m.room_nid = r.room_nid AND m.membership = 'join'
		AND substr(m.user_id, length(m.user_id) - ` + lenP + ` + 1) = ` + sufP + `) AS local_members,
	(SELECT COUNT(*) FROM current_state c WHERE c.room_nid = r.room_nid) AS state_events`
}

const adminRoomFrom = ` FROM rooms r JOIN room_stats s ON s.room_nid = r.room_nid
	LEFT JOIN current_state cc ON cc.room_nid = r.room_nid AND cc.type = 'm.room.create' AND cc.state_key = ''
	LEFT JOIN events ce ON ce.event_nid = cc.event_nid
	LEFT JOIN current_state ec ON ec.room_nid = r.room_nid AND ec.type = 'm.room.encryption' AND ec.state_key = ''
	LEFT JOIN events ee ON ee.event_nid = ec.event_nid`

func scanAdminRooms(rows *sql.Rows) ([]AdminRoom, error) {
	defer rows.Close()
	var out []AdminRoom
	for rows.Next() {
		var (
			r                                               AdminRoom
			name, topic, alias, avatar, jr, hv, ga, rt, vis sql.NullString
			creator                                         sql.NullString
			version                                         string
			createJSON, encJSON                             []byte
		)
		if err := rows.Scan(&r.RoomID, &name, &topic, &alias, &avatar, &jr, &hv, &ga, &rt, &r.Encrypted, &r.JoinedMembers, &vis,
			&version, &creator, &createJSON, &encJSON, &r.JoinedLocalMembers, &r.StateEvents); err != nil {
			return nil, err
		}
		r.Name, r.Topic, r.CanonicalAlias, r.AvatarURL = name.String, topic.String, alias.String, avatar.String
		r.JoinRule, r.HistoryVisibility, r.GuestAccess, r.RoomType = jr.String, hv.String, ga.String, rt.String
		r.Public = vis.String == "public"
		r.Version, r.Creator = id.RoomVersion(version), id.UserID(creator.String)
		r.Federatable = true
		var create struct {
			Content struct {
				Federate *bool `json:"m.federate"`
			} `json:"content"`
		}
		if json.Unmarshal(createJSON, &create) == nil && create.Content.Federate != nil {
			r.Federatable = *create.Content.Federate
		}
		var enc struct {
			Content struct {
				Algorithm string `json:"algorithm"`
			} `json:"content"`
		}
		if json.Unmarshal(encJSON, &enc) == nil {
			r.Encryption = enc.Content.Algorithm
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// AdminRooms returns a page of the rooms this server knows that match q,
// and how many match in all.
func (db *DB) AdminRooms(ctx context.Context, q AdminRoomQuery) ([]AdminRoom, int, error) {
	var out []AdminRoom
	var total int
	err := db.read(ctx, "admin_rooms", func(qr querier) error {
		w := &where{}
		w.add("TRUE")
		if q.Search != "" {
			p := w.arg(likeContains(q.Search))
			w.add(`(LOWER(COALESCE(s.name, '')) LIKE ` + p + ` ESCAPE '\' OR LOWER(COALESCE(s.canonical_alias, '')) LIKE ` + p +
				` ESCAPE '\' OR LOWER(r.room_id) LIKE ` + p + ` ESCAPE '\')`)
		}
		if q.Public != nil {
			if *q.Public {
				w.add("r.visibility = 'public'")
			} else {
				w.add("r.visibility <> 'public'")
			}
		}
		if q.Empty != nil {
			if *q.Empty {
				w.add("s.joined_members = 0")
			} else {
				w.add("s.joined_members > 0")
			}
		}
		if err := qr.QueryRowContext(ctx, `SELECT COUNT(*)`+adminRoomFrom+` WHERE `+w.String(), w.args...).Scan(&total); err != nil {
			return err
		}
		o, ok := adminRoomOrder[q.OrderBy]
		if !ok {
			o = adminRoomOrder["name"]
		}
		col := o.col
		if q.OrderBy == "federatable" {
			col = db.federateExpr()
		}
		desc := o.desc != q.Backwards
		dir := "ASC"
		if desc {
			dir = "DESC"
		}
		cols := adminRoomCols(w.arg(len(q.LocalSuffix)), w.arg(q.LocalSuffix))
		rows, err := qr.QueryContext(ctx, `SELECT `+cols+adminRoomFrom+` WHERE `+w.String()+
			` ORDER BY `+col+` `+dir+`, r.room_id ASC LIMIT `+w.arg(q.Limit)+` OFFSET `+w.arg(q.Offset), w.args...)
		if err != nil {
			return err
		}
		out, err = scanAdminRooms(rows)
		return err
	})
	return out, total, err
}

// AdminRoom returns what the admin API shows of one room, or ErrNotFound.
func (db *DB) AdminRoom(ctx context.Context, roomID id.RoomID, localSuffix string) (AdminRoom, error) {
	var out []AdminRoom
	err := db.read(ctx, "admin_room", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT `+adminRoomCols("$1", "$2")+adminRoomFrom+` WHERE r.room_id = $3`,
			len(localSuffix), localSuffix, string(roomID))
		if err != nil {
			return err
		}
		out, err = scanAdminRooms(rows)
		return err
	})
	if err == nil && len(out) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return AdminRoom{}, err
	}
	return out[0], nil
}

// BlockedRoom is a room local users may not join.
type BlockedRoom struct {
	RoomID    id.RoomID
	By        id.UserID // the admin who blocked it
	CreatedTS int64
}

// BlockRoom blocks a room (again: the first block is kept).
func (db *DB) BlockRoom(ctx context.Context, roomID id.RoomID, by id.UserID) error {
	return db.WithTx(ctx, "block_room", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO blocked_rooms (room_id, user_id, created_ts) VALUES ($1, $2, $3)
			ON CONFLICT (room_id) DO NOTHING`, string(roomID), string(by), nowMS())
		return err
	})
}

// UnblockRoom unblocks a room; unblocking a room not blocked is no error.
func (db *DB) UnblockRoom(ctx context.Context, roomID id.RoomID) error {
	return db.WithTx(ctx, "unblock_room", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM blocked_rooms WHERE room_id = $1`, string(roomID))
		return err
	})
}

// RoomBlock returns the block of a room, or ErrNotFound if it is not
// blocked.
func (db *DB) RoomBlock(ctx context.Context, roomID id.RoomID) (BlockedRoom, error) {
	var b BlockedRoom
	err := db.read(ctx, "room_block", func(q querier) error {
		return notFound(q.QueryRowContext(ctx, `SELECT room_id, user_id, created_ts FROM blocked_rooms WHERE room_id = $1`,
			string(roomID)).Scan(&b.RoomID, &b.By, &b.CreatedTS))
	})
	return b, err
}

// RoomDeletion is the outcome of an admin's deletion of a room.
type RoomDeletion struct {
	DeleteID string
	RoomID   id.RoomID
	Status   string // complete or failed
	Error    string
	// Result is the JSON of what the shutdown did (Synapse's
	// shutdown_room object).
	Result    json.RawMessage
	CreatedTS int64
}

// AddRoomDeletion records a deletion, and forgets those older than
// keepSince (ms).
func (db *DB) AddRoomDeletion(ctx context.Context, d RoomDeletion, keepSince int64) error {
	if d.CreatedTS == 0 {
		d.CreatedTS = nowMS()
	}
	return db.WithTx(ctx, "add_room_deletion", func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM room_deletions WHERE created_ts < $1`, keepSince); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO room_deletions (delete_id, room_id, status, error, result, created_ts)
			VALUES ($1, $2, $3, $4, $5, $6)`, d.DeleteID, string(d.RoomID), d.Status, nullString(d.Error), []byte(d.Result), d.CreatedTS)
		return err
	})
}

const roomDeletionCols = `delete_id, room_id, status, error, result, created_ts`

func scanRoomDeletions(rows *sql.Rows, err error) ([]RoomDeletion, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RoomDeletion
	for rows.Next() {
		var d RoomDeletion
		var e sql.NullString
		var res []byte
		if err := rows.Scan(&d.DeleteID, &d.RoomID, &d.Status, &e, &res, &d.CreatedTS); err != nil {
			return nil, err
		}
		d.Error, d.Result = e.String, res
		out = append(out, d)
	}
	return out, rows.Err()
}

// RoomDeletion returns a deletion recorded since since (ms), or
// ErrNotFound.
func (db *DB) RoomDeletion(ctx context.Context, deleteID string, since int64) (RoomDeletion, error) {
	var out []RoomDeletion
	err := db.read(ctx, "room_deletion", func(q querier) error {
		var err error
		out, err = scanRoomDeletions(q.QueryContext(ctx, `SELECT `+roomDeletionCols+` FROM room_deletions
			WHERE delete_id = $1 AND created_ts >= $2`, deleteID, since))
		return err
	})
	if err == nil && len(out) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return RoomDeletion{}, err
	}
	return out[0], nil
}

// RoomDeletions lists the deletions of a room recorded since since (ms),
// oldest first.
func (db *DB) RoomDeletions(ctx context.Context, roomID id.RoomID, since int64) ([]RoomDeletion, error) {
	var out []RoomDeletion
	err := db.read(ctx, "room_deletions", func(q querier) error {
		var err error
		out, err = scanRoomDeletions(q.QueryContext(ctx, `SELECT `+roomDeletionCols+` FROM room_deletions
			WHERE room_id = $1 AND created_ts >= $2 ORDER BY created_ts, delete_id`, string(roomID), since))
		return err
	})
	return out, err
}

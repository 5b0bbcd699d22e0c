package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"
)

// DirectoryUser is a user the user directory may show to a searcher.
type DirectoryUser struct {
	UserID      id.UserID
	DisplayName string
	AvatarURL   string
	// Shared reports whether the user shares a room with the searcher.
	Shared bool
}

// DirectoryUsers returns the users visible to searcher in the user
// directory (client-server API, "User directory"): those joined to a room
// the searcher is joined to, and those joined to a room whose join rule is
// public or whose history is world_readable. Local users come with their
// profile; deactivated local users are left out. serverName is this
// server's name, to tell local users apart.
//
// Each of contains (lower-case ASCII) must occur in the user ID or the
// display name; it narrows the rows read, the caller matches precisely.
func (db *DB) DirectoryUsers(ctx context.Context, searcher id.UserID, serverName string, contains []string) ([]DirectoryUser, error) {
	suffix := ":" + serverName
	args := []any{string(searcher), suffix}
	var where []string
	for _, c := range contains {
		args = append(args, "%"+escapeUserLike(c)+"%")
		n := len(args)
		where = append(where, fmt.Sprintf(`(lower(v.user_id) LIKE $%d ESCAPE '\' OR lower(COALESCE(p.displayname, '')) LIKE $%d ESCAPE '\')`, n, n))
	}
	cond := ""
	if len(where) > 0 {
		cond = " AND " + strings.Join(where, " AND ")
	}
	// The localpart of a local user ID: between '@' and the ':server'
	// suffix. substr and length count characters in both engines.
	query := `WITH mine AS (
			SELECT room_nid FROM memberships WHERE user_id = $1 AND membership = 'join'
		), visible AS (
			SELECT o.user_id, MAX(CASE WHEN o.room_nid IN (SELECT room_nid FROM mine) THEN 1 ELSE 0 END) AS shared
			FROM memberships o
			WHERE o.membership = 'join' AND (o.room_nid IN (SELECT room_nid FROM mine) OR o.room_nid IN (
				SELECT room_nid FROM room_stats WHERE join_rule = 'public' OR history_visibility = 'world_readable'))
			GROUP BY o.user_id
		)
		SELECT v.user_id, v.shared, p.displayname, p.avatar_url
		FROM visible v
		LEFT JOIN accounts a ON length(v.user_id) > length($2) + 1
			AND substr(v.user_id, length(v.user_id) - length($2) + 1) = $2
			AND a.localpart = substr(v.user_id, 2, length(v.user_id) - length($2) - 1)
		LEFT JOIN profiles p ON p.localpart = a.localpart
		WHERE (a.localpart IS NULL OR NOT a.deactivated)` + cond
	var out []DirectoryUser
	err := db.read(ctx, "directory_users", func(q querier) error {
		rows, err := q.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var u DirectoryUser
			var shared int
			var dn, av sql.NullString
			if err := rows.Scan(&u.UserID, &shared, &dn, &av); err != nil {
				return err
			}
			u.Shared, u.DisplayName, u.AvatarURL = shared == 1, dn.String, av.String
			out = append(out, u)
		}
		return rows.Err()
	})
	return out, err
}

// escapeLike escapes the LIKE wildcards of s for ESCAPE '\'.
func escapeUserLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

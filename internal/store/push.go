package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"
)

// Push notifications: notification rows (event_push_actions, written in
// the transaction of their event by the room service; migrations 0017 and
// 0023), pushers and their delivery queue (migration 0017). Push rules are
// account data (PushRulesOf).

// PushRulesOf returns the m.push_rules account data of those users that
// have it.
func (db *DB) PushRulesOf(ctx context.Context, users []id.UserID) (map[id.UserID][]byte, error) {
	out := map[id.UserID][]byte{}
	err := db.read(ctx, "push_rules_of", func(q querier) error {
		for chunk := range chunks(users, 500) {
			args := []any{}
			ps := make([]string, len(chunk))
			for i, u := range chunk {
				ps[i] = param(&args, string(u))
			}
			rows, err := q.QueryContext(ctx, `SELECT user_id, content FROM account_data
				WHERE room_id = '' AND type = 'm.push_rules' AND user_id IN (`+strings.Join(ps, ", ")+`)`, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var u id.UserID
				var c []byte
				if err := rows.Scan(&u, &c); err != nil {
					rows.Close()
					return err
				}
				out[u] = c
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// PushAction is a notification row: what a user's push rules said of an
// event that notified or highlighted.
type PushAction struct {
	UserID    id.UserID
	RoomID    id.RoomID
	EventID   id.EventID // read from events; not needed to add rows
	StreamPos int64
	Thread    string // "" for the main timeline, else the thread root
	Notify    bool
	Highlight bool
	Actions   []byte // JSON array, compact
	TS        int64  // ms
}

// pushShapes are the actions that notify most often, as the push service
// marshals them (compact, keys in the order of the predefined rules): a
// row whose actions are one of them stores its number (code >> 2), not
// the JSON. Numbers are stored: append only, never reorder.
var pushShapes = [...]string{
	1: `["notify"]`,                                                                   // .m.rule.message, .m.rule.encrypted
	2: `["notify",{"set_tweak":"sound","value":"default"}]`,                           // one-to-one rooms, invites
	3: `["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]`, // mentions of the user
	4: `["notify",{"set_tweak":"highlight"}]`,                                         // @room, tombstones
	5: `["notify",{"set_tweak":"sound","value":"ring"}]`,                              // calls
}

// pushCode packs a row's flags and the number of its actions' shape;
// actions is returned only when they are none of pushShapes.
func pushCode(r PushAction) (code int, actions []byte) {
	if r.Notify {
		code |= 1
	}
	if r.Highlight {
		code |= 2
	}
	for i := 1; i < len(pushShapes); i++ {
		if string(r.Actions) == pushShapes[i] {
			return code | i<<2, nil
		}
	}
	if r.Actions == nil {
		r.Actions = []byte("[]")
	}
	return code, r.Actions
}

// decodePushCode is pushCode's inverse.
func decodePushCode(a *PushAction, code int, actions []byte) {
	a.Notify, a.Highlight = code&1 != 0, code&2 != 0
	if shape := code >> 2; shape > 0 && shape < len(pushShapes) {
		a.Actions = []byte(pushShapes[shape])
	} else {
		a.Actions = actions
	}
}

// addPushActions is one INSERT of the rows of an event that share
// everything but the user: the users come as one JSON array, so that the
// statement is the same whatever their number (prepared once). On SQLite
// INSERT OR IGNORE rather than ON CONFLICT DO NOTHING: with every
// constraint on IGNORE the statement cannot abort half-way, so SQLite
// keeps no statement journal for it (a temporary file it wrote each
// changed page to: half of the statement's cost).
//
// SQLite writes to event_push_staging, moved in batches (rotatePush);
// PostgreSQL to event_push_actions (migration 0027 says why).
var addPushActions = map[Dialect]string{
	SQLite: `INSERT OR IGNORE INTO event_push_staging (user_id, room_id, stream_pos, thread_id, code, actions, ts)
		SELECT value, $1, $2, $3, $4, $5, $6 FROM json_each($7)`,
	Postgres: `INSERT INTO event_push_actions (user_id, room_id, stream_pos, thread_id, code, actions, ts)
		SELECT value, $1::text, $2::bigint, $3::text, $4::integer, $5::bytea, $6::bigint FROM json_array_elements_text($7::json)
		ON CONFLICT DO NOTHING`,
}

// AddPushActions stores notification rows in the transaction, typically
// those of the event it persists: one statement per distinct (room,
// position, thread, actions) among them, usually one. A row that exists
// already (same user, room and position) is left as it is.
func (tx *Tx) AddPushActions(ctx context.Context, rows []PushAction) error {
	type group struct {
		r       PushAction
		code    int
		actions []byte
		users   []string
	}
	var groups []*group
next:
	for _, r := range rows {
		code, actions := pushCode(r)
		for _, g := range groups {
			if g.r.RoomID == r.RoomID && g.r.StreamPos == r.StreamPos && g.r.Thread == r.Thread && g.r.TS == r.TS &&
				g.code == code && string(g.actions) == string(actions) {
				g.users = append(g.users, string(r.UserID))
				continue next
			}
		}
		groups = append(groups, &group{r: r, code: code, actions: actions, users: []string{string(r.UserID)}})
	}
	for _, g := range groups {
		users, err := json.Marshal(g.users)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, addPushActions[tx.dialect], string(g.r.RoomID), g.r.StreamPos, g.r.Thread, g.code, g.actions,
			g.r.TS, string(users))
		if err != nil {
			return fmt.Errorf("insert push actions: %w", err)
		}
		if tx.dialect == SQLite {
			n, _ := res.RowsAffected()
			if tx.db.pushStaged.Add(n) >= pushStagingRows {
				if err := tx.rotatePush(ctx); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// pushStagingRows is how many rows event_push_staging gathers before they
// move to event_push_actions. The user index of the staging table spans
// about rows/100 pages, of which a message dirties up to one per member;
// the move dirties each member's pages of event_push_actions once for the
// whole batch. BenchmarkAddPushActions, pages written to the WAL a
// message, 16 / 1,000 members: 45.7 / 2,775 without staging; 18 / 1,300
// at 2,048 rows; 21 / 950 at 4,096; 25 / 507 at 16,384; 25 / 434 at
// 32,768. The move of a full batch is one statement in the transaction of
// the send that fills it, and holds the writer meanwhile: in polder-bench's
// send-shared (16 senders, one room) p99 was 25-35 ms without moves,
// 128-166 ms at 16,384 rows, 61-64 ms at 4,096. 4,096 trades some of the
// 1,000-member gain for shorter stalls; moving in the background, in
// chunks, would keep both (not done).
const pushStagingRows = 4096

// rotatePush moves every staged notification row to event_push_actions,
// in key order, in the transaction. db.pushStaged counts the staged rows
// (optimistically: a rolled-back insert is still counted, which only
// brings the next move forward).
func (tx *Tx) rotatePush(ctx context.Context) error {
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO event_push_actions (user_id, room_id, stream_pos, thread_id, code, actions, ts)
		SELECT user_id, room_id, stream_pos, thread_id, code, actions, ts FROM event_push_staging ORDER BY user_id, room_id, stream_pos`); err != nil {
		return fmt.Errorf("move staged push actions: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM event_push_staging`); err != nil {
		return fmt.Errorf("empty push staging: %w", err)
	}
	tx.db.pushStaged.Store(0)
	return nil
}

// AddPushActions stores notification rows in a transaction of their own
// (see Tx.AddPushActions).
func (db *DB) AddPushActions(ctx context.Context, rows []PushAction) error {
	if len(rows) == 0 {
		return nil
	}
	return db.WithTx(ctx, "add_push_actions", func(tx *Tx) error { return tx.AddPushActions(ctx, rows) })
}

// PushCount is a user's notification and highlight counts in one thread.
type PushCount struct {
	Notifications int
	Highlights    int
}

// PushCounts counts, per room and thread ("" for the main timeline), the
// user's notification rows at stream positions in each query's (From,
// To] and after the thread's read position in Read (Needles are
// ignored). Rooms and threads without rows are left out.
func (db *DB) PushCounts(ctx context.Context, user id.UserID, queries []UnreadQuery) (map[id.RoomID]map[string]PushCount, error) {
	out := map[id.RoomID]map[string]PushCount{}
	var qs []UnreadQuery
	for _, q := range queries {
		if q.From < q.To {
			qs = append(qs, q)
		}
	}
	if len(qs) == 0 {
		return out, nil
	}
	err := db.read(ctx, "push_counts", func(q querier) error {
		for chunk := range chunks(qs, roomsPerStatement) {
			args := []any{string(user)}
			var b strings.Builder
			for i, rq := range chunk {
				if i > 0 {
					b.WriteString(" UNION ALL ")
				}
				fmt.Fprintf(&b, `SELECT %d, thread_id, SUM(code & 1), SUM((code & 2) / 2)
					FROM push_rows WHERE user_id = $1 AND room_id = %s AND stream_pos > %s AND stream_pos <= %s AND %s GROUP BY thread_id`,
					i, param(&args, string(rq.RoomID)), param(&args, rq.From), param(&args, rq.To), readBound(rq, &args))
			}
			rows, err := q.QueryContext(ctx, b.String(), args...)
			if err != nil {
				return fmt.Errorf("count push actions: %w", err)
			}
			for rows.Next() {
				var i int
				var thread string
				var c PushCount
				if err := rows.Scan(&i, &thread, &c.Notifications, &c.Highlights); err != nil {
					rows.Close()
					return err
				}
				r := chunk[i].RoomID
				if out[r] == nil {
					out[r] = map[string]PushCount{}
				}
				out[r][thread] = c
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// readBound is the condition that a row is after its thread's read
// position beyond From.
func readBound(rq UnreadQuery, args *[]any) string {
	threads := make([]string, 0, len(rq.Read))
	for t, pos := range rq.Read {
		if pos > rq.From {
			threads = append(threads, t)
		}
	}
	if len(threads) == 0 {
		return "TRUE"
	}
	slices.Sort(threads)
	var b strings.Builder
	b.WriteString("stream_pos > CASE thread_id")
	for _, t := range threads {
		fmt.Fprintf(&b, " WHEN %s THEN CAST(%s AS BIGINT)", param(args, t), param(args, rq.Read[t]))
	}
	fmt.Fprintf(&b, " ELSE CAST(%s AS BIGINT) END", param(args, rq.From))
	return b.String()
}

// readPosExpr is the read position of a notification row a: its user's
// furthest m.read or m.read.private receipt in the room that is
// unthreaded or for the row's thread ("main" for the main timeline).
const readPosExpr = `COALESCE((SELECT MAX(r.event_pos) FROM receipts r WHERE r.room_id = a.room_id AND r.user_id = a.user_id
	AND r.receipt_type IN ('m.read', 'm.read.private')
	AND (r.thread_id = '' OR r.thread_id = CASE WHEN a.thread_id = '' THEN 'main' ELSE a.thread_id END)), 0)`

// UnreadNotificationTotal is the number of the user's notifications at
// stream positions up to upTo and after its read receipts, across the
// rooms it is joined to: the badge sent to push gateways with the event
// at upTo.
func (db *DB) UnreadNotificationTotal(ctx context.Context, user id.UserID, upTo int64) (int, error) {
	var n int
	err := db.read(ctx, "unread_notification_total", func(q querier) error {
		return q.QueryRowContext(ctx, `SELECT COUNT(*) FROM push_rows a WHERE a.user_id = $1 AND (a.code & 1) = 1
			AND a.stream_pos <= $2 AND a.stream_pos > `+readPosExpr+`
			AND EXISTS (SELECT 1 FROM memberships m JOIN rooms ro ON ro.room_nid = m.room_nid
				WHERE ro.room_id = a.room_id AND m.user_id = a.user_id AND m.membership = 'join')`, string(user), upTo).Scan(&n)
	})
	return n, err
}

// Notification is a notification row with its read state.
type Notification struct {
	PushAction
	Read bool
}

// Notifications returns the user's notification rows, newest first, at
// stream positions before `before` (0: from the newest), at most limit;
// with onlyHighlight only highlights.
func (db *DB) Notifications(ctx context.Context, user id.UserID, before int64, limit int, onlyHighlight bool) ([]Notification, error) {
	var out []Notification
	err := db.read(ctx, "notifications", func(q querier) error {
		cond := ""
		if onlyHighlight {
			cond = " AND (code & 2) = 2"
		}
		if before <= 0 {
			before = 1 << 62
		}
		// Newest first from each table, each bounded by the limit, then
		// merged: ORDER BY … LIMIT through the push_rows view would read
		// all of the user's rows.
		arm := func(table string) string {
			return `SELECT * FROM (SELECT user_id, room_id, stream_pos, thread_id, code, actions, ts FROM ` + table + `
				WHERE user_id = $1 AND stream_pos < $2` + cond + ` ORDER BY stream_pos DESC LIMIT $3) AS ` + table
		}
		rows, err := q.QueryContext(ctx, `SELECT a.room_id, a.stream_pos, e.event_id, a.thread_id, a.code, a.actions, a.ts,
			a.stream_pos <= `+readPosExpr+` FROM (`+arm("event_push_actions")+` UNION ALL `+arm("event_push_staging")+`) a
			JOIN events e ON e.stream_pos = a.stream_pos ORDER BY a.stream_pos DESC LIMIT $3`, string(user), before, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			n := Notification{PushAction: PushAction{UserID: user}}
			var code int
			var actions []byte
			if err := rows.Scan(&n.RoomID, &n.StreamPos, &n.EventID, &n.Thread, &code, &actions, &n.TS, &n.Read); err != nil {
				return err
			}
			decodePushCode(&n.PushAction, code, actions)
			out = append(out, n)
		}
		return rows.Err()
	})
	return out, err
}

// Pusher is a pusher (client-server API, POST /pushers/set) and its
// delivery state.
type Pusher struct {
	NID               int64
	UserID            id.UserID
	DeviceID          id.DeviceID
	Kind              string
	AppID             string
	Pushkey           string
	AppDisplayName    string
	DeviceDisplayName string
	ProfileTag        string
	Lang              string
	Data              []byte // JSON object
	PushkeyTS         int64
	Failures          int
	RetryTS           int64
}

const pusherCols = `pusher_nid, user_id, device_id, kind, app_id, pushkey, app_display_name, device_display_name, profile_tag, lang, data, pushkey_ts, failures, retry_ts`

func scanPushers(q querier, ctx context.Context, query string, args ...any) ([]Pusher, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Pusher
	for rows.Next() {
		var p Pusher
		if err := rows.Scan(&p.NID, &p.UserID, &p.DeviceID, &p.Kind, &p.AppID, &p.Pushkey, &p.AppDisplayName, &p.DeviceDisplayName,
			&p.ProfileTag, &p.Lang, &p.Data, &p.PushkeyTS, &p.Failures, &p.RetryTS); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// SetPusher creates or updates the user's pusher of (app ID, pushkey).
// Unless appendOthers, other users' pushers with the same app ID and
// pushkey are deleted (client-server API, "append"). localpart names the
// owning device's account.
func (db *DB) SetPusher(ctx context.Context, localpart string, p Pusher, appendOthers bool) error {
	return db.WithTx(ctx, "set_pusher", func(tx *Tx) error {
		if !appendOthers {
			if _, err := tx.ExecContext(ctx, `DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3`, p.AppID, p.Pushkey, string(p.UserID)); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO pushers (user_id, localpart, device_id, kind, app_id, pushkey, app_display_name, device_display_name, profile_tag, lang, data, pushkey_ts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
			ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET localpart = excluded.localpart, device_id = excluded.device_id, kind = excluded.kind,
				app_display_name = excluded.app_display_name, device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag,
				lang = excluded.lang, data = excluded.data, pushkey_ts = excluded.pushkey_ts, failures = 0, retry_ts = 0`,
			string(p.UserID), localpart, string(p.DeviceID), p.Kind, p.AppID, p.Pushkey, p.AppDisplayName, p.DeviceDisplayName, p.ProfileTag, p.Lang, p.Data, p.PushkeyTS)
		return err
	})
}

// DeletePusher deletes the user's pusher of (app ID, pushkey) and its
// queue; deleting a missing one is not an error.
func (db *DB) DeletePusher(ctx context.Context, user id.UserID, appID, pushkey string) error {
	return db.WithTx(ctx, "delete_pusher", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, string(user), appID, pushkey)
		return err
	})
}

// Pushers returns the user's pushers; every pusher if user is "".
func (db *DB) Pushers(ctx context.Context, user id.UserID) ([]Pusher, error) {
	var out []Pusher
	err := db.read(ctx, "pushers", func(q querier) error {
		var err error
		if user == "" {
			out, err = scanPushers(q, ctx, `SELECT `+pusherCols+` FROM pushers ORDER BY pusher_nid`)
		} else {
			out, err = scanPushers(q, ctx, `SELECT `+pusherCols+` FROM pushers WHERE user_id = $1 ORDER BY pusher_nid`, string(user))
		}
		return err
	})
	return out, err
}

// PushItem is a notification waiting for a pusher.
type PushItem struct {
	NID          int64
	PusherNID    int64
	Notification []byte // JSON object
}

// EnqueuePushes queues notifications; items of pushers deleted meanwhile
// are dropped.
func (db *DB) EnqueuePushes(ctx context.Context, items []PushItem) error {
	if len(items) == 0 {
		return nil
	}
	return db.WithTx(ctx, "enqueue_pushes", func(tx *Tx) error {
		for _, it := range items {
			if _, err := tx.ExecContext(ctx, `INSERT INTO push_queue (pusher_nid, notification)
				SELECT pusher_nid, $2 FROM pushers WHERE pusher_nid = $1`, it.PusherNID, it.Notification); err != nil {
				return err
			}
		}
		return nil
	})
}

// PendingPushes returns a pusher's oldest queued notifications.
func (db *DB) PendingPushes(ctx context.Context, pusherNID int64, limit int) ([]PushItem, error) {
	var out []PushItem
	err := db.read(ctx, "pending_pushes", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT item_nid, notification FROM push_queue WHERE pusher_nid = $1 ORDER BY item_nid LIMIT $2`, pusherNID, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			it := PushItem{PusherNID: pusherNID}
			if err := rows.Scan(&it.NID, &it.Notification); err != nil {
				return err
			}
			out = append(out, it)
		}
		return rows.Err()
	})
	return out, err
}

// PushSent removes a delivered notification and clears the pusher's
// backoff.
func (db *DB) PushSent(ctx context.Context, pusherNID, itemNID int64) error {
	return db.WithTx(ctx, "push_sent", func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM push_queue WHERE item_nid = $1`, itemNID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE pushers SET failures = 0, retry_ts = 0 WHERE pusher_nid = $1 AND failures <> 0`, pusherNID)
		return err
	})
}

// PushFailed records a failed delivery: the pusher's consecutive failures
// and when to retry (ms).
func (db *DB) PushFailed(ctx context.Context, pusherNID int64, failures int, retryTS int64) error {
	return db.WithTx(ctx, "push_failed", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE pushers SET failures = $2, retry_ts = $3 WHERE pusher_nid = $1`, pusherNID, failures, retryTS)
		return err
	})
}

// DeletePusherNID deletes a pusher (and its queue) by its number.
func (db *DB) DeletePusherNID(ctx context.Context, pusherNID int64) error {
	return db.WithTx(ctx, "delete_pusher_nid", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM pushers WHERE pusher_nid = $1`, pusherNID)
		return err
	})
}

// MovePushStaging moves the staged notification rows to
// event_push_actions now (SQLite; nothing to do on PostgreSQL), as a full
// staging table does by itself: the pruner calls it after each pass, so
// that on a quiet server old rows do not wait in staging for ever.
func (db *DB) MovePushStaging(ctx context.Context) error {
	if db.dialect != SQLite {
		return nil
	}
	return db.WithTx(ctx, "move_push_staging", func(tx *Tx) error { return tx.rotatePush(ctx) })
}

// PushKey is a position in event_push_actions' key order, for
// PrunePushActions to walk the table a batch at a time. The zero key is
// before every row.
type PushKey struct {
	UserID    id.UserID
	RoomID    id.RoomID
	StreamPos int64
}

// PrunePushActions visits the next limit notification rows after key, in
// key order, and deletes those that no count and no mention list needs
// any more: made before beforeTS, not highlights, and at or before their
// user's read position in their thread (readPosExpr). Rows still unread
// are kept, however old, so that counts stay right; highlights are kept
// for GET /notifications?only=highlight, as Synapse keeps them. Staged
// rows (SQLite's event_push_staging) are recent and not visited.
//
// It returns the key to continue from and whether the walk reached the
// end of the table (then next is the zero key). Each call is one short
// write transaction, so that a walk over a large table shares the writer.
func (db *DB) PrunePushActions(ctx context.Context, after PushKey, beforeTS int64, limit int) (next PushKey, deleted int64, end bool, err error) {
	err = db.WithTx(ctx, "prune_push_actions", func(tx *Tx) error {
		args := []any{string(after.UserID), string(after.RoomID), after.StreamPos, beforeTS}
		var last PushKey
		err := tx.QueryRowContext(ctx, `SELECT user_id, room_id, stream_pos FROM event_push_actions
			WHERE (user_id, room_id, stream_pos) > (CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS BIGINT))
			ORDER BY user_id, room_id, stream_pos LIMIT 1 OFFSET $4`, args[0], args[1], args[2], max(limit-1, 0)).Scan(&last.UserID, &last.RoomID, &last.StreamPos)
		end = errors.Is(err, sql.ErrNoRows)
		if err != nil && !end {
			return fmt.Errorf("push actions batch: %w", err)
		}
		upTo := ""
		if !end {
			upTo = ` AND (a.user_id, a.room_id, a.stream_pos) <= (CAST($5 AS TEXT), CAST($6 AS TEXT), CAST($7 AS BIGINT))`
			args = append(args, string(last.UserID), string(last.RoomID), last.StreamPos)
			next = last
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM event_push_actions AS a
			WHERE (a.user_id, a.room_id, a.stream_pos) > (CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS BIGINT))`+upTo+`
			AND a.ts < $4 AND (a.code & 2) = 0 AND a.stream_pos <= `+readPosExpr, args...)
		if err != nil {
			return fmt.Errorf("prune push actions: %w", err)
		}
		deleted, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return PushKey{}, 0, false, err
	}
	return next, deleted, end, nil
}

package store

import (
	"context"
	"database/sql"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// Report is a user's report of an event or a room (client-server API,
// "Reporting content").
type Report struct {
	ID         int64
	ReceivedTS int64
	RoomID     id.RoomID
	EventID    id.EventID // "" for a room report
	// EventSender is the reported event's sender ("" for a room report).
	EventSender id.UserID
	UserID      id.UserID // who reported
	Reason      string
	Score       *int64
}

// AddReport stores a report and returns its ID. ReceivedTS defaults to
// now.
func (db *DB) AddReport(ctx context.Context, r Report) (int64, error) {
	if r.ReceivedTS == 0 {
		r.ReceivedTS = nowMS()
	}
	var rid int64
	err := db.WithTx(ctx, "add_report", func(tx *Tx) error {
		var score sql.NullInt64
		if r.Score != nil {
			score = sql.NullInt64{Int64: *r.Score, Valid: true}
		}
		return tx.QueryRowContext(ctx, `INSERT INTO reports (received_ts, room_id, event_id, event_sender, user_id, reason, score)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING report_id`,
			r.ReceivedTS, string(r.RoomID), nullString(string(r.EventID)), nullString(string(r.EventSender)),
			string(r.UserID), r.Reason, score).Scan(&rid)
	})
	if err != nil {
		return 0, fmt.Errorf("add report: %w", err)
	}
	return rid, nil
}

// ReportQuery selects event reports for the admin API.
type ReportQuery struct {
	// Offset and Limit page through the reports; Backwards lists the
	// newest first.
	Offset, Limit int
	Backwards     bool
	RoomID        id.RoomID // "" for every room
	UserID        id.UserID // the reporter, "" for anyone
	EventSender   id.UserID // "" for anyone
}

const reportCols = `report_id, received_ts, room_id, event_id, event_sender, user_id, reason, score`

func scanReports(rows *sql.Rows) ([]Report, error) {
	defer rows.Close()
	var out []Report
	for rows.Next() {
		var r Report
		var eid, sender, reason sql.NullString
		var score sql.NullInt64
		if err := rows.Scan(&r.ID, &r.ReceivedTS, &r.RoomID, &eid, &sender, &r.UserID, &reason, &score); err != nil {
			return nil, err
		}
		r.EventID, r.EventSender, r.Reason = id.EventID(eid.String), id.UserID(sender.String), reason.String
		if score.Valid {
			s := score.Int64
			r.Score = &s
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// EventReports returns a page of the event reports (room reports are left
// out) and how many match q in all.
func (db *DB) EventReports(ctx context.Context, q ReportQuery) ([]Report, int, error) {
	var out []Report
	var total int
	err := db.read(ctx, "event_reports", func(qr querier) error {
		w := &where{}
		w.add("event_id IS NOT NULL")
		if q.RoomID != "" {
			w.add("room_id = " + w.arg(string(q.RoomID)))
		}
		if q.UserID != "" {
			w.add("user_id = " + w.arg(string(q.UserID)))
		}
		if q.EventSender != "" {
			w.add("event_sender = " + w.arg(string(q.EventSender)))
		}
		if err := qr.QueryRowContext(ctx, `SELECT COUNT(*) FROM reports WHERE `+w.String(), w.args...).Scan(&total); err != nil {
			return err
		}
		order := "ASC"
		if q.Backwards {
			order = "DESC"
		}
		rows, err := qr.QueryContext(ctx, `SELECT `+reportCols+` FROM reports WHERE `+w.String()+
			` ORDER BY report_id `+order+` LIMIT `+w.arg(q.Limit)+` OFFSET `+w.arg(q.Offset), w.args...)
		if err != nil {
			return err
		}
		out, err = scanReports(rows)
		return err
	})
	return out, total, err
}

// Report returns one report, or ErrNotFound.
func (db *DB) Report(ctx context.Context, reportID int64) (Report, error) {
	var out []Report
	err := db.read(ctx, "report", func(q querier) error {
		rows, err := q.QueryContext(ctx, `SELECT `+reportCols+` FROM reports WHERE report_id = $1`, reportID)
		if err != nil {
			return err
		}
		out, err = scanReports(rows)
		return err
	})
	if err == nil && len(out) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return Report{}, err
	}
	return out[0], nil
}

// DeleteReport deletes a report. ErrNotFound if there is none.
func (db *DB) DeleteReport(ctx context.Context, reportID int64) error {
	return db.WithTx(ctx, "delete_report", func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM reports WHERE report_id = $1`, reportID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

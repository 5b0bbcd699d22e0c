package store

import (
	"context"
	"math"

	"maunium.net/go/mautrix/id"
)

// SyncMoved says which of the streams that an incremental /sync reads
// besides its rooms have a change in a range of stream positions. A false
// member is certain: nothing the corresponding read returns can lie in the
// range. A true one may be a change the user does not see (another user's
// receipt, presence or device list).
type SyncMoved struct {
	// AccountData: an account data entry of the user (AccountDataSince,
	// and the ignored users, which are account data).
	AccountData bool
	// Receipts: any receipt (ReceiptsSince, ReadReceipts).
	Receipts bool
	// Presence: anyone's presence (PresenceChangedPeers).
	Presence bool
	// DeviceLists: anything DeviceListChanges reads: a device list change
	// (device_list_changes), a membership change of the user, or a member
	// event of another user in any room.
	DeviceLists bool
	// Memberships: a membership change of the user after the position
	// SyncMoved was given for them (with no upper bound); true when it
	// was given none.
	Memberships bool
}

// syncMovedMaxScan bounds the range of events SyncMoved scans for member
// events: past it, DeviceLists is true without a look.
const syncMovedMaxScan = 2000

// syncMovedQuery reads every flag of SyncMoved with one index step each
// (account_data_user_stream, receipts_stream, presence_stream,
// device_list_changes_pos, memberships_user_stream) and, for the member
// events, a range of events by their unique stream_pos. withEvents leaves
// the events out (the range is too long to scan).
func syncMovedQuery(withEvents bool) string {
	q := `SELECT
		EXISTS (SELECT 1 FROM memberships WHERE user_id = $1 AND stream_pos > $4),
		EXISTS (SELECT 1 FROM account_data WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3),
		EXISTS (SELECT 1 FROM receipts WHERE stream_pos > $2 AND stream_pos <= $3),
		EXISTS (SELECT 1 FROM presence WHERE stream_pos > $2 AND stream_pos <= $3),
		EXISTS (SELECT 1 FROM device_list_changes WHERE stream_pos > $2 AND stream_pos <= $3)
			OR EXISTS (SELECT 1 FROM memberships WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3)`
	if withEvents {
		q += `
			OR EXISTS (SELECT 1 FROM events e WHERE e.stream_pos > $2 AND e.stream_pos <= $3
				AND e.type = 'm.room.member' AND e.state_key <> $1)`
	}
	return q
}

// SyncMoved reports which of the streams of SyncMoved changed in the
// stream positions (from, to], for user, and whether user's memberships
// changed after memFrom (-1: not asked, Memberships is true), in one
// statement. It reads the database, so that it is right whichever process
// wrote: several Polder processes may share one PostgreSQL.
func (db *DB) SyncMoved(ctx context.Context, user id.UserID, memFrom, from, to int64) (SyncMoved, error) {
	m := SyncMoved{Memberships: true}
	if memFrom < 0 {
		memFrom = math.MaxInt64 // the statement's answer is not used
	}
	if to <= from {
		to = from // nothing in the range; the memberships are still asked
	}
	scan := to-from <= syncMovedMaxScan
	err := db.read(ctx, "sync_moved", func(q querier) error {
		return q.QueryRowContext(ctx, syncMovedQuery(scan), string(user), from, to, memFrom).Scan(&m.Memberships, &m.AccountData, &m.Receipts, &m.Presence, &m.DeviceLists)
	})
	if memFrom == math.MaxInt64 {
		m.Memberships = true
	}
	if !scan {
		m.DeviceLists = true
	}
	return m, err
}

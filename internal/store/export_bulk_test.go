package store

import (
	"context"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/stateres"
)

// ApplyCurrentBulk runs applyCurrentBulk in a room.
func (tx *Tx) ApplyCurrentBulk(ctx context.Context, roomID id.RoomID, changes stateres.StateMap, pos int64) error {
	nid, err := roomNID(ctx, tx, roomID)
	if err != nil {
		return err
	}
	return tx.applyCurrentBulk(ctx, nid, changes, pos)
}

// WriteFullSnapshotBulk writes a full snapshot of entries with
// writeEntriesBulk and reads it back.
func (tx *Tx) WriteFullSnapshotBulk(ctx context.Context, roomID id.RoomID, entries stateres.StateMap) (stateres.StateMap, error) {
	nid, err := roomNID(ctx, tx, roomID)
	if err != nil {
		return nil, err
	}
	var snap int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO state_snapshots (room_nid, parent, chain_len) VALUES ($1, NULL, 0) RETURNING snapshot_nid`,
		nid).Scan(&snap); err != nil {
		return nil, err
	}
	if err := tx.writeEntriesBulk(ctx, snap, entries, false); err != nil {
		return nil, err
	}
	return readSnapshot(ctx, tx, nil, snap)
}

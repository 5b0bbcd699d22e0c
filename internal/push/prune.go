package push

import (
	"context"
	"time"

	"polder.dev/polder/internal/store"
)

// Pruning: notification rows are kept for counts and for GET
// /notifications, and nothing else ever deletes them. A row is no longer
// needed once it is older than Config.Retention, has been read and is
// not a highlight (store.DB.PrunePushActions says exactly which). The
// pruner walks the table in batches, pausing between them so that the
// writer stays free for sends, moves the staged rows (SQLite) at the end
// of a pass, and starts a new pass Config.PrunePass (an hour) after.

const (
	pruneBatch = 1000
	prunePause = 200 * time.Millisecond
)

// prune deletes unneeded notification rows until ctx ends.
func (s *Service) prune(ctx context.Context) {
	if s.cfg.Retention <= 0 {
		return
	}
	var key store.PushKey
	var passDeleted int64
	for {
		before := time.Now().Add(-s.cfg.Retention).UnixMilli()
		next, n, end, err := s.db.PrunePushActions(ctx, key, before, pruneBatch)
		wait := prunePause
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.Warn("prune notification rows", "err", err)
			wait = time.Minute
		case end:
			passDeleted += n
			if passDeleted > 0 {
				s.log.Info("pruned read notification rows", "deleted", passDeleted, "older_than", s.cfg.Retention)
			}
			s.m.pruned.Add(float64(n))
			if err := s.db.MovePushStaging(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("move staged notification rows", "err", err)
			}
			key, passDeleted, wait = store.PushKey{}, 0, s.cfg.PrunePass
		default:
			passDeleted += n
			s.m.pruned.Add(float64(n))
			key = next
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

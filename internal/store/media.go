package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The media repository's rows (migration 0016_media.sql; internal/media).
// Content is on disk, addressed by SHA-256; these rows point at it. The
// methods that delete rows return the hashes no row points at any more,
// for the caller to delete their files.

// Media is one media item: mxc://ServerName/MediaID.
type Media struct {
	ServerName  string
	MediaID     string
	UserID      string // the local uploader; "" for cached remote media
	SHA256      string // hex; "" while an asynchronous upload is pending
	Size        int64
	ContentType string
	UploadName  string
	CreatedTS   int64  // ms
	UploadedTS  int64  // ms; 0 while pending
	ExpiresTS   int64  // ms; when a pending ID is forgotten
	LastAccess  int64  // ms
	Quarantined string // "" served; else the reason it is not
}

// Pending reports whether m is an asynchronous upload still without content.
func (m Media) Pending() bool { return m.UploadedTS == 0 }

const mediaCols = `server_name, media_id, user_id, sha256, size, content_type, upload_name,
	created_ts, uploaded_ts, expires_ts, last_access_ts, quarantined`

func scanMedia(row interface{ Scan(...any) error }) (Media, error) {
	var m Media
	err := row.Scan(&m.ServerName, &m.MediaID, &m.UserID, &m.SHA256, &m.Size, &m.ContentType, &m.UploadName,
		&m.CreatedTS, &m.UploadedTS, &m.ExpiresTS, &m.LastAccess, &m.Quarantined)
	return m, err
}

// PutMedia inserts a media item. Returns ErrConflict when the ID is taken.
func (db *DB) PutMedia(ctx context.Context, m Media) error {
	return db.WithTx(ctx, "put_media", func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO media (`+mediaCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
			ON CONFLICT (server_name, media_id) DO NOTHING`,
			m.ServerName, m.MediaID, m.UserID, m.SHA256, m.Size, m.ContentType, m.UploadName,
			m.CreatedTS, m.UploadedTS, m.ExpiresTS, m.LastAccess, m.Quarantined)
		if err != nil {
			return fmt.Errorf("insert media: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrConflict
		}
		return nil
	})
}

// Media returns a media item, or ErrNotFound.
func (db *DB) Media(ctx context.Context, serverName, mediaID string) (Media, error) {
	var m Media
	err := db.read(ctx, "media", func(q querier) error {
		var err error
		m, err = scanMedia(q.QueryRowContext(ctx, `SELECT `+mediaCols+` FROM media WHERE server_name = $1 AND media_id = $2`,
			serverName, mediaID))
		return notFound(err)
	})
	return m, err
}

// CompleteMedia gives a pending media item (an asynchronous upload) its
// content. Returns ErrConflict when it has content already and
// ErrNotFound when there is no such pending item.
func (db *DB) CompleteMedia(ctx context.Context, m Media) error {
	return db.WithTx(ctx, "complete_media", func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE media SET sha256 = $3, size = $4, content_type = $5, upload_name = $6,
			uploaded_ts = $7, expires_ts = 0, last_access_ts = $7
			WHERE server_name = $1 AND media_id = $2 AND uploaded_ts = 0`,
			m.ServerName, m.MediaID, m.SHA256, m.Size, m.ContentType, m.UploadName, m.UploadedTS)
		if err != nil {
			return fmt.Errorf("complete media: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			return nil
		}
		var up int64
		if err := tx.QueryRowContext(ctx, `SELECT uploaded_ts FROM media WHERE server_name = $1 AND media_id = $2`,
			m.ServerName, m.MediaID).Scan(&up); err != nil {
			return notFound(err)
		}
		return ErrConflict
	})
}

// MediaUsage is the number of bytes of the media items userID uploaded
// (each item counts, also when its content is stored once for several).
func (db *DB) MediaUsage(ctx context.Context, userID string) (int64, error) {
	var n sql.NullInt64
	err := db.read(ctx, "media_usage", func(q querier) error {
		return q.QueryRowContext(ctx, `SELECT SUM(size) FROM media WHERE user_id = $1`, userID).Scan(&n)
	})
	return n.Int64, err
}

// PendingMediaCount is the number of userID's asynchronous uploads still
// without content that have not expired at now (ms).
func (db *DB) PendingMediaCount(ctx context.Context, userID string, now int64) (int, error) {
	var n int
	err := db.read(ctx, "pending_media_count", func(q querier) error {
		return q.QueryRowContext(ctx, `SELECT COUNT(*) FROM media WHERE user_id = $1 AND uploaded_ts = 0 AND expires_ts > $2`,
			userID, now).Scan(&n)
	})
	return n, err
}

// TouchMedia sets a media item's last access time (ms).
func (db *DB) TouchMedia(ctx context.Context, serverName, mediaID string, now int64) error {
	return db.WithTx(ctx, "touch_media", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE media SET last_access_ts = $3 WHERE server_name = $1 AND media_id = $2`,
			serverName, mediaID, now)
		return err
	})
}

// QuarantineMedia marks a media item as not to be served, for reason.
// Returns ErrNotFound when there is no such item.
func (db *DB) QuarantineMedia(ctx context.Context, serverName, mediaID, reason string) error {
	return db.WithTx(ctx, "quarantine_media", func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE media SET quarantined = $3 WHERE server_name = $1 AND media_id = $2`,
			serverName, mediaID, reason)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return nil
	})
}

// DeleteMedia deletes a media item and its thumbnails and returns the
// hashes no row points at any more. Returns ErrNotFound when there is no
// such item.
func (db *DB) DeleteMedia(ctx context.Context, serverName, mediaID string) (orphans []string, err error) {
	err = db.WithTx(ctx, "delete_media", func(tx *Tx) error {
		orphans = nil
		shas, err := mediaHashes(ctx, tx, `WHERE server_name = $1 AND media_id = $2`, serverName, mediaID)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM media WHERE server_name = $1 AND media_id = $2`, serverName, mediaID)
		if err != nil {
			return fmt.Errorf("delete media: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		orphans, err = unreferenced(ctx, tx, shas)
		return err
	})
	return orphans, err
}

// PurgeRemoteMedia deletes the cached media of other servers than
// localServer not accessed since before (ms), with their thumbnails. It
// returns how many items it deleted and the hashes no row points at any
// more.
func (db *DB) PurgeRemoteMedia(ctx context.Context, localServer string, before int64) (n int, orphans []string, err error) {
	err = db.WithTx(ctx, "purge_remote_media", func(tx *Tx) error {
		n, orphans = 0, nil
		const where = `WHERE server_name <> $1 AND last_access_ts < $2`
		shas, err := mediaHashes(ctx, tx, where, localServer, before)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM media `+where, localServer, before)
		if err != nil {
			return fmt.Errorf("purge remote media: %w", err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return err
		}
		n = int(k)
		orphans, err = unreferenced(ctx, tx, shas)
		return err
	})
	return n, orphans, err
}

// DeleteExpiredPendingMedia forgets asynchronous uploads that expired
// before now (ms) without content, and returns how many.
func (db *DB) DeleteExpiredPendingMedia(ctx context.Context, now int64) (int, error) {
	var n int64
	err := db.WithTx(ctx, "delete_expired_pending_media", func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM media WHERE uploaded_ts = 0 AND expires_ts <= $1`, now)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// mediaHashes returns the content and thumbnail hashes of the media rows
// matching where (a clause over the media table).
func mediaHashes(ctx context.Context, tx *Tx, where string, args ...any) ([]string, error) {
	a, err := column[string](tx.QueryContext(ctx, `SELECT sha256 FROM media `+where+` AND sha256 <> ''`, args...))
	if err != nil {
		return nil, fmt.Errorf("read media hashes: %w", err)
	}
	b, err := column[string](tx.QueryContext(ctx, `SELECT sha256 FROM media_thumbnails
		WHERE (server_name, media_id) IN (SELECT server_name, media_id FROM media `+where+`)`, args...))
	if err != nil {
		return nil, fmt.Errorf("read thumbnail hashes: %w", err)
	}
	return append(a, b...), nil
}

// unreferenced returns those of shas that no media or thumbnail row
// points at.
func unreferenced(ctx context.Context, tx *Tx, shas []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, s := range shas {
		if seen[s] {
			continue
		}
		seen[s] = true
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM media WHERE sha256 = $1)
			+ (SELECT COUNT(*) FROM media_thumbnails WHERE sha256 = $1)`, s).Scan(&n); err != nil {
			return nil, fmt.Errorf("count references: %w", err)
		}
		if n == 0 {
			out = append(out, s)
		}
	}
	return out, nil
}

// MediaThumbnail is a thumbnail of a media item.
type MediaThumbnail struct {
	ServerName, MediaID string
	Width, Height       int
	Method              string // crop or scale
	Animated            bool
	SHA256              string
	Size                int64
	ContentType         string
}

// MediaThumbnail returns the thumbnail of the key fields of t (server,
// media ID, size, method, animated), or ErrNotFound.
func (db *DB) MediaThumbnail(ctx context.Context, t MediaThumbnail) (MediaThumbnail, error) {
	err := db.read(ctx, "media_thumbnail", func(q querier) error {
		return notFound(q.QueryRowContext(ctx, `SELECT sha256, size, content_type FROM media_thumbnails
			WHERE server_name = $1 AND media_id = $2 AND width = $3 AND height = $4 AND method = $5 AND animated = $6`,
			t.ServerName, t.MediaID, t.Width, t.Height, t.Method, boolInt(t.Animated)).Scan(&t.SHA256, &t.Size, &t.ContentType))
	})
	return t, err
}

// PutMediaThumbnail stores a thumbnail; one already there stays.
// Returns ErrNotFound when the media item is gone.
func (db *DB) PutMediaThumbnail(ctx context.Context, t MediaThumbnail) error {
	return db.WithTx(ctx, "put_media_thumbnail", func(tx *Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM media WHERE server_name = $1 AND media_id = $2`,
			t.ServerName, t.MediaID).Scan(&one); err != nil {
			return notFound(err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO media_thumbnails
			(server_name, media_id, width, height, method, animated, sha256, size, content_type)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (server_name, media_id, width, height, method, animated) DO NOTHING`,
			t.ServerName, t.MediaID, t.Width, t.Height, t.Method, boolInt(t.Animated), t.SHA256, t.Size, t.ContentType)
		return err
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// MediaScan is an antivirus verdict on a blob.
type MediaScan struct {
	Clean     bool
	Signature string // what was found, when not clean
	ScannedTS int64  // ms
}

// MediaScan returns the verdict on the blob sha256, or ErrNotFound when
// it was never scanned.
func (db *DB) MediaScan(ctx context.Context, sha256 string) (MediaScan, error) {
	var s MediaScan
	var clean int
	err := db.read(ctx, "media_scan", func(q querier) error {
		return notFound(q.QueryRowContext(ctx, `SELECT clean, signature, scanned_ts FROM media_scans WHERE sha256 = $1`,
			sha256).Scan(&clean, &s.Signature, &s.ScannedTS))
	})
	s.Clean = clean == 1
	return s, err
}

// PutMediaScan records a verdict on the blob sha256, replacing any.
func (db *DB) PutMediaScan(ctx context.Context, sha256 string, s MediaScan) error {
	return db.WithTx(ctx, "put_media_scan", func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO media_scans (sha256, clean, signature, scanned_ts) VALUES ($1, $2, $3, $4)
			ON CONFLICT (sha256) DO UPDATE SET clean = EXCLUDED.clean, signature = EXCLUDED.signature, scanned_ts = EXCLUDED.scanned_ts`,
			sha256, boolInt(s.Clean), s.Signature, s.ScannedTS)
		return err
	})
}

// MediaSetting returns the media setting name, storing def first when it
// has none: the first caller fixes it for good.
func (db *DB) MediaSetting(ctx context.Context, name string, def int64) (int64, error) {
	var v int64
	err := db.WithTx(ctx, "media_setting", func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO media_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			name, def); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT value FROM media_settings WHERE name = $1`, name).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("media setting %s vanished", name)
		}
		return err
	})
	return v, err
}

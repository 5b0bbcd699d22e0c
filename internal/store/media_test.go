package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

func TestMedia(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		local := "hs.test"
		put := func(m store.Media) {
			t.Helper()
			if err := db.PutMedia(ctx, m); err != nil {
				t.Fatalf("PutMedia(%s): %v", m.MediaID, err)
			}
		}
		put(store.Media{ServerName: local, MediaID: "a", UserID: "@u:hs.test", SHA256: "s1", Size: 10, ContentType: "image/png", CreatedTS: 1, UploadedTS: 1})
		put(store.Media{ServerName: local, MediaID: "b", UserID: "@u:hs.test", SHA256: "s1", Size: 10, CreatedTS: 2, UploadedTS: 2})
		if err := db.PutMedia(ctx, store.Media{ServerName: local, MediaID: "a", CreatedTS: 3}); !errors.Is(err, store.ErrConflict) {
			t.Errorf("PutMedia(a again) = %v, want ErrConflict", err)
		}
		if n, err := db.MediaUsage(ctx, "@u:hs.test"); err != nil || n != 20 {
			t.Errorf("MediaUsage = %d, %v; want 20", n, err)
		}
		if n, err := db.MediaUsage(ctx, "@nobody:hs.test"); err != nil || n != 0 {
			t.Errorf("MediaUsage(nobody) = %d, %v; want 0", n, err)
		}
		m, err := db.Media(ctx, local, "a")
		if err != nil || m.SHA256 != "s1" || m.ContentType != "image/png" || m.Pending() {
			t.Errorf("Media(a) = %+v, %v", m, err)
		}
		if _, err := db.Media(ctx, local, "zz"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Media(zz) = %v, want ErrNotFound", err)
		}

		// Asynchronous uploads.
		put(store.Media{ServerName: local, MediaID: "p", UserID: "@u:hs.test", CreatedTS: 5, ExpiresTS: 100})
		put(store.Media{ServerName: local, MediaID: "q", UserID: "@u:hs.test", CreatedTS: 5, ExpiresTS: 50})
		if n, err := db.PendingMediaCount(ctx, "@u:hs.test", 60); err != nil || n != 1 {
			t.Errorf("PendingMediaCount = %d, %v; want 1", n, err)
		}
		done := store.Media{ServerName: local, MediaID: "p", SHA256: "s2", Size: 3, ContentType: "text/plain", UploadedTS: 70}
		if err := db.CompleteMedia(ctx, done); err != nil {
			t.Fatalf("CompleteMedia: %v", err)
		}
		if err := db.CompleteMedia(ctx, done); !errors.Is(err, store.ErrConflict) {
			t.Errorf("CompleteMedia again = %v, want ErrConflict", err)
		}
		if err := db.CompleteMedia(ctx, store.Media{ServerName: local, MediaID: "nope"}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CompleteMedia(nope) = %v, want ErrNotFound", err)
		}
		if n, err := db.DeleteExpiredPendingMedia(ctx, 60); err != nil || n != 1 {
			t.Errorf("DeleteExpiredPendingMedia = %d, %v; want 1 (q)", n, err)
		}

		// Thumbnails, deletion and orphans.
		th := store.MediaThumbnail{ServerName: local, MediaID: "a", Width: 32, Height: 32, Method: "crop", SHA256: "t1", Size: 5, ContentType: "image/png"}
		if err := db.PutMediaThumbnail(ctx, th); err != nil {
			t.Fatalf("PutMediaThumbnail: %v", err)
		}
		got, err := db.MediaThumbnail(ctx, store.MediaThumbnail{ServerName: local, MediaID: "a", Width: 32, Height: 32, Method: "crop"})
		if err != nil || got.SHA256 != "t1" {
			t.Errorf("MediaThumbnail = %+v, %v", got, err)
		}
		if _, err := db.MediaThumbnail(ctx, store.MediaThumbnail{ServerName: local, MediaID: "a", Width: 32, Height: 32, Method: "crop", Animated: true}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("MediaThumbnail(animated) = %v, want ErrNotFound", err)
		}
		orphans, err := db.DeleteMedia(ctx, local, "a")
		if err != nil || !slices.Equal(orphans, []string{"t1"}) { // s1 is still b's
			t.Errorf("DeleteMedia(a) = %v, %v; want [t1]", orphans, err)
		}
		orphans, err = db.DeleteMedia(ctx, local, "b")
		if err != nil || !slices.Equal(orphans, []string{"s1"}) {
			t.Errorf("DeleteMedia(b) = %v, %v; want [s1]", orphans, err)
		}
		if _, err := db.DeleteMedia(ctx, local, "b"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteMedia(b again) = %v, want ErrNotFound", err)
		}

		// Quarantine and the remote cache.
		if err := db.QuarantineMedia(ctx, local, "p", "admin"); err != nil {
			t.Fatalf("QuarantineMedia: %v", err)
		}
		if m, _ := db.Media(ctx, local, "p"); m.Quarantined != "admin" {
			t.Errorf("Quarantined = %q, want admin", m.Quarantined)
		}
		put(store.Media{ServerName: "other.test", MediaID: "old", SHA256: "r1", CreatedTS: 1, UploadedTS: 1, LastAccess: 10})
		put(store.Media{ServerName: "other.test", MediaID: "new", SHA256: "r2", CreatedTS: 1, UploadedTS: 1, LastAccess: 10})
		if err := db.TouchMedia(ctx, "other.test", "new", 1000); err != nil {
			t.Fatalf("TouchMedia: %v", err)
		}
		n, orphans, err := db.PurgeRemoteMedia(ctx, local, 500)
		if err != nil || n != 1 || !slices.Equal(orphans, []string{"r1"}) {
			t.Errorf("PurgeRemoteMedia = %d, %v, %v; want 1, [r1]", n, orphans, err)
		}

		// Scans and settings.
		if _, err := db.MediaScan(ctx, "x"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("MediaScan(x) = %v, want ErrNotFound", err)
		}
		if err := db.PutMediaScan(ctx, "x", store.MediaScan{Clean: false, Signature: "Eicar", ScannedTS: 1}); err != nil {
			t.Fatal(err)
		}
		if s, err := db.MediaScan(ctx, "x"); err != nil || s.Clean || s.Signature != "Eicar" {
			t.Errorf("MediaScan(x) = %+v, %v", s, err)
		}
		if v, err := db.MediaSetting(ctx, "cut", 42); err != nil || v != 42 {
			t.Errorf("MediaSetting = %d, %v; want 42", v, err)
		}
		if v, err := db.MediaSetting(ctx, "cut", 99); err != nil || v != 42 {
			t.Errorf("MediaSetting again = %d, %v; want 42 (kept)", v, err)
		}
	})
}

package store_test

import (
	"context"
	"errors"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/store/storetest"
)

// keepLower replaces a stored key with one of a lower first_message_index.
func keepLower(stored, k store.BackupKey) bool { return k.FirstMessageIndex < stored.FirstMessageIndex }

func TestKeyBackups(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const alice, bob = id.UserID("@alice:hs"), id.UserID("@bob:hs")

		if _, err := db.KeyBackupVersion(ctx, alice, 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("KeyBackupVersion(no backups) = %v, want ErrNotFound", err)
		}
		v1, err := db.CreateKeyBackupVersion(ctx, alice, "alg", []byte(`{"a":1}`))
		if err != nil || v1 != 1 {
			t.Fatalf("CreateKeyBackupVersion = %d, %v; want 1", v1, err)
		}
		if v, err := db.CreateKeyBackupVersion(ctx, bob, "alg", []byte(`{}`)); err != nil || v != 1 {
			t.Fatalf("CreateKeyBackupVersion(bob) = %d, %v; want 1 (versions count per user)", v, err)
		}

		key := func(room, session string, fmi int64) store.BackupKey {
			return store.BackupKey{RoomID: room, SessionID: session, FirstMessageIndex: fmi, SessionData: []byte(`{"x":1}`)}
		}
		v, err := db.PutBackupKeys(ctx, alice, v1, []store.BackupKey{key("!a", "s1", 5), key("!a", "s2", 5), key("!b", "s1", 5)}, keepLower)
		if err != nil || v.Count != 3 || v.Etag != 1 {
			t.Fatalf("PutBackupKeys = %+v, %v; want count 3, etag 1", v, err)
		}
		// A worse key changes nothing, not even the etag.
		if v, err = db.PutBackupKeys(ctx, alice, v1, []store.BackupKey{key("!a", "s1", 6)}, keepLower); err != nil || v.Count != 3 || v.Etag != 1 {
			t.Fatalf("PutBackupKeys(worse) = %+v, %v; want count 3, etag 1", v, err)
		}
		if v, err = db.PutBackupKeys(ctx, alice, v1, []store.BackupKey{key("!a", "s1", 2)}, keepLower); err != nil || v.Count != 3 || v.Etag != 2 {
			t.Fatalf("PutBackupKeys(better) = %+v, %v; want count 3, etag 2", v, err)
		}
		got, err := db.BackupKeys(ctx, alice, v1, "!a", "s1")
		if err != nil || len(got) != 1 || got[0].FirstMessageIndex != 2 || string(got[0].SessionData) != `{"x":1}` {
			t.Fatalf("BackupKeys(!a, s1) = %+v, %v; want the better key", got, err)
		}
		for _, c := range []struct {
			room, session string
			want          int
		}{{"", "", 3}, {"!a", "", 2}, {"!b", "", 1}, {"!c", "", 0}, {"!b", "s2", 0}} {
			got, err := db.BackupKeys(ctx, alice, v1, c.room, c.session)
			if err != nil || len(got) != c.want {
				t.Errorf("BackupKeys(%q, %q) = %d keys, %v; want %d", c.room, c.session, len(got), err, c.want)
			}
		}
		if got, err := db.BackupKeys(ctx, bob, v1, "", ""); err != nil || len(got) != 0 {
			t.Errorf("BackupKeys(bob) = %+v, %v; want none", got, err)
		}

		if err := db.UpdateKeyBackupVersion(ctx, alice, v1, "other", []byte(`{}`)); !errors.Is(err, store.ErrBackupAlgorithm) {
			t.Errorf("UpdateKeyBackupVersion(other algorithm) = %v, want ErrBackupAlgorithm", err)
		}
		if err := db.UpdateKeyBackupVersion(ctx, alice, 9, "alg", []byte(`{}`)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("UpdateKeyBackupVersion(unknown) = %v, want ErrNotFound", err)
		}
		if err := db.UpdateKeyBackupVersion(ctx, alice, v1, "alg", []byte(`{"b":2}`)); err != nil {
			t.Fatalf("UpdateKeyBackupVersion: %v", err)
		}

		v2, err := db.CreateKeyBackupVersion(ctx, alice, "alg", []byte(`{}`))
		if err != nil || v2 != 2 {
			t.Fatalf("CreateKeyBackupVersion(second) = %d, %v; want 2", v2, err)
		}
		var wrong *store.WrongBackupVersionError
		if _, err := db.PutBackupKeys(ctx, alice, v1, []store.BackupKey{key("!a", "s9", 1)}, keepLower); !errors.As(err, &wrong) || wrong.Current != v2 {
			t.Errorf("PutBackupKeys(old version) = %v, want WrongBackupVersionError{2}", err)
		}
		if _, err := db.PutBackupKeys(ctx, alice, 3, []store.BackupKey{key("!a", "s9", 1)}, keepLower); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("PutBackupKeys(unknown version) = %v, want ErrNotFound", err)
		}
		old, err := db.KeyBackupVersion(ctx, alice, v1)
		if err != nil || old.Count != 3 || old.Etag != 2 || string(old.AuthData) != `{"b":2}` {
			t.Errorf("KeyBackupVersion(1) = %+v, %v; want count 3, etag 2, the new auth_data", old, err)
		}
		if cur, err := db.KeyBackupVersion(ctx, alice, 0); err != nil || cur.Version != v2 || cur.Count != 0 {
			t.Errorf("KeyBackupVersion(current) = %+v, %v; want version 2, empty", cur, err)
		}

		// Keys of an old version may still be deleted.
		if v, err := db.DeleteBackupKeys(ctx, alice, v1, "!a", "s2"); err != nil || v.Count != 2 || v.Etag != 3 {
			t.Errorf("DeleteBackupKeys(!a, s2) = %+v, %v; want count 2, etag 3", v, err)
		}
		if v, err := db.DeleteBackupKeys(ctx, alice, v1, "!z", ""); err != nil || v.Count != 2 || v.Etag != 3 {
			t.Errorf("DeleteBackupKeys(nothing) = %+v, %v; want count 2, etag 3 (unchanged)", v, err)
		}
		if v, err := db.DeleteBackupKeys(ctx, alice, v1, "", ""); err != nil || v.Count != 0 || v.Etag != 4 {
			t.Errorf("DeleteBackupKeys(all) = %+v, %v; want count 0, etag 4", v, err)
		}

		// Deleting the current version makes the one before current again.
		if err := db.DeleteKeyBackupVersion(ctx, alice, v2); err != nil {
			t.Fatalf("DeleteKeyBackupVersion(2): %v", err)
		}
		if err := db.DeleteKeyBackupVersion(ctx, alice, v2); err != nil {
			t.Errorf("DeleteKeyBackupVersion(2) again = %v, want success", err)
		}
		if err := db.DeleteKeyBackupVersion(ctx, alice, 7); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteKeyBackupVersion(never created) = %v, want ErrNotFound", err)
		}
		if _, err := db.KeyBackupVersion(ctx, alice, v2); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("KeyBackupVersion(deleted) = %v, want ErrNotFound", err)
		}
		if _, err := db.BackupKeys(ctx, alice, v2, "", ""); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("BackupKeys(deleted version) = %v, want ErrNotFound", err)
		}
		if cur, err := db.KeyBackupVersion(ctx, alice, 0); err != nil || cur.Version != v1 {
			t.Errorf("KeyBackupVersion(current) after deleting 2 = %+v, %v; want version 1", cur, err)
		}
		if v3, err := db.CreateKeyBackupVersion(ctx, alice, "alg", []byte(`{}`)); err != nil || v3 != 3 {
			t.Errorf("CreateKeyBackupVersion after a deletion = %d, %v; want 3 (never reused)", v3, err)
		}

		if err := db.DeleteAllKeyBackups(ctx, alice); err != nil {
			t.Fatalf("DeleteAllKeyBackups: %v", err)
		}
		if _, err := db.KeyBackupVersion(ctx, alice, 0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("KeyBackupVersion after DeleteAllKeyBackups = %v, want ErrNotFound", err)
		}
		if _, err := db.KeyBackupVersion(ctx, bob, 0); err != nil {
			t.Errorf("KeyBackupVersion(bob) after deleting alice's = %v", err)
		}
	})
}

// Concurrent writers of one user's backups: versions stay distinct, and
// uploads of the same session neither fail nor lose the count.
func TestKeyBackupsConcurrent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const alice = id.UserID("@alice:hs")
		const n = 8
		versions := make(chan int64, n)
		errs := make(chan error, 2*n)
		for range n {
			go func() {
				v, err := db.CreateKeyBackupVersion(ctx, alice, "alg", []byte(`{}`))
				versions <- v
				errs <- err
			}()
		}
		seen := map[int64]bool{}
		for range n {
			if err := <-errs; err != nil {
				t.Fatalf("CreateKeyBackupVersion: %v", err)
			}
			seen[<-versions] = true
		}
		if len(seen) != n || !seen[n] {
			t.Fatalf("concurrent versions = %v, want 1..%d", seen, n)
		}
		for i := range n {
			go func() {
				_, err := db.PutBackupKeys(ctx, alice, n, []store.BackupKey{
					{RoomID: "!r", SessionID: "same", FirstMessageIndex: int64(i), SessionData: []byte(`{}`)},
					{RoomID: "!r", SessionID: string(rune('a' + i)), SessionData: []byte(`{}`)},
				}, keepLower)
				errs <- err
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Errorf("concurrent PutBackupKeys: %v", err)
			}
		}
		v, err := db.KeyBackupVersion(ctx, alice, 0)
		if err != nil || v.Count != n+1 {
			t.Errorf("KeyBackupVersion = %+v, %v; want count %d", v, err, n+1)
		}
		if k, err := db.BackupKeys(ctx, alice, n, "!r", "same"); err != nil || len(k) != 1 || k[0].FirstMessageIndex != 0 {
			t.Errorf("BackupKeys(same) = %+v, %v; want the lowest index, 0", k, err)
		}
	})
}

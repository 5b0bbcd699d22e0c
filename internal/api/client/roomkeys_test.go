package client_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"polder.dev/polder/internal/hstest"
)

const roomKeysPath = "/_matrix/client/v3/room_keys"

const backupAlg = "m.megolm_backup.v1.curve25519-aes-sha2"

// backupKey is a KeyBackupData object.
func backupKey(verified bool, fmi, fwd int, data string) map[string]any {
	return map[string]any{
		"first_message_index": fmi, "forwarded_count": fwd, "is_verified": verified,
		"session_data": map[string]any{"ciphertext": data},
	}
}

type backupKeyJSON struct {
	FirstMessageIndex int  `json:"first_message_index"`
	ForwardedCount    int  `json:"forwarded_count"`
	IsVerified        bool `json:"is_verified"`
	SessionData       struct {
		Ciphertext string `json:"ciphertext"`
	} `json:"session_data"`
}

type backupUpdateJSON struct {
	Etag  *string `json:"etag"`
	Count *int    `json:"count"`
}

func mustBackupUpdate(t *testing.T, r *hstest.Response, count int) string {
	t.Helper()
	hstest.MustOK(t, r)
	u := hstest.Decode[backupUpdateJSON](t, r)
	if u.Etag == nil || u.Count == nil || *u.Count != count {
		t.Fatalf("%s = %s; want an etag and count %d", r.Call, r.Body, count)
	}
	return *u.Etag
}

func createBackup(t *testing.T, c *hstest.Client) string {
	t.Helper()
	r := c.Do(t, "POST", roomKeysPath+"/version", map[string]any{
		"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "abcdefg"},
	})
	return hstest.Str(t, hstest.MustOK(t, r), "version")
}

// POST, GET, PUT and DELETE /room_keys/version[/{version}].
func TestKeyBackupVersions(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")

		hstest.MustErr(t, alice.Do(t, "GET", roomKeysPath+"/version", nil), 404, "M_NOT_FOUND")
		v1 := createBackup(t, alice)

		type versionJSON struct {
			Algorithm string          `json:"algorithm"`
			AuthData  json.RawMessage `json:"auth_data"`
			Count     *int            `json:"count"`
			Etag      *string         `json:"etag"`
			Version   string          `json:"version"`
		}
		getVersion := func(c *hstest.Client, v string) versionJSON {
			t.Helper()
			p := roomKeysPath + "/version"
			if v != "" {
				p += "/" + v
			}
			r := c.Do(t, "GET", p, nil)
			hstest.MustOK(t, r)
			return hstest.Decode[versionJSON](t, r)
		}
		got := getVersion(alice, "")
		if got.Version != v1 || got.Algorithm != backupAlg || string(got.AuthData) != `{"public_key":"abcdefg"}` ||
			got.Count == nil || *got.Count != 0 || got.Etag == nil {
			t.Errorf("GET /room_keys/version = %+v, want version %s with its algorithm and auth_data, count 0, an etag", got, v1)
		}
		if got := getVersion(alice, v1); got.Version != v1 {
			t.Errorf("GET /room_keys/version/%s = version %q", v1, got.Version)
		}

		v2 := createBackup(t, alice)
		if v2 == v1 {
			t.Fatalf("second POST /room_keys/version returned the same version %s", v1)
		}
		if got := getVersion(alice, ""); got.Version != v2 {
			t.Errorf("GET /room_keys/version after a second backup = %s, want the newest, %s", got.Version, v2)
		}
		if got := getVersion(alice, v1); got.Version != v1 {
			t.Errorf("GET /room_keys/version/%s (old) = %q, want it still readable", v1, got.Version)
		}

		put := func(v string, body map[string]any) *hstest.Response {
			return alice.Do(t, "PUT", roomKeysPath+"/version/"+v, body)
		}
		hstest.MustOK(t, put(v2, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "new"}, "version": v2}))
		hstest.MustOK(t, put(v2, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "newer"}}))
		if got := getVersion(alice, v2); string(got.AuthData) != `{"public_key":"newer"}` {
			t.Errorf("auth_data after PUT = %s, want the new one", got.AuthData)
		}

		for _, tt := range []struct {
			name    string
			c       *hstest.Client
			method  string
			path    string
			body    any
			status  int
			errcode string
		}{
			{"put with another algorithm", alice, "PUT", "/version/" + v2,
				map[string]any{"algorithm": "m.other", "auth_data": map[string]any{}}, 400, "M_INVALID_PARAM"},
			{"put with another version in the body", alice, "PUT", "/version/" + v2,
				map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{}, "version": v1}, 400, "M_INVALID_PARAM"},
			{"put without algorithm", alice, "PUT", "/version/" + v2, map[string]any{"auth_data": map[string]any{}}, 400, "M_MISSING_PARAM"},
			{"put without auth_data", alice, "PUT", "/version/" + v2, map[string]any{"algorithm": backupAlg}, 400, "M_MISSING_PARAM"},
			{"put an unknown version", alice, "PUT", "/version/99",
				map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{}}, 404, "M_NOT_FOUND"},
			{"put another user's version", bob, "PUT", "/version/" + v2,
				map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{}}, 404, "M_NOT_FOUND"},
			{"create without auth_data", alice, "POST", "/version", map[string]any{"algorithm": backupAlg}, 400, "M_MISSING_PARAM"},
			{"create with auth_data not an object", alice, "POST", "/version",
				map[string]any{"algorithm": backupAlg, "auth_data": "x"}, 400, "M_BAD_JSON"},
			{"get an unknown version", alice, "GET", "/version/99", nil, 404, "M_NOT_FOUND"},
			{"get a version that is not a number", alice, "GET", "/version/abc", nil, 404, "M_NOT_FOUND"},
			{"get another user's version", bob, "GET", "/version/" + v1, nil, 404, "M_NOT_FOUND"},
			{"bob has no current version", bob, "GET", "/version", nil, 404, "M_NOT_FOUND"},
			{"delete an unknown version", alice, "DELETE", "/version/99", nil, 404, "M_NOT_FOUND"},
			{"delete another user's version", bob, "DELETE", "/version/" + v1, nil, 404, "M_NOT_FOUND"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				hstest.MustErr(t, tt.c.Do(t, tt.method, roomKeysPath+tt.path, tt.body), tt.status, tt.errcode)
			})
		}

		// Deleting the current version: the one before becomes current; a
		// second DELETE succeeds (spec: "If the backup was previously
		// deleted, the call should succeed").
		hstest.MustOK(t, alice.Do(t, "DELETE", roomKeysPath+"/version/"+v2, nil))
		hstest.MustOK(t, alice.Do(t, "DELETE", roomKeysPath+"/version/"+v2, nil))
		hstest.MustErr(t, alice.Do(t, "GET", roomKeysPath+"/version/"+v2, nil), 404, "M_NOT_FOUND")
		if got := getVersion(alice, ""); got.Version != v1 {
			t.Errorf("current version after deleting %s = %s, want %s", v2, got.Version, v1)
		}
		hstest.MustOK(t, alice.Do(t, "DELETE", roomKeysPath+"/version/"+v1, nil))
		hstest.MustErr(t, alice.Do(t, "GET", roomKeysPath+"/version", nil), 404, "M_NOT_FOUND")
		if v3 := createBackup(t, alice); v3 == v1 || v3 == v2 {
			t.Errorf("a backup created after deletions reused version %s", v3)
		}
	})
}

// PUT, GET and DELETE /room_keys/keys[/{roomId}[/{sessionId}]]: the three
// shapes, etag and count, the wrong version, the replacement rules.
func TestKeyBackupKeys(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		v1 := createBackup(t, alice)
		const roomA, roomB = "!a:hs1.polder.test", "!b:hs1.polder.test"
		keys := func(v string, rest ...string) string {
			p := roomKeysPath + "/keys"
			for _, s := range rest {
				p += "/" + hstest.Query(s)
			}
			return p + "?version=" + v
		}

		// The three shapes of PUT.
		etag0 := getEtag(t, alice, v1)
		etag1 := mustBackupUpdate(t, alice.Do(t, "PUT", keys(v1, roomA, "s1"), backupKey(false, 5, 1, "a-s1")), 1)
		if etag1 == etag0 {
			t.Errorf("etag unchanged (%s) after a key was added", etag1)
		}
		etag2 := mustBackupUpdate(t, alice.Do(t, "PUT", keys(v1, roomA), map[string]any{"sessions": map[string]any{
			"s2": backupKey(false, 0, 0, "a-s2"), "s3": backupKey(true, 0, 0, "a-s3"),
		}}), 3)
		etag3 := mustBackupUpdate(t, alice.Do(t, "PUT", keys(v1), map[string]any{"rooms": map[string]any{
			roomB: map[string]any{"sessions": map[string]any{"s1": backupKey(false, 0, 0, "b-s1")}},
		}}), 4)
		if etag2 == etag1 || etag3 == etag2 {
			t.Errorf("etags %s, %s, %s: want each change to give a new one", etag1, etag2, etag3)
		}
		if got := getEtag(t, alice, v1); got != etag3 {
			t.Errorf("GET /room_keys/version etag = %s, want the last update's %s", got, etag3)
		}

		// The three shapes of GET.
		r := alice.Do(t, "GET", keys(v1), nil)
		hstest.MustOK(t, r)
		all := hstest.Decode[struct {
			Rooms map[string]struct {
				Sessions map[string]backupKeyJSON `json:"sessions"`
			} `json:"rooms"`
		}](t, r)
		if len(all.Rooms) != 2 || len(all.Rooms[roomA].Sessions) != 3 || len(all.Rooms[roomB].Sessions) != 1 ||
			all.Rooms[roomA].Sessions["s3"].SessionData.Ciphertext != "a-s3" || !all.Rooms[roomA].Sessions["s3"].IsVerified {
			t.Errorf("GET /room_keys/keys = %s, want 3 sessions in %s and 1 in %s", r.Body, roomA, roomB)
		}
		r = alice.Do(t, "GET", keys(v1, roomB), nil)
		hstest.MustOK(t, r)
		if room := hstest.Decode[struct {
			Sessions map[string]backupKeyJSON `json:"sessions"`
		}](t, r); len(room.Sessions) != 1 || room.Sessions["s1"].SessionData.Ciphertext != "b-s1" {
			t.Errorf("GET /room_keys/keys/%s = %s, want its one session", roomB, r.Body)
		}
		r = alice.Do(t, "GET", keys(v1, "!empty:hs1.polder.test"), nil)
		if got := string(r.Body); r.Status != 200 || got != `{"sessions":{}}` {
			t.Errorf("GET /room_keys/keys/{room without keys} = %d %s, want 200 {\"sessions\":{}}", r.Status, got)
		}
		if k := getKey(t, alice, keys(v1, roomA, "s1")); k.FirstMessageIndex != 5 || k.ForwardedCount != 1 || k.SessionData.Ciphertext != "a-s1" {
			t.Errorf("GET /room_keys/keys/%s/s1 = %+v", roomA, k)
		}

		// A second backup version: the first may no longer be written.
		v2 := createBackup(t, alice)
		e := hstest.MustErr(t, alice.Do(t, "PUT", keys(v1, roomA, "s9"), backupKey(false, 0, 0, "x")), 403, "M_WRONG_ROOM_KEYS_VERSION")
		if cur, _ := e["current_version"].(string); cur != v2 {
			t.Errorf("M_WRONG_ROOM_KEYS_VERSION current_version = %v, want %s", e["current_version"], v2)
		}
		hstest.MustErr(t, alice.Do(t, "PUT", keys(v1), map[string]any{"rooms": map[string]any{}}), 403, "M_WRONG_ROOM_KEYS_VERSION")
		for _, tt := range []struct {
			name    string
			c       *hstest.Client
			method  string
			path    string
			body    any
			status  int
			errcode string
		}{
			{"put to an unknown version", alice, "PUT", keys("99", roomA, "s1"), backupKey(false, 0, 0, "x"), 404, "M_NOT_FOUND"},
			{"put to another user's version", bob, "PUT", keys(v2, roomA, "s1"), backupKey(false, 0, 0, "x"), 404, "M_NOT_FOUND"},
			{"put without version", alice, "PUT", roomKeysPath + "/keys/" + hstest.Query(roomA) + "/s1", backupKey(false, 0, 0, "x"), 400, "M_MISSING_PARAM"},
			{"get without version", alice, "GET", roomKeysPath + "/keys", nil, 400, "M_MISSING_PARAM"},
			{"delete without version", alice, "DELETE", roomKeysPath + "/keys", nil, 400, "M_MISSING_PARAM"},
			{"get from an unknown version", alice, "GET", keys("99"), nil, 404, "M_NOT_FOUND"},
			{"get a session without a key", alice, "GET", keys(v1, roomA, "nosuch"), nil, 404, "M_NOT_FOUND"},
			{"delete from an unknown version", alice, "DELETE", keys("99", roomA), nil, 404, "M_NOT_FOUND"},
			{"put a key without is_verified", alice, "PUT", keys(v2, roomA, "s1"),
				map[string]any{"first_message_index": 0, "forwarded_count": 0, "session_data": map[string]any{}}, 400, "M_BAD_JSON"},
			{"put a key with is_verified not a boolean", alice, "PUT", keys(v2, roomA, "s1"),
				map[string]any{"first_message_index": 0, "forwarded_count": 0, "is_verified": "yes", "session_data": map[string]any{}}, 400, "M_BAD_JSON"},
			{"put a key without session_data", alice, "PUT", keys(v2, roomA, "s1"),
				map[string]any{"first_message_index": 0, "forwarded_count": 0, "is_verified": false}, 400, "M_BAD_JSON"},
			{"put rooms without rooms", alice, "PUT", keys(v2), map[string]any{}, 400, "M_MISSING_PARAM"},
			{"put a room without sessions", alice, "PUT", keys(v2, roomA), map[string]any{}, 400, "M_MISSING_PARAM"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				hstest.MustErr(t, tt.c.Do(t, tt.method, tt.path, tt.body), tt.status, tt.errcode)
			})
		}
		if got := getEtag(t, alice, v2); got != "0" {
			t.Errorf("etag of %s after refused writes = %s, want 0 (nothing changed)", v2, got)
		}

		// The old version can still be read and its keys deleted.
		if k := getKey(t, alice, keys(v1, roomB, "s1")); k.SessionData.Ciphertext != "b-s1" {
			t.Errorf("GET a key of the old version = %+v", k)
		}
		etag4 := mustBackupUpdate(t, alice.Do(t, "DELETE", keys(v1, roomA, "s1"), nil), 3)
		hstest.MustErr(t, alice.Do(t, "GET", keys(v1, roomA, "s1"), nil), 404, "M_NOT_FOUND")
		if etag4 == etag3 {
			t.Errorf("etag unchanged (%s) after a key was deleted", etag4)
		}
		etag5 := mustBackupUpdate(t, alice.Do(t, "DELETE", keys(v1, roomA), nil), 1)
		if etag5 == etag4 {
			t.Errorf("etag unchanged (%s) after a room's keys were deleted", etag5)
		}
		if got := mustBackupUpdate(t, alice.Do(t, "DELETE", keys(v1, roomA), nil), 1); got != etag5 {
			t.Errorf("etag changed (%s to %s) by a DELETE that deleted nothing", etag5, got)
		}
		r = alice.Do(t, "GET", keys(v1), nil)
		if hstest.MustOK(t, r); string(r.Body) != `{"rooms":{"`+roomB+`":{"sessions":{"s1":{"first_message_index":0,"forwarded_count":0,"is_verified":false,"session_data":{"ciphertext":"b-s1"}}}}}}` {
			t.Errorf("GET /room_keys/keys after deletions = %s, want only %s's key", r.Body, roomB)
		}
		mustBackupUpdate(t, alice.Do(t, "DELETE", keys(v1), nil), 0)
		r = alice.Do(t, "GET", keys(v1), nil)
		if hstest.MustOK(t, r); string(r.Body) != `{"rooms":{}}` {
			t.Errorf("GET /room_keys/keys of an emptied backup = %s, want {\"rooms\":{}}", r.Body)
		}

		// Deleting a version deletes its keys.
		mustBackupUpdate(t, alice.Do(t, "PUT", keys(v2, roomA, "s1"), backupKey(false, 0, 0, "x")), 1)
		hstest.MustOK(t, alice.Do(t, "DELETE", roomKeysPath+"/version/"+v2, nil))
		hstest.MustErr(t, alice.Do(t, "GET", keys(v2), nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, alice.Do(t, "PUT", keys(v2, roomA, "s1"), backupKey(false, 0, 0, "x")), 404, "M_NOT_FOUND")
	})
}

func getEtag(t *testing.T, c *hstest.Client, version string) string {
	t.Helper()
	return hstest.Str(t, hstest.MustOK(t, c.Do(t, "GET", roomKeysPath+"/version/"+version, nil)), "etag")
}

func getKey(t *testing.T, c *hstest.Client, path string) backupKeyJSON {
	t.Helper()
	r := c.Do(t, "GET", path, nil)
	hstest.MustOK(t, r)
	return hstest.Decode[backupKeyJSON](t, r)
}

// The rules for replacing a session's key (spec: "When a client uploads a
// key for a session that the server already has a key for"): is_verified
// first, then the lower first_message_index, then the lower
// forwarded_count. Complement's TestE2EKeyBackupReplaceRoomKeyRules checks
// the keys that must not replace; this checks both directions.
func TestKeyBackupReplaceRules(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		v := createBackup(t, alice)
		type key struct {
			verified bool
			fmi, fwd int
		}
		for i, tt := range []struct {
			stored, upload key
			replaces       bool
		}{
			{key{false, 10, 5}, key{false, 11, 5}, false},
			{key{false, 10, 5}, key{false, 10, 6}, false},
			{key{false, 10, 5}, key{false, 10, 5}, false},
			{key{false, 10, 5}, key{false, 9, 5}, true},
			{key{false, 10, 5}, key{false, 10, 4}, true},
			{key{false, 10, 5}, key{false, 9, 9}, true}, // a lower index wins over a higher count
			{key{false, 10, 5}, key{true, 20, 9}, true}, // verified wins over everything
			{key{true, 10, 5}, key{false, 0, 0}, false},
			{key{true, 10, 5}, key{true, 11, 0}, false},
			{key{true, 10, 5}, key{true, 10, 6}, false},
			{key{true, 10, 5}, key{true, 9, 9}, true},
			{key{true, 10, 5}, key{true, 10, 4}, true},
		} {
			t.Run(fmt.Sprintf("%+v then %+v", tt.stored, tt.upload), func(t *testing.T) {
				path := roomKeysPath + "/keys/" + hstest.Query("!r:hs1.polder.test") + fmt.Sprintf("/s%d?version=%s", i, v)
				mustBackupUpdate(t, alice.Do(t, "PUT", path, backupKey(tt.stored.verified, tt.stored.fmi, tt.stored.fwd, "stored")), i+1)
				before := getEtag(t, alice, v)
				etag := mustBackupUpdate(t, alice.Do(t, "PUT", path, backupKey(tt.upload.verified, tt.upload.fmi, tt.upload.fwd, "upload")), i+1)
				want := tt.stored
				if tt.replaces {
					want = tt.upload
				}
				k := getKey(t, alice, path)
				if got := (key{k.IsVerified, k.FirstMessageIndex, k.ForwardedCount}); got != want {
					t.Errorf("stored key = %+v, want %+v", got, want)
				}
				if (k.SessionData.Ciphertext == "upload") != tt.replaces {
					t.Errorf("session_data = %q, want the %s key's", k.SessionData.Ciphertext, map[bool]string{true: "uploaded", false: "stored"}[tt.replaces])
				}
				if (etag != before) != tt.replaces {
					t.Errorf("etag %s -> %s; want it to change only when the key was replaced", before, etag)
				}
			})
		}
	})
}

package e2ee

// Server-side key backups (client-server API, "Server-side key backups";
// OpenAPI key_backup.yaml). Versions are numbered per user from 1 and sent
// as decimal strings; a version string that is not one is unknown (404).
// Where the spec is silent this follows Synapse: keys may be read and
// deleted in any version that exists, but written only in the current one;
// auth_data of any version may be replaced; ?version= is required on the
// key routes (the client API checks that).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// BackupVersion describes a backup version (GET /room_keys/version).
type BackupVersion struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int64           `json:"count"`
	Etag      string          `json:"etag"`
	Version   string          `json:"version"`
}

// BackupKey is the backed-up key of one megolm session (KeyBackupData).
// Decoding requires every field, and session_data to be an object.
type BackupKey struct {
	FirstMessageIndex int64           `json:"first_message_index"`
	ForwardedCount    int64           `json:"forwarded_count"`
	IsVerified        bool            `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

// UnmarshalJSON decodes a KeyBackupData object, whose four fields are all
// required.
func (k *BackupKey) UnmarshalJSON(data []byte) error {
	var raw struct {
		FirstMessageIndex *int64          `json:"first_message_index"`
		ForwardedCount    *int64          `json:"forwarded_count"`
		IsVerified        *bool           `json:"is_verified"`
		SessionData       json.RawMessage `json:"session_data"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	switch {
	case raw.FirstMessageIndex == nil:
		return errors.New("first_message_index is required")
	case raw.ForwardedCount == nil:
		return errors.New("forwarded_count is required")
	case raw.IsVerified == nil:
		return errors.New("is_verified is required")
	case !isObject(raw.SessionData):
		return errors.New("session_data must be an object")
	case *raw.FirstMessageIndex < 0 || *raw.ForwardedCount < 0:
		return errors.New("first_message_index and forwarded_count may not be negative")
	}
	*k = BackupKey{*raw.FirstMessageIndex, *raw.ForwardedCount, *raw.IsVerified, raw.SessionData}
	return nil
}

// RoomBackup is the backed-up keys of one room (RoomKeyBackup), by session
// ID.
type RoomBackup struct {
	Sessions map[string]BackupKey `json:"sessions"`
}

// BackupKeys is the keys of a backup, by room (GET /room_keys/keys).
type BackupKeys struct {
	Rooms map[id.RoomID]RoomBackup `json:"rooms"`
}

// BackupUpdate answers the writes to a backup's keys
// (RoomKeysUpdateResponse).
type BackupUpdate struct {
	Etag  string `json:"etag"`
	Count int64  `json:"count"`
}

// betterBackupKey reports whether k should replace the stored key of the
// same session (spec: "When a client uploads a key for a session that the
// server already has a key for, ..."): a verified key beats an unverified
// one; between equals in that, the lower first_message_index wins; then the
// lower forwarded_count. A key equal in all three keeps the stored one.
func betterBackupKey(stored, k store.BackupKey) bool {
	if stored.IsVerified != k.IsVerified {
		return k.IsVerified
	}
	if stored.FirstMessageIndex != k.FirstMessageIndex {
		return k.FirstMessageIndex < stored.FirstMessageIndex
	}
	return k.ForwardedCount < stored.ForwardedCount
}

// parseBackupVersion reads a version string; ok is false for one this
// server never hands out.
func parseBackupVersion(s string) (int64, bool) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || strconv.FormatInt(v, 10) != s {
		return 0, false
	}
	return v, true
}

func unknownBackupVersion() error { return mxerr.NotFound("Unknown backup version") }

func toBackupVersion(v store.KeyBackupVersion) *BackupVersion {
	return &BackupVersion{
		Algorithm: v.Algorithm,
		AuthData:  v.AuthData,
		Count:     v.Count,
		Etag:      strconv.FormatInt(v.Etag, 10),
		Version:   strconv.FormatInt(v.Version, 10),
	}
}

// CreateBackupVersion creates a backup version of a local user, which
// becomes the current one, and returns it (POST /room_keys/version).
// Returns M_BAD_JSON when auth_data is not an object, M_INVALID_PARAM when
// algorithm is empty.
func (s *Service) CreateBackupVersion(ctx context.Context, user id.UserID, algorithm string, authData json.RawMessage) (string, error) {
	if err := checkBackupInfo(algorithm, authData); err != nil {
		return "", err
	}
	v, err := s.db.CreateKeyBackupVersion(ctx, user, algorithm, authData)
	if err != nil {
		return "", fmt.Errorf("create key backup version: %w", err)
	}
	return strconv.FormatInt(v, 10), nil
}

func checkBackupInfo(algorithm string, authData json.RawMessage) error {
	if algorithm == "" {
		return mxerr.InvalidParam("algorithm may not be empty")
	}
	if !isObject(authData) {
		return mxerr.BadJSON("auth_data must be an object")
	}
	return nil
}

// BackupVersion returns a backup version of the user, or the current one
// when version is "" (GET /room_keys/version[/{version}]). Returns
// M_NOT_FOUND when there is no such version, it was deleted, or the user has
// no backup.
func (s *Service) BackupVersion(ctx context.Context, user id.UserID, version string) (*BackupVersion, error) {
	var n int64
	if version != "" {
		var ok bool
		if n, ok = parseBackupVersion(version); !ok {
			return nil, unknownBackupVersion()
		}
	}
	v, err := s.db.KeyBackupVersion(ctx, user, n)
	if errors.Is(err, store.ErrNotFound) {
		if version == "" {
			return nil, mxerr.NotFound("No current backup version")
		}
		return nil, unknownBackupVersion()
	}
	if err != nil {
		return nil, fmt.Errorf("read key backup version: %w", err)
	}
	return toBackupVersion(v), nil
}

// UpdateBackupVersion replaces the auth_data of a backup version (PUT
// /room_keys/version/{version}). bodyVersion is the version in the request
// body, "" if absent. Returns M_INVALID_PARAM when bodyVersion or algorithm
// does not match the version's, and M_NOT_FOUND for an unknown version.
func (s *Service) UpdateBackupVersion(ctx context.Context, user id.UserID, version, bodyVersion, algorithm string, authData json.RawMessage) error {
	if bodyVersion != "" && bodyVersion != version {
		return mxerr.InvalidParam("The version in the body does not match the version in the path")
	}
	if err := checkBackupInfo(algorithm, authData); err != nil {
		return err
	}
	n, ok := parseBackupVersion(version)
	if !ok {
		return unknownBackupVersion()
	}
	switch err := s.db.UpdateKeyBackupVersion(ctx, user, n, algorithm, authData); {
	case errors.Is(err, store.ErrNotFound):
		return unknownBackupVersion()
	case errors.Is(err, store.ErrBackupAlgorithm):
		return mxerr.InvalidParam("The algorithm does not match the backup's")
	case err != nil:
		return fmt.Errorf("update key backup version: %w", err)
	}
	return nil
}

// DeleteBackupVersion deletes a backup version and its keys (DELETE
// /room_keys/version/{version}). A version deleted before is deleted
// again without error; one that never existed is M_NOT_FOUND.
func (s *Service) DeleteBackupVersion(ctx context.Context, user id.UserID, version string) error {
	n, ok := parseBackupVersion(version)
	if !ok {
		return unknownBackupVersion()
	}
	err := s.db.DeleteKeyBackupVersion(ctx, user, n)
	if errors.Is(err, store.ErrNotFound) {
		return unknownBackupVersion()
	}
	if err != nil {
		return fmt.Errorf("delete key backup version: %w", err)
	}
	return nil
}

// DeleteAllBackups deletes every key backup of a local user, for account
// deactivation (Synapse does the same).
func (s *Service) DeleteAllBackups(ctx context.Context, user id.UserID) error {
	if err := s.db.DeleteAllKeyBackups(ctx, user); err != nil {
		return fmt.Errorf("delete key backups: %w", err)
	}
	return nil
}

// PutBackupKeys stores keys in the user's current backup version (PUT
// /room_keys/keys[/{roomId}[/{sessionId}]]). A key for a session the
// backup has already replaces the stored key only if it is better (see
// betterBackupKey). Returns M_WRONG_ROOM_KEYS_VERSION (403, with
// current_version) when version exists but is not the current one, and
// M_NOT_FOUND when it does not exist.
func (s *Service) PutBackupKeys(ctx context.Context, user id.UserID, version string, rooms map[id.RoomID]RoomBackup) (BackupUpdate, error) {
	n, ok := parseBackupVersion(version)
	if !ok {
		return BackupUpdate{}, unknownBackupVersion()
	}
	var keys []store.BackupKey
	for room, rb := range rooms {
		for session, k := range rb.Sessions {
			keys = append(keys, store.BackupKey{
				RoomID: string(room), SessionID: session,
				FirstMessageIndex: k.FirstMessageIndex, ForwardedCount: k.ForwardedCount,
				IsVerified: k.IsVerified, SessionData: k.SessionData,
			})
		}
	}
	v, err := s.db.PutBackupKeys(ctx, user, n, keys, betterBackupKey)
	var wrong *store.WrongBackupVersionError
	switch {
	case errors.As(err, &wrong):
		cur := strconv.FormatInt(wrong.Current, 10)
		return BackupUpdate{}, mxerr.New("M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version; the current one is %s", cur).
			WithStatus(403).With("current_version", cur)
	case errors.Is(err, store.ErrNotFound):
		return BackupUpdate{}, unknownBackupVersion()
	case err != nil:
		return BackupUpdate{}, fmt.Errorf("store backup keys: %w", err)
	}
	return BackupUpdate{Etag: strconv.FormatInt(v.Etag, 10), Count: v.Count}, nil
}

// BackupKeys returns keys of a backup version, current or not: all of them
// (room ""), a room's (session ""), or one session's (GET
// /room_keys/keys[/{roomId}[/{sessionId}]]). Rooms without keys are left
// out. Returns M_NOT_FOUND for an unknown version.
func (s *Service) BackupKeys(ctx context.Context, user id.UserID, version string, room id.RoomID, session string) (BackupKeys, error) {
	n, ok := parseBackupVersion(version)
	if !ok {
		return BackupKeys{}, unknownBackupVersion()
	}
	keys, err := s.db.BackupKeys(ctx, user, n, string(room), session)
	if errors.Is(err, store.ErrNotFound) {
		return BackupKeys{}, unknownBackupVersion()
	}
	if err != nil {
		return BackupKeys{}, fmt.Errorf("read backup keys: %w", err)
	}
	out := BackupKeys{Rooms: map[id.RoomID]RoomBackup{}}
	for _, k := range keys {
		rb, ok := out.Rooms[id.RoomID(k.RoomID)]
		if !ok {
			rb = RoomBackup{Sessions: map[string]BackupKey{}}
			out.Rooms[id.RoomID(k.RoomID)] = rb
		}
		rb.Sessions[k.SessionID] = BackupKey{k.FirstMessageIndex, k.ForwardedCount, k.IsVerified, k.SessionData}
	}
	return out, nil
}

// DeleteBackupKeys deletes keys from a backup version, current or not: all
// of them (room ""), a room's (session ""), or one session's (DELETE
// /room_keys/keys[/{roomId}[/{sessionId}]]). Returns M_NOT_FOUND for an
// unknown version.
func (s *Service) DeleteBackupKeys(ctx context.Context, user id.UserID, version string, room id.RoomID, session string) (BackupUpdate, error) {
	n, ok := parseBackupVersion(version)
	if !ok {
		return BackupUpdate{}, unknownBackupVersion()
	}
	v, err := s.db.DeleteBackupKeys(ctx, user, n, string(room), session)
	if errors.Is(err, store.ErrNotFound) {
		return BackupUpdate{}, unknownBackupVersion()
	}
	if err != nil {
		return BackupUpdate{}, fmt.Errorf("delete backup keys: %w", err)
	}
	return BackupUpdate{Etag: strconv.FormatInt(v.Etag, 10), Count: v.Count}, nil
}

package sync

import (
	"encoding/json"

	"maunium.net/go/mautrix/id"
)

// Hooks for the black-box tests.

var Glob = glob

func ApplyFields(paths []string, ev json.RawMessage) json.RawMessage {
	return parseFields(paths).apply(ev)
}

var SplitPath = splitPath

// LazyCache wraps the lazy-loading member cache.
type LazyCache struct{ c *lazyCache }

func NewLazyCache() LazyCache { return LazyCache{newLazyCache()} }

func (l LazyCache) Known(user id.UserID, dev id.DeviceID, r id.RoomID, u id.UserID, eid id.EventID, since int64) bool {
	return l.c.known(deviceKey{user, dev}, r, u, eid, since)
}

func (l LazyCache) Record(user id.UserID, dev id.DeviceID, at int64, r id.RoomID, u id.UserID, eid id.EventID) {
	l.c.record(deviceKey{user, dev}, at, map[roomUser]id.EventID{{r, u}: eid})
}

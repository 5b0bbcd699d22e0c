package user

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/mxerr"
)

// Profiles of users of other servers are asked of their server through
// Config.RemoteProfile (server-server API, /query/profile) and kept for a
// few minutes: clients ask for the same profiles again and again (every
// member list, every mention), and the spec suggests caching the answer.
// user ranks below federation, so the lookup is a func that server wires
// (directory.RemoteProfiles).

// RemoteProfileFunc asks a user's own server for their profile; field ""
// asks for all of it. It returns the fields by name as JSON values, or an
// error for the client: *mxerr.Error M_NOT_FOUND (no such user or field),
// M_FORBIDDEN (the server does not disclose it) or a 502 M_UNKNOWN. It
// must never pass the remote server's own error on.
type RemoteProfileFunc func(ctx context.Context, u id.UserID, field string) (map[string]json.RawMessage, error)

// Remote profile cache bounds.
const (
	remoteProfileTTL = 5 * time.Minute
	// remoteProfileMissTTL is how long a "no such user or field" answer
	// is kept: shorter, so that a new account or a new display name of
	// another server's user shows soon.
	remoteProfileMissTTL = time.Minute
	remoteProfileMax     = 4096
)

type remoteProfileKey struct {
	user  id.UserID
	field string
}

type remoteProfileEntry struct {
	fields  map[string]json.RawMessage // not modified once cached
	err     *mxerr.Error               // M_NOT_FOUND or M_FORBIDDEN
	expires time.Time
}

// remoteProfileCache holds recent answers of other servers. The zero
// value is ready to use.
type remoteProfileCache struct {
	mu sync.Mutex
	m  map[remoteProfileKey]remoteProfileEntry
}

func (c *remoteProfileCache) get(k remoteProfileKey, now time.Time) (remoteProfileEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !now.Before(e.expires) {
		return remoteProfileEntry{}, false
	}
	return e, true
}

func (c *remoteProfileCache) put(k remoteProfileKey, e remoteProfileEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[remoteProfileKey]remoteProfileEntry{}
	}
	if len(c.m) >= remoteProfileMax {
		for k, old := range c.m {
			if !now.Before(old.expires) {
				delete(c.m, k)
			}
		}
		// Still full: drop arbitrary entries (map order) to make room.
		for k := range c.m {
			if len(c.m) < remoteProfileMax {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[k] = e
}

// remoteProfile returns the profile (field "") or one field of a user of
// another server, from the cache or from their server. Errors: see
// RemoteProfileFunc; M_INVALID_PARAM for a malformed server name, a 502
// when no lookup is configured.
func (s *Service) remoteProfile(ctx context.Context, u id.UserID, field string) (map[string]json.RawMessage, error) {
	if !event.ValidServerName(u.Homeserver()) {
		return nil, mxerr.InvalidParam("Invalid user ID %q", u)
	}
	if s.cfg.RemoteProfile == nil {
		return nil, needsFederation(u)
	}
	k := remoteProfileKey{user: u, field: field}
	if e, ok := s.remoteProfiles.get(k, s.now()); ok {
		if e.err != nil {
			return nil, e.err
		}
		return copyFields(e.fields), nil
	}
	fields, err := s.cfg.RemoteProfile(ctx, u, field)
	if err != nil {
		if mx, ok := mxerr.As(err); ok && (mx.Code == "M_NOT_FOUND" || mx.Code == "M_FORBIDDEN") {
			s.remoteProfiles.put(k, remoteProfileEntry{err: mx, expires: s.now().Add(remoteProfileMissTTL)}, s.now())
		}
		return nil, err
	}
	s.remoteProfiles.put(k, remoteProfileEntry{fields: copyFields(fields), expires: s.now().Add(remoteProfileTTL)}, s.now())
	return fields, nil
}

func copyFields(m map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

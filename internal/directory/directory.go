// Package directory owns how users find rooms, people and messages on this
// server: local room aliases, the published room directory, the user
// directory and full-text search of events (client-server API, "Room
// aliases", "Published room directory", "User directory" and "Server Side
// Search"). It holds the rules (who may create or delete an alias or
// publish a room, which users a searcher may see, which events a search
// may return); the SQL, including the triggers that keep the search index
// and the room statistics in step with the event graph, lives in store,
// and the HTTP in api/client.
//
// It is a package of its own rather than files of room because it only
// reads the event graph: the one event it causes (the canonical alias
// update after an alias is deleted) goes through room.Send like any
// client's. room stays about building, authorising and persisting events,
// and its history visibility rules (room.Visible) are reused here, not
// repeated. Profiles live in user; their propagation to member events is
// room.RefreshProfile, called by the profile handlers.
//
// Imported by api/client and server.
package directory

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/user"
)

// typeCanonicalAlias is the event type of a room's published aliases.
const typeCanonicalAlias = "m.room.canonical_alias"

// Config is what the directory needs of the server's settings.
type Config struct {
	ServerName string
	// Remote asks other servers about their aliases and directories
	// (remote.go); nil answers such requests with a 502.
	Remote Remote
}

// Service is the directory service.
type Service struct {
	cfg   Config
	db    *store.DB
	rooms *room.Service
	log   *slog.Logger
}

// New returns the directory service.
func New(cfg Config, db *store.DB, rooms *room.Service, log *slog.Logger) *Service {
	return &Service{cfg: cfg, db: db, rooms: rooms, log: log}
}

// needsFederation is the error for a request that only another server can
// answer when this one has no Remote to ask it (federation disabled).
// Synapse answers 502 when it cannot reach the other server.
func needsFederation(what string) error {
	return mxerr.Unknown("%s needs federation, which is disabled on this server", what).WithStatus(http.StatusBadGateway)
}

// canChangeRoomList reports whether who may change a room's entry in the
// directories (its published visibility, aliases it did not create): a
// server admin, or a joined member with the power to send
// m.room.canonical_alias, as Synapse decides. ErrUnknownRoom-style
// failures count as no.
func (s *Service) canChangeRoomList(ctx context.Context, who user.Identity, roomID id.RoomID) (bool, error) {
	if who.IsAdmin {
		return true, nil
	}
	m, err := s.rooms.Membership(ctx, roomID, who.UserID)
	if err != nil || m != room.Join {
		return false, err
	}
	pl, err := s.rooms.PowerLevels(ctx, roomID)
	if errors.Is(err, room.ErrUnknownRoom) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return pl.UserLevel(who.UserID) >= pl.EventLevel(typeCanonicalAlias, true), nil
}

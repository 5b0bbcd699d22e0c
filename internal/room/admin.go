package room

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// What a server admin may do to rooms, for the Synapse admin API
// (api/client/admin_rooms.go): read any room without being in it, make
// every local member leave, block joins. The caller has checked that the
// requester is an admin. A room's rows are never purged: numeric room IDs
// are cached for the life of the process and every process sharing the
// database (store.Tx.roomNID), so deleting them is not safe.

// localSuffix ends the user IDs of this server's users.
func (s *Service) localSuffix() string { return ":" + s.cfg.ServerName }

// IsLocalUser reports whether u is a user of this server.
func (s *Service) IsLocalUser(u id.UserID) bool {
	return strings.HasSuffix(string(u), s.localSuffix())
}

// AdminRooms lists the rooms this server knows (see store.AdminRoomQuery;
// the local suffix is filled in) and how many match in all.
func (s *Service) AdminRooms(ctx context.Context, q store.AdminRoomQuery) ([]store.AdminRoom, int, error) {
	q.LocalSuffix = s.localSuffix()
	return s.db.AdminRooms(ctx, q)
}

// AdminRoom returns what the admin API shows of a room. Errors:
// M_NOT_FOUND.
func (s *Service) AdminRoom(ctx context.Context, roomID id.RoomID) (store.AdminRoom, error) {
	r, err := s.db.AdminRoom(ctx, roomID, s.localSuffix())
	if errors.Is(err, store.ErrNotFound) {
		return r, mxerr.NotFound("Room not found")
	}
	return r, err
}

// AdminMembers returns a room's current memberships of the given kinds
// (all when none). Errors: M_NOT_FOUND.
func (s *Service) AdminMembers(ctx context.Context, roomID id.RoomID, kinds ...string) ([]store.Membership, error) {
	if err := s.known(ctx, roomID); err != nil {
		return nil, err
	}
	return s.db.RoomMemberships(ctx, roomID, kinds...)
}

// AdminState returns a room's current state events, of one type or all
// (typ ""), in the client format. Errors: M_NOT_FOUND.
func (s *Service) AdminState(ctx context.Context, roomID id.RoomID, typ string) ([]json.RawMessage, error) {
	if err := s.known(ctx, roomID); err != nil {
		return nil, err
	}
	var types []string
	if typ != "" {
		types = []string{typ}
	}
	evs, err := s.db.CurrentStateEvents(ctx, roomID, types...)
	if err != nil {
		return nil, err
	}
	return s.Format(ctx, evs, Viewer{}, FormatOptions{NoAggregations: true})
}

// known is M_NOT_FOUND for a room this server does not know.
func (s *Service) known(ctx context.Context, roomID id.RoomID) error {
	ok, err := s.Exists(ctx, roomID)
	if err != nil {
		return err
	}
	if !ok {
		return mxerr.NotFound("Room not found")
	}
	return nil
}

// Block blocks a room: local users may no longer join it (CheckNotBlocked).
// The room need not be known.
func (s *Service) Block(ctx context.Context, roomID id.RoomID, by id.UserID) error {
	if err := s.db.BlockRoom(ctx, roomID, by); err != nil {
		return err
	}
	s.log.Info("room blocked", "room_id", roomID, "user_id", by)
	return nil
}

// Unblock lifts the block of a room, if any.
func (s *Service) Unblock(ctx context.Context, roomID id.RoomID) error {
	return s.db.UnblockRoom(ctx, roomID)
}

// Blocked returns who blocked the room, and whether it is blocked.
func (s *Service) Blocked(ctx context.Context, roomID id.RoomID) (id.UserID, bool, error) {
	b, err := s.db.RoomBlock(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return b.By, true, nil
}

// CheckNotBlocked is M_FORBIDDEN for a room an admin blocked.
func (s *Service) CheckNotBlocked(ctx context.Context, roomID id.RoomID) error {
	if _, blocked, err := s.Blocked(ctx, roomID); err != nil {
		return err
	} else if blocked {
		return mxerr.Forbidden("This room has been blocked on this server")
	}
	return nil
}

// Shutdown is what shutting a room down did.
type Shutdown struct {
	// Kicked are the local users who left (or whose invite or knock was
	// withdrawn); Failed those whose leave was refused or failed.
	Kicked, Failed []id.UserID
	// Aliases are the local aliases of the room, now deleted.
	Aliases []id.RoomAlias
}

// Shutdown makes every local member of a room leave it, with real leave
// events sent as each member (joined, invited and knocking members alike),
// deletes its local aliases and takes it out of the room directory (as
// Synapse's room shutdown does, without its replacement room). With block,
// the room is blocked first, so that nobody joins again meanwhile. The
// room's history stays in the database (see the file comment). Errors:
// M_NOT_FOUND for a room this server does not know.
func (s *Service) Shutdown(ctx context.Context, roomID id.RoomID, by id.UserID, block bool) (*Shutdown, error) {
	if err := s.known(ctx, roomID); err != nil {
		return nil, err
	}
	if block {
		if err := s.Block(ctx, roomID, by); err != nil {
			return nil, err
		}
	}
	out := &Shutdown{Kicked: []id.UserID{}, Failed: []id.UserID{}, Aliases: []id.RoomAlias{}}
	ms, err := s.db.RoomMemberships(ctx, roomID, Join, Invite, Knock)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if !s.IsLocalUser(m.UserID) {
			continue
		}
		if _, err := s.SetMembership(ctx, MemberChange{RoomID: roomID, Sender: m.UserID, Target: m.UserID, Membership: Leave}); err != nil {
			s.log.Warn("room shutdown: a local member could not leave", "room_id", roomID, "user_id", m.UserID, "err", err)
			out.Failed = append(out.Failed, m.UserID)
			continue
		}
		out.Kicked = append(out.Kicked, m.UserID)
	}
	aliases, err := s.db.RoomAliases(ctx, roomID)
	if err != nil {
		return nil, err
	}
	for _, a := range aliases {
		if err := s.db.DeleteAlias(ctx, a); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		out.Aliases = append(out.Aliases, a)
	}
	if err := s.db.SetRoomVisibility(ctx, roomID, "private"); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	s.log.Info("room shut down", "room_id", roomID, "user_id", by, "left", len(out.Kicked), "failed", len(out.Failed), "block", block)
	return out, nil
}

// LeaveAll makes a local user leave every room it is joined to, invited to
// or knocking on (account deactivation by an admin). It returns the rooms
// it left and those where the leave failed (logged).
func (s *Service) LeaveAll(ctx context.Context, user id.UserID) (left, failed []id.RoomID, err error) {
	ms, err := s.db.UserMemberships(ctx, user, Join, Invite, Knock)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range ms {
		if _, err := s.SetMembership(ctx, MemberChange{RoomID: m.RoomID, Sender: user, Target: user, Membership: Leave}); err != nil {
			s.log.Warn("a deactivated user could not leave a room", "room_id", m.RoomID, "user_id", user, "err", err)
			failed = append(failed, m.RoomID)
			continue
		}
		left = append(left, m.RoomID)
	}
	return left, failed, nil
}

package directory

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/user"
)

// Directory visibilities (client-server API, "Published room directory").
const (
	Public  = "public"
	Private = "private"
)

// Visibility returns a room's visibility in the published room directory.
// M_NOT_FOUND for an unknown room.
func (s *Service) Visibility(ctx context.Context, roomID id.RoomID) (string, error) {
	r, err := s.db.Room(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return "", mxerr.NotFound("Room %s not found", roomID)
	}
	if err != nil {
		return "", err
	}
	if r.Visibility == Public {
		return Public, nil
	}
	return Private, nil
}

// SetVisibility publishes a room in the directory or hides it ("" means
// public, the spec's default). Server admins and joined members with the
// power to send m.room.canonical_alias may, as in Synapse; guests may not.
// Errors: M_INVALID_PARAM, M_NOT_FOUND, M_FORBIDDEN.
func (s *Service) SetVisibility(ctx context.Context, who user.Identity, roomID id.RoomID, visibility string) error {
	if visibility == "" {
		visibility = Public
	}
	if visibility != Public && visibility != Private {
		return mxerr.InvalidParam("visibility must be public or private")
	}
	if who.IsGuest {
		return mxerr.Forbidden("Guests cannot edit the published room directory")
	}
	if _, err := s.Visibility(ctx, roomID); err != nil {
		return err
	}
	ok, err := s.canChangeRoomList(ctx, who, roomID)
	if err != nil {
		return err
	}
	if !ok {
		return mxerr.Forbidden("You need the power to set m.room.canonical_alias to change the room's directory entry")
	}
	return s.db.SetRoomVisibility(ctx, roomID, visibility)
}

// PublicRoomsRequest is a query of the published room directory (GET and
// POST /publicRooms).
type PublicRoomsRequest struct {
	Limit                *int               `json:"limit"`
	Since                string             `json:"since"`
	Filter               *PublicRoomsFilter `json:"filter"`
	IncludeAllNetworks   bool               `json:"include_all_networks"`
	ThirdPartyInstanceID string             `json:"third_party_instance_id"`
	// Server is the server whose directory to list (query parameter
	// server); "" for this one.
	Server string `json:"-"`
}

// PublicRoomsFilter narrows a directory listing.
type PublicRoomsFilter struct {
	GenericSearchTerm string `json:"generic_search_term"`
	// RoomTypes lists the room types to include; a nil entry stands for
	// rooms without a type. Empty: every type.
	RoomTypes []*string `json:"room_types"`
}

// PublicRoomsResponse is a page of the directory.
type PublicRoomsResponse struct {
	Chunk                  []PublicRoom `json:"chunk"`
	NextBatch              string       `json:"next_batch,omitempty"`
	PrevBatch              string       `json:"prev_batch,omitempty"`
	TotalRoomCountEstimate int          `json:"total_room_count_estimate"`
}

// PublicRoom is an entry of the directory (PublishedRoomsChunk).
type PublicRoom struct {
	RoomID           id.RoomID `json:"room_id"`
	Name             string    `json:"name,omitempty"`
	Topic            string    `json:"topic,omitempty"`
	CanonicalAlias   string    `json:"canonical_alias,omitempty"`
	AvatarURL        string    `json:"avatar_url,omitempty"`
	NumJoinedMembers int       `json:"num_joined_members"`
	WorldReadable    bool      `json:"world_readable"`
	GuestCanJoin     bool      `json:"guest_can_join"`
	JoinRule         string    `json:"join_rule,omitempty"`
	RoomType         string    `json:"room_type,omitempty"`
}

// PublicRooms lists the published room directory: rooms published with
// visibility public that have joined members and that one can join or
// read without an invite (join rule public, knock or knock_restricted, or
// world_readable history), as Synapse lists them. Rooms come largest
// first (joined members), then by room ID; since/next_batch/prev_batch
// tokens page through that order. A limit of 0 or none lists every room,
// as in Synapse. Another server's directory is asked of that server and
// its answer passed on, checked (remote.go). Errors: M_INVALID_PARAM, and
// for another server's directory M_FORBIDDEN when it does not share it and
// a 502 when it cannot answer.
func (s *Service) PublicRooms(ctx context.Context, req PublicRoomsRequest) (*PublicRoomsResponse, error) {
	if req.Limit != nil && *req.Limit < 0 {
		return nil, mxerr.InvalidParam("limit must not be negative")
	}
	if req.IncludeAllNetworks && req.ThirdPartyInstanceID != "" {
		return nil, mxerr.InvalidParam("include_all_networks and third_party_instance_id exclude each other")
	}
	if req.Server != "" && req.Server != s.cfg.ServerName {
		return s.remotePublicRooms(ctx, req.Server, req)
	}
	var cursor *pageKey
	if req.Since != "" {
		k, err := parsePageKey(req.Since)
		if err != nil {
			return nil, err
		}
		cursor = &k
	}
	out := &PublicRoomsResponse{Chunk: []PublicRoom{}}
	if req.ThirdPartyInstanceID != "" {
		// No application service networks: that network lists nothing.
		return out, nil
	}
	all, err := s.db.PublishedRooms(ctx)
	if err != nil {
		return nil, err
	}
	var f PublicRoomsFilter
	if req.Filter != nil {
		f = *req.Filter
	}
	term := strings.ToLower(strings.TrimSpace(f.GenericSearchTerm))
	var rooms []store.RoomStats
	for _, r := range all {
		joinable := r.JoinRule == "public" || r.JoinRule == "knock" || r.JoinRule == "knock_restricted"
		if !joinable && r.HistoryVisibility != "world_readable" {
			continue
		}
		if !matchesRoomTypes(r.RoomType, f.RoomTypes) || !matchesTerm(r, term) {
			continue
		}
		rooms = append(rooms, r)
	}
	sort.Slice(rooms, func(i, j int) bool { return keyOf(rooms[i]).before(keyOf(rooms[j])) })
	out.TotalRoomCountEstimate = len(rooms)
	limit := len(rooms)
	if req.Limit != nil && *req.Limit > 0 {
		limit = *req.Limit
	}
	start, end := 0, min(limit, len(rooms))
	if cursor != nil {
		// The first room after (or, backwards, before) the cursor.
		i := sort.Search(len(rooms), func(i int) bool { return !keyOf(rooms[i]).before(cursor.key) })
		if cursor.backwards {
			end = i
			start = max(0, end-limit)
		} else {
			if i < len(rooms) && keyOf(rooms[i]) == cursor.key {
				i++
			}
			start, end = i, min(i+limit, len(rooms))
		}
	}
	for _, r := range rooms[start:end] {
		out.Chunk = append(out.Chunk, PublicRoom{
			RoomID:           r.RoomID,
			Name:             r.Name,
			Topic:            r.Topic,
			CanonicalAlias:   r.CanonicalAlias,
			AvatarURL:        r.AvatarURL,
			NumJoinedMembers: r.JoinedMembers,
			WorldReadable:    r.HistoryVisibility == "world_readable",
			GuestCanJoin:     r.GuestAccess == "can_join",
			JoinRule:         r.JoinRule,
			RoomType:         r.RoomType,
		})
	}
	if end < len(rooms) && end > start {
		out.NextBatch = pageKey{key: keyOf(rooms[end-1])}.String()
	}
	if start > 0 && start < len(rooms) {
		out.PrevBatch = pageKey{key: keyOf(rooms[start]), backwards: true}.String()
	}
	return out, nil
}

func matchesRoomTypes(typ string, want []*string) bool {
	if len(want) == 0 {
		return true
	}
	for _, w := range want {
		if (w == nil && typ == "") || (w != nil && *w == typ) {
			return true
		}
	}
	return false
}

// matchesTerm reports whether the lower-cased term occurs in the room's
// name, topic or canonical alias (case-insensitively), or is its room ID.
func matchesTerm(r store.RoomStats, term string) bool {
	if term == "" {
		return true
	}
	for _, s := range []string{r.Name, r.Topic, r.CanonicalAlias} {
		if strings.Contains(strings.ToLower(s), term) {
			return true
		}
	}
	return strings.EqualFold(string(r.RoomID), term)
}

// roomKey is a room's place in the directory's order.
type roomKey struct {
	joined int
	roomID id.RoomID
}

func keyOf(r store.RoomStats) roomKey { return roomKey{joined: r.JoinedMembers, roomID: r.RoomID} }

// before orders rooms largest first, then by room ID.
func (a roomKey) before(b roomKey) bool {
	if a.joined != b.joined {
		return a.joined > b.joined
	}
	return a.roomID < b.roomID
}

// pageKey is a directory pagination token: the last room of a page
// (forwards: the next page starts after it) or the first (backwards: the
// previous page ends before it). It names a room and its size rather than
// an offset, so that rooms joining or leaving the directory between two
// requests shift nothing.
type pageKey struct {
	key       roomKey
	backwards bool
}

func (p pageKey) String() string {
	dir := "n"
	if p.backwards {
		dir = "p"
	}
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%s%d_%s", dir, p.key.joined, p.key.roomID))
}

func parsePageKey(s string) (pageKey, error) {
	bad := mxerr.InvalidParam("Invalid pagination token %q", s)
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) < 2 || (raw[0] != 'n' && raw[0] != 'p') {
		return pageKey{}, bad
	}
	n, roomID, ok := strings.Cut(string(raw[1:]), "_")
	joined, err := strconv.Atoi(n)
	if !ok || err != nil || joined < 0 || !strings.HasPrefix(roomID, "!") {
		return pageKey{}, bad
	}
	return pageKey{key: roomKey{joined: joined, roomID: id.RoomID(roomID)}, backwards: raw[0] == 'p'}, nil
}

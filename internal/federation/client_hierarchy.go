package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"
)

// Spaces over federation (server-server API, "Spaces"): GET
// /_matrix/federation/v1/hierarchy/{roomId}, asked of a server in a space
// (or child room) this server is not in. The same wire types serve the
// answer this server gives (api/federation/hierarchy.go) and the client
// API's /hierarchy and /room_summary, whose rooms have the same shape.

// RoomSummary is a room as the hierarchy and room summary APIs describe it
// (client-server API, definitions/room_summary.yaml: PublishedRoomsChunk
// plus room_type, allowed_room_ids, encryption and room_version).
type RoomSummary struct {
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
	// AllowedRoomIDs are the rooms whose members may join a restricted
	// room (its join rules' m.room_membership entries).
	AllowedRoomIDs []id.RoomID `json:"allowed_room_ids,omitempty"`
	Encryption     string      `json:"encryption,omitempty"`
	RoomVersion    string      `json:"room_version,omitempty"`
}

// HierarchyRoom is a room with its m.space.child events, as stripped state
// events with origin_server_ts (empty, never null, for a room that is not
// a space).
type HierarchyRoom struct {
	RoomSummary
	ChildrenState []json.RawMessage `json:"children_state"`
}

// HierarchyResponse is the answer of GET /_matrix/federation/v1/hierarchy:
// the space, the summaries of its children the asking server may see, and
// the children it may not.
type HierarchyResponse struct {
	Room                 HierarchyRoom `json:"room"`
	Children             []RoomSummary `json:"children"`
	InaccessibleChildren []id.RoomID   `json:"inaccessible_children"`
}

// Hierarchy asks dest for the space roomID and its children (GET
// /_matrix/federation/v1/hierarchy/{roomId}?suggested_only=). The answer
// is read leniently: a child summary that does not parse is left out
// rather than failing the whole answer, and the room must be the one
// asked for. Errors are as Do's (404 M_NOT_FOUND: the room is unknown to
// dest or not for us to see), or a decoding error.
func (c *Client) Hierarchy(ctx context.Context, dest string, roomID id.RoomID, suggestedOnly bool) (*HierarchyResponse, error) {
	q := url.Values{"suggested_only": {strconv.FormatBool(suggestedOnly)}}
	var raw struct {
		Room                 json.RawMessage   `json:"room"`
		Children             []json.RawMessage `json:"children"`
		InaccessibleChildren []json.RawMessage `json:"inaccessible_children"`
	}
	if err := c.Do(ctx, dest, http.MethodGet, v1+"/hierarchy/"+esc(string(roomID))+"?"+q.Encode(), nil, &raw); err != nil {
		return nil, err
	}
	out := &HierarchyResponse{Children: []RoomSummary{}, InaccessibleChildren: []id.RoomID{}}
	if err := json.Unmarshal(raw.Room, &out.Room); err != nil {
		return nil, fmt.Errorf("hierarchy of %s from %s: room: %w", roomID, dest, err)
	}
	if out.Room.RoomID != roomID {
		return nil, fmt.Errorf("hierarchy of %s from %s: answered for room %q", roomID, dest, out.Room.RoomID)
	}
	if out.Room.ChildrenState == nil {
		out.Room.ChildrenState = []json.RawMessage{}
	}
	for _, c := range raw.Children {
		var s RoomSummary
		if json.Unmarshal(c, &s) == nil && strings.HasPrefix(string(s.RoomID), "!") {
			out.Children = append(out.Children, s)
		}
	}
	for _, c := range raw.InaccessibleChildren {
		var s string
		if json.Unmarshal(c, &s) == nil && strings.HasPrefix(s, "!") {
			out.InaccessibleChildren = append(out.InaccessibleChildren, id.RoomID(s))
		}
	}
	return out, nil
}

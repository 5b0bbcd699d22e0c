package client

import (
	"net/http"
	"slices"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
)

// memberships are the values of the membership filters of /members.
var memberships = []string{room.Join, room.Invite, room.Knock, room.Leave, room.Ban}

// GET /_matrix/client/v3/rooms/{roomId}/members
func (a *API) members(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	req := room.MembersRequest{At: q.Get("at"), Membership: q.Get("membership"), NotMembership: q.Get("not_membership")}
	for _, m := range []string{req.Membership, req.NotMembership} {
		if m != "" && !slices.Contains(memberships, m) {
			return mxerr.InvalidParam("Unknown membership %q", m)
		}
	}
	evs, err := a.svc.Rooms.Members(r.Context(), Who(r).UserID, roomID, req)
	if err != nil {
		return err
	}
	chunk, err := a.formatState(r, evs)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"chunk": chunk})
}

// GET /_matrix/client/v3/rooms/{roomId}/joined_members
func (a *API) joinedMembers(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	joined, err := a.svc.Rooms.JoinedMembers(r.Context(), Who(r).UserID, roomID)
	if err != nil {
		return err
	}
	// Both keys always, null when unset, as Synapse (Complement
	// TestRoomState checks avatar_url is present).
	type member struct {
		DisplayName *string `json:"display_name"`
		AvatarURL   *string `json:"avatar_url"`
	}
	out := make(map[id.UserID]member, len(joined))
	for u, m := range joined {
		var wire member
		if m.DisplayName != "" {
			wire.DisplayName = &m.DisplayName
		}
		if m.AvatarURL != "" {
			wire.AvatarURL = &m.AvatarURL
		}
		out[u] = wire
	}
	return api.OK(w, map[string]any{"joined": out})
}

// GET /_matrix/client/v3/rooms/{roomId}/state
func (a *API) roomState(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	evs, err := a.svc.Rooms.State(r.Context(), Who(r).UserID, roomID)
	if err != nil {
		return err
	}
	out, err := a.formatState(r, evs)
	if err != nil {
		return err
	}
	return api.OK(w, out)
}

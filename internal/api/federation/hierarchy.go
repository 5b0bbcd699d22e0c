package federation

import (
	"context"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
)

// Spaces answers other servers' questions about spaces (room.Spaces).
type Spaces interface {
	FederationHierarchy(ctx context.Context, origin string, roomID id.RoomID, suggestedOnly bool) (*federation.HierarchyResponse, error)
}

var _ Spaces = (*room.Spaces)(nil)

// GET /_matrix/federation/v1/hierarchy/{roomId}?suggested_only=
//
// The space and those of its children this server is in, as origin may
// see them (server-server API, "Spaces"). 404 M_NOT_FOUND when this server
// is not in the room or origin may not see it; 403 when the room's server
// ACL bans origin.
func (a *API) hierarchy(w http.ResponseWriter, r *http.Request) error {
	roomID, origin, err := a.roomRequest(r)
	if err != nil {
		return err
	}
	suggested := false
	if s := r.URL.Query().Get("suggested_only"); s != "" {
		if suggested, err = strconv.ParseBool(s); err != nil {
			return mxerr.InvalidParam("suggested_only must be true or false")
		}
	}
	if a.cfg.Spaces == nil {
		return mxerr.NotFound("Room %s is unknown", roomID)
	}
	out, err := a.cfg.Spaces.FederationHierarchy(r.Context(), origin, roomID, suggested)
	if err != nil {
		return err
	}
	return api.OK(w, out)
}

package federation

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/mxerr"
)

// The path and query parameters of the inbound routes, checked once here.

// roomIDParam is the {roomId} path parameter. M_INVALID_PARAM if it is not
// a room ID.
func roomIDParam(r *http.Request) (id.RoomID, error) {
	s := r.PathValue("roomId")
	if len(s) < 2 || s[0] != '!' || len(s) > 255 {
		return "", mxerr.InvalidParam("Invalid room ID %q", s)
	}
	return id.RoomID(s), nil
}

// validEventID reports whether s looks like an event ID.
func validEventID(s string) bool { return len(s) >= 2 && s[0] == '$' && len(s) <= 255 }

// eventIDParam is the {eventId} path parameter. M_INVALID_PARAM if it is
// not an event ID.
func eventIDParam(r *http.Request) (id.EventID, error) {
	s := r.PathValue("eventId")
	if !validEventID(s) {
		return "", mxerr.InvalidParam("Invalid event ID %q", s)
	}
	return id.EventID(s), nil
}

// eventIDQuery is the required event_id query parameter of state and
// state_ids: M_MISSING_PARAM without it.
func eventIDQuery(r *http.Request) (id.EventID, error) {
	s := r.URL.Query().Get("event_id")
	if s == "" {
		return "", mxerr.MissingParam("Missing event_id query parameter")
	}
	if !validEventID(s) {
		return "", mxerr.InvalidParam("Invalid event ID %q", s)
	}
	return id.EventID(s), nil
}

// userOf parses a user ID and returns its server name. M_INVALID_PARAM if
// it is not a user ID, including one whose server name breaks the grammar
// (appendix "Server Name"), such as "@u:localhost:http" with a non-numeric
// port.
func userOf(s string) (id.UserID, string, error) {
	u := id.UserID(s)
	_, server, err := u.Parse()
	if err != nil || !strings.HasPrefix(s, "@") || len(s) > 255 || !event.ValidServerName(server) {
		return "", "", mxerr.InvalidParam("Invalid user ID %q", s)
	}
	return u, server, nil
}

// originUserParam is the {userId} path parameter of make_join, make_leave
// and make_knock: a user of the requesting server (M_FORBIDDEN otherwise).
func originUserParam(r *http.Request) (id.UserID, error) {
	u, server, err := userOf(r.PathValue("userId"))
	if err != nil {
		return "", err
	}
	if origin := Origin(r.Context()); server != origin {
		return "", mxerr.Forbidden("User %s does not belong to the requesting server %s", u, origin)
	}
	return u, nil
}

// intQuery reads an integer query parameter: def when absent,
// M_INVALID_PARAM when not an integer.
func intQuery(r *http.Request, name string, def int64) (int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, mxerr.InvalidParam("Query parameter %s must be an integer", name)
	}
	return n, nil
}

// checkACL refuses origin with M_FORBIDDEN when the room's server ACL
// denies it (server-server API, "Server Access Control Lists").
func (a *API) checkACL(ctx context.Context, roomID id.RoomID, origin string) error {
	ok, err := a.svc.Rooms.ServerAllowed(ctx, roomID, origin)
	if err != nil {
		return err
	}
	if !ok {
		return mxerr.Forbidden("Server %s is banned from room %s by its server ACL", origin, roomID)
	}
	return nil
}

// roomRequest is the start of every room-scoped handler: the room ID of
// the path and the origin, which the room's ACL must allow.
func (a *API) roomRequest(r *http.Request) (id.RoomID, string, error) {
	roomID, err := roomIDParam(r)
	if err != nil {
		return "", "", err
	}
	origin := Origin(r.Context())
	if err := a.checkACL(r.Context(), roomID, origin); err != nil {
		return "", "", err
	}
	return roomID, origin, nil
}

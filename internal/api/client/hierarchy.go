package client

import (
	"net/http"
	"strconv"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
)

// spacesRoutes registers the space hierarchy and room summaries
// (client-server API, "Spaces" and GET /room_summary; room.Spaces).
func (a *API) spacesRoutes(rt *api.Router) {
	const c = "/_matrix/client"
	rt.Handle("GET "+c+"/v1/rooms/{roomId}/hierarchy", a.guestOK(a.hierarchy))
	rt.Handle("GET "+c+"/v1/room_summary/{roomIdOrAlias}", a.maybeAuthed(a.roomSummary))
	// MSC3266's unstable paths, which Element uses.
	rt.Handle("GET "+c+"/unstable/im.nheko.summary/summary/{roomIdOrAlias}", a.maybeAuthed(a.roomSummaryUnstable))
	rt.Handle("GET "+c+"/unstable/im.nheko.summary/rooms/{roomIdOrAlias}/summary", a.maybeAuthed(a.roomSummaryUnstable))
}

// maybeAuthed serves a handler that takes an access token when there is
// one (as guestOK: a bad token is still refused) and serves anonymous
// requests too (as public; Who is then the zero identity).
func (a *API) maybeAuthed(h api.Handler) http.Handler {
	authed, anon := a.guestOK(h), a.public(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if accessToken(r) != "" {
			authed.ServeHTTP(w, r)
			return
		}
		anon.ServeHTTP(w, r)
	})
}

// GET /_matrix/client/v1/rooms/{roomId}/hierarchy
func (a *API) hierarchy(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	req := room.HierarchyRequest{From: q.Get("from")}
	if s := q.Get("suggested_only"); s != "" {
		if req.SuggestedOnly, err = strconv.ParseBool(s); err != nil {
			return mxerr.InvalidParam("suggested_only must be true or false")
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return mxerr.InvalidParam("limit must be an integer greater than zero")
		}
		req.Limit = n
	}
	if s := q.Get("max_depth"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return mxerr.InvalidParam("max_depth must be a non-negative integer")
		}
		req.MaxDepth = &n
	}
	page, err := a.svc.Spaces.Hierarchy(r.Context(), Who(r).UserID, roomID, req)
	if err != nil {
		return err
	}
	return api.OK(w, page)
}

// GET /_matrix/client/v1/room_summary/{roomIdOrAlias}?via=
func (a *API) roomSummary(w http.ResponseWriter, r *http.Request) error {
	s, err := a.summary(r)
	if err != nil {
		return err
	}
	return api.OK(w, s)
}

// GET /_matrix/client/unstable/im.nheko.summary/summary/{roomIdOrAlias}?via=
//
// Also .../rooms/{roomIdOrAlias}/summary. MSC3266 named the room version
// and encryption fields im.nheko.summary.*: the stable fields come with
// im.nheko.summary.room_version (matrix-js-sdk's name),
// im.nheko.summary.version (Synapse's) and im.nheko.summary.encryption.
func (a *API) roomSummaryUnstable(w http.ResponseWriter, r *http.Request) error {
	s, err := a.summary(r)
	if err != nil {
		return err
	}
	return api.OK(w, struct {
		*room.Summary
		RoomVersion string `json:"im.nheko.summary.room_version,omitempty"`
		Version     string `json:"im.nheko.summary.version,omitempty"`
		Encryption  string `json:"im.nheko.summary.encryption,omitempty"`
	}{s, s.RoomVersion, s.RoomVersion, s.Encryption})
}

// summary resolves the room (an alias through the directory, whose
// servers come first in via) and asks room.Spaces for it.
func (a *API) summary(r *http.Request) (*room.Summary, error) {
	roomID, servers, err := a.resolveRoom(r, r.PathValue("roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	via := joinVia(r.URL.Query(), servers, roomID, a.cfg.ServerName)
	return a.svc.Spaces.Summary(r.Context(), Who(r).UserID, roomID, via)
}

package federation

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/directory"
	"polder.dev/polder/internal/mxerr"
)

// Queries (server-server API, "Querying for information", "Published Room
// Directory", "OpenID").

// GET /_matrix/federation/v1/query/profile?user_id=&field=
//
// The profile of a local user: one field when field is given, else all
// of it. M_NOT_FOUND for a user of another server, an unknown user or an
// unset field.
func (a *API) queryProfile(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if q.Get("user_id") == "" {
		return mxerr.MissingParam("Missing user_id query parameter")
	}
	user, server, err := userOf(q.Get("user_id"))
	if err != nil {
		return err
	}
	if server != a.cfg.ServerName {
		return mxerr.NotFound("User %s is not a user of this server", user)
	}
	if field := q.Get("field"); field != "" {
		v, err := a.svc.Users.ProfileField(r.Context(), user, field)
		if err != nil {
			return err
		}
		return api.OK(w, map[string]json.RawMessage{field: v})
	}
	p, err := a.svc.Users.Profile(r.Context(), user)
	if err != nil {
		return err
	}
	return api.OK(w, p)
}

// GET /_matrix/federation/v1/query/directory?room_alias=
//
// The room a local alias names and the servers in it. M_NOT_FOUND for an
// unknown alias or one of another server.
func (a *API) queryDirectory(w http.ResponseWriter, r *http.Request) error {
	raw := r.URL.Query().Get("room_alias")
	if raw == "" {
		return mxerr.MissingParam("Missing room_alias query parameter")
	}
	alias, err := directory.ParseAlias(raw)
	if err != nil {
		return err
	}
	if _, server, _ := strings.Cut(string(alias), ":"); server != a.cfg.ServerName {
		return mxerr.NotFound("Room alias %s is not an alias of this server", alias)
	}
	roomID, _, err := a.svc.Directory.ResolveAlias(r.Context(), raw)
	if err != nil {
		return err
	}
	servers, err := a.svc.Rooms.JoinedServers(r.Context(), roomID)
	if err != nil {
		return err
	}
	if servers == nil {
		servers = []string{}
	}
	return api.OK(w, map[string]any{"room_id": roomID, "servers": servers})
}

// GET and POST /_matrix/federation/v1/publicRooms
//
// This server's published rooms, in the client API's format. GET takes
// limit, since, include_all_networks and third_party_instance_id as query
// parameters; POST takes them, and filter, in its body.
func (a *API) publicRooms(w http.ResponseWriter, r *http.Request) error {
	var req directory.PublicRoomsRequest
	if r.Method == http.MethodPost {
		if err := api.DecodeOptionalJSON(r, &req); err != nil {
			return err
		}
	} else {
		q := r.URL.Query()
		req.Since = q.Get("since")
		req.ThirdPartyInstanceID = q.Get("third_party_instance_id")
		req.IncludeAllNetworks = q.Get("include_all_networks") == "true"
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return mxerr.InvalidParam("limit must be an integer")
			}
			req.Limit = &n
		}
	}
	req.Server = "" // ours
	out, err := a.svc.Directory.PublicRooms(r.Context(), req)
	if err != nil {
		return err
	}
	return api.OK(w, out)
}

// GET /_matrix/federation/v1/openid/userinfo?access_token=
//
// Called by third-party services, not servers: not signed. Exchanges an
// OpenID token (client API POST /user/{userId}/openid/request_token) for
// {"sub": user ID}. 401 M_UNKNOWN_TOKEN for a token that is unknown or
// expired, 401 M_MISSING_TOKEN without one.
func (a *API) openIDUserInfo(w http.ResponseWriter, r *http.Request) error {
	tok := r.URL.Query().Get("access_token")
	if tok == "" {
		return mxerr.MissingToken("Missing access_token query parameter")
	}
	sub, err := a.svc.Users.OpenIDUserInfo(r.Context(), tok)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]string{"sub": string(sub)})
}

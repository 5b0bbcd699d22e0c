package client

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
)

// OpenID (client-server API "OpenID"). The token it hands out is exchanged
// by a third-party service at GET /_matrix/federation/v1/openid/userinfo
// (api/federation, query.go).

// POST /_matrix/client/v3/user/{userId}/openid/request_token
//
// The body is an empty object, reserved for future use; an empty body is
// accepted too. M_FORBIDDEN when userId is not the requester.
func (a *API) requestOpenIDToken(w http.ResponseWriter, r *http.Request) error {
	var body struct{}
	if err := api.DecodeOptionalJSON(r, &body); err != nil {
		return err
	}
	tok, err := a.users.RequestOpenIDToken(r.Context(), Who(r), id.UserID(r.PathValue("userId")))
	if err != nil {
		return err
	}
	return api.OK(w, tok)
}

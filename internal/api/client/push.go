package client

import (
	"encoding/json"
	"net/http"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/push"
)

// GET /_matrix/client/v3/pushrules/
//
// Every user has the spec's predefined rules; changing them comes with the
// push notifications work.
func (a *API) getPushRules(w http.ResponseWriter, r *http.Request) error {
	return api.OK(w, map[string]json.RawMessage{"global": push.DefaultRules(Who(r).UserID)})
}

// GET /_matrix/client/v3/pushrules/global/
func (a *API) getGlobalPushRules(w http.ResponseWriter, r *http.Request) error {
	return api.OK(w, push.DefaultRules(Who(r).UserID))
}

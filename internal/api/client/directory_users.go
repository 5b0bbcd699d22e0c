package client

import (
	"net/http"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
)

// POST /_matrix/client/v3/user_directory/search
func (a *API) searchUserDirectory(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		SearchTerm *string `json:"search_term"`
		Limit      *int    `json:"limit"`
	}
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.SearchTerm == nil {
		return mxerr.MissingParam("search_term is required")
	}
	out, err := a.svc.Directory.SearchUsers(r.Context(), Who(r), *body.SearchTerm, body.Limit)
	if err != nil {
		return err
	}
	return api.OK(w, out)
}

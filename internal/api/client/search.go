package client

import (
	"net/http"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/directory"
)

// POST /_matrix/client/v3/search
func (a *API) search(w http.ResponseWriter, r *http.Request) error {
	var req directory.SearchRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	out, err := a.svc.Directory.Search(r.Context(), Who(r), req, r.URL.Query().Get("next_batch"))
	if err != nil {
		return err
	}
	return api.OK(w, out)
}

package client

import "polder.dev/polder/internal/api"

// directoryRoutes registers aliases, the public room directory, profiles,
// the user directory, search and reports.
func (a *API) directoryRoutes(rt *api.Router) {}

package client

import "polder.dev/polder/internal/api"

// syncRoutes registers /sync and the filter routes.
func (a *API) syncRoutes(rt *api.Router) {}

package client

import "polder.dev/polder/internal/api"

// timelineRoutes registers the routes that read a room's events.
func (a *API) timelineRoutes(rt *api.Router) {}

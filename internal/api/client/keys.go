package client

// STUB (helper A replaces this file): /keys/* routes.

import "polder.dev/polder/internal/api"

// keysRoutes registers the key routes: upload, query, claim, changes,
// cross-signing.
func (a *API) keysRoutes(rt *api.Router) {}

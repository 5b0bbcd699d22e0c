package client

import "polder.dev/polder/internal/api"

// userdataRoutes registers account data, tags, typing, receipts, read
// markers and presence.
func (a *API) userdataRoutes(rt *api.Router) {}

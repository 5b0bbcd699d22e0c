package client

// STUB (helper D replaces this file): dehydrated devices (MSC3814).

import "polder.dev/polder/internal/api"

// dehydratedRoutes registers the MSC3814 routes.
func (a *API) dehydratedRoutes(rt *api.Router) {}

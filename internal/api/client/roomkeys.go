package client

// STUB (helper D replaces this file): /room_keys/* (key backup).

import "polder.dev/polder/internal/api"

// roomKeysRoutes registers the key backup routes.
func (a *API) roomKeysRoutes(rt *api.Router) {}

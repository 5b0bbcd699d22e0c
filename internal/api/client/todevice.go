package client

// STUB (helper C replaces this file): /sendToDevice.

import "polder.dev/polder/internal/api"

// toDeviceRoutes registers PUT /sendToDevice/{eventType}/{txnId}.
func (a *API) toDeviceRoutes(rt *api.Router) {}

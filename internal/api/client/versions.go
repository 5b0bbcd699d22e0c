package client

import (
	"net/http"
	"slices"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
)

// specVersions are the spec versions whose account and session APIs Polder
// serves. Clients use the newest to choose request shapes; rooms, sync and
// encryption arrive with later work, and unstable features are advertised
// only once implemented.
var specVersions = []string{
	"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12",
}

// GET /_matrix/client/versions
func (a *API) versions(w http.ResponseWriter, r *http.Request) error {
	return api.OK(w, map[string]any{
		"versions": append(slices.Clone(r0Versions), specVersions...),
		"unstable_features": map[string]bool{
			"org.matrix.msc3814":            true, // dehydrated devices (dehydrated.go)
			"org.matrix.simplified_msc3575": true, // sliding sync (slidingsync.go)
			"org.matrix.msc3266":            true, // room summaries (hierarchy.go), as Synapse advertises them
		},
	})
}

// GET /.well-known/matrix/client
func (a *API) wellKnownClient(w http.ResponseWriter, r *http.Request) error {
	return api.OK(w, map[string]any{"m.homeserver": map[string]string{"base_url": a.cfg.PublicBaseURL()}})
}

// GET /.well-known/matrix/server
func (a *API) wellKnownServer(w http.ResponseWriter, r *http.Request) error {
	if a.cfg.WellKnownServer == "" {
		return mxerr.NotFound("No server delegation is configured")
	}
	return api.OK(w, map[string]string{"m.server": a.cfg.WellKnownServer})
}

// GET /_matrix/client/v3/capabilities
func (a *API) capabilities(w http.ResponseWriter, r *http.Request) error {
	return api.OK(w, map[string]any{"capabilities": map[string]any{
		"m.change_password": map[string]bool{"enabled": true},
		"m.get_login_token": map[string]bool{"enabled": true},
		"m.3pid_changes":    map[string]bool{"enabled": false},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
		"m.room_versions":   roomVersions(),
		"m.profile_fields":  map[string]bool{"enabled": true},
	}})
}

// GET /_synapse/admin/v1/server_version
func (a *API) serverVersion(w http.ResponseWriter, r *http.Request) error {
	return api.OK(w, map[string]string{"server_version": "Polder " + a.cfg.Version})
}

// roomVersions is the m.room_versions capability: every version the
// server can create rooms in, all stable, and the default.
func roomVersions() map[string]any {
	avail := map[string]string{}
	for _, v := range []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"} {
		avail[v] = "stable"
	}
	return map[string]any{"default": string(room.DefaultVersion), "available": avail}
}

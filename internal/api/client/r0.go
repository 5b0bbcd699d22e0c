package client

import (
	"net/http"
	"strings"

	"polder.dev/polder/internal/api"
)

// r0Prefix is the path prefix of the client-server API before spec v1.1,
// which renamed r0 to v3 without changing the endpoints (client-server
// API, "API Standards"). Old clients, Complement's older tests and
// Synapse still use it.
const (
	r0Prefix = "/_matrix/client/r0/"
	v3Prefix = "/_matrix/client/v3/"
)

// r0Versions are the r0 releases advertised by /versions alongside the
// v1.x ones, since every r0 path is served as its v3 twin.
var r0Versions = []string{"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1"}

// r0Routes serves each /_matrix/client/r0/... request as the
// /_matrix/client/v3/... one: an unknown path gets the router's 404
// M_UNRECOGNIZED.
func (a *API) r0Routes(rt *api.Router) {
	rt.Handle(r0Prefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path = v3Prefix + strings.TrimPrefix(r.URL.Path, r0Prefix)
		if r.URL.RawPath != "" {
			r2.URL.RawPath = v3Prefix + strings.TrimPrefix(r.URL.RawPath, r0Prefix)
		}
		rt.ServeHTTP(w, r2)
	}))
}

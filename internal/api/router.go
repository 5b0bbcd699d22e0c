package api

import (
	"net/http"

	"polder.dev/polder/internal/mxerr"
)

// Router is an http.ServeMux that answers unknown endpoints with
// M_UNRECOGNIZED: 404 for an unknown path, 405 for a known path with an
// unknown method (spec: client-server API, "Common error codes").
type Router struct {
	*http.ServeMux
}

// NewRouter returns an empty router.
func NewRouter() *Router { return &Router{ServeMux: http.NewServeMux()} }

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := rt.Handler(r)
	if pattern != "" {
		rt.ServeMux.ServeHTTP(w, r)
		return
	}
	// The mux's own fallback says whether the path exists for some other
	// method (405, with an Allow header) or not at all (404); it may also
	// redirect to a cleaned path.
	probe := &headerRecorder{header: http.Header{}}
	h.ServeHTTP(probe, r)
	switch probe.code {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", probe.header.Get("Allow"))
		WriteError(w, mxerr.Unrecognized("Unrecognized request: method %s is not allowed here", r.Method).WithStatus(http.StatusMethodNotAllowed))
	case http.StatusNotFound:
		WriteError(w, mxerr.Unrecognized("Unrecognized request"))
	default:
		rt.ServeMux.ServeHTTP(w, r)
	}
}

type headerRecorder struct {
	header http.Header
	code   int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) {
	if h.code == 0 {
		h.code = http.StatusOK
	}
	return len(b), nil
}
func (h *headerRecorder) WriteHeader(code int) {
	if h.code == 0 {
		h.code = code
	}
}

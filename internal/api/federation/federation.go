// Package federation serves the Server-Server API (/_matrix/federation/* and
// /_matrix/key/*). So far: the server's own keys and its version; inbound
// transactions, joins and the rest arrive with the federation work.
//
// Imported by internal/server.
package federation

import (
	"log/slog"
	"net/http"
	"sync"
	"time"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/keys"
)

// Config is what the federation API needs of the server's settings.
type Config struct {
	ServerName string
	Version    string
}

// API is the federation API.
type API struct {
	cfg  Config
	key  *keys.SigningKey
	errs api.Errors

	mu        sync.Mutex
	keysBody  []byte
	keysUntil time.Time
}

// New returns the federation API.
func New(cfg Config, key *keys.SigningKey, log *slog.Logger) *API {
	return &API{cfg: cfg, key: key, errs: api.Errors{Log: log}}
}

// Routes registers the federation routes.
func (a *API) Routes(rt *api.Router) {
	rt.Handle("GET /_matrix/key/v2/server", a.errs.H(a.serverKeys))
	rt.Handle("GET /_matrix/key/v2/server/{keyId}", a.errs.H(a.serverKeys)) // deprecated form, same answer
	rt.Handle("GET /_matrix/federation/v1/version", a.errs.H(a.version))
}

// keyValidity is how long readers may cache our keys. Synapse publishes one
// day; a short period lets a key rotation spread quickly.
const keyValidity = 24 * time.Hour

// GET /_matrix/key/v2/server
//
// The signed body is cached and re-signed when half its validity is gone.
func (a *API) serverKeys(w http.ResponseWriter, r *http.Request) error {
	a.mu.Lock()
	now := time.Now()
	if a.keysBody == nil || now.After(a.keysUntil.Add(-keyValidity/2)) {
		until := now.Add(keyValidity)
		body, err := keys.ServerKeysResponse(a.cfg.ServerName, a.key, nil, until)
		if err != nil {
			a.mu.Unlock()
			return err
		}
		a.keysBody, a.keysUntil = body, until
	}
	body := a.keysBody
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(body)
	return err
}

// GET /_matrix/federation/v1/version
func (a *API) version(w http.ResponseWriter, r *http.Request) error {
	return api.OK(w, map[string]any{"server": map[string]string{"name": "Polder", "version": a.cfg.Version}})
}

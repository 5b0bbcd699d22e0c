package federation

import (
	"bytes"
	"context"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/mxerr"
)

// The notary endpoints (server-server API, "Querying Keys Through Another
// Server"): other servers' keys from the key cache (Config.Keys), each
// response as its server signed it plus this server's signature. They are
// not signed requests. Without a key cache only this server's own keys are
// answered.

// maxQueryServers bounds the servers of one POST /_matrix/key/v2/query,
// and queryConcurrency the servers whose keys are looked up at once.
const (
	maxQueryServers  = 100
	queryConcurrency = 8
)

// POST /_matrix/key/v2/query
//
// Servers whose keys cannot be had (unreachable and not cached) are left
// out, as the spec says.
func (a *API) queryKeysBatch(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		ServerKeys map[string]map[id.KeyID]struct {
			MinimumValidUntilTS int64 `json:"minimum_valid_until_ts"`
		} `json:"server_keys"`
	}
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if len(req.ServerKeys) > maxQueryServers {
		return mxerr.InvalidParam("at most %d servers may be queried at once", maxQueryServers)
	}
	now := time.Now()
	servers := make([]string, 0, len(req.ServerKeys))
	for s := range req.ServerKeys {
		servers = append(servers, s)
	}
	sort.Strings(servers)
	results := make([][][]byte, len(servers))
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	sem := make(chan struct{}, queryConcurrency)
	for i, server := range servers {
		// "If not supplied, the notary server MUST use the current time."
		// Several key criteria ask for the longest of their validities.
		minValid := now
		keyIDs := make([]id.KeyID, 0, len(req.ServerKeys[server]))
		for kid, c := range req.ServerKeys[server] {
			keyIDs = append(keyIDs, kid)
			if t := time.UnixMilli(c.MinimumValidUntilTS); c.MinimumValidUntilTS > 0 && t.After(minValid) {
				minValid = t
			}
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i], errs[i] = a.notaryKeys(r.Context(), server, keyIDs, minValid)
		}()
	}
	wg.Wait()
	var all [][]byte
	for i := range servers {
		if errs[i] != nil {
			return errs[i]
		}
		all = append(all, results[i]...)
	}
	return writeServerKeys(w, all)
}

// GET /_matrix/key/v2/query/{serverName}
func (a *API) queryKeys(w http.ResponseWriter, r *http.Request) error {
	minValid := time.Now()
	if v := r.URL.Query().Get("minimum_valid_until_ts"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return mxerr.InvalidParam("minimum_valid_until_ts must be a timestamp in milliseconds")
		}
		if t := time.UnixMilli(ms); t.After(minValid) {
			minValid = t
		}
	}
	resps, err := a.notaryKeys(r.Context(), r.PathValue("serverName"), nil, minValid)
	if err != nil {
		return err
	}
	return writeServerKeys(w, resps)
}

// notaryKeys returns server's key responses holding keyIDs (all if none),
// signed by this server too. A server whose keys cannot be had gives none;
// the error is the context's, or a failure to sign.
func (a *API) notaryKeys(ctx context.Context, server string, keyIDs []id.KeyID, minValid time.Time) ([][]byte, error) {
	var resps [][]byte
	switch {
	case server == a.cfg.ServerName:
		body, err := keys.ServerKeysResponse(server, a.key, nil, time.Now().Add(keyValidity))
		if err != nil {
			return nil, err
		}
		resps = [][]byte{body}
	case a.cfg.Keys == nil || !id.ValidateServerName(server):
		return nil, nil
	default:
		var err error
		resps, err = a.cfg.Keys.Responses(ctx, server, keyIDs, minValid)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// Unreachable and never seen: left out of the answer.
			if a.log != nil {
				a.log.Debug("notary: no keys for a server", "server_name", server, "err", err)
			}
			return nil, nil
		}
	}
	out := make([][]byte, 0, len(resps))
	for _, body := range resps {
		signed, err := keys.SignJSON(body, a.cfg.ServerName, a.key)
		if err != nil {
			return nil, err
		}
		out = append(out, signed)
	}
	return out, nil
}

// writeServerKeys writes {"server_keys": [...]} with the responses as
// they are (re-encoding them could change what was signed).
func writeServerKeys(w http.ResponseWriter, resps [][]byte) error {
	var b bytes.Buffer
	b.WriteString(`{"server_keys":[`)
	for i, r := range resps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(r)
	}
	b.WriteString(`]}`)
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(b.Bytes())
	return err
}

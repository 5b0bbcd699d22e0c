// Package federation serves the Server-Server API (/_matrix/federation/* and
// /_matrix/key/*): the server's own keys and its version, and the inbound
// side of federation. Signed requests are authenticated by their X-Matrix
// header (auth.go) and checked against the room's server ACL; then each
// handler calls one domain service (services.go): transactions of PDUs go
// to the room service and their EDUs to typing, receipts and presence;
// joins, leaves, knocks, invites, event and state fetches go to the room
// service; queries go to the user and directory services.
//
// Imported by internal/server.
package federation

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/keys"
)

// Config is what the federation API needs of the server's settings.
type Config struct {
	ServerName string
	Version    string

	// Inbound federation (auth.go, services.go).
	//
	// VerifyKey returns a server's public key with the time it is valid
	// until ((*keys.Cache).VerifyKey). It authenticates X-Matrix requests;
	// nil refuses every signed request.
	VerifyKey func(ctx context.Context, server string, keyID id.KeyID) (ed25519.PublicKey, time.Time, error)
	// OnInbound, if not nil, is told the origin of each authenticated
	// request: a server that talks to us is up (the outbound queue's Wake).
	OnInbound func(origin string)
	// MaxBodyBytes bounds a signed request's body; 0 means 10 MiB.
	MaxBodyBytes int64
	// Services are the domain services the handlers call.
	Services Services
	// Keys, if not nil, answers the notary endpoints with other servers'
	// keys (keys_query.go); without it they answer this server's only.
	Keys *keys.Cache
	// Spaces answers the space hierarchy (hierarchy.go); nil answers 404.
	Spaces Spaces
}

// API is the federation API.
type API struct {
	cfg  Config
	key  *keys.SigningKey
	errs api.Errors
	log  *slog.Logger
	svc  Services
	txns inflight // transactions being processed (transactions.go)

	mu        sync.Mutex
	keysBody  []byte
	keysUntil time.Time
}

// New returns the federation API.
func New(cfg Config, key *keys.SigningKey, log *slog.Logger) *API {
	return &API{cfg: cfg, key: key, errs: api.Errors{Log: log}, log: log, svc: cfg.Services}
}

// Routes registers the federation routes.
func (a *API) Routes(rt *api.Router) {
	rt.Handle("GET /_matrix/key/v2/server", a.errs.H(a.serverKeys))
	rt.Handle("GET /_matrix/key/v2/server/{keyId}", a.errs.H(a.serverKeys)) // deprecated form, same answer
	// keys_query.go: the notary endpoints
	rt.Handle("POST /_matrix/key/v2/query", a.errs.H(a.queryKeysBatch))
	rt.Handle("GET /_matrix/key/v2/query/{serverName}", a.errs.H(a.queryKeys))
	rt.Handle("GET /_matrix/federation/v1/version", a.errs.H(a.version))

	// Inbound federation. Every route but version, openid/userinfo and
	// 3pid/onbind (which third parties call) is signed with X-Matrix.
	const f = "/_matrix/federation"
	rt.Handle("PUT "+f+"/v1/send/{txnId}", a.signed(a.send)) // transactions.go
	// membership.go: joins, leaves, knocks, invites
	rt.Handle("GET "+f+"/v1/make_join/{roomId}/{userId}", a.signed(a.makeJoin))
	rt.Handle("PUT "+f+"/v1/send_join/{roomId}/{eventId}", a.signed(a.sendJoinV1))
	rt.Handle("PUT "+f+"/v2/send_join/{roomId}/{eventId}", a.signed(a.sendJoin))
	rt.Handle("GET "+f+"/v1/make_leave/{roomId}/{userId}", a.signed(a.makeLeave))
	rt.Handle("PUT "+f+"/v1/send_leave/{roomId}/{eventId}", a.signed(a.sendLeaveV1))
	rt.Handle("PUT "+f+"/v2/send_leave/{roomId}/{eventId}", a.signed(a.sendLeave))
	rt.Handle("GET "+f+"/v1/make_knock/{roomId}/{userId}", a.signed(a.makeKnock))
	rt.Handle("PUT "+f+"/v1/send_knock/{roomId}/{eventId}", a.signed(a.sendKnock))
	rt.Handle("PUT "+f+"/v2/invite/{roomId}/{eventId}", a.signed(a.invite))
	// thirdparty.go; onbind comes from identity servers, unsigned
	rt.Handle("PUT "+f+"/v1/3pid/onbind", a.errs.H(a.onBind))
	rt.Handle("PUT "+f+"/v1/exchange_third_party_invite/{roomId}", a.signed(a.exchangeThirdPartyInvite))
	// events.go
	rt.Handle("GET "+f+"/v1/event/{eventId}", a.signed(a.event))
	rt.Handle("GET "+f+"/v1/state/{roomId}", a.signed(a.state))
	rt.Handle("GET "+f+"/v1/state_ids/{roomId}", a.signed(a.stateIDs))
	rt.Handle("GET "+f+"/v1/event_auth/{roomId}/{eventId}", a.signed(a.eventAuth))
	rt.Handle("GET "+f+"/v1/backfill/{roomId}", a.signed(a.backfill))
	rt.Handle("POST "+f+"/v1/get_missing_events/{roomId}", a.signed(a.missingEvents))
	rt.Handle("GET "+f+"/v1/timestamp_to_event/{roomId}", a.signed(a.timestampToEvent))
	// query.go
	rt.Handle("GET "+f+"/v1/query/profile", a.signed(a.queryProfile))
	rt.Handle("GET "+f+"/v1/query/directory", a.signed(a.queryDirectory))
	rt.Handle("GET "+f+"/v1/publicRooms", a.signed(a.publicRooms))
	rt.Handle("POST "+f+"/v1/publicRooms", a.signed(a.publicRooms))
	rt.Handle("GET "+f+"/v1/openid/userinfo", a.errs.H(a.openIDUserInfo))
	// devices.go
	rt.Handle("GET "+f+"/v1/user/devices/{userId}", a.signed(a.userDevices))
	rt.Handle("POST "+f+"/v1/user/keys/query", a.signed(a.userKeysQuery))
	rt.Handle("POST "+f+"/v1/user/keys/claim", a.signed(a.userKeysClaim))
	// media.go
	rt.Handle("GET "+f+"/v1/media/download/{mediaId}", a.signed(a.mediaDownload))
	rt.Handle("GET "+f+"/v1/media/thumbnail/{mediaId}", a.signed(a.mediaThumbnail))
	rt.Handle("GET "+f+"/v1/hierarchy/{roomId}", a.signed(a.hierarchy)) // hierarchy.go
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

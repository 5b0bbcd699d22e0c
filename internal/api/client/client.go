// Package client serves the Client-Server API (/_matrix/client/*) and the
// Synapse-compatible admin API (/_synapse/admin/*): each handler decodes the
// request, calls one domain package and encodes the answer. No SQL, no rules.
//
// Imported by internal/server.
package client

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/user"
)

// Config is what the client API needs of the server's settings.
type Config struct {
	ServerName string
	// PublicBaseURL returns the URL clients reach the server at. It is a
	// func because the default is known only once the listener is bound.
	PublicBaseURL   func() string
	WellKnownServer string
	Version         string
}

// API is the client API.
type API struct {
	cfg      Config
	users    *user.Service
	svc      Services
	log      *slog.Logger
	errs     api.Errors
	limit    *api.RateLimiter // per user or IP, on every request
	loginLim *api.RateLimiter // per IP, on login and registration
}

// New returns the client API.
func New(cfg Config, users *user.Service, svc Services, limit, loginLimit *api.RateLimiter, log *slog.Logger) *API {
	return &API{cfg: cfg, users: users, svc: svc, log: log, errs: api.Errors{Log: log}, limit: limit, loginLim: loginLimit}
}

type ctxKey struct{}

// Who returns the identity that authenticated the request.
func Who(r *http.Request) user.Identity {
	id, _ := r.Context().Value(ctxKey{}).(user.Identity)
	return id
}

// accessToken reads the token from the Authorization header or, deprecated
// but still used, the access_token query parameter.
func accessToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

// public serves a handler that needs no access token, rate limited per IP.
func (a *API) public(h api.Handler) http.Handler {
	return a.errs.H(func(w http.ResponseWriter, r *http.Request) error {
		if err := a.limit.Allow("ip:" + api.ClientIP(r)); err != nil {
			return err
		}
		return h(w, r)
	})
}

// login serves a login or registration handler, rate limited harder per IP
// (GETs too: the token validity and username checks must not allow
// guessing at speed).
func (a *API) login(h api.Handler) http.Handler {
	return a.errs.H(func(w http.ResponseWriter, r *http.Request) error {
		if err := a.loginLim.Allow("ip:" + api.ClientIP(r)); err != nil {
			return err
		}
		return h(w, r)
	})
}

// authed serves a handler that needs an access token. Guests are refused
// unless guestOK.
func (a *API) authed(h api.Handler) http.Handler { return a.auth(h, false, false) }

// guestOK is authed for the endpoints guests may use.
func (a *API) guestOK(h api.Handler) http.Handler { return a.auth(h, true, false) }

// admin is authed for server admins only.
func (a *API) admin(h api.Handler) http.Handler { return a.auth(h, false, true) }

func (a *API) auth(h api.Handler, guests, admins bool) http.Handler {
	return a.errs.H(func(w http.ResponseWriter, r *http.Request) error {
		tok := accessToken(r)
		if tok == "" {
			return mxerr.MissingToken("Missing access token")
		}
		who, err := a.users.Authenticate(r.Context(), tok, api.ClientIP(r), r.UserAgent())
		if err != nil {
			return err
		}
		if who.IsGuest && !guests {
			return mxerr.GuestAccessForbidden("Guests may not use this endpoint")
		}
		if admins && !who.IsAdmin {
			return mxerr.Forbidden("You are not a server admin")
		}
		if !who.IsAdmin {
			if err := a.limit.Allow("user:" + string(who.UserID)); err != nil {
				return err
			}
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, who)))
	})
}

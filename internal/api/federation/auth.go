package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net/http"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
)

// originKey is the context key of the authenticated origin.
type originKey struct{}

// Origin returns the server that signed the request, as the X-Matrix
// middleware authenticated it ("" outside a signed route).
func Origin(ctx context.Context) string {
	o, _ := ctx.Value(originKey{}).(string)
	return o
}

// defaultMaxBody bounds a signed request's body when Config.MaxBodyBytes
// is 0. A transaction of 50 PDUs of 64 KiB and 100 EDUs fits.
const defaultMaxBody = 10 << 20

// signed authenticates a request by its X-Matrix Authorization header
// (server-server API, "Request Authentication") before h serves it: the
// body is read (bounded) and signed over with the method, the URI, origin
// and destination. A missing or bad signature, an unknown key or another
// destination is 401 M_UNAUTHORIZED. h then finds the origin with Origin
// and the body in r.Body.
func (a *API) signed(h api.Handler) http.Handler {
	return a.errs.H(func(w http.ResponseWriter, r *http.Request) error {
		limit := a.cfg.MaxBodyBytes
		if limit <= 0 {
			limit = defaultMaxBody
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			return err
		}
		if a.cfg.VerifyKey == nil {
			return mxerr.Unauthorized("This server cannot check request signatures")
		}
		origin, err := federation.VerifyRequest(r.Context(), r, body, a.cfg.ServerName, a.verifyKey)
		if err != nil {
			if ctxErr := r.Context().Err(); ctxErr != nil {
				return ctxErr
			}
			a.log.Debug("refused a federation request", "path", r.URL.Path, "err", err)
			if mx, ok := mxerr.As(err); ok {
				return mx // M_UNAUTHORIZED, or M_NOT_JSON for a body that is not JSON
			}
			return mxerr.Unauthorized("Invalid X-Matrix authorization")
		}
		if a.cfg.OnInbound != nil {
			a.cfg.OnInbound(origin)
		}
		r = r.WithContext(context.WithValue(r.Context(), originKey{}, origin))
		r.Body = io.NopCloser(bytes.NewReader(body))
		return h(w, r)
	})
}

// errKeyExpired is the error for a request signed with a key past its
// validity: a request is signed now, so the key must be valid now.
var errKeyExpired = errors.New("signing key has expired")

// verifyKey is the key lookup VerifyRequest calls.
func (a *API) verifyKey(ctx context.Context, server string, keyID id.KeyID) (ed25519.PublicKey, error) {
	pub, validUntil, err := a.cfg.VerifyKey(ctx, server, keyID)
	if err != nil {
		return nil, err
	}
	if !validUntil.IsZero() && validUntil.Before(time.Now()) {
		return nil, errKeyExpired
	}
	return pub, nil
}

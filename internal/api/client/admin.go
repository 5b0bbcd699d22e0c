package client

import (
	"encoding/json"
	"net/http"
	"strconv"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/user"
)

// GET /_synapse/admin/v1/register
func (a *API) sharedSecretNonce(w http.ResponseWriter, r *http.Request) error {
	nonce, err := a.users.SharedSecretNonce(r.Context())
	if err != nil {
		return err
	}
	return api.OK(w, map[string]string{"nonce": nonce})
}

// POST /_synapse/admin/v1/register
func (a *API) sharedSecretRegister(w http.ResponseWriter, r *http.Request) error {
	var req user.SharedSecretRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	sess, err := a.users.RegisterSharedSecret(r.Context(), req)
	if err != nil {
		return err
	}
	if sess.AccessToken == "" {
		return api.OK(w, map[string]any{"user_id": sess.UserID, "home_server": a.cfg.ServerName})
	}
	return api.OK(w, a.sessionResponse(sess))
}

// GET /_synapse/admin/v1/registration_tokens
func (a *API) listRegistrationTokens(w http.ResponseWriter, r *http.Request) error {
	var valid *bool
	if v := r.URL.Query().Get("valid"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return mxerr.InvalidParam("valid must be true or false")
		}
		valid = &b
	}
	toks, err := a.users.RegistrationTokens(r.Context(), valid)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"registration_tokens": toks})
}

// POST /_synapse/admin/v1/registration_tokens/new
func (a *API) newRegistrationToken(w http.ResponseWriter, r *http.Request) error {
	var req user.NewRegistrationToken
	if err := api.DecodeOptionalJSON(r, &req); err != nil {
		return err
	}
	t, err := a.users.CreateRegistrationToken(r.Context(), req)
	if err != nil {
		return err
	}
	return api.OK(w, t)
}

// GET /_synapse/admin/v1/registration_tokens/{token}
func (a *API) getRegistrationToken(w http.ResponseWriter, r *http.Request) error {
	t, err := a.users.RegistrationToken(r.Context(), r.PathValue("token"))
	if err != nil {
		return err
	}
	return api.OK(w, t)
}

// PUT /_synapse/admin/v1/registration_tokens/{token}
func (a *API) putRegistrationToken(w http.ResponseWriter, r *http.Request) error {
	var req map[string]json.RawMessage
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	var uses *int
	var expiry *int64
	rawUses, setUses := req["uses_allowed"]
	if setUses {
		if err := json.Unmarshal(rawUses, &uses); err != nil {
			return mxerr.InvalidParam("uses_allowed must be an integer or null")
		}
	}
	rawExp, setExp := req["expiry_time"]
	if setExp {
		if err := json.Unmarshal(rawExp, &expiry); err != nil {
			return mxerr.InvalidParam("expiry_time must be an integer or null")
		}
	}
	t, err := a.users.UpdateRegistrationToken(r.Context(), r.PathValue("token"), uses, setUses, expiry, setExp)
	if err != nil {
		return err
	}
	return api.OK(w, t)
}

// DELETE /_synapse/admin/v1/registration_tokens/{token}
func (a *API) deleteRegistrationToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.users.DeleteRegistrationToken(r.Context(), r.PathValue("token")); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

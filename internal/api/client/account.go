package client

import (
	"encoding/json"
	"net/http"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/user"
)

// sessionResponse is the body of a successful login or registration.
func (a *API) sessionResponse(s user.Session) map[string]any {
	out := map[string]any{
		"user_id":      s.UserID,
		"access_token": s.AccessToken,
		"device_id":    s.DeviceID,
		"home_server":  a.cfg.ServerName,
		"well_known":   map[string]any{"m.homeserver": map[string]string{"base_url": a.cfg.PublicBaseURL()}},
	}
	if s.RefreshToken != "" {
		out["refresh_token"] = s.RefreshToken
		out["expires_in_ms"] = s.ExpiresIn.Milliseconds()
	}
	return out
}

// POST /_matrix/client/v3/register
func (a *API) register(w http.ResponseWriter, r *http.Request) error {
	var req user.RegisterRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	sess, err := a.users.Register(r.Context(), r.URL.Query().Get("kind"), req, api.ClientIP(r), r.UserAgent())
	if err != nil {
		return err
	}
	if sess.AccessToken == "" { // inhibit_login
		return api.OK(w, map[string]any{"user_id": sess.UserID, "home_server": a.cfg.ServerName})
	}
	return api.OK(w, a.sessionResponse(sess))
}

// GET /_matrix/client/v3/register/available
func (a *API) registerAvailable(w http.ResponseWriter, r *http.Request) error {
	name := r.URL.Query().Get("username")
	if name == "" {
		return mxerr.MissingParam("username is required")
	}
	if err := a.users.UsernameAvailable(r.Context(), name); err != nil {
		return err
	}
	return api.OK(w, map[string]bool{"available": true})
}

// GET /_matrix/client/v1/register/m.login.registration_token/validity
func (a *API) registrationTokenValidity(w http.ResponseWriter, r *http.Request) error {
	tok := r.URL.Query().Get("token")
	if tok == "" {
		return mxerr.MissingParam("token is required")
	}
	valid, err := a.users.RegistrationTokenValid(r.Context(), tok)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]bool{"valid": valid})
}

// GET /_matrix/client/v3/login
func (a *API) loginFlows(w http.ResponseWriter, r *http.Request) error {
	return api.OK(w, map[string]any{"flows": []map[string]any{
		{"type": "m.login.password"},
		{"type": "m.login.token", "get_login_token": true},
	}})
}

// POST /_matrix/client/v3/login
func (a *API) doLogin(w http.ResponseWriter, r *http.Request) error {
	var req user.LoginRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	sess, err := a.users.Login(r.Context(), req, api.ClientIP(r), r.UserAgent())
	if err != nil {
		return err
	}
	return api.OK(w, a.sessionResponse(sess))
}

// POST /_matrix/client/v1/login/get_token
func (a *API) getLoginToken(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Auth json.RawMessage `json:"auth"`
	}
	if err := api.DecodeOptionalJSON(r, &req); err != nil {
		return err
	}
	who := Who(r)
	sess, err := a.users.AuthenticateUIA(r.Context(), a.users.ReauthUIA("login/get_token", who), req.Auth)
	if err != nil {
		return err
	}
	defer a.users.EndUIA(r.Context(), sess)
	tok, ttl, err := a.users.NewLoginToken(r.Context(), who)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"login_token": tok, "expires_in_ms": ttl.Milliseconds()})
}

// POST /_matrix/client/v3/refresh
func (a *API) refresh(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.RefreshToken == "" {
		return mxerr.MissingParam("refresh_token is required")
	}
	sess, err := a.users.Refresh(r.Context(), req.RefreshToken)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{
		"access_token":  sess.AccessToken,
		"refresh_token": sess.RefreshToken,
		"expires_in_ms": sess.ExpiresIn.Milliseconds(),
	})
}

// POST /_matrix/client/v3/logout
func (a *API) logout(w http.ResponseWriter, r *http.Request) error {
	if err := a.users.Logout(r.Context(), Who(r)); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// POST /_matrix/client/v3/logout/all
func (a *API) logoutAll(w http.ResponseWriter, r *http.Request) error {
	if err := a.users.LogoutAll(r.Context(), Who(r)); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// GET /_matrix/client/v3/account/whoami
func (a *API) whoami(w http.ResponseWriter, r *http.Request) error {
	who := Who(r)
	return api.OK(w, map[string]any{"user_id": who.UserID, "device_id": who.DeviceID, "is_guest": who.IsGuest})
}

// POST /_matrix/client/v3/account/password
func (a *API) changePassword(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Auth          json.RawMessage `json:"auth"`
		NewPassword   string          `json:"new_password"`
		LogoutDevices *bool           `json:"logout_devices"`
	}
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.NewPassword == "" {
		return mxerr.MissingParam("new_password is required")
	}
	who := Who(r)
	sess, err := a.users.AuthenticateUIA(r.Context(), a.users.ReauthUIA("account/password", who), req.Auth)
	if err != nil {
		return err
	}
	logout := req.LogoutDevices == nil || *req.LogoutDevices
	if err := a.users.ChangePassword(r.Context(), who, req.NewPassword, logout); err != nil {
		return err
	}
	if err := a.users.EndUIA(r.Context(), sess); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// POST /_matrix/client/v3/account/deactivate
func (a *API) deactivate(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Auth  json.RawMessage `json:"auth"`
		Erase bool            `json:"erase"`
	}
	if err := api.DecodeOptionalJSON(r, &req); err != nil {
		return err
	}
	who := Who(r)
	sess, err := a.users.AuthenticateUIA(r.Context(), a.users.ReauthUIA("account/deactivate", who), req.Auth)
	if err != nil {
		return err
	}
	if err := a.users.Deactivate(r.Context(), who.Localpart); err != nil {
		return err
	}
	a.users.EndUIA(r.Context(), sess)
	return api.OK(w, map[string]string{"id_server_unbind_result": "no-support"})
}

package user

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// User-interactive authentication (spec: client-server API,
// "User-Interactive Authentication API"). Sessions live in the database so
// that they survive a restart and work across processes sharing it.

const uiaSessionLifetime = 30 * time.Minute

// Stage types.
const (
	StageDummy             = "m.login.dummy"
	StagePassword          = "m.login.password"
	StageRegistrationToken = "m.login.registration_token"
)

// AuthData is the "auth" object of a UIA request.
type AuthData struct {
	Type    string `json:"type"`
	Session string `json:"session"`
	// m.login.password
	Identifier *Identifier `json:"identifier"`
	User       string      `json:"user"` // deprecated form of identifier
	Password   string      `json:"password"`
	// m.login.registration_token
	Token string `json:"token"`
}

// Identifier is a login identifier (spec: "Identifier types").
type Identifier struct {
	Type    string `json:"type"`
	User    string `json:"user"`
	Medium  string `json:"medium"`
	Address string `json:"address"`
	Country string `json:"country"`
	Phone   string `json:"phone"`
}

// UIA describes what an operation requires.
type UIA struct {
	// Operation binds a session to one operation (e.g. "POST /register").
	Operation string
	Flows     [][]string
	// Who is the authenticated user for operations on an existing account;
	// password stages must prove that user's password.
	Who *Identity
}

// uiaError is the 401 body that tells the client what to do next. Without a
// stage error it carries no errcode (the first round of a session).
func uiaError(u UIA, session string, completed []string, stageErr *mxerr.Error) *mxerr.Error {
	flows := make([]map[string]any, len(u.Flows))
	for i, f := range u.Flows {
		flows[i] = map[string]any{"stages": f}
	}
	if completed == nil {
		completed = []string{}
	}
	e := &mxerr.Error{Status: http.StatusUnauthorized, Fields: map[string]any{
		"flows":     flows,
		"params":    map[string]any{},
		"session":   session,
		"completed": completed,
	}}
	if stageErr != nil {
		e.Code, e.Msg = stageErr.Code, stageErr.Msg
	}
	return e
}

// Authenticate runs one round of UIA. raw is the request's "auth" object
// (nil when absent). It returns the session ID once a flow is complete (the
// caller ends it with EndUIA after the operation), and otherwise an error:
// the 401 response with flows and completed stages, or a 4xx for a bad
// request.
func (s *Service) AuthenticateUIA(ctx context.Context, u UIA, raw json.RawMessage) (string, error) {
	var auth AuthData
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &auth); err != nil {
			return "", mxerr.BadJSON("auth: %v", err)
		}
	}
	var sess store.UIASession
	if auth.Session == "" {
		sess = store.UIASession{ID: randomString(24, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"), CreatedTS: s.now().UnixMilli(), Operation: u.Operation}
		if u.Who != nil {
			sess.Localpart = u.Who.Localpart
		}
		if err := s.db.CreateUIASession(ctx, sess); err != nil {
			return "", err
		}
		if auth.Type == "" {
			return "", uiaError(u, sess.ID, nil, nil)
		}
	} else {
		var err error
		sess, err = s.db.UIASession(ctx, auth.Session)
		if errors.Is(err, store.ErrNotFound) || err == nil && s.now().Sub(time.UnixMilli(sess.CreatedTS)) > uiaSessionLifetime {
			return "", mxerr.Unknown("Unknown or expired UIA session %q", auth.Session).WithStatus(http.StatusBadRequest)
		}
		if err != nil {
			return "", err
		}
		if sess.Operation != u.Operation || (u.Who != nil && sess.Localpart != u.Who.Localpart) {
			return "", mxerr.Forbidden("UIA session was started for another operation")
		}
	}
	if auth.Type != "" {
		if !slices.ContainsFunc(u.Flows, func(f []string) bool { return slices.Contains(f, auth.Type) }) {
			return "", uiaError(u, sess.ID, sess.Completed, mxerr.BadJSON("auth type %q is not in any flow", auth.Type).WithStatus(http.StatusUnauthorized))
		}
		if err := s.runStage(ctx, u, sess, auth); err != nil {
			if errors.Is(err, errOtherUser) {
				return "", mxerr.Forbidden("Invalid auth: the credentials are another user's")
			}
			if mx, ok := mxerr.As(err); ok {
				return "", uiaError(u, sess.ID, sess.Completed, mx)
			}
			return "", err
		}
		if !slices.Contains(sess.Completed, auth.Type) {
			sess.Completed = append(sess.Completed, auth.Type)
		}
	}
	for _, f := range u.Flows {
		if flowDone(f, sess.Completed) {
			return sess.ID, nil
		}
	}
	return "", uiaError(u, sess.ID, sess.Completed, nil)
}

// errOtherUser is runStage's answer to credentials of a user other than
// the one making the request.
var errOtherUser = errors.New("credentials of another user")

func flowDone(flow, completed []string) bool {
	for _, st := range flow {
		if !slices.Contains(completed, st) {
			return false
		}
	}
	return true
}

// runStage checks one stage and records it as completed.
func (s *Service) runStage(ctx context.Context, u UIA, sess store.UIASession, auth AuthData) error {
	regToken := ""
	switch auth.Type {
	case StageDummy:
	case StagePassword:
		lp, err := s.identifierLocalpart(auth.Identifier, auth.User)
		if err != nil {
			return err
		}
		if u.Who != nil && lp != u.Who.Localpart {
			// Another user's credentials are no failed attempt at the
			// stage to retry but a refusal: 403, not the 401 of UIA (as
			// Synapse; Complement TestDeviceManagement).
			return errOtherUser
		}
		if err := s.checkPasswordLogin(ctx, lp, auth.Password); err != nil {
			return err
		}
	case StageRegistrationToken:
		if auth.Token == "" {
			return mxerr.MissingParam("auth.token is required for m.login.registration_token")
		}
		if sess.RegToken == auth.Token {
			break // this session already holds a use of the token
		}
		if sess.RegToken != "" {
			return mxerr.Unauthorized("this session already used another registration token")
		}
		err := s.db.ReserveRegistrationToken(ctx, sess.ID, auth.Token)
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.Unauthorized("Invalid registration token")
		}
		if err != nil {
			return err
		}
		regToken = auth.Token
	default:
		return mxerr.Unrecognized("unsupported auth type %q", auth.Type)
	}
	return s.db.CompleteUIAStage(ctx, sess.ID, auth.Type, regToken)
}

// EndUIA deletes a completed session.
func (s *Service) EndUIA(ctx context.Context, session string) error {
	return s.db.DeleteUIASession(ctx, session)
}

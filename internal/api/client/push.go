package client

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/push"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
)

// pushRoutes registers the push rules, pushers and notifications routes
// (client-server API, "Push Notifications").
func (a *API) pushRoutes(rt *api.Router) {
	const c = "/_matrix/client/v3"
	rt.Handle("GET "+c+"/pushrules/{$}", a.guestOK(a.getPushRules))
	rt.Handle("GET "+c+"/pushrules/global/{$}", a.guestOK(a.getGlobalPushRules))
	rt.Handle("GET "+c+"/pushrules/{scope}/{kind}/{ruleId}", a.guestOK(a.getPushRule))
	rt.Handle("PUT "+c+"/pushrules/{scope}/{kind}/{ruleId}", a.authed(a.putPushRule))
	rt.Handle("DELETE "+c+"/pushrules/{scope}/{kind}/{ruleId}", a.authed(a.deletePushRule))
	rt.Handle("GET "+c+"/pushrules/{scope}/{kind}/{ruleId}/{attr}", a.guestOK(a.getPushRuleAttr))
	rt.Handle("PUT "+c+"/pushrules/{scope}/{kind}/{ruleId}/{attr}", a.authed(a.putPushRuleAttr))
	rt.Handle("GET "+c+"/pushers", a.authed(a.getPushers))
	rt.Handle("POST "+c+"/pushers/set", a.authed(a.setPusher))
	rt.Handle("GET "+c+"/notifications", a.authed(a.getNotifications))
}

// GET /_matrix/client/v3/pushrules/
func (a *API) getPushRules(w http.ResponseWriter, r *http.Request) error {
	g, err := a.globalRules(r)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]json.RawMessage{"global": g})
}

// GET /_matrix/client/v3/pushrules/global/
func (a *API) getGlobalPushRules(w http.ResponseWriter, r *http.Request) error {
	g, err := a.globalRules(r)
	if err != nil {
		return err
	}
	return api.OK(w, g)
}

func (a *API) globalRules(r *http.Request) (json.RawMessage, error) {
	user := Who(r).UserID
	if a.svc.Push == nil {
		return push.DefaultRules(user), nil
	}
	rs, err := a.svc.Push.Rules(r.Context(), user)
	if err != nil {
		return nil, err
	}
	return rs.MarshalFor(user)
}

// pushRulePath reads scope, kind and ruleId. Errors: M_INVALID_PARAM for
// a scope other than global or an unknown kind.
func pushRulePath(r *http.Request) (push.Kind, string, error) {
	if r.PathValue("scope") != "global" {
		return "", "", mxerr.InvalidParam("Unknown push rule scope %q", r.PathValue("scope"))
	}
	k, ok := push.ParseKind(r.PathValue("kind"))
	if !ok {
		return "", "", mxerr.InvalidParam("Unknown push rule kind %q", r.PathValue("kind"))
	}
	return k, r.PathValue("ruleId"), nil
}

// pushRuleErr maps the ruleset's errors to the spec's.
func pushRuleErr(err error) error {
	var inv *push.InvalidError
	switch {
	case errors.Is(err, push.ErrNoRule):
		return mxerr.NotFound("Unknown push rule")
	case errors.Is(err, push.ErrDefaultRule):
		// Synapse answers 400 M_UNKNOWN here too ("cannot add new rule
		// with a reserved ID" / "cannot delete a server-default rule").
		return mxerr.Unknown("Server-default push rules cannot be added or deleted").WithStatus(http.StatusBadRequest)
	case errors.As(err, &inv):
		return mxerr.InvalidParam("%s", inv.Msg)
	}
	return err
}

func (a *API) pushService() (*push.Service, error) {
	if a.svc.Push == nil {
		return nil, mxerr.Unrecognized("Push rules cannot be changed on this server")
	}
	return a.svc.Push, nil
}

// ruleTarget is the rule a /pushrules/{scope}/{kind}/{ruleId} request
// names, with the service that keeps it.
type ruleTarget struct {
	p    *push.Service
	kind push.Kind
	id   string
}

// pushRuleTarget reads the rule a request names (pushRulePath) and the
// push service; its errors are the client's.
func (a *API) pushRuleTarget(r *http.Request) (ruleTarget, error) {
	k, ruleID, err := pushRulePath(r)
	if err != nil {
		return ruleTarget{}, err
	}
	p, err := a.pushService()
	if err != nil {
		return ruleTarget{}, err
	}
	return ruleTarget{p: p, kind: k, id: ruleID}, nil
}

// rule reads the target rule of user: M_NOT_FOUND if there is none.
func (t ruleTarget) rule(r *http.Request, user id.UserID) (*push.Rule, error) {
	rs, err := t.p.Rules(r.Context(), user)
	if err != nil {
		return nil, err
	}
	rule, err := rs.Get(t.kind, t.id)
	if err != nil {
		return nil, pushRuleErr(err)
	}
	return rule, nil
}

// change applies fn to the user's rules: pushRuleErr's errors.
func (t ruleTarget) change(r *http.Request, fn func(rs *push.Ruleset) (*push.Ruleset, error)) error {
	if err := t.p.ChangeRules(r.Context(), Who(r).UserID, fn); err != nil {
		return pushRuleErr(err)
	}
	return nil
}

// GET /_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}
func (a *API) getPushRule(w http.ResponseWriter, r *http.Request) error {
	t, err := a.pushRuleTarget(r)
	if err != nil {
		return err
	}
	user := Who(r).UserID
	rule, err := t.rule(r, user)
	if err != nil {
		return err
	}
	b, err := rule.MarshalFor(user)
	if err != nil {
		return err
	}
	return api.OK(w, json.RawMessage(b))
}

// PUT /_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}
//
// Query before and after place the rule relative to another user rule.
// Errors: M_INVALID_PARAM (scope, kind, rule ID, body), M_NOT_FOUND (the
// before/after rule), 400 M_UNKNOWN for an ID starting with ".".
func (a *API) putPushRule(w http.ResponseWriter, r *http.Request) error {
	t, err := a.pushRuleTarget(r)
	if err != nil {
		return err
	}
	var body push.NewRule
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	q := r.URL.Query()
	err = t.change(r, func(rs *push.Ruleset) (*push.Ruleset, error) {
		return rs.Put(t.kind, t.id, body, q.Get("before"), q.Get("after"))
	})
	if err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// DELETE /_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}
//
// Errors: M_NOT_FOUND, 400 M_UNKNOWN for a server-default rule.
func (a *API) deletePushRule(w http.ResponseWriter, r *http.Request) error {
	t, err := a.pushRuleTarget(r)
	if err != nil {
		return err
	}
	err = t.change(r, func(rs *push.Ruleset) (*push.Ruleset, error) {
		return rs.Delete(t.kind, t.id)
	})
	if err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

func ruleAttr(r *http.Request) (string, error) {
	switch attr := r.PathValue("attr"); attr {
	case "enabled", "actions":
		return attr, nil
	default:
		return "", mxerr.Unrecognized("Unknown push rule attribute %q", attr)
	}
}

// GET /_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}/enabled
// GET /_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}/actions
func (a *API) getPushRuleAttr(w http.ResponseWriter, r *http.Request) error {
	attr, err := ruleAttr(r)
	if err != nil {
		return err
	}
	t, err := a.pushRuleTarget(r)
	if err != nil {
		return err
	}
	rule, err := t.rule(r, Who(r).UserID)
	if err != nil {
		return err
	}
	if attr == "enabled" {
		return api.OK(w, map[string]bool{"enabled": rule.Enabled})
	}
	actions := rule.Actions
	if actions == nil {
		actions = []json.RawMessage{}
	}
	return api.OK(w, map[string]any{"actions": actions})
}

// PUT /_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}/enabled
// PUT /_matrix/client/v3/pushrules/{scope}/{kind}/{ruleId}/actions
//
// Errors: M_NOT_FOUND, M_MISSING_PARAM / M_INVALID_PARAM for the body.
func (a *API) putPushRuleAttr(w http.ResponseWriter, r *http.Request) error {
	attr, err := ruleAttr(r)
	if err != nil {
		return err
	}
	t, err := a.pushRuleTarget(r)
	if err != nil {
		return err
	}
	var body struct {
		Enabled *bool             `json:"enabled"`
		Actions []json.RawMessage `json:"actions"`
	}
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	var change func(rs *push.Ruleset) (*push.Ruleset, error)
	if attr == "enabled" {
		if body.Enabled == nil {
			return mxerr.MissingParam("enabled is required")
		}
		change = func(rs *push.Ruleset) (*push.Ruleset, error) { return rs.SetEnabled(t.kind, t.id, *body.Enabled) }
	} else {
		if body.Actions == nil {
			return mxerr.MissingParam("actions is required")
		}
		change = func(rs *push.Ruleset) (*push.Ruleset, error) { return rs.SetActions(t.kind, t.id, body.Actions) }
	}
	if err := t.change(r, change); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// GET /_matrix/client/v3/pushers
func (a *API) getPushers(w http.ResponseWriter, r *http.Request) error {
	p, err := a.pushService()
	if err != nil {
		return err
	}
	ps, err := p.Pushers(r.Context(), Who(r).UserID)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"pushers": ps})
}

// POST /_matrix/client/v3/pushers/set
//
// The pusher belongs to the access token's device and is deleted with it.
func (a *API) setPusher(w http.ResponseWriter, r *http.Request) error {
	p, err := a.pushService()
	if err != nil {
		return err
	}
	var body push.PusherSet
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	who := Who(r)
	if err := p.SetPusher(r.Context(), who.UserID, who.Localpart, who.DeviceID, body); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// GET /_matrix/client/v3/notifications
//
// Newest first; from is the next_token of the previous page, limit at
// most 100 (default 20), only=highlight keeps highlights.
func (a *API) getNotifications(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit := 20
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return mxerr.InvalidParam("limit must be a non-negative integer")
		}
		limit = min(n, 100)
	}
	var from int64
	if s := q.Get("from"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return mxerr.InvalidParam("Unknown from token")
		}
		from = n
	}
	who := Who(r)
	db := a.svc.Rooms.DB()
	rows, err := db.Notifications(r.Context(), who.UserID, from, limit, q.Get("only") == "highlight")
	if err != nil {
		return err
	}
	ids := make([]id.EventID, len(rows))
	for i, n := range rows {
		ids[i] = n.EventID
	}
	evs, err := db.Events(r.Context(), ids)
	if err != nil {
		return err
	}
	byID := make(map[id.EventID]*store.Event, len(evs))
	for _, e := range evs {
		byID[e.EventID()] = e
	}
	type notification struct {
		Actions json.RawMessage `json:"actions"`
		Event   json.RawMessage `json:"event"`
		Read    bool            `json:"read"`
		RoomID  id.RoomID       `json:"room_id"`
		TS      int64           `json:"ts"`
	}
	out := struct {
		NextToken     string         `json:"next_token,omitempty"`
		Notifications []notification `json:"notifications"`
	}{Notifications: []notification{}}
	for _, n := range rows {
		e := byID[n.EventID]
		if e == nil {
			continue
		}
		ev, err := a.svc.Rooms.FormatOne(r.Context(), e, room.Viewer{UserID: who.UserID, DeviceID: who.DeviceID}, room.FormatOptions{NoRoomID: true})
		if err != nil {
			return err
		}
		out.Notifications = append(out.Notifications, notification{Actions: n.Actions, Event: ev, Read: n.Read, RoomID: n.RoomID, TS: n.TS})
	}
	if limit > 0 && len(rows) == limit {
		out.NextToken = strconv.FormatInt(rows[len(rows)-1].StreamPos, 10)
	}
	return api.OK(w, out)
}

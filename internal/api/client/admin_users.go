package client

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/user"
)

// The user part of Synapse's admin API (docs/admin-api.md lists what
// Polder serves and how it differs): list, query, create or modify,
// deactivate, reset passwords, sessions, devices and rooms of local users.
// Admins only (routes.go wraps every route in a.admin).

func (a *API) adminUserRoutes(rt *api.Router) {
	const s = "/_synapse/admin"
	rt.Handle("GET "+s+"/v2/users", a.admin(a.adminListUsers))
	rt.Handle("GET "+s+"/v2/users/{userId}", a.admin(a.adminGetUser))
	rt.Handle("PUT "+s+"/v2/users/{userId}", a.admin(a.adminPutUser))
	rt.Handle("POST "+s+"/v1/deactivate/{userId}", a.admin(a.adminDeactivate))
	rt.Handle("POST "+s+"/v1/reset_password/{userId}", a.admin(a.adminResetPassword))
	rt.Handle("GET "+s+"/v1/whois/{userId}", a.admin(a.adminWhois))
	rt.Handle("GET "+s+"/v2/users/{userId}/devices", a.admin(a.adminListDevices))
	rt.Handle("GET "+s+"/v2/users/{userId}/devices/{deviceId}", a.admin(a.adminGetDevice))
	rt.Handle("DELETE "+s+"/v2/users/{userId}/devices/{deviceId}", a.admin(a.adminDeleteDevice))
	rt.Handle("POST "+s+"/v2/users/{userId}/delete_devices", a.admin(a.adminDeleteDevices))
	rt.Handle("GET "+s+"/v1/users/{userId}/joined_rooms", a.admin(a.adminJoinedRooms))
}

// adminUserListEntry is a user in GET /v2/users. creation_ts is in
// milliseconds here, as Synapse's list gives it.
type adminUserListEntry struct {
	Name         id.UserID `json:"name"`
	IsGuest      bool      `json:"is_guest"`
	Admin        bool      `json:"admin"`
	UserType     *string   `json:"user_type"`
	Deactivated  bool      `json:"deactivated"`
	Erased       bool      `json:"erased"`
	ShadowBanned bool      `json:"shadow_banned"`
	DisplayName  *string   `json:"displayname"`
	AvatarURL    *string   `json:"avatar_url"`
	CreationTS   int64     `json:"creation_ts"`
	LastSeenTS   *int64    `json:"last_seen_ts"`
	Locked       bool      `json:"locked"`
}

// adminUserDetail is GET /v2/users/{userId}. creation_ts is in seconds, as
// Synapse's answer gives it (its list gives milliseconds).
type adminUserDetail struct {
	Name                    id.UserID         `json:"name"`
	DisplayName             *string           `json:"displayname"`
	AvatarURL               *string           `json:"avatar_url"`
	ThreePIDs               []json.RawMessage `json:"threepids"`
	ExternalIDs             []json.RawMessage `json:"external_ids"`
	IsGuest                 bool              `json:"is_guest"`
	Admin                   bool              `json:"admin"`
	Deactivated             bool              `json:"deactivated"`
	Erased                  bool              `json:"erased"`
	ShadowBanned            bool              `json:"shadow_banned"`
	Locked                  bool              `json:"locked"`
	Suspended               bool              `json:"suspended"`
	CreationTS              int64             `json:"creation_ts"`
	LastSeenTS              *int64            `json:"last_seen_ts"`
	AppserviceID            *string           `json:"appservice_id"`
	ConsentServerNoticeSent *string           `json:"consent_server_notice_sent"`
	ConsentVersion          *string           `json:"consent_version"`
	ConsentTS               *int64            `json:"consent_ts"`
	UserType                *string           `json:"user_type"`
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func optInt(n int64) *int64 {
	if n == 0 {
		return nil
	}
	return &n
}

func (a *API) toAdminUserDetail(u store.AdminUser) adminUserDetail {
	return adminUserDetail{
		Name:        a.users.UserID(u.Localpart),
		DisplayName: optString(u.DisplayName), AvatarURL: optString(u.AvatarURL),
		ThreePIDs: []json.RawMessage{}, ExternalIDs: []json.RawMessage{},
		IsGuest: u.IsGuest, Admin: u.IsAdmin, Deactivated: u.Deactivated,
		CreationTS: u.CreatedTS / 1000, LastSeenTS: optInt(u.LastSeenTS), UserType: optString(u.UserType),
	}
}

// queryOptBool is queryBool as a pointer: nil if absent.
func queryOptBool(r *http.Request, name string) (*bool, error) {
	v, set, err := queryBool(r, name)
	if err != nil || !set {
		return nil, err
	}
	return &v, nil
}

// adminUserParam reads the {userId} of the path: a local user.
func (a *API) adminUserParam(r *http.Request) (id.UserID, string, error) {
	u := userIDParam(r)
	lp, err := a.users.LocalUser(u)
	return u, lp, err
}

// adminExistingUser is adminUserParam for a user that must exist:
// M_NOT_FOUND otherwise.
func (a *API) adminExistingUser(r *http.Request) (id.UserID, string, error) {
	u, lp, err := a.adminUserParam(r)
	if err != nil {
		return "", "", err
	}
	if _, err := a.users.AdminUser(r.Context(), lp); err != nil {
		return "", "", err
	}
	return u, lp, nil
}

// GET /_synapse/admin/v2/users
func (a *API) adminListUsers(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	from, limit, backwards, err := adminPage(r, "f")
	if err != nil {
		return err
	}
	uq := store.AdminUserQuery{Offset: int(from), Limit: int(limit), Backwards: backwards,
		UserID: q.Get("user_id"), Name: q.Get("name"), OrderBy: q.Get("order_by"), NotUserTypes: q["not_user_type"]}
	if uq.OrderBy == "" {
		uq.OrderBy = "name"
	}
	if !store.AdminUserOrderValid(uq.OrderBy) {
		// shadow_banned: Polder has no shadow bans, so every user ties.
		if uq.OrderBy != "shadow_banned" {
			return mxerr.InvalidParam("Unknown value for order_by: %q", uq.OrderBy)
		}
		uq.OrderBy = "name"
	}
	guests, err := queryOptBool(r, "guests")
	if err != nil {
		return err
	}
	uq.NoGuests = guests != nil && !*guests
	deact, err := queryOptBool(r, "deactivated")
	if err != nil {
		return err
	}
	uq.Deactivated = deact != nil && *deact
	if uq.Admins, err = queryOptBool(r, "admins"); err != nil {
		return err
	}
	if _, err := queryOptBool(r, "locked"); err != nil {
		return err // Polder locks no account: there is nothing to include
	}
	us, total, err := a.users.AdminUsers(r.Context(), uq)
	if err != nil {
		return err
	}
	list := make([]adminUserListEntry, len(us))
	for i, u := range us {
		list[i] = adminUserListEntry{
			Name: a.users.UserID(u.Localpart), IsGuest: u.IsGuest, Admin: u.IsAdmin, UserType: optString(u.UserType),
			Deactivated: u.Deactivated, DisplayName: optString(u.DisplayName), AvatarURL: optString(u.AvatarURL),
			CreationTS: u.CreatedTS, LastSeenTS: optInt(u.LastSeenTS),
		}
	}
	resp := map[string]any{"users": list, "total": total}
	if next := int(from) + len(us); next < total && len(us) > 0 {
		resp["next_token"] = strconv.Itoa(next)
	}
	return api.OK(w, resp)
}

// GET /_synapse/admin/v2/users/{userId}
func (a *API) adminGetUser(w http.ResponseWriter, r *http.Request) error {
	_, lp, err := a.adminUserParam(r)
	if err != nil {
		return err
	}
	u, err := a.users.AdminUser(r.Context(), lp)
	if err != nil {
		return err
	}
	return api.OK(w, a.toAdminUserDetail(u))
}

// adminPutUserBody is PUT /v2/users/{userId}. Absent fields are left as
// they are; other fields Synapse tools send back (name, creation_ts…) are
// ignored.
type adminPutUserBody struct {
	Password      *string           `json:"password"`
	LogoutDevices *bool             `json:"logout_devices"`
	DisplayName   *string           `json:"displayname"`
	AvatarURL     *string           `json:"avatar_url"`
	ThreePIDs     []json.RawMessage `json:"threepids"`
	ExternalIDs   []json.RawMessage `json:"external_ids"`
	Admin         *bool             `json:"admin"`
	Deactivated   *bool             `json:"deactivated"`
	Locked        *bool             `json:"locked"`
	// UserType is the raw value: absent leaves it, null clears it.
	UserType json.RawMessage `json:"user_type"`
}

// PUT /_synapse/admin/v2/users/{userId}
//
// Creates the account (201) or modifies it (200), and answers with the
// account as GET does.
func (a *API) adminPutUser(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	u, lp, err := a.adminUserParam(r)
	if err != nil {
		return err
	}
	var body adminPutUserBody
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	if len(body.ThreePIDs) > 0 || len(body.ExternalIDs) > 0 {
		return mxerr.InvalidParam("Polder does not store third-party IDs nor external (SSO) IDs of accounts")
	}
	if body.Locked != nil && *body.Locked {
		return mxerr.InvalidParam("Polder does not lock accounts; deactivate the account instead")
	}
	var userType *string
	if len(body.UserType) > 0 {
		var t *string
		if err := json.Unmarshal(body.UserType, &t); err != nil {
			return mxerr.BadJSON("user_type must be a string or null")
		}
		userType = new(string)
		if t != nil {
			*userType = *t
		}
	}
	if body.AvatarURL != nil && *body.AvatarURL != "" && !user.ValidMXC(*body.AvatarURL) {
		return mxerr.InvalidParam("avatar_url must be an mxc:// URI")
	}
	existing, err := a.users.AdminUser(ctx, lp)
	created := false
	switch {
	case err == nil:
	case isNotFound(err):
		if body.Password != nil && *body.Password == "" {
			return mxerr.InvalidParam("password must not be empty")
		}
		pw, admin, ut, dn := "", false, "", ""
		if body.Password != nil {
			pw = *body.Password
		}
		if body.Admin != nil {
			admin = *body.Admin
		}
		if userType != nil {
			ut = *userType
		}
		if body.DisplayName != nil {
			dn = *body.DisplayName
		}
		if _, err := a.users.CreateUser(ctx, lp, pw, dn, admin, ut, false); err != nil {
			return err
		}
		created = true
		body.Password, body.Admin, userType, body.DisplayName = nil, nil, nil, nil
		if existing, err = a.users.AdminUser(ctx, lp); err != nil {
			return err
		}
	default:
		return err
	}

	if body.Deactivated != nil && *body.Deactivated && !existing.Deactivated {
		if err := a.adminDeactivateUser(ctx, u, lp); err != nil {
			return err
		}
	}
	if body.Deactivated != nil && !*body.Deactivated && existing.Deactivated {
		// Deactivation removed the password: without a new one the
		// account could not log in (Synapse refuses the same way).
		if body.Password == nil {
			return mxerr.InvalidParam("Must provide a password to re-activate an account")
		}
		if err := a.users.Reactivate(ctx, lp); err != nil {
			return err
		}
	}
	if body.Password != nil {
		logout := body.LogoutDevices == nil || *body.LogoutDevices
		if err := a.users.ResetPassword(ctx, lp, *body.Password, logout); err != nil {
			return err
		}
	}
	if body.Admin != nil && *body.Admin != existing.IsAdmin {
		if !*body.Admin && u == Who(r).UserID {
			return mxerr.InvalidParam("You may not demote yourself")
		}
		if err := a.users.SetAdmin(ctx, lp, *body.Admin); err != nil {
			return err
		}
	}
	if userType != nil {
		if err := a.users.SetUserType(ctx, lp, *userType); err != nil {
			return err
		}
	}
	if err := a.adminSetProfile(r, lp, user.FieldDisplayName, body.DisplayName); err != nil {
		return err
	}
	if err := a.adminSetProfile(r, lp, user.FieldAvatarURL, body.AvatarURL); err != nil {
		return err
	}
	out, err := a.users.AdminUser(ctx, lp)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return api.WriteJSON(w, status, a.toAdminUserDetail(out))
}

func isNotFound(err error) bool {
	e, ok := mxerr.As(err)
	return ok && e.Code == "M_NOT_FOUND"
}

// adminSetProfile sets (or with "" removes) the display name or avatar
// of a user as that user would, and propagates the change to its member
// events. nil leaves it.
func (a *API) adminSetProfile(r *http.Request, lp, field string, v *string) error {
	if v == nil {
		return nil
	}
	who := a.users.AdminIdentity(lp)
	var changed bool
	var err error
	if *v == "" {
		changed, err = a.users.DeleteProfileField(r.Context(), who, who.UserID, field)
	} else {
		raw, _ := json.Marshal(*v)
		changed, err = a.users.SetProfileField(r.Context(), who, who.UserID, field, raw)
	}
	if err != nil || !changed {
		return err
	}
	// As propagateProfile: finish even if the client goes away.
	if err := a.svc.Rooms.RefreshProfile(context.WithoutCancel(r.Context()), who.UserID); err != nil {
		a.log.Warn("profile change not propagated to every room", "user_id", who.UserID, "err", err)
	}
	return nil
}

// adminDeactivateUser deactivates an account (no login, no devices, no
// password, no profile) and has it leave every room, as Synapse's admin
// deactivation does. The leaves come after the deactivation, so that the
// account is locked out even if some room refuses its leave (logged).
func (a *API) adminDeactivateUser(ctx context.Context, u id.UserID, lp string) error {
	if err := a.users.Deactivate(ctx, lp); err != nil {
		return err
	}
	_, _, err := a.svc.Rooms.LeaveAll(context.WithoutCancel(ctx), u)
	return err
}

// POST /_synapse/admin/v1/deactivate/{userId}
func (a *API) adminDeactivate(w http.ResponseWriter, r *http.Request) error {
	u, lp, err := a.adminUserParam(r)
	if err != nil {
		return err
	}
	var body struct {
		// Erase is accepted; deactivation already removes the display
		// name and avatar, and events are not hidden (docs/admin-api.md).
		Erase bool `json:"erase"`
	}
	if err := api.DecodeOptionalJSON(r, &body); err != nil {
		return err
	}
	if _, err := a.users.AdminUser(r.Context(), lp); err != nil {
		return err
	}
	if err := a.adminDeactivateUser(r.Context(), u, lp); err != nil {
		return err
	}
	// No identity server bindings are kept: nothing to unbind.
	return api.OK(w, map[string]string{"id_server_unbind_result": "success"})
}

// POST /_synapse/admin/v1/reset_password/{userId}
func (a *API) adminResetPassword(w http.ResponseWriter, r *http.Request) error {
	_, lp, err := a.adminUserParam(r)
	if err != nil {
		return err
	}
	var body struct {
		NewPassword   string `json:"new_password"`
		LogoutDevices *bool  `json:"logout_devices"`
	}
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.NewPassword == "" {
		return mxerr.MissingParam("new_password is required")
	}
	if _, err := a.users.AdminUser(r.Context(), lp); err != nil {
		return err
	}
	logout := body.LogoutDevices == nil || *body.LogoutDevices
	if err := a.users.ResetPassword(r.Context(), lp, body.NewPassword, logout); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// GET /_synapse/admin/v1/whois/{userId}
func (a *API) adminWhois(w http.ResponseWriter, r *http.Request) error {
	u, lp, err := a.adminExistingUser(r)
	if err != nil {
		return err
	}
	devs, err := a.users.Devices(r.Context(), lp)
	if err != nil {
		return err
	}
	type connection struct {
		IP        string `json:"ip"`
		LastSeen  int64  `json:"last_seen"`
		UserAgent string `json:"user_agent"`
	}
	type session struct {
		Connections []connection `json:"connections"`
	}
	type device struct {
		Sessions []session `json:"sessions"`
	}
	out := map[string]device{}
	for _, d := range devs {
		conns := []connection{}
		if d.LastSeenTS != 0 {
			conns = append(conns, connection{IP: d.LastSeenIP, LastSeen: d.LastSeenTS, UserAgent: d.LastSeenAgent})
		}
		out[d.DeviceID] = device{Sessions: []session{{Connections: conns}}}
	}
	return api.OK(w, map[string]any{"user_id": u, "devices": out})
}

// adminDevice is a device in the admin API.
type adminDevice struct {
	DeviceID          string    `json:"device_id"`
	DisplayName       *string   `json:"display_name"`
	LastSeenIP        *string   `json:"last_seen_ip"`
	LastSeenTS        *int64    `json:"last_seen_ts"`
	LastSeenUserAgent *string   `json:"last_seen_user_agent"`
	UserID            id.UserID `json:"user_id"`
}

func toAdminDevice(u id.UserID, d store.Device) adminDevice {
	return adminDevice{DeviceID: d.DeviceID, DisplayName: optString(d.DisplayName), LastSeenIP: optString(d.LastSeenIP),
		LastSeenTS: optInt(d.LastSeenTS), LastSeenUserAgent: optString(d.LastSeenAgent), UserID: u}
}

// GET /_synapse/admin/v2/users/{userId}/devices
func (a *API) adminListDevices(w http.ResponseWriter, r *http.Request) error {
	u, lp, err := a.adminExistingUser(r)
	if err != nil {
		return err
	}
	devs, err := a.users.Devices(r.Context(), lp)
	if err != nil {
		return err
	}
	out := make([]adminDevice, len(devs))
	for i, d := range devs {
		out[i] = toAdminDevice(u, d)
	}
	return api.OK(w, map[string]any{"devices": out, "total": len(out)})
}

// GET /_synapse/admin/v2/users/{userId}/devices/{deviceId}
func (a *API) adminGetDevice(w http.ResponseWriter, r *http.Request) error {
	u, lp, err := a.adminUserParam(r)
	if err != nil {
		return err
	}
	d, err := a.users.Device(r.Context(), lp, r.PathValue("deviceId"))
	if err != nil {
		return err
	}
	return api.OK(w, toAdminDevice(u, d))
}

// DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}
//
// Deleting a device that does not exist succeeds, as in Synapse.
func (a *API) adminDeleteDevice(w http.ResponseWriter, r *http.Request) error {
	_, lp, err := a.adminExistingUser(r)
	if err != nil {
		return err
	}
	if err := a.users.DeleteDevices(r.Context(), lp, []string{r.PathValue("deviceId")}); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// POST /_synapse/admin/v2/users/{userId}/delete_devices
func (a *API) adminDeleteDevices(w http.ResponseWriter, r *http.Request) error {
	_, lp, err := a.adminUserParam(r)
	if err != nil {
		return err
	}
	var body struct {
		Devices []string `json:"devices"`
	}
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	if _, err := a.users.AdminUser(r.Context(), lp); err != nil {
		return err
	}
	if err := a.users.DeleteDevices(r.Context(), lp, body.Devices); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// GET /_synapse/admin/v1/users/{userId}/joined_rooms
func (a *API) adminJoinedRooms(w http.ResponseWriter, r *http.Request) error {
	u, _, err := a.adminExistingUser(r)
	if err != nil {
		return err
	}
	ms, err := a.svc.Rooms.DB().UserMemberships(r.Context(), u, "join")
	if err != nil {
		return err
	}
	ids := make([]id.RoomID, len(ms))
	for i, m := range ms {
		ids[i] = m.RoomID
	}
	return api.OK(w, map[string]any{"joined_rooms": ids, "total": len(ids)})
}

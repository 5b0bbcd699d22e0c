package client

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
)

// The room part of Synapse's admin API (docs/admin-api.md lists what
// Polder serves and how it differs): list and inspect any room, shut one
// down (every local member leaves) and block it. Admins only.

func (a *API) adminRoomRoutes(rt *api.Router) {
	const s = "/_synapse/admin"
	rt.Handle("GET "+s+"/v1/rooms", a.admin(a.adminListRooms))
	rt.Handle("GET "+s+"/v1/rooms/{roomId}", a.admin(a.adminGetRoom))
	rt.Handle("GET "+s+"/v1/rooms/{roomId}/members", a.admin(a.adminRoomMembers))
	rt.Handle("GET "+s+"/v1/rooms/{roomId}/state", a.admin(a.adminRoomState))
	rt.Handle("GET "+s+"/v1/rooms/{roomId}/block", a.admin(a.adminGetRoomBlock))
	rt.Handle("PUT "+s+"/v1/rooms/{roomId}/block", a.admin(a.adminPutRoomBlock))
	rt.Handle("DELETE "+s+"/v1/rooms/{roomId}", a.admin(a.adminDeleteRoomV1))
	rt.Handle("DELETE "+s+"/v2/rooms/{roomId}", a.admin(a.adminDeleteRoomV2))
	// GET /v2/rooms/delete_status/{deleteId} and GET
	// /v2/rooms/{roomId}/delete_status overlap as mux patterns (neither
	// is more specific), so one pattern serves both.
	rt.Handle("GET "+s+"/v2/rooms/{a}/{b}", a.admin(a.adminDeleteStatus))
}

// adminRoomJSON is a room in GET /v1/rooms; the details of GET
// /v1/rooms/{roomId} add the fields of adminRoomDetail.
type adminRoomJSON struct {
	RoomID             id.RoomID `json:"room_id"`
	Name               *string   `json:"name"`
	CanonicalAlias     *string   `json:"canonical_alias"`
	JoinedMembers      int       `json:"joined_members"`
	JoinedLocalMembers int       `json:"joined_local_members"`
	Version            string    `json:"version"`
	Creator            *string   `json:"creator"`
	Encryption         *string   `json:"encryption"`
	Federatable        bool      `json:"federatable"`
	Public             bool      `json:"public"`
	JoinRules          *string   `json:"join_rules"`
	GuestAccess        *string   `json:"guest_access"`
	HistoryVisibility  *string   `json:"history_visibility"`
	StateEvents        int       `json:"state_events"`
	RoomType           *string   `json:"room_type"`
}

type adminRoomDetail struct {
	adminRoomJSON
	Topic              *string `json:"topic"`
	Avatar             *string `json:"avatar"`
	JoinedLocalDevices int     `json:"joined_local_devices"`
	Forgotten          bool    `json:"forgotten"`
}

func toAdminRoom(r store.AdminRoom) adminRoomJSON {
	return adminRoomJSON{
		RoomID: r.RoomID, Name: optString(r.Name), CanonicalAlias: optString(r.CanonicalAlias),
		JoinedMembers: r.JoinedMembers, JoinedLocalMembers: r.JoinedLocalMembers, Version: string(r.Version),
		Creator: optString(string(r.Creator)), Encryption: optString(r.Encryption), Federatable: r.Federatable, Public: r.Public,
		JoinRules: optString(r.JoinRule), GuestAccess: optString(r.GuestAccess), HistoryVisibility: optString(r.HistoryVisibility),
		StateEvents: r.StateEvents, RoomType: optString(r.RoomType),
	}
}

// GET /_synapse/admin/v1/rooms
func (a *API) adminListRooms(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	from, limit, backwards, err := adminPage(r, "f")
	if err != nil {
		return err
	}
	rq := store.AdminRoomQuery{Offset: int(from), Limit: int(limit), Backwards: backwards, OrderBy: q.Get("order_by")}
	if rq.OrderBy == "" {
		rq.OrderBy = "name"
	}
	if !store.AdminRoomOrderValid(rq.OrderBy) {
		return mxerr.InvalidParam("Unknown value for order_by: %q", rq.OrderBy)
	}
	if q.Has("search_term") {
		if rq.Search = q.Get("search_term"); rq.Search == "" {
			return mxerr.InvalidParam("search_term cannot be empty")
		}
	}
	if rq.Public, err = queryOptBool(r, "public_rooms"); err != nil {
		return err
	}
	if rq.Empty, err = queryOptBool(r, "empty_rooms"); err != nil {
		return err
	}
	rooms, total, err := a.svc.Rooms.AdminRooms(r.Context(), rq)
	if err != nil {
		return err
	}
	list := make([]adminRoomJSON, len(rooms))
	for i, rm := range rooms {
		list[i] = toAdminRoom(rm)
	}
	resp := map[string]any{"rooms": list, "offset": from, "total_rooms": total}
	if next := int(from) + int(limit); next < total {
		resp["next_batch"] = next
	}
	if from > 0 {
		resp["prev_batch"] = max(0, from-limit)
	}
	return api.OK(w, resp)
}

// GET /_synapse/admin/v1/rooms/{roomId}
func (a *API) adminGetRoom(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	rm, err := a.svc.Rooms.AdminRoom(ctx, roomID)
	if err != nil {
		return err
	}
	out := adminRoomDetail{adminRoomJSON: toAdminRoom(rm), Topic: optString(rm.Topic), Avatar: optString(rm.AvatarURL)}
	ms, err := a.svc.Rooms.AdminMembers(ctx, roomID)
	if err != nil {
		return err
	}
	local, forgotten := 0, 0
	for _, m := range ms {
		if !a.svc.Rooms.IsLocalUser(m.UserID) {
			continue
		}
		local++
		if m.Forgotten {
			forgotten++
		}
		if m.Membership != room.Join {
			continue
		}
		devs, err := a.users.Devices(ctx, m.UserID.Localpart())
		if err != nil {
			return err
		}
		out.JoinedLocalDevices += len(devs)
	}
	out.Forgotten = local > 0 && forgotten == local
	return api.OK(w, out)
}

// GET /_synapse/admin/v1/rooms/{roomId}/members
func (a *API) adminRoomMembers(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	ms, err := a.svc.Rooms.AdminMembers(r.Context(), roomID, room.Join)
	if err != nil {
		return err
	}
	ids := make([]id.UserID, len(ms))
	for i, m := range ms {
		ids[i] = m.UserID
	}
	return api.OK(w, map[string]any{"members": ids, "total": len(ids)})
}

// GET /_synapse/admin/v1/rooms/{roomId}/state
func (a *API) adminRoomState(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	evs, err := a.svc.Rooms.AdminState(r.Context(), roomID, r.URL.Query().Get("type"))
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"state": evs})
}

// GET /_synapse/admin/v1/rooms/{roomId}/block
func (a *API) adminGetRoomBlock(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	by, blocked, err := a.svc.Rooms.Blocked(r.Context(), roomID)
	if err != nil {
		return err
	}
	if !blocked {
		return api.OK(w, map[string]any{"block": false})
	}
	return api.OK(w, map[string]any{"block": true, "user_id": by})
}

// PUT /_synapse/admin/v1/rooms/{roomId}/block
//
// Blocking keeps local users from joining; members stay (DELETE the room
// to make them leave). The room need not be known.
func (a *API) adminPutRoomBlock(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	var body struct {
		Block *bool `json:"block"`
	}
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.Block == nil {
		return mxerr.MissingParam("block is required")
	}
	if *body.Block {
		err = a.svc.Rooms.Block(r.Context(), roomID, Who(r).UserID)
	} else {
		err = a.svc.Rooms.Unblock(r.Context(), roomID)
	}
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"block": *body.Block})
}

// adminDeleteBody is the body of DELETE /v1 and /v2/rooms/{roomId}.
type adminDeleteBody struct {
	NewRoomUserID string `json:"new_room_user_id"`
	RoomName      string `json:"room_name"`
	Message       string `json:"message"`
	Block         bool   `json:"block"`
	Purge         *bool  `json:"purge"`
	ForcePurge    bool   `json:"force_purge"`
}

// shutdownJSON is Synapse's shutdown_room object, plus purged: Polder
// never purges a room's rows (see room/admin.go), so it is always false.
type shutdownJSON struct {
	KickedUsers       []id.UserID    `json:"kicked_users"`
	FailedToKickUsers []id.UserID    `json:"failed_to_kick_users"`
	LocalAliases      []id.RoomAlias `json:"local_aliases"`
	NewRoomID         *id.RoomID     `json:"new_room_id"`
	Purged            bool           `json:"purged"`
	Blocked           bool           `json:"blocked"`
}

// adminShutdown does a room deletion: every local member leaves, with
// block the room is blocked. A room this server does not know can only
// be blocked (v1, as Synapse); otherwise it is M_NOT_FOUND.
func (a *API) adminShutdown(r *http.Request, roomID id.RoomID, body adminDeleteBody, blockUnknown bool) (*shutdownJSON, error) {
	if body.NewRoomUserID != "" {
		return nil, mxerr.InvalidParam("new_room_user_id is not supported: Polder does not create a replacement room")
	}
	// The members' leaves go on if the admin's client goes away.
	ctx := context.WithoutCancel(r.Context())
	who := Who(r)
	sd, err := a.svc.Rooms.Shutdown(ctx, roomID, who.UserID, body.Block)
	if isNotFound(err) && blockUnknown {
		if !body.Block {
			return nil, mxerr.InvalidParam("Room %s is unknown to this server; only block may be asked for it", roomID)
		}
		if err := a.svc.Rooms.Block(ctx, roomID, who.UserID); err != nil {
			return nil, err
		}
		return &shutdownJSON{KickedUsers: []id.UserID{}, FailedToKickUsers: []id.UserID{}, LocalAliases: []id.RoomAlias{}, Blocked: true}, nil
	}
	if err != nil {
		return nil, err
	}
	return &shutdownJSON{KickedUsers: sd.Kicked, FailedToKickUsers: sd.Failed, LocalAliases: sd.Aliases, Blocked: body.Block}, nil
}

// DELETE /_synapse/admin/v1/rooms/{roomId}
func (a *API) adminDeleteRoomV1(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	var body adminDeleteBody
	if err := api.DecodeOptionalJSON(r, &body); err != nil {
		return err
	}
	out, err := a.adminShutdown(r, roomID, body, true)
	if err != nil {
		return err
	}
	return api.OK(w, out)
}

// deleteStatusKept is how long the outcome of a deletion can be asked for
// (Synapse: 24 hours).
const deleteStatusKept = 24 * time.Hour

// DELETE /_synapse/admin/v2/rooms/{roomId}
//
// Synapse answers at once and works in the background; Polder does the
// work before answering (members leave, which is quick; nothing is
// purged), so the delete_id it returns is already complete.
func (a *API) adminDeleteRoomV2(w http.ResponseWriter, r *http.Request) error {
	roomID, err := roomIDParam(r)
	if err != nil {
		return err
	}
	var body adminDeleteBody
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	out, err := a.adminShutdown(r, roomID, body, false)
	if _, ok := mxerr.As(err); ok {
		return err // nothing was done: a bad request or an unknown room
	}
	d := store.RoomDeletion{DeleteID: rand.Text(), RoomID: roomID, Status: "complete"}
	if err != nil {
		// The shutdown stopped part way: the status says so.
		a.log.Warn("room deletion failed", "room_id", roomID, "err", err)
		d.Status, d.Error = "failed", err.Error()
		out = &shutdownJSON{KickedUsers: []id.UserID{}, FailedToKickUsers: []id.UserID{}, LocalAliases: []id.RoomAlias{}}
	}
	if d.Result, err = json.Marshal(out); err != nil {
		return err
	}
	keep := time.Now().Add(-deleteStatusKept).UnixMilli()
	if err := a.svc.Rooms.DB().AddRoomDeletion(context.WithoutCancel(r.Context()), d, keep); err != nil {
		return err
	}
	return api.OK(w, map[string]string{"delete_id": d.DeleteID})
}

// deleteStatusJSON is one deletion in the delete_status answers.
type deleteStatusJSON struct {
	DeleteID     string          `json:"delete_id"`
	RoomID       id.RoomID       `json:"room_id"`
	Status       string          `json:"status"`
	Error        string          `json:"error,omitempty"`
	ShutdownRoom json.RawMessage `json:"shutdown_room"`
}

func toDeleteStatus(d store.RoomDeletion) deleteStatusJSON {
	return deleteStatusJSON{DeleteID: d.DeleteID, RoomID: d.RoomID, Status: d.Status, Error: d.Error, ShutdownRoom: d.Result}
}

// GET /_synapse/admin/v2/rooms/delete_status/{deleteId}
// GET /_synapse/admin/v2/rooms/{roomId}/delete_status
func (a *API) adminDeleteStatus(w http.ResponseWriter, r *http.Request) error {
	first, second := r.PathValue("a"), r.PathValue("b")
	since := time.Now().Add(-deleteStatusKept).UnixMilli()
	db := a.svc.Rooms.DB()
	switch {
	case first == "delete_status":
		d, err := db.RoomDeletion(r.Context(), second, since)
		if errors.Is(err, store.ErrNotFound) {
			return mxerr.NotFound("delete id '%s' not found", second)
		}
		if err != nil {
			return err
		}
		return api.OK(w, toDeleteStatus(d))
	case second == "delete_status" && strings.HasPrefix(first, "!"):
		ds, err := db.RoomDeletions(r.Context(), id.RoomID(first), since)
		if err != nil {
			return err
		}
		if len(ds) == 0 {
			return mxerr.NotFound("No delete task for room_id '%s' found", first)
		}
		out := make([]deleteStatusJSON, len(ds))
		for i, d := range ds {
			out[i] = toDeleteStatus(d)
		}
		return api.OK(w, map[string]any{"results": out})
	}
	return mxerr.Unrecognized("Unrecognized request")
}

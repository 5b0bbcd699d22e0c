package client

import (
	"context"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
)

// userdataRoutes registers account data, tags, typing, receipts, read
// markers and presence. The filter routes, whose rules are in the user
// service beside account data, are registered with /sync (sync.go).
func (a *API) userdataRoutes(rt *api.Router) {
	const c = "/_matrix/client"
	// Account data and tags (userdata_accountdata.go): spec "Client
	// Config" and "Room Tagging".
	rt.Handle("GET "+c+"/v3/user/{userId}/account_data/{type}", a.authed(a.getAccountData))
	rt.Handle("PUT "+c+"/v3/user/{userId}/account_data/{type}", a.authed(a.putAccountData))
	rt.Handle("GET "+c+"/v3/user/{userId}/rooms/{roomId}/account_data/{type}", a.authed(a.getAccountData))
	rt.Handle("PUT "+c+"/v3/user/{userId}/rooms/{roomId}/account_data/{type}", a.authed(a.putAccountData))
	rt.Handle("GET "+c+"/v3/user/{userId}/rooms/{roomId}/tags", a.authed(a.getTags))
	rt.Handle("PUT "+c+"/v3/user/{userId}/rooms/{roomId}/tags/{tag}", a.authed(a.putTag))
	rt.Handle("DELETE "+c+"/v3/user/{userId}/rooms/{roomId}/tags/{tag}", a.authed(a.deleteTag))

	// Typing, receipts and read markers (userdata_receipts.go).
	rt.Handle("PUT "+c+"/v3/rooms/{roomId}/typing/{userId}", a.authed(a.putTyping))
	rt.Handle("POST "+c+"/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}", a.authed(a.postReceipt))
	rt.Handle("POST "+c+"/v3/rooms/{roomId}/read_markers", a.authed(a.postReadMarkers))

	// Presence (userdata_presence.go).
	rt.Handle("GET "+c+"/v3/presence/{userId}/status", a.authed(a.getPresence))
	rt.Handle("PUT "+c+"/v3/presence/{userId}/status", a.authed(a.putPresence))
}

// active records activity of the user for presence (typing, receipts and
// read markers count, as in Synapse). It is best effort: the request has
// succeeded already.
func (a *API) active(ctx context.Context, user id.UserID) {
	if err := a.svc.Presence.Active(ctx, user); err != nil && ctx.Err() == nil {
		a.log.Warn("record presence activity", "user_id", user, "err", err)
	}
}

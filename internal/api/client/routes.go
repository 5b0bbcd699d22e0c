package client

import "polder.dev/polder/internal/api"

// Routes registers every route of the client and admin APIs.
func (a *API) Routes(rt *api.Router) {
	const c = "/_matrix/client"
	// Discovery and capabilities.
	rt.Handle("GET "+c+"/versions", a.errs.H(a.versions))
	rt.Handle("GET /.well-known/matrix/client", a.errs.H(a.wellKnownClient))
	rt.Handle("GET /.well-known/matrix/server", a.errs.H(a.wellKnownServer))
	rt.Handle("GET "+c+"/v3/capabilities", a.guestOK(a.capabilities))

	// Registration.
	rt.Handle("POST "+c+"/v3/register", a.login(a.register))
	rt.Handle("GET "+c+"/v3/register/available", a.login(a.registerAvailable))
	rt.Handle("GET "+c+"/v1/register/m.login.registration_token/validity", a.login(a.registrationTokenValidity))

	// Login and sessions.
	rt.Handle("GET "+c+"/v3/login", a.public(a.loginFlows))
	rt.Handle("POST "+c+"/v3/login", a.login(a.doLogin))
	rt.Handle("POST "+c+"/v1/login/get_token", a.authed(a.getLoginToken))
	rt.Handle("POST "+c+"/v3/refresh", a.login(a.refresh))
	rt.Handle("POST "+c+"/v3/logout", a.guestOK(a.logout))
	rt.Handle("POST "+c+"/v3/logout/all", a.guestOK(a.logoutAll))

	// Account.
	rt.Handle("GET "+c+"/v3/account/whoami", a.guestOK(a.whoami))
	rt.Handle("POST "+c+"/v3/account/password", a.authed(a.changePassword))
	rt.Handle("POST "+c+"/v3/account/deactivate", a.authed(a.deactivate))

	// Devices.
	rt.Handle("GET "+c+"/v3/devices", a.guestOK(a.listDevices))
	rt.Handle("GET "+c+"/v3/devices/{deviceId}", a.guestOK(a.getDevice))
	rt.Handle("PUT "+c+"/v3/devices/{deviceId}", a.guestOK(a.putDevice))
	rt.Handle("DELETE "+c+"/v3/devices/{deviceId}", a.authed(a.deleteDevice))
	rt.Handle("POST "+c+"/v3/delete_devices", a.authed(a.deleteDevices))

	// OpenID (openid.go).
	rt.Handle("POST "+c+"/v3/user/{userId}/openid/request_token", a.authed(a.requestOpenIDToken))

	// Each area registers its own routes, in its own file.
	a.roomRoutes(rt)       // rooms_*.go: create, membership, send, state, redact, upgrade
	a.timelineRoutes(rt)   // timeline_*.go: event, context, messages, members, relations, threads
	a.syncRoutes(rt)       // sync.go: /sync, filters
	a.userdataRoutes(rt)   // userdata_*.go: account data, tags, typing, receipts, read markers, presence
	a.directoryRoutes(rt)  // directory_*.go: aliases, public rooms, profiles, user directory, search, reports
	a.keysRoutes(rt)       // keys.go: device keys, one-time keys, cross-signing
	a.toDeviceRoutes(rt)   // todevice.go: send-to-device
	a.roomKeysRoutes(rt)   // roomkeys.go: key backup
	a.dehydratedRoutes(rt) // dehydrated.go: dehydrated devices (MSC3814)
	a.mediaRoutes(rt)      // media.go: the media repository, /_matrix/media and /_matrix/client/v1/media
	a.spacesRoutes(rt)     // hierarchy.go: space hierarchy, room summaries

	// Simplified sliding sync, MSC4186 (slidingsync.go).
	a.slidingSyncRoutes(rt)

	// Push rules, pushers and notifications (push.go).
	a.pushRoutes(rt)

	// Every path again under r0, the name of v3 before spec v1.1 (r0.go).
	a.r0Routes(rt)

	// Synapse-compatible admin API.
	const s = "/_synapse/admin"
	rt.Handle("GET "+s+"/v1/server_version", a.errs.H(a.serverVersion))
	rt.Handle("GET "+s+"/v1/register", a.login(a.sharedSecretNonce))
	rt.Handle("POST "+s+"/v1/register", a.login(a.sharedSecretRegister))
	rt.Handle("GET "+s+"/v1/registration_tokens", a.admin(a.listRegistrationTokens))
	rt.Handle("POST "+s+"/v1/registration_tokens/new", a.admin(a.newRegistrationToken))
	rt.Handle("GET "+s+"/v1/registration_tokens/{token}", a.admin(a.getRegistrationToken))
	rt.Handle("PUT "+s+"/v1/registration_tokens/{token}", a.admin(a.putRegistrationToken))
	rt.Handle("DELETE "+s+"/v1/registration_tokens/{token}", a.admin(a.deleteRegistrationToken))
	a.adminUserRoutes(rt) // admin_users.go: users, devices, sessions, deactivation, passwords
	a.adminRoomRoutes(rt) // admin_rooms.go: rooms, members, state, block, delete
}

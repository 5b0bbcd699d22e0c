package federation

import (
	"context"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/room"
)

// Third-party invites (server-server API, "Third-party invites"): an
// identity server's notice that one of our users bound an address with
// pending invites, and another server's request that we, a server in the
// room, send such an invite as our user who made it.

// ThirdParty is what these handlers need of the room service. The Rooms
// service implements it; a Rooms that does not leaves the routes
// unserved (404 M_UNRECOGNIZED).
type ThirdParty interface {
	BindThirdParty(ctx context.Context, mxid id.UserID, invites []room.BoundInvite) int
	ExchangeThirdPartyInvite(ctx context.Context, origin string, roomID id.RoomID, x room.ThirdPartyExchange) error
}

var _ ThirdParty = (*room.Service)(nil)

func (a *API) thirdParty() (ThirdParty, error) {
	tp, ok := a.svc.Rooms.(ThirdParty)
	if !ok {
		return nil, mxerr.Unrecognized("Third-party invites are not supported").WithStatus(http.StatusNotFound)
	}
	return tp, nil
}

// onBindBody is the body of PUT /3pid/onbind.
type onBindBody struct {
	Medium  string             `json:"medium"`
	Address string             `json:"address"`
	MXID    id.UserID          `json:"mxid"`
	Invites []room.BoundInvite `json:"invites"`
}

// PUT /_matrix/federation/v1/3pid/onbind
//
// Called by identity servers, unsigned (the spec gives it no
// authentication): the invites' signed objects are what proves them, and
// they are checked against the room's keys before any invite is sent.
// Invites of users of other servers are ignored. The answer is {} even
// when an invite could not be delivered (the room service logs why).
func (a *API) onBind(w http.ResponseWriter, r *http.Request) error {
	tp, err := a.thirdParty()
	if err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	var body onBindBody
	if err := api.DecodeJSON(r, &body); err != nil {
		return err
	}
	if _, _, err := userOf(string(body.MXID)); err != nil {
		return err
	}
	tp.BindThirdParty(r.Context(), body.MXID, body.Invites)
	return api.OK(w, map[string]any{})
}

// PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}
//
// The body is the partial m.room.member invite of one of origin's users;
// the room service verifies it and sends it as our user who made the
// third-party invite.
func (a *API) exchangeThirdPartyInvite(w http.ResponseWriter, r *http.Request) error {
	tp, err := a.thirdParty()
	if err != nil {
		return err
	}
	roomID, origin, err := a.roomRequest(r)
	if err != nil {
		return err
	}
	var x room.ThirdPartyExchange
	if err := api.DecodeJSON(r, &x); err != nil {
		return err
	}
	if !strings.HasPrefix(string(x.RoomID), "!") {
		return mxerr.BadJSON("room_id is missing")
	}
	if err := tp.ExchangeThirdPartyInvite(r.Context(), origin, roomID, x); err != nil {
		return err
	}
	return api.OK(w, map[string]any{})
}

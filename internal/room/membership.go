package room

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/eventauth"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// Membership change requests (client-server API, "Room membership").
const (
	Join   = "join"
	Invite = "invite"
	Leave  = "leave"
	Ban    = "ban"
	Knock  = "knock"
)

// MemberChange is a membership change a local user asks for.
type MemberChange struct {
	RoomID     id.RoomID
	Sender     id.UserID
	Target     id.UserID
	Membership string // join, invite, leave, ban, knock
	Reason     string
	// Extra members of the content (is_direct, third-party fields are not
	// supported); membership, displayname and avatar_url are the server's.
	Extra map[string]any
	Txn   *store.Txn
	// Via are servers to try for a join or knock of a room this server is
	// not in (the client's via/server_name, the alias's servers).
	Via []string
}

// SetMembership sends a member event for a local user's membership change:
// join (including joining by invite and restricted joins), leave (also to
// reject an invite or rescind a knock, or as kick when the target is
// another user), invite, ban, unban (leave of a banned user) and knock.
// The authorization rules decide; a refusal is M_FORBIDDEN. An unknown room
// is M_NOT_FOUND for joins and knocks and M_FORBIDDEN otherwise.
func (s *Service) SetMembership(ctx context.Context, c MemberChange) (*store.Event, error) {
	if _, _, err := c.Target.Parse(); err != nil {
		return nil, mxerr.InvalidParam("Invalid user ID %q", c.Target)
	}
	if c.Target.Homeserver() != s.cfg.ServerName && c.Membership == Invite && s.cfg.Federation == nil {
		return nil, mxerr.Forbidden("This server does not federate; users of other servers cannot be invited")
	}
	if c.Target == c.Sender && (c.Membership == Join || c.Membership == Knock || c.Membership == Leave) {
		remote, err := s.needsRemote(ctx, c.RoomID, c.Membership)
		if err != nil {
			return nil, err
		}
		if remote {
			return s.membershipRemote(ctx, c)
		}
	}
	ev, err := s.sendMember(ctx, c.Sender, c.Target, c.Membership, c.Reason, c.Extra, c.Txn, c.RoomID)
	if errors.Is(err, errNoLocalAuthoriser) && s.cfg.Federation != nil {
		// A restricted room where no user of ours may invite: a server
		// with such a user authorises the join through make_join.
		servers, serr := s.JoinedServers(ctx, c.RoomID)
		if serr != nil {
			return nil, serr
		}
		c.Via = append(c.Via, servers...)
		return s.membershipRemote(ctx, c)
	}
	return ev, err
}

// sendMember does SetMembership for one room.
func (s *Service) sendMember(ctx context.Context, sender, target id.UserID, membership, reason string, extra map[string]any, txn *store.Txn, roomID id.RoomID) (*store.Event, error) {
	if txn != nil {
		if ev, err := s.txnEvent(ctx, *txn); err == nil {
			return ev, nil
		}
	}
	rs, err := s.lock(ctx, roomID)
	if errors.Is(err, ErrUnknownRoom) {
		if membership == Join || membership == Knock {
			return nil, mxerr.NotFound("No known servers for room %s", roomID)
		}
		return nil, mxerr.Forbidden("You are not in room %s", roomID)
	}
	if err != nil {
		return nil, err
	}
	defer rs.mu.Unlock()
	content, err := s.memberContent(ctx, target, membership, reason, extra)
	if err != nil {
		return nil, err
	}
	if membership == Join {
		if err := s.authoriseRestrictedJoin(ctx, rs, roomID, target, content); err != nil {
			return nil, err
		}
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	sk := string(target)
	if membership == Join && sender == target {
		// Joining again with nothing changed sends nothing (as Synapse;
		// Complement TestRoomCreationReportsEventsToMyself "Joining room
		// twice is idempotent").
		if cur := rs.lookup(event.TypeMember, sk); cur != nil && sameContent(cur.Content(), raw) {
			if ev, err := s.db.Event(ctx, cur.EventID()); err == nil {
				return ev, nil
			}
		}
	}
	pdu, err := s.build(rs, sender, roomID, Draft{Type: event.TypeMember, StateKey: &sk, Content: raw})
	if err != nil {
		return nil, err
	}
	if err := eventauth.Check(rs.version, pdu, rs.lookup); err != nil {
		return nil, forbidden(err)
	}
	if membership == Invite && target.Homeserver() != s.cfg.ServerName {
		if pdu, err = s.inviteRemote(ctx, rs, roomID, sender, sk, raw, pdu); err != nil {
			return nil, err
		}
	}
	ev, err := s.persist(ctx, rs, pdu, txn)
	if errors.Is(err, store.ErrConflict) && txn != nil {
		return s.txnEvent(ctx, *txn)
	}
	return ev, err
}

// inviteRemote has the invitee's server sign an invite. The room is
// unlocked while that server is asked, so that a slow or dead server does
// not hold up the room; if the room moved on meanwhile, the invite is
// built again on top and asked again, and the third time the lock is kept.
// rs is locked on entry and on return.
func (s *Service) inviteRemote(ctx context.Context, rs *roomState, roomID id.RoomID, sender id.UserID, stateKey string, content []byte, pdu *event.PDU) (*event.PDU, error) {
	for attempt := 0; ; attempt++ {
		req := s.inviteRequest(rs, pdu)
		last := attempt >= 2
		before := slices.Clone(rs.extremities)
		if !last {
			rs.mu.Unlock()
		}
		signed, err := s.askInvite(ctx, pdu, req)
		if !last {
			rs.mu.Lock()
			if !rs.loaded {
				if lerr := s.load(ctx, roomID, rs); lerr != nil {
					return nil, lerr
				}
			}
		}
		if err != nil {
			return nil, err
		}
		if last || slices.Equal(before, rs.extremities) {
			return signed, nil
		}
		if pdu, err = s.build(rs, sender, roomID, Draft{Type: event.TypeMember, StateKey: &stateKey, Content: content}); err != nil {
			return nil, err
		}
		if err := eventauth.Check(rs.version, pdu, rs.lookup); err != nil {
			return nil, forbidden(err)
		}
	}
}

// errNoLocalAuthoriser refuses a restricted join no local user can vouch
// for; SetMembership then asks another server in the room to.
var errNoLocalAuthoriser = mxerr.Forbidden("No local member may authorise your join")

// sameContent reports whether two event contents are the same JSON
// object.
func sameContent(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// errCannotAuthorise refuses a remote user's restricted join when this
// server is in none of the allowed rooms the user might be in: another
// server of the room may know (server-server API, make_join:
// M_UNABLE_TO_AUTHORISE_JOIN, "the joining server should try another").
var errCannotAuthorise = mxerr.New("M_UNABLE_TO_AUTHORISE_JOIN", "This server is not in the rooms that allow the join and cannot tell whether you are")

// authoriseRestrictedJoin fills join_authorised_via_users_server for a
// join to a restricted room that the user may join through membership of
// an allowed room (room versions 8+, "Restricted rooms"): a local member
// with the power to invite vouches for it.
func (s *Service) authoriseRestrictedJoin(ctx context.Context, rs *roomState, roomID id.RoomID, user id.UserID, content map[string]any) error {
	jr := rs.lookup(event.TypeJoinRules, "")
	if jr == nil {
		return nil
	}
	rule, _ := getString(jr.Content(), "join_rule")
	if rule != "restricted" && rule != "knock_restricted" {
		return nil
	}
	if m := rs.lookup(event.TypeMember, string(user)); m != nil {
		if ms, _ := getString(m.Content(), "membership"); ms == Join || ms == Invite {
			return nil
		}
	}
	var rules struct {
		Allow []struct {
			Type   string    `json:"type"`
			RoomID id.RoomID `json:"room_id"`
		} `json:"allow"`
	}
	_ = json.Unmarshal(jr.Content(), &rules)
	allowed, unknown := false, false
	for _, a := range rules.Allow {
		if a.Type != "m.room_membership" {
			continue
		}
		if user.Homeserver() != s.cfg.ServerName {
			// What we hold of a room no user of ours is in any more is
			// stale: a remote user's membership there is unknown to us
			// (Complement TestRestrictedRoomsRemoteJoinFailOver).
			servers, err := s.db.RoomServersJoined(ctx, a.RoomID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if _, in := servers[s.cfg.ServerName]; !in {
				unknown = true
				continue
			}
		}
		if m, err := s.Membership(ctx, a.RoomID, user); err == nil && m == Join {
			allowed = true
			break
		} else if err != nil {
			return err
		}
	}
	if !allowed {
		if rule == "knock_restricted" {
			return nil // the rules refuse the join; knocking stays possible
		}
		if unknown {
			return errCannotAuthorise
		}
		return mxerr.Forbidden("You are not a member of any room that allows joining this one")
	}
	pl, err := rs.powerLevels()
	if err != nil {
		return err
	}
	for k, eid := range rs.state {
		if k.Type != event.TypeMember || id.UserID(k.StateKey).Homeserver() != s.cfg.ServerName {
			continue
		}
		if ms, _ := getString(rs.events[eid].Content(), "membership"); ms != Join {
			continue
		}
		if pl.UserLevel(id.UserID(k.StateKey)) >= pl.Invite() {
			content["join_authorised_via_users_server"] = k.StateKey
			return nil
		}
	}
	return errNoLocalAuthoriser
}

// Forget forgets a room the user has left (client-server API, "forget").
// M_BAD_STATE (400) if the user is still joined, invited or knocking.
func (s *Service) Forget(ctx context.Context, user id.UserID, roomID id.RoomID) error {
	m, err := s.db.UserMembership(ctx, roomID, user)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if m.Membership == Join || m.Membership == Invite || m.Membership == Knock {
		// M_UNKNOWN as the spec's example and Synapse (Complement
		// TestRoomForget).
		return mxerr.Unknown("You must leave the room before forgetting it").WithStatus(http.StatusBadRequest)
	}
	return s.db.ForgetRoom(ctx, roomID, user)
}

// RefreshProfile sends, in every room the local user is joined to, a new
// join event carrying its current display name and avatar (client-server
// API: profile changes are propagated to member events). Failures in one
// room do not stop the others; the first is returned.
func (s *Service) RefreshProfile(ctx context.Context, user id.UserID) error {
	ms, err := s.db.UserMemberships(ctx, user, Join)
	if err != nil {
		return err
	}
	var first error
	for _, m := range ms {
		// Keep the other members of the current content (is_direct…).
		var extra map[string]any
		if ev, err := s.db.CurrentStateEvent(ctx, m.RoomID, event.TypeMember, string(user)); err == nil {
			_ = json.Unmarshal(ev.Content(), &extra)
			delete(extra, "displayname")
			delete(extra, "avatar_url")
			delete(extra, "reason")
			delete(extra, "join_authorised_via_users_server")
		}
		if _, err := s.sendMember(ctx, user, user, Join, "", extra, nil, m.RoomID); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func getString(obj []byte, key string) (string, bool) {
	v, ok := cjson.Get(obj, key)
	if !ok {
		return "", false
	}
	s, err := cjson.Unquote(v)
	return s, err == nil
}

package room

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/eventauth"
	"polder.dev/polder/internal/identity"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// Third-party invites (client-server API, "Third-party invites";
// server-server API, "Third-party invites"):
//
//   - InviteThirdParty: a local user invites an email address. The
//     identity server maps it to a user ID (a plain invite) or stores the
//     invite, and the room gets an m.room.third_party_invite event keyed by
//     the identity server's token.
//   - BindThirdParty: the identity server tells us (3pid/onbind) that a
//     local user bound the address; each pending invite becomes an
//     m.room.member invite with content.third_party_invite, sent by us if
//     we are in the room, else exchanged through the inviter's server.
//   - ExchangeThirdPartyInvite: another server asks us, a server in the
//     room, to turn its user's signed invite into an invite event sent as
//     the original inviter (exchange_third_party_invite).
//
// The authorization rules (eventauth, thirdparty.go) check the signature
// of content.third_party_invite.signed against the keys of the
// m.room.third_party_invite event; the server that authorises the event
// also checks with the identity server that the key is still valid
// (key_validity_url), as the spec asks of the resident server.

// TypeThirdPartyInvite is the event type of a pending third-party invite.
const TypeThirdPartyInvite = "m.room.third_party_invite"

var defaultIdentity = identity.New(identity.Config{})

func (s *Service) identity() *identity.Client {
	if s.cfg.Identity != nil {
		return s.cfg.Identity
	}
	return defaultIdentity
}

// ThirdPartyInvite is a local user's invite of a third-party identifier.
type ThirdPartyInvite struct {
	RoomID        id.RoomID
	Sender        id.UserID
	IDServer      string // host[:port] of the identity server
	IDAccessToken string
	Medium        string // "email"
	Address       string
}

// InviteThirdParty invites a third-party identifier (POST
// /rooms/{roomId}/invite with id_server, medium and address). If the
// identity server knows a user ID for it, that user is invited as by
// SetMembership; else the invite is stored on the identity server and an
// m.room.third_party_invite event is sent. It returns the event sent.
//
// Errors: M_FORBIDDEN if the sender may not invite (checked before the
// identity server is asked), 502 M_UNKNOWN when the identity server cannot
// be reached or answers badly, M_FORBIDDEN when it refuses, M_INVALID_PARAM
// for a malformed id_server, M_UNRECOGNIZED for an unbound address of
// another medium than email, and SetMembership's and Send's errors.
func (s *Service) InviteThirdParty(ctx context.Context, inv ThirdPartyInvite) (*store.Event, error) {
	if err := s.mayInvite(ctx, inv.RoomID, inv.Sender); err != nil {
		return nil, err
	}
	ids := s.identity()
	mxid, err := ids.Lookup(ctx, inv.IDServer, inv.IDAccessToken, inv.Medium, inv.Address)
	switch {
	case err == nil:
		if _, _, perr := mxid.Parse(); perr != nil {
			return nil, mxerr.Unknown("The identity server answered an invalid user ID").WithStatus(502)
		}
		return s.SetMembership(ctx, MemberChange{RoomID: inv.RoomID, Sender: inv.Sender, Target: mxid, Membership: Invite})
	case !errors.Is(err, identity.ErrNoMapping):
		return nil, identityError(inv.IDServer, err)
	}
	if inv.Medium != "email" {
		// store-invite takes email addresses only (identity service API).
		return nil, mxerr.Unrecognized("No user is bound to this %s, and invites can be stored for email addresses only", inv.Medium)
	}
	req, err := s.storeInviteRequest(ctx, inv)
	if err != nil {
		return nil, err
	}
	stored, err := ids.StoreInvite(ctx, inv.IDServer, inv.IDAccessToken, req)
	if err != nil {
		return nil, identityError(inv.IDServer, err)
	}
	pubKeys := make([]map[string]string, 0, len(stored.PublicKeys))
	for _, k := range stored.PublicKeys {
		m := map[string]string{"public_key": k.PublicKey}
		if k.KeyValidityURL != "" {
			m["key_validity_url"] = k.KeyValidityURL
		}
		pubKeys = append(pubKeys, m)
	}
	content, err := json.Marshal(map[string]any{
		"display_name":     stored.DisplayName,
		"key_validity_url": stored.PublicKeys[0].KeyValidityURL,
		"public_key":       stored.PublicKeys[0].PublicKey,
		"public_keys":      pubKeys,
	})
	if err != nil {
		return nil, err
	}
	token := stored.Token
	return s.Send(ctx, inv.Sender, inv.RoomID, Draft{Type: TypeThirdPartyInvite, StateKey: &token, Content: content})
}

// mayInvite refuses, before any identity server is asked, a sender who is
// not joined or lacks the invite power level (the rules for
// m.room.third_party_invite, which Send checks again).
func (s *Service) mayInvite(ctx context.Context, roomID id.RoomID, sender id.UserID) error {
	rs, err := s.lock(ctx, roomID)
	if errors.Is(err, ErrUnknownRoom) {
		return mxerr.Forbidden("You are not in room %s", roomID)
	}
	if err != nil {
		return err
	}
	defer rs.mu.Unlock()
	m := rs.lookup(event.TypeMember, string(sender))
	if m == nil {
		return mxerr.Forbidden("You are not in room %s", roomID)
	}
	if ms, _ := getString(m.Content(), "membership"); ms != Join {
		return mxerr.Forbidden("You are not in room %s", roomID)
	}
	pl, err := rs.powerLevels()
	if err != nil {
		return err
	}
	if pl.UserLevel(sender) < pl.Invite() {
		return mxerr.Forbidden("You do not have the power to invite users to room %s", roomID)
	}
	return nil
}

// storeInviteRequest fills the store-invite body with what the identity
// server may show the invitee: the room's name, alias, avatar, join rule
// and type, and the sender's profile.
func (s *Service) storeInviteRequest(ctx context.Context, inv ThirdPartyInvite) (identity.StoreInviteRequest, error) {
	req := identity.StoreInviteRequest{Medium: inv.Medium, Address: inv.Address, RoomID: inv.RoomID, Sender: inv.Sender}
	fields := []struct {
		typ, key string
		dst      *string
	}{
		{"m.room.name", "name", &req.RoomName},
		{"m.room.canonical_alias", "alias", &req.RoomAlias},
		{"m.room.avatar", "url", &req.RoomAvatarURL},
		{event.TypeJoinRules, "join_rule", &req.RoomJoinRules},
		{event.TypeCreate, "type", &req.RoomType},
	}
	for _, f := range fields {
		c, err := s.StateContent(ctx, inv.RoomID, f.typ, "")
		if err != nil {
			return req, err
		}
		if c != nil {
			*f.dst, _ = getString(c, f.key)
		}
	}
	p, err := s.db.Profile(ctx, inv.Sender.Localpart())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return req, err
	}
	req.SenderDisplayName, req.SenderAvatarURL = p.DisplayName, p.AvatarURL
	return req, nil
}

// identityError turns an identity server failure into what the client
// may see (never the identity server's errcode as-is).
func identityError(server string, err error) error {
	if errors.Is(err, identity.ErrBadServer) {
		return mxerr.InvalidParam("Invalid id_server %q", server)
	}
	var ie *identity.Error
	if errors.As(err, &ie) {
		if ie.Status >= 400 && ie.Status < 500 {
			return mxerr.Forbidden("The identity server %s refused the request (%d %s)", server, ie.Status, ie.ErrCode)
		}
		return mxerr.Unknown("The identity server %s failed (%d)", server, ie.Status).WithStatus(502)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return mxerr.Unknown("The identity server %s could not be reached", server).WithStatus(502)
}

// BoundInvite is one pending invite of an identity server's onbind notice
// (server-server API, PUT /_matrix/federation/v1/3pid/onbind).
type BoundInvite struct {
	Medium  string          `json:"medium"`
	Address string          `json:"address"`
	MXID    id.UserID       `json:"mxid"`
	RoomID  id.RoomID       `json:"room_id"`
	Sender  id.UserID       `json:"sender"`
	Signed  json.RawMessage `json:"signed"`
	// DisplayName is not in the spec's onbind schema; an identity server
	// may send it, and the server in the room replaces it with the one of
	// the m.room.third_party_invite event anyway.
	DisplayName string `json:"display_name,omitempty"`
}

// ThirdPartyExchange is the partial m.room.member event of PUT
// /_matrix/federation/v1/exchange_third_party_invite/{roomId}.
type ThirdPartyExchange struct {
	Type     string    `json:"type"`
	RoomID   id.RoomID `json:"room_id"`
	Sender   id.UserID `json:"sender"`
	StateKey id.UserID `json:"state_key"`
	Content  struct {
		Membership       string          `json:"membership"`
		ThirdPartyInvite json.RawMessage `json:"third_party_invite"`
	} `json:"content"`
}

// tpiSigned is content.third_party_invite of a member event.
type tpiSigned struct {
	DisplayName string          `json:"display_name,omitempty"`
	Signed      json.RawMessage `json:"signed"`
}

// BindThirdParty handles an identity server's notice that mxid bound a
// third-party identifier with pending invites: each invite of a local
// user (the notice's mxid) becomes an m.room.member invite with
// content.third_party_invite. If a local user is joined to the room, this
// server authorises and sends it; else the inviter's server (then the
// room ID's server) is asked through exchange_third_party_invite.
// Invites of users of other servers are ignored. Failures of single
// invites are logged, not returned: the identity server cannot act on
// them. It returns how many invites were delivered.
func (s *Service) BindThirdParty(ctx context.Context, mxid id.UserID, invites []BoundInvite) int {
	if mxid.Homeserver() != s.cfg.ServerName {
		s.log.Info("onbind for a user of another server ignored", "user_id", mxid)
		return 0
	}
	n := 0
	for _, inv := range invites {
		if inv.MXID != mxid {
			continue
		}
		if err := s.bindOne(ctx, inv); err != nil {
			s.log.Warn("third-party invite not delivered", "room_id", inv.RoomID, "user_id", inv.MXID, "err", err)
			continue
		}
		n++
	}
	return n
}

func (s *Service) bindOne(ctx context.Context, inv BoundInvite) error {
	if _, _, err := inv.Sender.Parse(); err != nil {
		return fmt.Errorf("invalid sender %q", inv.Sender)
	}
	if !strings.HasPrefix(string(inv.RoomID), "!") {
		return fmt.Errorf("invalid room ID %q", inv.RoomID)
	}
	signedMXID, _ := getString(inv.Signed, "mxid")
	if signedMXID != string(inv.MXID) {
		return errors.New("signed.mxid is not the bound user")
	}
	tpi := tpiSigned{DisplayName: inv.DisplayName, Signed: inv.Signed}
	resident, err := s.isResident(ctx, inv.RoomID)
	if err != nil {
		return err
	}
	if resident {
		ev, err := s.sendThirdPartyMember(ctx, inv.RoomID, inv.Sender, inv.MXID, tpi)
		if err != nil {
			return err
		}
		if inv.Sender.Homeserver() != s.cfg.ServerName && s.OnRelay != nil {
			// The event's sender is another server's user: the
			// federation queue sends only local users' events on its own.
			s.OnRelay(ev, "")
		}
		return nil
	}
	if s.cfg.Federation == nil {
		return errors.New("the room is on another server and federation is off")
	}
	var x ThirdPartyExchange
	x.Type, x.RoomID, x.Sender, x.StateKey = event.TypeMember, inv.RoomID, inv.Sender, inv.MXID
	x.Content.Membership = Invite
	if x.Content.ThirdPartyInvite, err = json.Marshal(tpi); err != nil {
		return err
	}
	var servers []string
	servers = append(servers, inv.Sender.Homeserver())
	if _, srv, ok := cutRoomServer(inv.RoomID); ok && srv != servers[0] && srv != s.cfg.ServerName {
		servers = append(servers, srv)
	}
	var lastErr error
	for _, srv := range servers {
		path := "/_matrix/federation/v1/exchange_third_party_invite/" + url.PathEscape(string(inv.RoomID))
		if lastErr = s.cfg.Federation.Do(ctx, srv, "PUT", path, x, nil); lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("exchange_third_party_invite: %w", lastErr)
}

// isResident reports whether a local user is joined to the room.
func (s *Service) isResident(ctx context.Context, roomID id.RoomID) (bool, error) {
	rs, err := s.lock(ctx, roomID)
	if errors.Is(err, ErrUnknownRoom) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer rs.mu.Unlock()
	return s.resident(rs), nil
}

// ExchangeThirdPartyInvite handles PUT exchange_third_party_invite from
// origin: the partial invite event of one of origin's users, which must
// carry a third_party_invite signed with a key of the room's
// m.room.third_party_invite event, still valid at the identity server. It
// is sent as the original inviter (one of our users) through the usual
// invite path (the invitee's server signs it).
//
// Errors: M_FORBIDDEN for an event that does not verify or pass the
// authorization rules, for an inviter not of this server, an invitee not
// of origin, or a room we are not in; M_BAD_JSON for a malformed event.
func (s *Service) ExchangeThirdPartyInvite(ctx context.Context, origin string, roomID id.RoomID, x ThirdPartyExchange) error {
	if x.Type != event.TypeMember || x.Content.Membership != Invite {
		return mxerr.BadJSON("The event must be an m.room.member invite")
	}
	if x.RoomID != roomID {
		return mxerr.BadJSON("room_id is not the room of the request path")
	}
	if _, _, err := x.Sender.Parse(); err != nil {
		return mxerr.BadJSON("Invalid sender %q", x.Sender)
	}
	if _, _, err := x.StateKey.Parse(); err != nil {
		return mxerr.BadJSON("Invalid state_key %q", x.StateKey)
	}
	if x.Sender.Homeserver() != s.cfg.ServerName {
		return mxerr.Forbidden("The inviter %s is not a user of this server", x.Sender)
	}
	if x.StateKey.Homeserver() != origin {
		return mxerr.Forbidden("The invitee %s is not a user of %s", x.StateKey, origin)
	}
	var tpi tpiSigned
	if err := json.Unmarshal(x.Content.ThirdPartyInvite, &tpi); err != nil || len(tpi.Signed) == 0 || tpi.Signed[0] != '{' {
		return mxerr.BadJSON("content.third_party_invite.signed must be an object")
	}
	resident, err := s.isResident(ctx, roomID)
	if err != nil {
		return err
	}
	if !resident {
		return mxerr.Forbidden("This server is not in room %s", roomID)
	}
	_, err = s.sendThirdPartyMember(ctx, roomID, x.Sender, x.StateKey, tpi)
	return err
}

// sendThirdPartyMember sends, in a room we are in, the invite of target
// by sender with content.third_party_invite. display_name is taken from
// the m.room.third_party_invite event. Before the authorization rules
// run, the signature must verify with one of that event's keys and the
// identity server must call the key valid (spec: the resident server
// "MUST validate that the public key used for signing is still valid").
// A remote invitee's server signs the event through the invite API.
func (s *Service) sendThirdPartyMember(ctx context.Context, roomID id.RoomID, sender, target id.UserID, tpi tpiSigned) (*store.Event, error) {
	token, ok := getString(tpi.Signed, "token")
	if !ok {
		return nil, mxerr.Forbidden("third_party_invite.signed has no token")
	}
	ev, err := s.db.CurrentStateEvent(ctx, roomID, TypeThirdPartyInvite, token)
	if errors.Is(err, store.ErrNotFound) {
		return nil, mxerr.Forbidden("No third-party invite with this token in room %s", roomID)
	}
	if err != nil {
		return nil, err
	}
	if ev.Sender() != sender {
		return nil, mxerr.Forbidden("The third-party invite was sent by %s, not %s", ev.Sender(), sender)
	}
	if err := s.checkInviteKeys(ctx, ev.Content(), tpi.Signed); err != nil {
		return nil, err
	}
	tpi.DisplayName, _ = getString(ev.Content(), "display_name")
	tpiRaw, err := json.Marshal(tpi)
	if err != nil {
		return nil, err
	}

	rs, err := s.lock(ctx, roomID)
	if errors.Is(err, ErrUnknownRoom) {
		return nil, mxerr.Forbidden("This server is not in room %s", roomID)
	}
	if err != nil {
		return nil, err
	}
	defer rs.mu.Unlock()
	content, err := s.memberContent(ctx, target, Invite, "", map[string]any{"third_party_invite": json.RawMessage(tpiRaw)})
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	sk := string(target)
	pdu, err := s.build(rs, sender, roomID, Draft{Type: event.TypeMember, StateKey: &sk, Content: raw})
	if err != nil {
		return nil, err
	}
	if err := eventauth.Check(rs.version, pdu, rs.lookup); err != nil {
		return nil, forbidden(err)
	}
	if target.Homeserver() != s.cfg.ServerName {
		if pdu, err = s.sendInvite(ctx, rs, pdu); err != nil {
			return nil, err
		}
	}
	return s.persist(ctx, rs, pdu, nil)
}

// checkInviteKeys checks that signed carries a signature by a key of the
// m.room.third_party_invite content and that the identity server still
// calls one such key valid (keys without key_validity_url are valid
// forever). M_FORBIDDEN otherwise.
func (s *Service) checkInviteKeys(ctx context.Context, inviteContent, signed []byte) error {
	var c struct {
		PublicKey      string `json:"public_key"`
		KeyValidityURL string `json:"key_validity_url"`
		PublicKeys     []struct {
			PublicKey      string `json:"public_key"`
			KeyValidityURL string `json:"key_validity_url"`
		} `json:"public_keys"`
	}
	_ = json.Unmarshal(inviteContent, &c)
	type key struct{ pub, url string }
	all := []key{{c.PublicKey, c.KeyValidityURL}}
	for _, k := range c.PublicKeys {
		all = append(all, key{k.PublicKey, k.KeyValidityURL})
	}
	var lastErr error
	verified := false
	for _, k := range all {
		if k.pub == "" || !signedBy(signed, k.pub) {
			continue
		}
		verified = true
		if k.url == "" {
			return nil
		}
		valid, err := s.identity().KeyValid(ctx, k.url, k.pub)
		if err == nil && valid {
			return nil
		}
		lastErr = err
	}
	if !verified {
		return mxerr.Forbidden("The third-party invite's signature does not verify with the room's keys")
	}
	if lastErr != nil {
		s.log.Info("third-party invite key not checked", "err", lastErr)
		return mxerr.Forbidden("The identity server could not confirm the third-party invite's key")
	}
	return mxerr.Forbidden("The identity server revoked the third-party invite's key")
}

// signedBy reports whether any ed25519 signature of the JSON object signed
// verifies with the base64 public key pub (standard or URL-safe
// alphabet).
func signedBy(signed []byte, pub string) bool {
	pk, ok := decodeBase64(pub)
	if !ok || len(pk) != ed25519.PublicKeySize {
		return false
	}
	canon, err := cjson.Canonical(signed)
	if err != nil {
		if canon, err = cjson.CanonicalLegacy(signed); err != nil {
			return false
		}
	}
	msg := cjson.Without(nil, canon, "signatures", "unsigned")
	var sigs map[string]map[string]string
	if v, ok := cjson.Get(canon, "signatures"); ok {
		_ = json.Unmarshal(v, &sigs)
	}
	for _, perServer := range sigs {
		for keyID, sig := range perServer {
			if !strings.HasPrefix(keyID, "ed25519:") {
				continue
			}
			if keys.VerifySignature(msg, sig, ed25519.PublicKey(pk)) == nil {
				return true
			}
		}
	}
	return false
}

func decodeBase64(s string) ([]byte, bool) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, true
	}
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, true
	}
	return nil, false
}

package eventauth

import "maunium.net/go/mautrix/id"

// checkMember applies the m.room.member rule (rule 5 in v1–5 and v12, 4 in
// v6–11).
func (c *checker) checkMember() error {
	ev := c.ev
	sk := ev.StateKey()
	mc := decode[memberContent](ev.Content())
	if sk == nil || !present(mc.Membership) {
		return c.reject(RuleMemberFields, "")
	}
	target := id.UserID(*sk)
	// A membership that is not a string is an unknown membership.
	membership, _ := str(mc.Membership)

	if c.n >= 8 && present(mc.JoinAuthorisedVia) {
		// v8 4.2.1: "If the event is not validly signed by the homeserver of
		// the user ID denoted by the key, reject." A value that is not a
		// user ID names no homeserver, so nothing can have signed for it.
		// Otherwise the event says, if it can (see SignatureVerifier).
		via, _ := str(mc.JoinAuthorisedVia)
		server := serverOf(via)
		if via == "" || via[0] != '@' || server == "" {
			return c.reject(RuleMemberAuthoriserSignature, "join_authorised_via_users_server %s is not a user ID", mc.JoinAuthorisedVia)
		}
		if sv, ok := ev.(SignatureVerifier); ok && !sv.HasVerifiedSignature(server) {
			return c.reject(RuleMemberAuthoriserSignature, "no verified signature of %s", server)
		}
	}

	switch membership {
	case membershipJoin:
		return c.checkJoin(target, mc)
	case membershipInvite:
		return c.checkInvite(target, mc)
	case membershipLeave:
		return c.checkLeave(target)
	case membershipBan:
		return c.checkBan(target)
	case membershipKnock:
		if c.n >= 7 {
			return c.checkKnock(target)
		}
	}
	return c.reject(RuleMemberUnknown, "membership %s", mc.Membership)
}

func (c *checker) checkJoin(target id.UserID, mc memberContent) error {
	// "If the only previous event is an m.room.create and the state_key is
	// the creator, allow." The creator is content.creator up to v10 and the
	// create event's sender from v11 (MSC2175); in v12 additional_creators
	// do not count here.
	prev := c.ev.PrevEventIDs()
	if len(prev) == 1 && prev[0] == c.create.EventID() {
		var creator id.UserID
		if c.n <= 10 {
			if s, ok := str(c.createC.Creator); ok {
				creator = id.UserID(s)
			}
		} else {
			creator = c.create.Sender()
		}
		if creator != "" && target == creator {
			return nil
		}
	}
	if c.sender != target {
		return c.reject(RuleJoinSenderNotTarget, "sender %s, state_key %s", c.sender, target)
	}
	current := c.membership(target)
	if current == membershipBan {
		return c.reject(RuleJoinBanned, "")
	}
	rule := c.joinRule()
	switch {
	case rule == "invite" || (c.n >= 7 && rule == "knock"):
		if current == membershipInvite || current == membershipJoin {
			return nil
		}
	case (c.n >= 8 && rule == "restricted") || (c.n >= 10 && rule == "knock_restricted"):
		if current == membershipInvite || current == membershipJoin {
			return nil
		}
		via, ok := str(mc.JoinAuthorisedVia)
		if !ok {
			return c.reject(RuleJoinRestrictedVia, "no join_authorised_via_users_server")
		}
		pl := c.powerLevels()
		if l := pl.UserLevel(id.UserID(via)); l < pl.Invite() {
			return c.reject(RuleJoinRestrictedVia, "%s has level %d < invite %d", via, l, pl.Invite())
		}
		if m := c.membership(id.UserID(via)); m != membershipJoin {
			return c.reject(RuleJoinRestrictedVia, "%s is %q", via, m)
		}
		return nil
	case rule == "public":
		return nil
	}
	return c.reject(RuleJoinOtherwise, "join_rule %q, membership %q", rule, current)
}

func (c *checker) checkInvite(target id.UserID, mc memberContent) error {
	if present(mc.ThirdPartyInvite) {
		return c.checkThirdPartyInvite(target, mc)
	}
	if m := c.membership(c.sender); m != membershipJoin {
		return c.reject(RuleInviteSenderNotJoined, "sender is %q", m)
	}
	if m := c.membership(target); m == membershipJoin || m == membershipBan {
		return c.reject(RuleInviteTargetJoinedBanned, "target is %q", m)
	}
	pl := c.powerLevels()
	if l := pl.UserLevel(c.sender); l < pl.Invite() {
		return c.reject(RuleInviteLevel, "level %d < invite %d", l, pl.Invite())
	}
	return nil
}

func (c *checker) checkLeave(target id.UserID) error {
	sm := c.membership(c.sender)
	if c.sender == target {
		if sm == membershipInvite || sm == membershipJoin || (c.n >= 7 && sm == membershipKnock) {
			return nil
		}
		return c.reject(RuleLeaveSelf, "membership %q", sm)
	}
	if sm != membershipJoin {
		return c.reject(RuleLeaveSenderNotJoined, "sender is %q", sm)
	}
	pl := c.powerLevels()
	sl := pl.UserLevel(c.sender)
	if c.membership(target) == membershipBan && sl < pl.Ban() {
		return c.reject(RuleLeaveUnbanLevel, "level %d < ban %d", sl, pl.Ban())
	}
	if tl := pl.UserLevel(target); sl < pl.Kick() || tl >= sl {
		return c.reject(RuleLeaveKick, "sender %d, kick %d, target %d", sl, pl.Kick(), tl)
	}
	return nil
}

func (c *checker) checkBan(target id.UserID) error {
	if m := c.membership(c.sender); m != membershipJoin {
		return c.reject(RuleBanSenderNotJoined, "sender is %q", m)
	}
	pl := c.powerLevels()
	sl := pl.UserLevel(c.sender)
	if tl := pl.UserLevel(target); sl < pl.Ban() || tl >= sl {
		return c.reject(RuleBanLevel, "sender %d, ban %d, target %d", sl, pl.Ban(), tl)
	}
	return nil
}

func (c *checker) checkKnock(target id.UserID) error {
	if rule := c.joinRule(); rule != "knock" && !(c.n >= 10 && rule == "knock_restricted") {
		return c.reject(RuleKnockJoinRule, "join_rule %q", rule)
	}
	if c.sender != target {
		return c.reject(RuleKnockSenderNotTarget, "sender %s, state_key %s", c.sender, target)
	}
	if m := c.membership(c.sender); m == membershipBan || m == membershipInvite || m == membershipJoin {
		return c.reject(RuleKnockMembership, "sender is %q", m)
	}
	return nil
}

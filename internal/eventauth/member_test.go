package eventauth_test

import (
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

func TestCheckMemberFields(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{num: "member.1", desc: "member without state_key rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.event("m.room.member", bob, nil, `{"membership":"join"}`)
			}, want: eventauth.RuleMemberFields},
		{num: "member.1", desc: "member without membership rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.memberContent(bob, bob, `{"displayname":"Bob"}`)
			}, want: eventauth.RuleMemberFields},
		{num: "member.6|7:member.7|8:member.8", desc: "unknown membership rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.member(bob, bob, "foo")
			}, want: eventauth.RuleMemberUnknown},
		{num: "member.6|7:member.7|8:member.8", desc: "membership that is not a string rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.memberContent(bob, bob, `{"membership":5}`)
			}, want: eventauth.RuleMemberUnknown},
		{num: "member.6", desc: "knock is an unknown membership before v7", vers: "1-6",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock")
				return r.member(mallory, mallory, "knock")
			}, want: eventauth.RuleMemberUnknown},
	})
}

// restrictedJoin is mallory's join authorised by via, signed by via's server
// when signed is set.
func restrictedJoin(r *room, via id.UserID, signed bool) *fakeEvent {
	ev := r.memberContent(mallory, mallory, fmt.Sprintf(`{"membership":"join","join_authorised_via_users_server":%q}`, via))
	if signed {
		ev.signedBy = []string{serverOf(via)}
	}
	return ev
}

func TestCheckJoin(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{num: "join.1", desc: "creator's first join after the create event allowed", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				return r.member(alice, alice, "join")
			}},
		{num: "join.1", desc: "creator's first join sent by someone else allowed (the rule reads state_key)", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				return r.member(mallory, alice, "join")
			}},
		{num: "join.1", desc: "first join by content.creator who did not send the create event allowed", vers: "1-10", fresh: true,
			build: func(r *room) eventauth.Event {
				r.create.content = fmt.Sprintf(`{"creator":%q}`, bob)
				return r.member(bob, bob, "join")
			}},
		{num: "join.6|8:join.7", desc: "content.creator is ignored from v11: only the create sender's first join is special", vers: "11-12", fresh: true,
			build: func(r *room) eventauth.Event {
				r.create.content = fmt.Sprintf(`{"creator":%q}`, bob)
				return r.member(bob, bob, "join")
			}, want: eventauth.RuleJoinOtherwise},
		{num: "join.7", desc: "an additional creator's first join is not the creator's", vers: "12", fresh: true,
			build: func(r *room) eventauth.Event {
				r.create.content = fmt.Sprintf(`{"additional_creators":[%q]}`, bob)
				return r.member(bob, bob, "join")
			}, want: eventauth.RuleJoinOtherwise},
		{num: "join.6|8:join.7", desc: "creator's join after other events is not a first join", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL("", ""))
				return r.member(alice, alice, "join")
			}, want: eventauth.RuleJoinOtherwise},
		{num: "join.2", desc: "join for another user rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.joinRule("public")
				return r.member(bob, mallory, "join")
			}, want: eventauth.RuleJoinSenderNotTarget},
		{num: "join.3", desc: "banned user cannot join a public room", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.joinRule("public")
				r.set(r.member(alice, mallory, "ban"))
				return r.member(mallory, mallory, "join")
			}, want: eventauth.RuleJoinBanned},
		{num: "join.4", desc: "invited user joins an invite-only room", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(r.member(bob, mallory, "invite"))
				return r.member(mallory, mallory, "join")
			}},
		{num: "join.4", desc: "joined user may send another join (profile change)", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.memberContent(carol, carol, `{"membership":"join","displayname":"C"}`)
			}},
		{num: "join.6|8:join.7", desc: "user without invite cannot join an invite-only room", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.member(mallory, mallory, "join")
			}, want: eventauth.RuleJoinOtherwise},
		{num: "join.6|8:join.7", desc: "user who left cannot rejoin an invite-only room", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.setMember(carol, "leave")
				return r.member(carol, carol, "join")
			}, want: eventauth.RuleJoinOtherwise},
		{num: "join.4", desc: "room without m.room.join_rules: invited user joins (rule taken as invite)", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				r.setMember(alice, "join")
				r.set(r.member(alice, mallory, "invite"))
				return r.member(mallory, mallory, "join")
			}},
		{num: "join.6|8:join.7", desc: "room without m.room.join_rules: uninvited user cannot join", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				r.setMember(alice, "join")
				return r.member(mallory, mallory, "join")
			}, want: eventauth.RuleJoinOtherwise},
		{num: "join.6|8:join.7", desc: "join_rule that is not a string allows no join, even invited", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(r.event("m.room.join_rules", alice, ptr(""), `{"join_rule":5}`))
				r.set(r.member(bob, mallory, "invite"))
				return r.member(mallory, mallory, "join")
			}, want: eventauth.RuleJoinOtherwise},
		{num: "join.4", desc: "invited user joins a knock room", vers: "7-",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock")
				r.set(r.member(bob, mallory, "invite"))
				return r.member(mallory, mallory, "join")
			}},
		{num: "join.6|8:join.7", desc: "uninvited user cannot join a knock room", vers: "7-",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock")
				r.setMember(mallory, "knock")
				return r.member(mallory, mallory, "join")
			}, want: eventauth.RuleJoinOtherwise},
		{num: "join.6", desc: "knock join rule unknown before v7: even invited users cannot join", vers: "1-6",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock")
				r.set(r.member(bob, mallory, "invite"))
				return r.member(mallory, mallory, "join")
			}, want: eventauth.RuleJoinOtherwise},
		{num: "join.5|8:join.6", desc: "anyone joins a public room", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.joinRule("public")
				return r.member(mallory, mallory, "join")
			}},
		{num: "join.6|8:join.7", desc: "unknown join rule rejects the join", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.joinRule("private")
				r.set(r.member(bob, mallory, "invite"))
				return r.member(mallory, mallory, "join")
			}, want: eventauth.RuleJoinOtherwise},

		// Restricted rooms (v8, MSC3083) and knock_restricted (v10, MSC3787).
		{num: "join.5.1", desc: "invited user joins a restricted room", vers: "8-",
			build: func(r *room) eventauth.Event {
				r.joinRule("restricted")
				r.set(r.member(bob, mallory, "invite"))
				return r.member(mallory, mallory, "join")
			}},
		{num: "join.5.3", desc: "join authorised by a joined user who can invite", vers: "8-",
			build: func(r *room) eventauth.Event {
				r.joinRule("restricted")
				return restrictedJoin(r, bob, true)
			}},
		{num: "join.5.3", desc: "join authorised by the creator", vers: "8-",
			build: func(r *room) eventauth.Event {
				r.joinRule("restricted")
				return restrictedJoin(r, alice, true)
			}},
		{num: "join.5.2", desc: "restricted join without join_authorised_via_users_server rejected", vers: "8-",
			build: func(r *room) eventauth.Event {
				r.joinRule("restricted")
				return r.member(mallory, mallory, "join")
			}, want: eventauth.RuleJoinRestrictedVia},
		{num: "join.5.2", desc: "restricted join authorised by a user below the invite level rejected", vers: "8-",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50,%q:0`, bob, carol), `"invite":10`))
				r.joinRule("restricted")
				return restrictedJoin(r, carol, true)
			}, want: eventauth.RuleJoinRestrictedVia},
		{num: "join.5.2", desc: "restricted join authorised by a user who is not joined rejected", vers: "8-",
			build: func(r *room) eventauth.Event {
				r.joinRule("restricted")
				r.set(r.member(dave, dave, "leave"))
				return restrictedJoin(r, dave, true)
			}, want: eventauth.RuleJoinRestrictedVia},
		{num: "member.2.1", desc: "join_authorised_via_users_server not signed by that server rejected", vers: "8-",
			build: func(r *room) eventauth.Event {
				r.joinRule("restricted")
				return restrictedJoin(r, bob, false)
			}, want: eventauth.RuleMemberAuthoriserSignature},
		{num: "join.5.3", desc: "join_authorised_via_users_server on an event that cannot report signatures: the receipt checks are trusted", vers: "8-",
			build: func(r *room) eventauth.Event {
				r.joinRule("restricted")
				return plain{restrictedJoin(r, bob, false)}
			}},
		{num: "member.2.1", desc: "join_authorised_via_users_server that is not a user ID rejected even without signature information", vers: "8-",
			build: func(r *room) eventauth.Event {
				r.joinRule("restricted")
				return plain{r.memberContent(mallory, mallory, `{"membership":"join","join_authorised_via_users_server":"bob"}`)}
			}, want: eventauth.RuleMemberAuthoriserSignature},
		{num: "member.2.1", desc: "join_authorised_via_users_server that is not a user ID rejected", vers: "8-",
			build: func(r *room) eventauth.Event {
				r.joinRule("public")
				ev := r.memberContent(mallory, mallory, `{"membership":"join","join_authorised_via_users_server":5}`)
				return ev
			}, want: eventauth.RuleMemberAuthoriserSignature},
		{num: "member.2.1", desc: "join_authorised_via_users_server is checked on any membership", vers: "8-",
			build: func(r *room) eventauth.Event {
				return r.memberContent(carol, carol, fmt.Sprintf(`{"membership":"leave","join_authorised_via_users_server":%q}`, bob))
			}, want: eventauth.RuleMemberAuthoriserSignature},
		{num: "join.5", desc: "join_authorised_via_users_server means nothing before v8", vers: "1-7",
			build: func(r *room) eventauth.Event {
				r.joinRule("public")
				return restrictedJoin(r, bob, false)
			}},
		{num: "join.6", desc: "restricted join rule unknown before v8: even invited users cannot join", vers: "1-7",
			build: func(r *room) eventauth.Event {
				r.joinRule("restricted")
				r.set(r.member(bob, mallory, "invite"))
				return r.member(mallory, mallory, "join")
			}, want: eventauth.RuleJoinOtherwise},
		{num: "join.5.3", desc: "join to a knock_restricted room authorised by a joined user", vers: "10-",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock_restricted")
				return restrictedJoin(r, bob, true)
			}},
		{num: "join.5.1", desc: "invited user joins a knock_restricted room", vers: "10-",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock_restricted")
				r.set(r.member(bob, mallory, "invite"))
				return r.member(mallory, mallory, "join")
			}},
		{num: "join.5.2", desc: "knock_restricted join without an authorising user rejected", vers: "10-",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock_restricted")
				r.setMember(mallory, "knock")
				return r.member(mallory, mallory, "join")
			}, want: eventauth.RuleJoinRestrictedVia},
		{num: "join.7", desc: "knock_restricted unknown before v10: authorised join rejected", vers: "8-9",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock_restricted")
				return restrictedJoin(r, bob, true)
			}, want: eventauth.RuleJoinOtherwise},
	})
}

func TestCheckInvite(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{num: "invite.4", desc: "joined user at the invite level invites", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.member(carol, mallory, "invite")
			}},
		{num: "invite.4", desc: "re-invite of an invited user allowed", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(r.member(bob, mallory, "invite"))
				return r.member(carol, mallory, "invite")
			}},
		{num: "invite.4", desc: "invite of a user who left allowed", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.setMember(mallory, "leave")
				return r.member(carol, mallory, "invite")
			}},
		{num: "invite.2", desc: "invite from a user who is not joined rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(r.member(bob, mallory, "invite"))
				return r.member(mallory, dave, "invite")
			}, want: eventauth.RuleInviteSenderNotJoined},
		{num: "invite.3", desc: "invite of a joined user rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.member(bob, carol, "invite")
			}, want: eventauth.RuleInviteTargetJoinedBanned},
		{num: "invite.3", desc: "invite of a banned user rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(r.member(alice, mallory, "ban"))
				return r.member(alice, mallory, "invite")
			}, want: eventauth.RuleInviteTargetJoinedBanned},
		{num: "invite.5", desc: "invite below the invite level rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50,%q:0`, bob, carol), `"invite":10`))
				return r.member(carol, mallory, "invite")
			}, want: eventauth.RuleInviteLevel},
		{num: "invite.4", desc: "invite level string in v1-9", vers: "1-9",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50,%q:0`, bob, carol), `"invite":" 50 "`))
				return r.member(bob, mallory, "invite")
			}},
		{num: "invite.5", desc: "invite level string is a level in v1-9", vers: "1-9",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50,%q:0`, bob, carol), `"invite":"+51"`))
				return r.member(bob, mallory, "invite")
			}, want: eventauth.RuleInviteLevel},
	})
}

func TestCheckLeave(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{num: "leave.1", desc: "joined user leaves", vers: "1-12",
			build: func(r *room) eventauth.Event { return r.member(carol, carol, "leave") }},
		{num: "leave.1", desc: "invited user rejects the invite", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(r.member(bob, mallory, "invite"))
				return r.member(mallory, mallory, "leave")
			}},
		{num: "leave.1", desc: "knocking user withdraws the knock", vers: "7-",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock")
				r.setMember(mallory, "knock")
				return r.member(mallory, mallory, "leave")
			}},
		{num: "leave.1", desc: "knock membership cannot be left before v7", vers: "1-6",
			build: func(r *room) eventauth.Event {
				r.setMember(mallory, "knock")
				return r.member(mallory, mallory, "leave")
			}, want: eventauth.RuleLeaveSelf},
		{num: "leave.1", desc: "user who left cannot leave again", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.setMember(carol, "leave")
				return r.member(carol, carol, "leave")
			}, want: eventauth.RuleLeaveSelf},
		{num: "leave.1", desc: "banned user cannot unban themself", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(r.member(alice, mallory, "ban"))
				return r.member(mallory, mallory, "leave")
			}, want: eventauth.RuleLeaveSelf},
		{num: "leave.1", desc: "stranger cannot leave", vers: "1-12",
			build: func(r *room) eventauth.Event { return r.member(mallory, mallory, "leave") },
			want:  eventauth.RuleLeaveSelf},
		{num: "leave.4", desc: "kick by a user above the kick level and the target", vers: "1-12",
			build: func(r *room) eventauth.Event { return r.member(bob, carol, "leave") }},
		{num: "leave.4", desc: "revoking an invite is a kick", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(r.member(carol, mallory, "invite"))
				return r.member(bob, mallory, "leave")
			}},
		{num: "leave.2", desc: "kick by a user who is not joined rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.setMember(bob, "leave")
				return r.member(bob, carol, "leave")
			}, want: eventauth.RuleLeaveSenderNotJoined},
		{num: "leave.5", desc: "kick below the kick level rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50,%q:0`, bob, carol), `"kick":51`))
				return r.member(bob, carol, "leave")
			}, want: eventauth.RuleLeaveKick},
		{num: "leave.5", desc: "kick of a user at the same level rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50,%q:50`, bob, carol), ""))
				return r.member(bob, carol, "leave")
			}, want: eventauth.RuleLeaveKick},
		{num: "leave.5", desc: "kick of a user above rejected", vers: "1-12",
			build: func(r *room) eventauth.Event { return r.member(carol, bob, "leave") },
			want:  eventauth.RuleLeaveKick},
		{num: "leave.5", desc: "kick of the creator rejected", vers: "1-12",
			build: func(r *room) eventauth.Event { return r.member(bob, alice, "leave") },
			want:  eventauth.RuleLeaveKick},
		{num: "leave.3", desc: "unban below the ban level rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50,%q:0`, bob, carol), `"ban":60`))
				r.set(r.member(alice, mallory, "ban"))
				return r.member(bob, mallory, "leave")
			}, want: eventauth.RuleLeaveUnbanLevel},
		{num: "leave.5", desc: "unban needs the kick level too", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50,%q:0`, bob, carol), `"ban":40,"kick":60`))
				r.set(r.member(alice, mallory, "ban"))
				return r.member(bob, mallory, "leave")
			}, want: eventauth.RuleLeaveKick},
		{num: "leave.4", desc: "unban by a user at the ban and kick levels", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(r.member(alice, mallory, "ban"))
				return r.member(bob, mallory, "leave")
			}},
	})
}

func TestCheckBan(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{num: "ban.2", desc: "ban by a user at the ban level above the target", vers: "1-12",
			build: func(r *room) eventauth.Event { return r.member(bob, carol, "ban") }},
		{num: "ban.2", desc: "ban of a user who never joined", vers: "1-12",
			build: func(r *room) eventauth.Event { return r.member(bob, mallory, "ban") }},
		{num: "ban.1", desc: "ban by a user who is not joined rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(r.member(carol, bob, "invite"))
				return r.member(bob, carol, "ban")
			}, want: eventauth.RuleBanSenderNotJoined},
		{num: "ban.3", desc: "ban below the ban level rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50,%q:0`, bob, carol), `"ban":51`))
				return r.member(bob, carol, "ban")
			}, want: eventauth.RuleBanLevel},
		{num: "ban.3", desc: "ban of a user at the same level rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50,%q:50`, bob, carol), ""))
				return r.member(bob, carol, "ban")
			}, want: eventauth.RuleBanLevel},
		{num: "ban.3", desc: "self-ban rejected (not above oneself)", vers: "1-12",
			build: func(r *room) eventauth.Event { return r.member(bob, bob, "ban") },
			want:  eventauth.RuleBanLevel},
		{num: "ban.3", desc: "a user at level 100 cannot ban the creator", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:100`, bob), ""))
				return r.member(bob, alice, "ban")
			}, want: eventauth.RuleBanLevel},
		{num: "ban.3", desc: "creator cannot ban another user at 100 before v12", vers: "1-11",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:100`, bob), ""))
				return r.member(alice, bob, "ban")
			}, want: eventauth.RuleBanLevel},
		{num: "ban.2", desc: "creator has infinite power and bans a user at 100 (MSC4289)", vers: "12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:100`, bob), ""))
				return r.member(alice, bob, "ban")
			}},
		{num: "ban.3", desc: "creators cannot ban each other (MSC4289)", vers: "12", fresh: true,
			build: func(r *room) eventauth.Event {
				r.create.content = fmt.Sprintf(`{"additional_creators":[%q]}`, bob)
				r.setMember(alice, "join")
				r.setMember(bob, "join")
				return r.member(alice, bob, "ban")
			}, want: eventauth.RuleBanLevel},
	})
}

func TestCheckKnock(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{num: "knock.3", desc: "knock allowed when join_rule is knock", vers: "7-",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock")
				return r.member(mallory, mallory, "knock")
			}},
		{num: "knock.3", desc: "knock after leaving allowed", vers: "7-",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock")
				r.setMember(carol, "leave")
				return r.member(carol, carol, "knock")
			}},
		{num: "knock.3", desc: "knock allowed when join_rule is knock_restricted", vers: "10-",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock_restricted")
				return r.member(mallory, mallory, "knock")
			}},
		{num: "knock.1", desc: "knock rejected when join_rule is knock_restricted before v10", vers: "7-9",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock_restricted")
				return r.member(mallory, mallory, "knock")
			}, want: eventauth.RuleKnockJoinRule},
		{num: "knock.1", desc: "knock rejected when join_rule is invite", vers: "7-",
			build: func(r *room) eventauth.Event { return r.member(mallory, mallory, "knock") },
			want:  eventauth.RuleKnockJoinRule},
		{num: "knock.1", desc: "knock rejected when join_rule is public", vers: "7-",
			build: func(r *room) eventauth.Event {
				r.joinRule("public")
				return r.member(mallory, mallory, "knock")
			}, want: eventauth.RuleKnockJoinRule},
		{num: "knock.2", desc: "knock for another user rejected", vers: "7-",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock")
				return r.member(bob, mallory, "knock")
			}, want: eventauth.RuleKnockSenderNotTarget},
		{num: "knock.4", desc: "knock by a banned user rejected", vers: "7-",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock")
				r.set(r.member(alice, mallory, "ban"))
				return r.member(mallory, mallory, "knock")
			}, want: eventauth.RuleKnockMembership},
		{num: "knock.4", desc: "knock by an invited user rejected", vers: "7-",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock")
				r.set(r.member(bob, mallory, "invite"))
				return r.member(mallory, mallory, "knock")
			}, want: eventauth.RuleKnockMembership},
		{num: "knock.4", desc: "knock by a joined user rejected", vers: "7-",
			build: func(r *room) eventauth.Event {
				r.joinRule("knock")
				return r.member(carol, carol, "knock")
			}, want: eventauth.RuleKnockMembership},
	})
}

package eventauth_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

// specNum turns a symbolic rule number into the number that room version n
// gives the rule, so that one case can run on every version it applies to
// and still be named after the rule as that version's text numbers it.
//
// The first dot-separated part names a rule of the top-level list, or a
// membership sub-rule of the m.room.member rule; the rest is appended.
// Alternatives for later versions follow "|from:", e.g. "join.5|8:join.6"
// is join.5 up to v7 and join.6 from v8.
func specNum(n int, sym string) string {
	alts := strings.Split(sym, "|")
	chosen := alts[0]
	for _, a := range alts[1:] {
		from, s, _ := strings.Cut(a, ":")
		if f, _ := strconv.Atoi(from); n >= f {
			chosen = s
		}
	}
	head, tail, _ := strings.Cut(chosen, ".")
	head, note, _ := strings.Cut(head, " ") // "pl (floats)"
	pick := func(v1to5, v6to11, v12 string) string {
		switch {
		case n <= 5:
			return v1to5
		case n <= 11:
			return v6to11
		}
		return v12
	}
	member := pick("5", "4", "5")
	sub := func(upTo7, from8 int) string {
		if n >= 8 {
			return member + "." + strconv.Itoa(from8)
		}
		return member + "." + strconv.Itoa(upTo7)
	}
	var num string
	switch head {
	case "create":
		num = "1"
	case "roomid":
		num = "2"
	case "auth":
		num = pick("2", "2", "3")
	case "fed":
		num = pick("3", "3", "4")
	case "aliases":
		num = "4"
	case "member":
		num = member
	case "join":
		num = sub(2, 3)
	case "invite":
		num = sub(3, 4)
	case "leave":
		num = sub(4, 5)
	case "ban":
		num = sub(5, 6)
	case "knock":
		num = sub(6, 7)
	case "joined":
		num = pick("6", "5", "6")
	case "tpi":
		num = pick("7", "6", "7")
	case "level":
		num = pick("8", "7", "8")
	case "atkey":
		num = pick("9", "8", "9")
	case "pl":
		num = pick("10", "9", "10")
	case "redaction":
		num = "11"
	case "allow": // the final "Otherwise, allow."
		switch {
		case n <= 2:
			num = "12"
		case n <= 5:
			num = "11"
		case n <= 11:
			num = "10"
		default:
			num = "11"
		}
	default:
		panic("specNum: unknown rule " + head)
	}
	if tail != "" {
		num += "." + tail
	}
	if note != "" {
		num += " " + note
	}
	return num
}

// versions parses "3", "3-7" or "8-" (to 12).
func versions(s string) (lo, hi int) {
	a, b, isRange := strings.Cut(s, "-")
	lo, _ = strconv.Atoi(a)
	if !isRange {
		return lo, lo
	}
	if b == "" {
		return lo, 12
	}
	hi, _ = strconv.Atoi(b)
	return lo, hi
}

type ruleCase struct {
	num  string // symbolic rule number (specNum) of the rule that decides
	desc string
	vers string // room versions the case applies to
	// build makes the event to check; r is std(n) unless fresh is set, in
	// which case it is a room alice created, with nothing else.
	build func(r *room) eventauth.Event
	fresh bool
	want  eventauth.Rule // 0: allowed
}

func runRuleCases(t *testing.T, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		lo, hi := versions(tc.vers)
		if lo < 1 || hi > 12 || lo > hi {
			t.Fatalf("case %q: bad versions %q", tc.desc, tc.vers)
		}
		for n := lo; n <= hi; n++ {
			num := specNum(n, tc.num)
			t.Run(fmt.Sprintf("v%d/%s %s", n, num, tc.desc), func(t *testing.T) {
				var r *room
				if tc.fresh {
					r = newRoom(n, alice, "")
				} else {
					r = std(n)
				}
				ev := tc.build(r)
				err := eventauth.Check(r.version, ev, r.lookup())
				checkErr(t, "Check", r.version, err, tc.want)
				if tc.want != 0 {
					if got := tc.want.Number(r.version); got != num {
						t.Errorf("%v.Number(%s) = %q, want %q (case name)", tc.want, r.version, got, num)
					}
				}
			})
		}
	}
}

func checkErr(t *testing.T, call string, v id.RoomVersion, err error, want eventauth.Rule) {
	t.Helper()
	if want == 0 {
		if err != nil {
			t.Fatalf("%s(v%s) = %v, want nil", call, v, err)
		}
		return
	}
	var ae *eventauth.Error
	if !errors.As(err, &ae) {
		t.Fatalf("%s(v%s) = %v, want *eventauth.Error for rule %s %q", call, v, err, want.Number(v), want)
	}
	if ae.Rule != want {
		t.Fatalf("%s(v%s) = %v, want rule %s %q", call, v, err, want.Number(v), want)
	}
}

// createEvent is an m.room.create event of r's version sent by sender.
func createEvent(r *room, sender id.UserID, content string) *fakeEvent {
	ev := &fakeEvent{id: r.create.id, typ: "m.room.create", sk: ptr(""), sender: sender, content: content}
	if r.n <= 11 {
		ev.room = r.id
	}
	return ev
}

// withCreator is create content valid in every version: creator up to v10.
func withCreator(r *room, creator id.UserID, extra string) string {
	var m []string
	if r.n <= 10 {
		m = append(m, fmt.Sprintf(`"creator":%q`, creator))
	}
	if extra != "" {
		m = append(m, extra)
	}
	return "{" + strings.Join(m, ",") + "}"
}

func TestCheckCreate(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{num: "create.1", desc: "create with prev_events rejected", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				ev := createEvent(r, alice, withCreator(r, alice, ""))
				ev.prev = []id.EventID{"$other:a.example"}
				return ev
			}, want: eventauth.RuleCreatePrevEvents},
		{num: "create.2", desc: "room_id domain differs from sender domain", vers: "1-11", fresh: true,
			build: func(r *room) eventauth.Event {
				ev := createEvent(r, alice, withCreator(r, alice, ""))
				ev.room = "!room:b.example"
				return ev
			}, want: eventauth.RuleCreateRoomIDDomain},
		{num: "create.2", desc: "room_id without domain rejected", vers: "1-11", fresh: true,
			build: func(r *room) eventauth.Event {
				ev := createEvent(r, alice, withCreator(r, alice, ""))
				ev.room = "!room"
				return ev
			}, want: eventauth.RuleCreateRoomIDDomain},
		{num: "create.2", desc: "create with a room_id rejected", vers: "12", fresh: true,
			build: func(r *room) eventauth.Event {
				ev := createEvent(r, alice, "{}")
				ev.room = "!room:a.example"
				return ev
			}, want: eventauth.RuleCreateHasRoomID},
		{num: "create.5", desc: "create reporting its derived room ID allowed", vers: "12", fresh: true,
			build: func(r *room) eventauth.Event {
				ev := createEvent(r, alice, "{}")
				ev.room = r.id
				return ev
			}},
		{num: "create.3", desc: "unknown room_version rejected", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				return createEvent(r, alice, withCreator(r, alice, `"room_version":"13"`))
			}, want: eventauth.RuleCreateRoomVersion},
		{num: "create.3", desc: "room_version that is not a string rejected", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				return createEvent(r, alice, withCreator(r, alice, `"room_version":9`))
			}, want: eventauth.RuleCreateRoomVersion},
		{num: "create.3", desc: "room_version of another known version is recognised", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				return createEvent(r, alice, withCreator(r, alice, `"room_version":"1"`))
			}},
		{num: "create.4", desc: "create without creator rejected", vers: "1-10", fresh: true,
			build: func(r *room) eventauth.Event {
				return createEvent(r, alice, `{"room_version":"1"}`)
			}, want: eventauth.RuleCreateNoCreator},
		{num: "create.5", desc: "creator that is not the sender is allowed", vers: "1-10", fresh: true,
			build: func(r *room) eventauth.Event {
				return createEvent(r, alice, fmt.Sprintf(`{"creator":%q}`, bob))
			}},
		{num: "create.4|12:create.5", desc: "create without creator allowed (MSC2175)", vers: "11-12", fresh: true,
			build: func(r *room) eventauth.Event {
				return createEvent(r, alice, `{"room_version":"11"}`)
			}},
		{num: "create.4", desc: "additional_creators not an array rejected", vers: "12", fresh: true,
			build: func(r *room) eventauth.Event {
				return createEvent(r, alice, fmt.Sprintf(`{"additional_creators":%q}`, bob))
			}, want: eventauth.RuleCreateAdditionalCreators},
		{num: "create.4", desc: "additional_creators with a non-user ID rejected", vers: "12", fresh: true,
			build: func(r *room) eventauth.Event {
				return createEvent(r, alice, fmt.Sprintf(`{"additional_creators":[%q,"bob"]}`, bob))
			}, want: eventauth.RuleCreateAdditionalCreators},
		{num: "create.4", desc: "additional_creators with a bad server name rejected", vers: "12", fresh: true,
			build: func(r *room) eventauth.Event {
				return createEvent(r, alice, `{"additional_creators":["@bob:b_example"]}`)
			}, want: eventauth.RuleCreateAdditionalCreators},
		{num: "create.4", desc: "additional_creators with a number rejected", vers: "12", fresh: true,
			build: func(r *room) eventauth.Event {
				return createEvent(r, alice, `{"additional_creators":[5]}`)
			}, want: eventauth.RuleCreateAdditionalCreators},
		{num: "create.5", desc: "additional_creators with historical user IDs allowed", vers: "12", fresh: true,
			build: func(r *room) eventauth.Event {
				return createEvent(r, alice, `{"additional_creators":["@Bob Ünï:b.example:8448","@:[::1]"]}`)
			}},
		{num: "create.5|11:create.4|12:create.5", desc: "valid create allowed", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				return createEvent(r, alice, r.create.content)
			}},
		{num: "create.5|11:create.4|12:create.5", desc: "create with m.federate false allowed", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				return createEvent(r, alice, withCreator(r, alice, `"m.federate":false`))
			}},
	})
}

func TestCheckRoomIDAndCreate(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{num: "roomid", desc: "room_id that is not the create event's ID rejected", vers: "12",
			build: func(r *room) eventauth.Event {
				ev := r.message(bob)
				ev.room = "!someotherhash"
				return ev
			}, want: eventauth.RuleRoomIDNotCreateEvent},
		{num: "roomid", desc: "room_id with a domain rejected", vers: "12",
			build: func(r *room) eventauth.Event {
				ev := r.message(bob)
				ev.room = id.RoomID(string(r.id) + ":a.example")
				return ev
			}, want: eventauth.RuleRoomIDNotCreateEvent},
		{num: "roomid", desc: "rejected create event rejects the event", vers: "12",
			build: func(r *room) eventauth.Event {
				r.create.rejected = true
				return r.message(bob)
			}, want: eventauth.RuleRoomIDNotCreateEvent},
		{num: "roomid", desc: "no create event", vers: "12",
			build: func(r *room) eventauth.Event {
				delete(r.state, eventauth.StateKeyTuple{Type: "m.room.create"})
				return r.message(bob)
			}, want: eventauth.RuleRoomIDNotCreateEvent},
		{num: "auth.4", desc: "no create event among the auth events", vers: "1-11",
			build: func(r *room) eventauth.Event {
				delete(r.state, eventauth.StateKeyTuple{Type: "m.room.create"})
				return r.message(bob)
			}, want: eventauth.RuleAuthEventsNoCreate},
	})
}

func TestCheckFederate(t *testing.T) {
	noFed := func(r *room) {
		*r = *newRoom(r.n, alice, `"m.federate":false`)
		r.setMember(alice, "join")
		r.joinRule("public")
	}
	runRuleCases(t, []ruleCase{
		{num: "fed", desc: "m.federate false rejects a join from another server", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				noFed(r)
				return r.member(bob, bob, "join")
			}, want: eventauth.RuleFederate},
		{num: "fed", desc: "m.federate false rejects messages from another server's joined user", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				noFed(r)
				r.setMember(bob, "join")
				return r.message(bob)
			}, want: eventauth.RuleFederate},
		{num: "join.5|8:join.6", desc: "m.federate false allows a join from the creator's server", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				noFed(r)
				return r.member(dave, dave, "join")
			}},
		{num: "join.5|8:join.6", desc: "m.federate as the string false has no effect", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				*r = *newRoom(r.n, alice, `"m.federate":"false"`)
				r.setMember(alice, "join")
				r.joinRule("public")
				return r.member(bob, bob, "join")
			}},
	})
}

func TestCheckAliases(t *testing.T) {
	aliases := func(r *room, sender id.UserID, sk *string) *fakeEvent {
		return r.event("m.room.aliases", sender, sk, `{"aliases":["#a:m.example"]}`)
	}
	runRuleCases(t, []ruleCase{
		{num: "aliases.3", desc: "aliases for the sender's own server allowed without membership", vers: "1-5",
			build: func(r *room) eventauth.Event {
				return aliases(r, mallory, ptr("m.example"))
			}},
		{num: "aliases.1", desc: "aliases without state_key rejected", vers: "1-5",
			build: func(r *room) eventauth.Event {
				return aliases(r, mallory, nil)
			}, want: eventauth.RuleAliasesNoStateKey},
		{num: "aliases.2", desc: "aliases for another server rejected", vers: "1-5",
			build: func(r *room) eventauth.Event {
				return aliases(r, bob, ptr("a.example"))
			}, want: eventauth.RuleAliasesDomain},
		{num: "joined", desc: "aliases from a non-member rejected (no special case from v6)", vers: "6-",
			build: func(r *room) eventauth.Event {
				return aliases(r, mallory, ptr("m.example"))
			}, want: eventauth.RuleSenderNotJoined},
		{num: "level", desc: "aliases need the state level from v6", vers: "6-",
			build: func(r *room) eventauth.Event {
				return aliases(r, carol, ptr("c.example"))
			}, want: eventauth.RuleEventLevel},
		{num: "allow", desc: "aliases for another server allowed to a member with the state level from v6", vers: "6-",
			build: func(r *room) eventauth.Event {
				return aliases(r, bob, ptr("a.example"))
			}},
	})
}

func TestCheckNonMember(t *testing.T) {
	topic := func(r *room, sender id.UserID) *fakeEvent {
		return r.event("m.room.topic", sender, ptr(""), `{"topic":"t"}`)
	}
	// noPL is a room without power levels: alice created and joined, bob
	// joined.
	noPL := func(r *room) {
		r.setMember(alice, "join")
		r.setMember(bob, "join")
	}
	runRuleCases(t, []ruleCase{
		{num: "allow", desc: "message from a joined user allowed", vers: "1-12",
			build: func(r *room) eventauth.Event { return r.message(carol) }},
		{num: "joined", desc: "message from a stranger rejected", vers: "1-12",
			build: func(r *room) eventauth.Event { return r.message(mallory) },
			want:  eventauth.RuleSenderNotJoined},
		{num: "joined", desc: "message from an invited user rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(r.member(bob, mallory, "invite"))
				return r.message(mallory)
			}, want: eventauth.RuleSenderNotJoined},
		{num: "joined", desc: "message from a banned user rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(r.member(alice, carol, "ban"))
				return r.message(carol)
			}, want: eventauth.RuleSenderNotJoined},
		{num: "joined", desc: "state from a user who left rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.setMember(bob, "leave")
				return topic(r, bob)
			}, want: eventauth.RuleSenderNotJoined},

		{num: "tpi.1", desc: "m.room.third_party_invite at the invite level allowed", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.event("m.room.third_party_invite", carol, ptr("tok"), `{"display_name":"x","public_key":"k"}`)
			}},
		{num: "tpi.1", desc: "m.room.third_party_invite below the invite level rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50,%q:0`, bob, carol), `"invite":10`))
				return r.event("m.room.third_party_invite", carol, ptr("tok"), `{}`)
			}, want: eventauth.RuleThirdPartyInviteLevel},
		{num: "tpi.1", desc: "m.room.third_party_invite ignores the state level and @ state_key rules", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50,%q:0`, bob, carol), `"events":{"m.room.third_party_invite":100}`))
				return r.event("m.room.third_party_invite", carol, ptr(string(bob)), `{}`)
			}},

		{num: "level", desc: "state below state_default rejected", vers: "1-12",
			build: func(r *room) eventauth.Event { return topic(r, carol) },
			want:  eventauth.RuleEventLevel},
		{num: "allow", desc: "state at state_default allowed", vers: "1-12",
			build: func(r *room) eventauth.Event { return topic(r, bob) }},
		{num: "level", desc: "events entry overrides events_default", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50`, bob), `"events":{"m.room.message":60}`))
				return r.message(bob)
			}, want: eventauth.RuleEventLevel},
		{num: "allow", desc: "events entry overrides state_default", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50`, bob), `"events":{"m.room.topic":0}`))
				return topic(r, carol)
			}},
		{num: "level", desc: "events_default applies to messages", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:0`, carol), `"events_default":1`))
				return r.message(carol)
			}, want: eventauth.RuleEventLevel},
		{num: "allow", desc: "users_default gives unlisted users their level", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL("", `"users_default":50`))
				r.setMember(dave, "join")
				return topic(r, dave)
			}},
		{num: "allow", desc: "no power levels: the creator sends state", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				noPL(r)
				return topic(r, alice)
			}},
		{num: "level", desc: "no power levels: others cannot send state", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				noPL(r)
				return topic(r, bob)
			}, want: eventauth.RuleEventLevel},
		{num: "allow", desc: "no power levels: others send messages", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				noPL(r)
				return r.message(bob)
			}},
		{num: "allow", desc: "no power levels: content.creator, not the sender, has 100", vers: "1-10", fresh: true,
			build: func(r *room) eventauth.Event {
				r.create.content = fmt.Sprintf(`{"creator":%q}`, bob)
				noPL(r)
				return topic(r, bob)
			}},
		{num: "level", desc: "no power levels: the create sender has 100 from v11, whatever content.creator says", vers: "11-12", fresh: true,
			build: func(r *room) eventauth.Event {
				r.create.content = fmt.Sprintf(`{"creator":%q}`, bob)
				noPL(r)
				return topic(r, bob)
			}, want: eventauth.RuleEventLevel},
		{num: "allow", desc: "additional creators have infinite power (MSC4289)", vers: "12", fresh: true,
			build: func(r *room) eventauth.Event {
				r.create.content = fmt.Sprintf(`{"additional_creators":[%q]}`, bob)
				noPL(r)
				r.powerLevels(`{"state_default":100,"events":{"m.room.topic":9007199254740991}}`)
				return topic(r, bob)
			}},
		{num: "level", desc: "level 2^53-2 is below a requirement of 2^53-1", vers: "12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:9007199254740990`, bob), `"events":{"m.room.topic":9007199254740991}`))
				return topic(r, bob)
			}, want: eventauth.RuleEventLevel},

		{num: "atkey", desc: "state_key of another user rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.event("m.custom", bob, ptr(string(carol)), `{}`)
			}, want: eventauth.RuleStateKeyUser},
		{num: "allow", desc: "state_key of the sender allowed", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.event("m.custom", bob, ptr(string(bob)), `{}`)
			}},
		{num: "allow", desc: "state_key starting with @ checked only for state events; @ inside allowed", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.event("m.custom", bob, ptr("x@"+string(carol)), `{}`)
			}},
	})
}

func TestCheckRedaction(t *testing.T) {
	redaction := func(r *room, sender id.UserID, redacts id.EventID) *fakeEvent {
		ev := r.event("m.room.redaction", sender, nil, fmt.Sprintf(`{"redacts":%q}`, redacts))
		ev.redacts = redacts
		return ev
	}
	runRuleCases(t, []ruleCase{
		{num: "redaction.1", desc: "redaction at the redact level allowed", vers: "1-2",
			build: func(r *room) eventauth.Event { return redaction(r, bob, "$x:a.example") }},
		{num: "redaction.2", desc: "redaction of an event ID of the redaction's own domain allowed", vers: "1-2",
			build: func(r *room) eventauth.Event { return redaction(r, carol, "$x:c.example") }},
		{num: "redaction.3", desc: "redaction below the redact level of another domain's event rejected", vers: "1-2",
			build: func(r *room) eventauth.Event { return redaction(r, carol, "$x:a.example") },
			want:  eventauth.RuleRedaction},
		{num: "redaction.3", desc: "redaction without redacts below the redact level rejected", vers: "1-2",
			build: func(r *room) eventauth.Event { return redaction(r, carol, "") },
			want:  eventauth.RuleRedaction},
		{num: "allow", desc: "redact level is not an auth rule from v3", vers: "3-",
			build: func(r *room) eventauth.Event { return redaction(r, carol, "$x:a.example") }},
		{num: "level", desc: "redactions need their events level", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:50`, bob), `"events":{"m.room.redaction":60}`))
				return redaction(r, bob, "$x:b.example")
			}, want: eventauth.RuleEventLevel},
	})
}

func TestCheckUnknownVersion(t *testing.T) {
	r := std(11)
	for _, v := range []id.RoomVersion{"", "0", "13", "org.matrix.hydra.11", "v1"} {
		err := eventauth.Check(v, r.message(bob), r.lookup())
		if !errors.Is(err, eventauth.ErrUnknownVersion) {
			t.Errorf("Check(%q) = %v, want ErrUnknownVersion", v, err)
		}
	}
}

// TestRuleNumbers pins rule numbers to the text of each version's list.
func TestRuleNumbers(t *testing.T) {
	tests := []struct {
		rule eventauth.Rule
		want map[id.RoomVersion]string
	}{
		{eventauth.RuleCreateNoCreator, map[id.RoomVersion]string{"1": "1.4", "10": "1.4"}},
		{eventauth.RuleRoomIDNotCreateEvent, map[id.RoomVersion]string{"12": "2"}},
		{eventauth.RuleAuthEventsRoomID, map[id.RoomVersion]string{"1": "2.5", "11": "2.5", "12": "3.5"}},
		{eventauth.RuleFederate, map[id.RoomVersion]string{"5": "3", "6": "3", "12": "4"}},
		{eventauth.RuleAliasesDomain, map[id.RoomVersion]string{"1": "4.2", "5": "4.2"}},
		{eventauth.RuleJoinBanned, map[id.RoomVersion]string{"1": "5.2.3", "6": "4.2.3", "7": "4.2.3", "8": "4.3.3", "11": "4.3.3", "12": "5.3.3"}},
		{eventauth.RuleJoinOtherwise, map[id.RoomVersion]string{"1": "5.2.6", "7": "4.2.6", "8": "4.3.7", "12": "5.3.7"}},
		{eventauth.RuleJoinRestrictedVia, map[id.RoomVersion]string{"8": "4.3.5.2", "10": "4.3.5.2", "12": "5.3.5.2"}},
		{eventauth.RuleInvite3PIDSignature, map[id.RoomVersion]string{"1": "5.3.1.8", "6": "4.3.1.8", "8": "4.4.1.8", "12": "5.4.1.8"}},
		{eventauth.RuleLeaveUnbanLevel, map[id.RoomVersion]string{"1": "5.4.3", "7": "4.4.3", "9": "4.5.3", "12": "5.5.3"}},
		{eventauth.RuleBanLevel, map[id.RoomVersion]string{"3": "5.5.3", "6": "4.5.3", "8": "4.6.3", "12": "5.6.3"}},
		{eventauth.RuleKnockMembership, map[id.RoomVersion]string{"7": "4.6.4", "8": "4.7.4", "12": "5.7.4"}},
		{eventauth.RuleMemberUnknown, map[id.RoomVersion]string{"1": "5.6", "6": "4.6", "7": "4.7", "8": "4.8", "12": "5.8"}},
		{eventauth.RuleSenderNotJoined, map[id.RoomVersion]string{"1": "6", "6": "5", "12": "6"}},
		{eventauth.RuleThirdPartyInviteLevel, map[id.RoomVersion]string{"1": "7.1", "6": "6.1", "12": "7.1"}},
		{eventauth.RuleEventLevel, map[id.RoomVersion]string{"1": "8", "6": "7", "12": "8"}},
		{eventauth.RuleStateKeyUser, map[id.RoomVersion]string{"1": "9", "6": "8", "12": "9"}},
		{eventauth.RulePowerUsers, map[id.RoomVersion]string{"1": "10.1", "6": "9.1", "9": "9.1", "10": "9.3", "12": "10.3"}},
		{eventauth.RulePowerTopNotInteger, map[id.RoomVersion]string{"10": "9.1", "12": "10.1"}},
		{eventauth.RulePowerCreatorInUsers, map[id.RoomVersion]string{"12": "10.4"}},
		{eventauth.RulePowerTopNew, map[id.RoomVersion]string{"1": "10.3.2", "6": "9.3.2", "10": "9.5.2", "12": "10.6.2"}},
		{eventauth.RulePowerEventsCurrent, map[id.RoomVersion]string{"1": "10.4", "6": "9.4", "10": "9.6", "12": "10.7"}},
		{eventauth.RulePowerUsersNew, map[id.RoomVersion]string{"1": "10.7", "9": "9.7", "11": "9.9", "12": "10.10"}},
		{eventauth.RuleRedaction, map[id.RoomVersion]string{"1": "11.3", "2": "11.3"}},
	}
	for _, tt := range tests {
		for v, want := range tt.want {
			if got := tt.rule.Number(v); got != want {
				t.Errorf("%v.Number(%s) = %q, want %q", tt.rule, v, got, want)
			}
		}
	}
	if got := eventauth.RuleBanLevel.Number("13"); got != "" {
		t.Errorf("Number(13) = %q, want \"\"", got)
	}
}

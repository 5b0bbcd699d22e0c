package eventauth_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

func key(t, sk string) eventauth.StateKeyTuple { return eventauth.StateKeyTuple{Type: t, StateKey: sk} }

func TestAuthEventSelection(t *testing.T) {
	var (
		create = key("m.room.create", "")
		pl     = key("m.room.power_levels", "")
		jr     = key("m.room.join_rules", "")
		mem    = func(u id.UserID) eventauth.StateKeyTuple { return key("m.room.member", string(u)) }
	)
	// withCreate prefixes create up to v11 (v12: MSC4291 drops it).
	withCreate := func(n int, keys ...eventauth.StateKeyTuple) []eventauth.StateKeyTuple {
		if n <= 11 {
			return append([]eventauth.StateKeyTuple{create}, keys...)
		}
		return keys
	}
	tests := []struct {
		name string
		vers string
		ev   func(r *room) eventauth.Event
		want func(n int) []eventauth.StateKeyTuple
	}{
		{"create has no auth events", "1-12",
			func(r *room) eventauth.Event { return r.create },
			func(int) []eventauth.StateKeyTuple { return nil }},
		{"message: create, power levels, sender", "1-12",
			func(r *room) eventauth.Event { return r.message(bob) },
			func(n int) []eventauth.StateKeyTuple { return withCreate(n, pl, mem(bob)) }},
		{"state: same as a message", "1-12",
			func(r *room) eventauth.Event { return r.event("m.room.topic", bob, ptr(""), `{}`) },
			func(n int) []eventauth.StateKeyTuple { return withCreate(n, pl, mem(bob)) }},
		{"own join: target is the sender, join rules", "1-12",
			func(r *room) eventauth.Event { return r.member(bob, bob, "join") },
			func(n int) []eventauth.StateKeyTuple { return withCreate(n, pl, mem(bob), jr) }},
		{"invite: target and join rules", "1-12",
			func(r *room) eventauth.Event { return r.member(bob, carol, "invite") },
			func(n int) []eventauth.StateKeyTuple { return withCreate(n, pl, mem(bob), mem(carol), jr) }},
		{"knock: join rules", "1-12",
			func(r *room) eventauth.Event { return r.member(bob, bob, "knock") },
			func(n int) []eventauth.StateKeyTuple { return withCreate(n, pl, mem(bob), jr) }},
		{"leave and ban: no join rules", "1-12",
			func(r *room) eventauth.Event { return r.member(bob, carol, "ban") },
			func(n int) []eventauth.StateKeyTuple { return withCreate(n, pl, mem(bob), mem(carol)) }},
		{"third-party invite: the m.room.third_party_invite of the token", "1-12",
			func(r *room) eventauth.Event {
				return r.memberContent(bob, carol, `{"membership":"invite","third_party_invite":{"signed":{"mxid":"@carol:c.example","token":"tok"}}}`)
			},
			func(n int) []eventauth.StateKeyTuple {
				return withCreate(n, pl, mem(bob), mem(carol), jr, key("m.room.third_party_invite", "tok"))
			}},
		{"third-party invite without a token: nothing more", "1-12",
			func(r *room) eventauth.Event {
				return r.memberContent(bob, carol, `{"membership":"invite","third_party_invite":{"signed":{"token":5}}}`)
			},
			func(n int) []eventauth.StateKeyTuple { return withCreate(n, pl, mem(bob), mem(carol), jr) }},
		{"restricted join: the authorising user's member event from v8", "8-",
			func(r *room) eventauth.Event { return restrictedJoin(r, bob, true) },
			func(n int) []eventauth.StateKeyTuple { return withCreate(n, pl, mem(mallory), jr, mem(bob)) }},
		{"restricted join: nothing more before v8", "1-7",
			func(r *room) eventauth.Event { return restrictedJoin(r, bob, true) },
			func(n int) []eventauth.StateKeyTuple { return withCreate(n, pl, mem(mallory), jr) }},
		{"join_authorised_via_users_server on a leave: nothing more", "8-",
			func(r *room) eventauth.Event {
				return r.memberContent(carol, carol, fmt.Sprintf(`{"membership":"leave","join_authorised_via_users_server":%q}`, bob))
			},
			func(n int) []eventauth.StateKeyTuple { return withCreate(n, pl, mem(carol)) }},
		{"authorising user who is the joiner: no duplicate", "8-",
			func(r *room) eventauth.Event { return restrictedJoin(r, mallory, true) },
			func(n int) []eventauth.StateKeyTuple { return withCreate(n, pl, mem(mallory), jr) }},
	}
	for _, tt := range tests {
		lo, hi := versions(tt.vers)
		for n := lo; n <= hi; n++ {
			t.Run(fmt.Sprintf("v%d/%s", n, tt.name), func(t *testing.T) {
				r := std(n)
				got := eventauth.AuthEventSelection(r.version, tt.ev(r))
				if want := tt.want(n); !slices.Equal(got, want) {
					t.Errorf("AuthEventSelection = %v, want %v", got, want)
				}
			})
		}
	}
	if got := eventauth.AuthEventSelection("13", std(11).message(bob)); got != nil {
		t.Errorf("AuthEventSelection(13) = %v, want nil", got)
	}
}

func TestCheckAuthEvents(t *testing.T) {
	// authOf returns the events behind ev's auth_events in r's state.
	authOf := func(r *room, ev *fakeEvent) []eventauth.Event {
		var out []eventauth.Event
		for _, eid := range ev.auth {
			for _, s := range r.state {
				if s.id == eid {
					out = append(out, s)
				}
			}
		}
		return out
	}
	type result struct {
		rule eventauth.Rule
		err  error // a non-rule error wanted
	}
	tests := []struct {
		num  string
		desc string
		vers string
		run  func(r *room) (ev *fakeEvent, auth []eventauth.Event)
		want result
	}{
		{"auth", "auth events chosen by the selection accepted", "1-12",
			func(r *room) (*fakeEvent, []eventauth.Event) {
				ev := r.member(bob, mallory, "invite")
				return ev, authOf(r, ev)
			}, result{}},
		{"auth.1", "two member events of the sender rejected", "1-12",
			func(r *room) (*fakeEvent, []eventauth.Event) {
				ev := r.message(bob)
				old := r.state[key("m.room.member", string(bob))]
				r.setMember(bob, "join")
				ev.auth = append(ev.auth, r.state[key("m.room.member", string(bob))].id)
				return ev, append(authOf(r, ev), old)
			}, result{rule: eventauth.RuleAuthEventsDuplicate}},
		{"auth.1", "the same auth event listed twice rejected", "1-12",
			func(r *room) (*fakeEvent, []eventauth.Event) {
				ev := r.message(bob)
				pl := r.state[key("m.room.power_levels", "")]
				ev.auth = append(ev.auth, pl.id)
				return ev, append(authOf(r, ev)[:len(ev.auth)-1], pl)
			}, result{rule: eventauth.RuleAuthEventsDuplicate}},
		{"auth.2", "join rules in a message's auth events rejected", "1-12",
			func(r *room) (*fakeEvent, []eventauth.Event) {
				ev := r.message(bob)
				ev.auth = append(ev.auth, r.state[key("m.room.join_rules", "")].id)
				return ev, authOf(r, ev)
			}, result{rule: eventauth.RuleAuthEventsUnexpected}},
		{"auth.2", "another user's member event rejected", "1-12",
			func(r *room) (*fakeEvent, []eventauth.Event) {
				ev := r.message(bob)
				ev.auth = append(ev.auth, r.state[key("m.room.member", string(carol))].id)
				return ev, authOf(r, ev)
			}, result{rule: eventauth.RuleAuthEventsUnexpected}},
		{"auth.2", "a message event among the auth events rejected", "1-12",
			func(r *room) (*fakeEvent, []eventauth.Event) {
				msg := r.message(carol)
				ev := r.message(bob)
				ev.auth = append(ev.auth, msg.id)
				return ev, append(authOf(r, ev), msg)
			}, result{rule: eventauth.RuleAuthEventsUnexpected}},
		{"auth.2", "create event among the auth events rejected in v12", "12",
			func(r *room) (*fakeEvent, []eventauth.Event) {
				ev := r.message(bob)
				ev.auth = append(ev.auth, r.create.id)
				return ev, authOf(r, ev)
			}, result{rule: eventauth.RuleAuthEventsUnexpected}},
		{"auth.3", "rejected auth event rejects", "1-12",
			func(r *room) (*fakeEvent, []eventauth.Event) {
				ev := r.message(bob)
				r.state[key("m.room.member", string(bob))].rejected = true
				return ev, authOf(r, ev)
			}, result{rule: eventauth.RuleAuthEventsRejected}},
		{"auth.4", "no create event rejected", "1-11",
			func(r *room) (*fakeEvent, []eventauth.Event) {
				ev := r.message(bob)
				ev.auth = ev.auth[1:]
				return ev, authOf(r, ev)
			}, result{rule: eventauth.RuleAuthEventsNoCreate}},
		{"auth.5", "auth event of another room rejected", "1-12",
			func(r *room) (*fakeEvent, []eventauth.Event) {
				ev := r.message(bob)
				r.state[key("m.room.power_levels", "")].room = "!other:a.example"
				return ev, authOf(r, ev)
			}, result{rule: eventauth.RuleAuthEventsRoomID}},
		{"auth", "missing auth event reported as such", "1-12",
			func(r *room) (*fakeEvent, []eventauth.Event) {
				ev := r.message(bob)
				return ev, authOf(r, ev)[1:]
			}, result{err: eventauth.ErrMissingAuthEvent}},
		{"auth", "an event not in auth_events reported as missing", "1-12",
			func(r *room) (*fakeEvent, []eventauth.Event) {
				ev := r.message(bob)
				a := authOf(r, ev)
				a[0] = r.state[key("m.room.join_rules", "")]
				return ev, a
			}, result{err: eventauth.ErrMissingAuthEvent}},
		{"auth", "create event: rule 1 decides, no auth events rules", "1-12",
			func(r *room) (*fakeEvent, []eventauth.Event) {
				return r.create, nil
			}, result{}},
	}
	for _, tt := range tests {
		lo, hi := versions(tt.vers)
		for n := lo; n <= hi; n++ {
			t.Run(fmt.Sprintf("v%d/%s %s", n, specNum(n, tt.num), tt.desc), func(t *testing.T) {
				r := std(n)
				ev, auth := tt.run(r)
				err := eventauth.CheckAuthEvents(r.version, ev, auth)
				if tt.want.err != nil {
					if !errors.Is(err, tt.want.err) {
						t.Fatalf("CheckAuthEvents = %v, want %v", err, tt.want.err)
					}
					return
				}
				checkErr(t, "CheckAuthEvents", r.version, err, tt.want.rule)
				if tt.want.rule != 0 {
					if got, want := tt.want.rule.Number(r.version), specNum(n, tt.num); got != want {
						t.Errorf("%v.Number = %q, want %q", tt.want.rule, got, want)
					}
				}
			})
		}
	}
}

func TestLookupEvents(t *testing.T) {
	r := std(11)
	msg := r.message(carol)
	l := eventauth.LookupEvents(r.create, msg, r.state[key("m.room.member", string(bob))])
	if got := l("m.room.create", ""); got != eventauth.Event(r.create) {
		t.Errorf("lookup(create) = %v, want the create event", got)
	}
	if got := l("m.room.member", string(bob)); got == nil || got.Sender() != bob {
		t.Errorf("lookup(member bob) = %v, want bob's member event", got)
	}
	if got := l("m.room.message", ""); got != nil {
		t.Errorf("lookup(message) = %v, want nil (not a state event)", got)
	}
}

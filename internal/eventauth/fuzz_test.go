package eventauth_test

import (
	"errors"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

// FuzzCheck feeds arbitrary contents to the event being checked and to the
// power levels and member events it is checked against. Check must not
// panic, and must return nil or an *eventauth.Error.
func FuzzCheck(f *testing.F) {
	seeds := []struct {
		n                  uint8
		typ, evContent, pl string
		member, joinRules  string
	}{
		{11, "m.room.message", `{"body":"x"}`, `{"users":{"@bob:b.example":50}}`, `{"membership":"join"}`, `{"join_rule":"public"}`},
		{5, "m.room.power_levels", `{"users":{"@bob:b.example":"50"},"ban":1.5e2}`, `{"users":{"@bob:b.example":" 50 "},"kick":"x"}`, `{"membership":"join"}`, `{}`},
		{12, "m.room.member", `{"membership":"join","join_authorised_via_users_server":"@alice:a.example"}`, `{"invite":0}`, `{"membership":"invite"}`, `{"join_rule":"knock_restricted"}`},
		{9, "m.room.member", `{"membership":"invite","third_party_invite":{"signed":{"mxid":"@bob:b.example","token":"t","signatures":{"x":{"ed25519:0":"AAAA"}}}}}`, `{}`, `{"membership":"join"}`, `{"join_rule":5}`},
		{10, "m.room.power_levels", `{"users":{"@bob:b.example":50,"@c:c":9007199254740991},"events":{"a":1},"notifications":{"room":1}}`, `{"users":{"\u0040bob:b.example":100},"events":{"a":[1,{"b":"}"}]}}`, `{"membership":"join"}`, `{"join_rule":"invite"}`},
		{1, "m.room.aliases", `{}`, `not json`, `{"membership":5}`, `[]`},
	}
	for _, s := range seeds {
		f.Add(s.n, s.typ, s.evContent, s.pl, s.member, s.joinRules)
	}
	f.Fuzz(func(t *testing.T, n uint8, typ, evContent, plContent, memberContent, joinRulesContent string) {
		version := id.RoomVersion([]string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}[int(n)%12])
		r := newRoom(int(n)%12+1, alice, "")
		r.set(&fakeEvent{id: "$m1:b.example", room: r.id, typ: "m.room.member", sk: ptr(string(bob)), sender: bob, content: memberContent})
		r.set(&fakeEvent{id: "$m2:a.example", room: r.id, typ: "m.room.member", sk: ptr(string(alice)), sender: alice, content: memberContent})
		r.set(&fakeEvent{id: "$pl:a.example", room: r.id, typ: "m.room.power_levels", sk: ptr(""), sender: alice, content: plContent})
		r.set(&fakeEvent{id: "$jr:a.example", room: r.id, typ: "m.room.join_rules", sk: ptr(""), sender: alice, content: joinRulesContent})
		for _, sk := range []*string{nil, ptr(""), ptr(string(bob))} {
			ev := r.event(typ, bob, sk, evContent)
			ev.redacts = "$x:a.example"
			err := eventauth.Check(version, ev, r.lookup())
			var ae *eventauth.Error
			if err != nil && !errors.As(err, &ae) {
				t.Fatalf("Check(%s) = %v, want nil or *eventauth.Error", version, err)
			}
			if ae != nil && ae.Rule.Number(version) == "" {
				t.Fatalf("Check(%s) = %v: rule has no number in this version", version, err)
			}
			_ = eventauth.AuthEventSelection(version, ev)
			if _, err := eventauth.NewPowerLevels(version, r.create, r.lookup()("m.room.power_levels", "")); err != nil {
				t.Fatalf("NewPowerLevels(%s) = %v", version, err)
			}
		}
	})
}

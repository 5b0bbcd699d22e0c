package eventauth_test

import (
	"errors"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

// stdUsers are the users entries of std's power levels besides alice's.
var stdUsers = fmt.Sprintf(`%q:50,%q:0`, bob, carol)

func plEvent(r *room, sender id.UserID, content string) *fakeEvent {
	return r.event("m.room.power_levels", sender, ptr(""), content)
}

// firstPL is alice's first power levels event in a room she just joined.
func firstPL(users, rest string) func(r *room) eventauth.Event {
	return func(r *room) eventauth.Event {
		r.setMember(alice, "join")
		return plEvent(r, alice, r.adminPL(users, rest))
	}
}

// bobChanges sets the power levels to prev (alice's, with stdUsers unless
// users is given) and returns bob's (level 50) new power levels event.
func bobChanges(prevUsers, prevRest, users, rest string) func(r *room) eventauth.Event {
	return func(r *room) eventauth.Event {
		r.powerLevels(r.adminPL(prevUsers, prevRest))
		return plEvent(r, bob, r.adminPL(users, rest))
	}
}

const (
	plNoPrevious = "pl.2|10:pl.4|12:pl.5"
	plAllow      = "pl.8|10:pl.10|12:pl.11" // v12's text numbers it 10 twice; rendered, it is 11
	plUsers      = "pl.1|10:pl.3"
	plTopCur     = "pl.3.1|10:pl.5.1|12:pl.6.1"
	plTopNew     = "pl.3.2|10:pl.5.2|12:pl.6.2"
	plEventsCur  = "pl.4|10:pl.6|12:pl.7"
	plEventsNew  = "pl.5|10:pl.7|12:pl.8"
	plUsersCur   = "pl.6|10:pl.8|12:pl.9"
	plUsersNew   = "pl.7|10:pl.9|12:pl.10"
)

func TestCheckPowerLevelsValidation(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{num: plNoPrevious, desc: "first power levels allowed whatever their values", vers: "1-12", fresh: true,
			build: firstPL(fmt.Sprintf(`%q:1000`, bob), `"ban":1000,"events":{"m.room.name":1000}`)},
		{num: plUsers, desc: "users that is not an object rejected", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				r.setMember(alice, "join")
				return plEvent(r, alice, `{"users":[]}`)
			}, want: eventauth.RulePowerUsers},
		{num: plUsers, desc: "users that is null rejected", vers: "1-12", fresh: true,
			build: func(r *room) eventauth.Event {
				r.setMember(alice, "join")
				return plEvent(r, alice, `{"users":null}`)
			}, want: eventauth.RulePowerUsers},
		{num: plUsers, desc: "users key that is not a user ID rejected", vers: "1-12", fresh: true,
			build: firstPL(`"bob":10`, ""), want: eventauth.RulePowerUsers},
		{num: plUsers, desc: "users key with an invalid server name rejected", vers: "1-12", fresh: true,
			build: firstPL(`"@bob:b example":10`, ""), want: eventauth.RulePowerUsers},
		{num: plNoPrevious, desc: "users key with a historical localpart allowed", vers: "1-12", fresh: true,
			build: firstPL(`"@Bob Ü:b.example":10`, "")},
		{num: plUsers, desc: "users value true rejected", vers: "1-12", fresh: true,
			build: firstPL(fmt.Sprintf(`%q:true`, bob), ""), want: eventauth.RulePowerUsers},
		{num: plNoPrevious, desc: "users value as a string allowed up to v9", vers: "1-9", fresh: true,
			build: firstPL(fmt.Sprintf(`%q:" +050 "`, bob), "")},
		{num: plUsers, desc: "users value as a string rejected from v10 (MSC3667)", vers: "10-", fresh: true,
			build: firstPL(fmt.Sprintf(`%q:"50"`, bob), ""), want: eventauth.RulePowerUsers},
		{num: plUsers, desc: "users value string with a decimal point rejected", vers: "1-9", fresh: true,
			build: firstPL(fmt.Sprintf(`%q:"50.5"`, bob), ""), want: eventauth.RulePowerUsers},
		{num: plUsers, desc: "users value string with two signs rejected", vers: "1-9", fresh: true,
			build: firstPL(fmt.Sprintf(`%q:"+-5"`, bob), ""), want: eventauth.RulePowerUsers},
		{num: plNoPrevious, desc: "users value as a float allowed up to v5", vers: "1-5", fresh: true,
			build: firstPL(fmt.Sprintf(`%q:50.57`, bob), "")},
		{num: plUsers, desc: "users value as a non-integral float rejected from v6 (canonical JSON)", vers: "6-", fresh: true,
			build: firstPL(fmt.Sprintf(`%q:50.57`, bob), ""), want: eventauth.RulePowerUsers},
		{num: plNoPrevious, desc: "users value with an exponent that is an integer allowed (appendix 1e10 example)", vers: "1-12", fresh: true,
			build: firstPL(fmt.Sprintf(`%q:5e1`, bob), "")},
		{num: plUsers, desc: "users value beyond 2^53-1 rejected from v6", vers: "6-", fresh: true,
			build: firstPL(fmt.Sprintf(`%q:9007199254740992`, bob), ""), want: eventauth.RulePowerUsers},
		{num: plUsers, desc: "users value float beyond binary64 range rejected", vers: "1-5", fresh: true,
			build: firstPL(fmt.Sprintf(`%q:1e400`, bob), ""), want: eventauth.RulePowerUsers},
		{num: plNoPrevious, desc: "top-level level as a string allowed up to v9", vers: "1-9", fresh: true,
			build: firstPL("", `"ban":"50"`)},
		{num: "pl.1", desc: "top-level level as a string rejected from v10", vers: "10-", fresh: true,
			build: firstPL("", `"ban":"50"`), want: eventauth.RulePowerTopNotInteger},
		{num: "pl.1", desc: "top-level level null rejected from v10", vers: "10-", fresh: true,
			build: firstPL("", `"invite":null`), want: eventauth.RulePowerTopNotInteger},
		{num: plNoPrevious, desc: "top-level garbage ignored up to v9", vers: "1-9", fresh: true,
			build: firstPL("", `"kick":"abc","events":[],"notifications":{"room":"x"}`)},
		{num: "pl (floats)", desc: "top-level float out of binary64 range rejected", vers: "1-5", fresh: true,
			build: firstPL("", `"ban":1e400`), want: eventauth.RulePowerFloatRange},
		{num: "pl (floats)", desc: "events float out of binary64 range rejected", vers: "1-5", fresh: true,
			build: firstPL("", `"events":{"m.room.name":-1e999}`), want: eventauth.RulePowerFloatRange},
		{num: "pl.2", desc: "events value as a string rejected from v10", vers: "10-", fresh: true,
			build: firstPL("", `"events":{"m.room.name":"50"}`), want: eventauth.RulePowerMapNotInteger},
		{num: "pl.2", desc: "events that is not an object rejected from v10", vers: "10-", fresh: true,
			build: firstPL("", `"events":[]`), want: eventauth.RulePowerMapNotInteger},
		{num: "pl.2", desc: "notifications that is not an object rejected from v10", vers: "10-", fresh: true,
			build: firstPL("", `"notifications":50`), want: eventauth.RulePowerMapNotInteger},
		{num: "pl.2", desc: "notifications value that is not an integer rejected from v10", vers: "10-", fresh: true,
			build: firstPL("", `"notifications":{"room":true}`), want: eventauth.RulePowerMapNotInteger},
		{num: "pl.4", desc: "creator in users rejected (MSC4289)", vers: "12", fresh: true,
			build: firstPL(fmt.Sprintf(`%q:100`, alice), ""), want: eventauth.RulePowerCreatorInUsers},
		{num: "pl.4", desc: "additional creator in users rejected (MSC4289)", vers: "12", fresh: true,
			build: func(r *room) eventauth.Event {
				r.create.content = fmt.Sprintf(`{"additional_creators":[%q]}`, bob)
				r.setMember(alice, "join")
				return plEvent(r, alice, fmt.Sprintf(`{"users":{%q:0}}`, bob))
			}, want: eventauth.RulePowerCreatorInUsers},
		{num: "pl.4", desc: "creator in users rejected even after an earlier power levels event", vers: "12",
			build: func(r *room) eventauth.Event {
				return plEvent(r, alice, fmt.Sprintf(`{"users":{%q:100}}`, alice))
			}, want: eventauth.RulePowerCreatorInUsers},
	})
}

func TestCheckPowerLevelsChanges(t *testing.T) {
	runRuleCases(t, []ruleCase{
		{num: plAllow, desc: "unchanged power levels allowed", vers: "1-12",
			build: bobChanges(stdUsers, "", stdUsers, "")},
		{num: plTopNew, desc: "adding a level above the sender's rejected", vers: "1-12",
			build: bobChanges(stdUsers, "", stdUsers, `"ban":60`), want: eventauth.RulePowerTopNew},
		{num: plAllow, desc: "adding a level at the sender's allowed", vers: "1-12",
			build: bobChanges(stdUsers, "", stdUsers, `"ban":50`)},
		{num: plTopNew, desc: "raising users_default above the sender's rejected", vers: "1-12",
			build: bobChanges(stdUsers, `"users_default":0`, stdUsers, `"users_default":51`), want: eventauth.RulePowerTopNew},
		{num: plTopCur, desc: "lowering a level above the sender's rejected", vers: "1-12",
			build: bobChanges(stdUsers, `"kick":75`, stdUsers, `"kick":40`), want: eventauth.RulePowerTopCurrent},
		{num: plTopCur, desc: "removing a level above the sender's rejected", vers: "1-12",
			build: bobChanges(stdUsers, `"kick":75`, stdUsers, ""), want: eventauth.RulePowerTopCurrent},
		{num: plAllow, desc: "keeping a level above the sender's allowed", vers: "1-12",
			build: bobChanges(stdUsers, `"kick":75`, stdUsers, `"kick":75`)},
		{num: plAllow, desc: "string and integer of the same value are no change (v1-9)", vers: "1-9",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(stdUsers, `"kick":"75","events":{"m.room.power_levels":0}`))
				return plEvent(r, carol, r.adminPL(stdUsers, `"kick":75,"events":{"m.room.power_levels":0}`))
			}},
		{num: plAllow, desc: "truncated float and integer of the same value are no change (v1-5)", vers: "1-5",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(stdUsers, `"kick":75.9,"events":{"m.room.power_levels":0}`))
				return plEvent(r, carol, r.adminPL(stdUsers, `"kick":75,"events":{"m.room.power_levels":0}`))
			}},
		{num: plEventsCur, desc: "lowering an events entry above the sender's rejected", vers: "1-12",
			build: bobChanges(stdUsers, `"events":{"m.room.name":75}`, stdUsers, `"events":{"m.room.name":10}`),
			want:  eventauth.RulePowerEventsCurrent},
		{num: plEventsCur, desc: "removing an events entry above the sender's rejected", vers: "1-12",
			build: bobChanges(stdUsers, `"events":{"m.room.name":75}`, stdUsers, `"events":{}`),
			want:  eventauth.RulePowerEventsCurrent},
		{num: plAllow, desc: "keeping an events entry above the sender's allowed", vers: "1-12",
			build: bobChanges(stdUsers, `"events":{"m.room.name":75}`, stdUsers, `"events":{"m.room.name":75,"m.room.topic":10}`)},
		{num: plEventsNew, desc: "adding an events entry above the sender's rejected", vers: "1-12",
			build: bobChanges(stdUsers, "", stdUsers, `"events":{"m.room.topic":60}`),
			want:  eventauth.RulePowerEventsNew},
		{num: plEventsCur, desc: "lowering notifications.room above the sender's rejected from v6", vers: "6-",
			build: bobChanges(stdUsers, `"notifications":{"room":75}`, stdUsers, `"notifications":{"room":10}`),
			want:  eventauth.RulePowerEventsCurrent},
		{num: plEventsNew, desc: "adding notifications above the sender's rejected from v6", vers: "6-",
			build: bobChanges(stdUsers, "", stdUsers, `"notifications":{"room":60}`),
			want:  eventauth.RulePowerEventsNew},
		{num: plAllow, desc: "notifications are not checked before v6", vers: "1-5",
			build: bobChanges(stdUsers, `"notifications":{"room":75}`, stdUsers, `"notifications":{"room":10,"x":99}`)},
		{num: plUsersCur, desc: "demoting a user at the sender's level rejected", vers: "1-12",
			build: bobChanges(fmt.Sprintf(`%q:50,%q:50`, bob, carol), "", fmt.Sprintf(`%q:50,%q:0`, bob, carol), ""),
			want:  eventauth.RulePowerUsersCurrent},
		{num: plUsersCur, desc: "removing a user at the sender's level rejected", vers: "1-12",
			build: bobChanges(fmt.Sprintf(`%q:50,%q:50`, bob, carol), "", fmt.Sprintf(`%q:50`, bob), ""),
			want:  eventauth.RulePowerUsersCurrent},
		{num: plAllow, desc: "demoting a user below the sender allowed", vers: "1-12",
			build: bobChanges(fmt.Sprintf(`%q:50,%q:10`, bob, dave), "", fmt.Sprintf(`%q:50,%q:0`, bob, dave), "")},
		{num: plAllow, desc: "removing a user below the sender allowed", vers: "1-12",
			build: bobChanges(fmt.Sprintf(`%q:50,%q:10`, bob, dave), "", fmt.Sprintf(`%q:50`, bob), "")},
		{num: plAllow, desc: "demoting oneself allowed", vers: "1-12",
			build: bobChanges(stdUsers, "", fmt.Sprintf(`%q:0,%q:0`, bob, carol), "")},
		{num: plUsersNew, desc: "promoting a user above the sender rejected", vers: "1-12",
			build: bobChanges(stdUsers, "", fmt.Sprintf(`%q:50,%q:51`, bob, carol), ""),
			want:  eventauth.RulePowerUsersNew},
		{num: plUsersNew, desc: "promoting oneself rejected", vers: "1-12",
			build: bobChanges(stdUsers, "", fmt.Sprintf(`%q:51,%q:0`, bob, carol), ""),
			want:  eventauth.RulePowerUsersNew},
		{num: plAllow, desc: "promoting a user to the sender's level allowed", vers: "1-12",
			build: bobChanges(stdUsers, "", fmt.Sprintf(`%q:50,%q:50,%q:50`, bob, carol, mallory), "")},
		{num: plUsersCur, desc: "changing the creator's entry rejected", vers: "1-11",
			build: func(r *room) eventauth.Event {
				return plEvent(r, bob, fmt.Sprintf(`{"users":{%q:0,%q:50,%q:0}}`, alice, bob, carol))
			}, want: eventauth.RulePowerUsersCurrent},
		{num: plUsersCur, desc: "a user at 100 cannot demote another at 100 before v12", vers: "1-11",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:100`, bob), ""))
				return plEvent(r, alice, r.adminPL(fmt.Sprintf(`%q:0`, bob), ""))
			}, want: eventauth.RulePowerUsersCurrent},
		{num: plAllow, desc: "the creator demotes a user at 100 (MSC4289)", vers: "12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(fmt.Sprintf(`%q:100`, bob), ""))
				return plEvent(r, alice, r.adminPL(fmt.Sprintf(`%q:0`, bob), ""))
			}},
		{num: plAllow, desc: "the creator sets any level (MSC4289)", vers: "12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(stdUsers, `"ban":9007199254740991`))
				return plEvent(r, alice, r.adminPL(fmt.Sprintf(`%q:9007199254740991`, carol), `"ban":0,"events":{"m.room.name":9007199254740991}`))
			}},
		{num: "level", desc: "power levels need their own events level first", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.powerLevels(r.adminPL(stdUsers, `"events":{"m.room.power_levels":100}`))
				return plEvent(r, bob, r.adminPL(stdUsers, `"events":{"m.room.power_levels":100}`))
			}, want: eventauth.RuleEventLevel},
	})
}

func TestPowerLevels(t *testing.T) {
	creatorOnly := func(n int) *room { return newRoom(n, alice, "") }
	withPL := func(n int, content string) *room {
		r := newRoom(n, alice, "")
		r.powerLevels(content)
		return r
	}
	pls := func(t *testing.T, r *room) *eventauth.PowerLevels {
		t.Helper()
		p, err := eventauth.NewPowerLevels(r.version, r.create, r.lookup()("m.room.power_levels", ""))
		if err != nil {
			t.Fatalf("NewPowerLevels(%s) = %v", r.version, err)
		}
		return p
	}
	type want struct {
		user                      id.UserID
		userLevel                 int64
		state, message            int64
		invite, kick, ban, redact int64
	}
	tests := []struct {
		name  string
		vers  string
		room  func(n int) *room
		wants []want
	}{
		{"no power levels: creator 100, others 0", "1-11", creatorOnly, []want{
			{alice, 100, 50, 0, 0, 50, 50, 50}, {bob, 0, 50, 0, 0, 50, 50, 50}}},
		{"no power levels: creator infinite, others 0", "12", creatorOnly, []want{
			{alice, eventauth.InfiniteLevel, 50, 0, 0, 50, 50, 50}, {bob, 0, 50, 0, 0, 50, 50, 50}}},
		{"empty power levels: creator has users_default up to v11", "1-11", func(n int) *room { return withPL(n, `{}`) }, []want{
			{alice, 0, 50, 0, 0, 50, 50, 50}}},
		{"empty power levels: creator still infinite in v12", "12", func(n int) *room { return withPL(n, `{}`) }, []want{
			{alice, eventauth.InfiniteLevel, 50, 0, 0, 50, 50, 50}}},
		{"explicit levels", "1-12", func(n int) *room {
			return withPL(n, fmt.Sprintf(`{"users":{%q:42},"users_default":7,"state_default":20,"events_default":3,"invite":4,"kick":5,"ban":6,"redact":8,"events":{"m.room.message":9}}`, bob))
		}, []want{{bob, 42, 20, 9, 4, 5, 6, 8}, {carol, 7, 20, 9, 4, 5, 6, 8}}},
		{"strings read up to v9", "1-9", func(n int) *room {
			return withPL(n, fmt.Sprintf(`{"users":{%q:" 0042 "},"state_default":"-20","invite":"+4","kick":"x"}`, bob))
		}, []want{{bob, 42, -20, 0, 4, 50, 50, 50}}},
		{"strings ignored from v10", "10-", func(n int) *room {
			return withPL(n, fmt.Sprintf(`{"users":{%q:"42"},"state_default":"20","invite":"4"}`, bob))
		}, []want{{bob, 0, 50, 0, 0, 50, 50, 50}}},
		{"floats truncated up to v5", "1-5", func(n int) *room {
			return withPL(n, fmt.Sprintf(`{"users":{%q:42.9},"state_default":-20.5,"invite":4.2e1}`, bob))
		}, []want{{bob, 42, -20, 0, 42, 50, 50, 50}}},
		{"non-integral floats ignored from v6", "6-", func(n int) *room {
			return withPL(n, fmt.Sprintf(`{"users":{%q:42.9},"state_default":-20.5,"invite":4.2e1}`, bob))
		}, []want{{bob, 0, 50, 0, 42, 50, 50, 50}}},
	}
	for _, tt := range tests {
		lo, hi := versions(tt.vers)
		for n := lo; n <= hi; n++ {
			t.Run(fmt.Sprintf("v%d/%s", n, tt.name), func(t *testing.T) {
				p := pls(t, tt.room(n))
				for _, w := range tt.wants {
					if got := p.UserLevel(w.user); got != w.userLevel {
						t.Errorf("UserLevel(%s) = %d, want %d", w.user, got, w.userLevel)
					}
					if got := p.EventLevel("m.room.topic", true); got != w.state {
						t.Errorf("EventLevel(m.room.topic, state) = %d, want %d", got, w.state)
					}
					if got := p.EventLevel("m.room.message", false); got != w.message {
						t.Errorf("EventLevel(m.room.message) = %d, want %d", got, w.message)
					}
					for _, l := range []struct {
						name      string
						got, want int64
					}{{"Invite", p.Invite(), w.invite}, {"Kick", p.Kick(), w.kick}, {"Ban", p.Ban(), w.ban}, {"Redact", p.Redact(), w.redact}} {
						if l.got != l.want {
							t.Errorf("%s() = %d, want %d", l.name, l.got, l.want)
						}
					}
				}
			})
		}
	}
}

func TestPowerLevelsNotifications(t *testing.T) {
	r := newRoom(11, alice, "")
	p, err := eventauth.NewPowerLevels(r.version, r.create, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := p.NotificationLevel("room"); l != 50 || !ok {
		t.Errorf("NotificationLevel(room) without power levels = %d, %v, want 50, true", l, ok)
	}
	if _, ok := p.NotificationLevel("other"); ok {
		t.Errorf("NotificationLevel(other) ok = true, want false")
	}
	if p.Exists() {
		t.Errorf("Exists() = true without power levels")
	}
	r.powerLevels(`{"notifications":{"room":10,"other":20}}`)
	p, _ = eventauth.NewPowerLevels(r.version, r.create, r.lookup()("m.room.power_levels", ""))
	if l, ok := p.NotificationLevel("room"); l != 10 || !ok {
		t.Errorf("NotificationLevel(room) = %d, %v, want 10, true", l, ok)
	}
	if l, ok := p.NotificationLevel("other"); l != 20 || !ok {
		t.Errorf("NotificationLevel(other) = %d, %v, want 20, true", l, ok)
	}
	if !p.Exists() {
		t.Errorf("Exists() = false with power levels")
	}
}

func TestCreators(t *testing.T) {
	tests := []struct {
		n       int
		content string
		want    []id.UserID
	}{
		{1, fmt.Sprintf(`{"creator":%q}`, bob), []id.UserID{bob}},
		{10, fmt.Sprintf(`{"creator":%q}`, bob), []id.UserID{bob}},
		{10, `{"creator":5}`, nil},
		{11, fmt.Sprintf(`{"creator":%q}`, bob), []id.UserID{alice}},
		{12, fmt.Sprintf(`{"additional_creators":[%q,%q,%q]}`, bob, alice, bob), []id.UserID{alice, bob}},
		{12, `{}`, []id.UserID{alice}},
	}
	for _, tt := range tests {
		r := newRoom(tt.n, alice, "")
		r.create.content = tt.content
		got, err := eventauth.Creators(r.version, r.create)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Creators(v%d, %s) = %v, %v, want %v", tt.n, tt.content, got, err, tt.want)
		}
		p, _ := eventauth.NewPowerLevels(r.version, r.create, nil)
		for _, u := range tt.want {
			if got := p.IsCreator(u); got != (tt.n >= 12) {
				t.Errorf("v%d IsCreator(%s) = %v, want %v", tt.n, u, got, tt.n >= 12)
			}
		}
	}
	if _, err := eventauth.Creators("99", newRoom(1, alice, "").create); !errors.Is(err, eventauth.ErrUnknownVersion) {
		t.Errorf("Creators(99) error = %v, want ErrUnknownVersion", err)
	}
	if _, err := eventauth.NewPowerLevels("99", newRoom(1, alice, "").create, nil); !errors.Is(err, eventauth.ErrUnknownVersion) {
		t.Errorf("NewPowerLevels(99) error = %v, want ErrUnknownVersion", err)
	}
	if _, err := eventauth.NewPowerLevels("1", nil, nil); err == nil {
		t.Errorf("NewPowerLevels without create = nil error")
	}
}

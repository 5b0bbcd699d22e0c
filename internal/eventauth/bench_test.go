package eventauth_test

import (
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

// bigRoom is a v-n room with 10,000 joined members, 100 of whom have a
// power level entry, and a knock_restricted (v10+) or public join rule.
func bigRoom(b *testing.B, n int) *room {
	b.Helper()
	r := newRoom(n, alice, "")
	r.setMember(alice, "join")
	users := ""
	for i := range 100 {
		if i > 0 {
			users += ","
		}
		users += fmt.Sprintf(`"@user%d:s%d.example":%d`, i, i%50, i%100)
	}
	r.powerLevels(r.adminPL(users, `"events":{"m.room.name":50,"m.room.power_levels":100},"notifications":{"room":50}`))
	if n >= 10 {
		r.joinRule("knock_restricted")
	} else {
		r.joinRule("public")
	}
	for i := range 10000 {
		u := id.UserID(fmt.Sprintf("@user%d:s%d.example", i, i%50))
		r.set(r.member(u, u, "join"))
	}
	return r
}

// BenchmarkCheckJoin10kMembers authorizes events against the state of a room
// with 10,000 members; the Lookup is a map lookup.
func BenchmarkCheckJoin10kMembers(b *testing.B) {
	for _, n := range []int{1, 10, 12} {
		r := bigRoom(b, n)
		// Freeze the state so that Content does not copy a string each
		// call, as a parsed event would not.
		state := make(map[eventauth.StateKeyTuple]eventauth.Event, len(r.state))
		for k, ev := range r.state {
			state[k] = frozen{ev, []byte(ev.content)}
		}
		lookup := func(t, sk string) eventauth.Event { return state[eventauth.StateKeyTuple{Type: t, StateKey: sk}] }
		events := []struct {
			name string
			ev   eventauth.Event
		}{
			{"message", freeze(r.message("@user42:s42.example"))},
			{"join", func() eventauth.Event {
				if n >= 10 {
					return freeze(restrictedJoin(r, "@user99:s49.example", true))
				}
				return freeze(r.member(mallory, mallory, "join"))
			}()},
			{"kick", freeze(r.member("@user99:s49.example", "@user1:s1.example", "leave"))},
		}
		for _, e := range events {
			if err := eventauth.Check(r.version, e.ev, lookup); err != nil {
				b.Fatalf("v%d %s: Check = %v, want nil", n, e.name, err)
			}
			b.Run(fmt.Sprintf("v%d/%s", n, e.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := eventauth.Check(r.version, e.ev, lookup); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// frozen is a fakeEvent whose content bytes are made once.
type frozen struct {
	*fakeEvent
	content []byte
}

func (f frozen) Content() []byte { return f.content }

func freeze(ev *fakeEvent) frozen { return frozen{ev, []byte(ev.content)} }

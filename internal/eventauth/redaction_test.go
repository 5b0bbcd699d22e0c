package eventauth_test

import (
	"errors"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

func TestRedactionApplies(t *testing.T) {
	tests := []struct {
		desc   string
		vers   string
		sender id.UserID // of the redaction
		target func(r *room) *fakeEvent
		mutate func(red *fakeEvent)
		want   bool
	}{
		{"redact level: any event", "1-12", bob, func(r *room) *fakeEvent { return r.message(carol) }, nil, true},
		{"below the redact level: own event", "3-", carol, func(r *room) *fakeEvent { return r.message(carol) }, nil, true},
		{"below the redact level: event of another user on the same server", "3-", dave, func(r *room) *fakeEvent {
			r.setMember(dave, "join")
			return r.message(alice)
		}, nil, true},
		{"below the redact level: event from another server", "3-", carol, func(r *room) *fakeEvent { return r.message(bob) }, nil, false},
		{"v1-2: event ID of the redaction's domain", "1-2", carol, func(r *room) *fakeEvent { return r.message(carol) }, nil, true},
		{"v1-2: event ID of another domain", "1-2", carol, func(r *room) *fakeEvent { return r.message(bob) }, nil, false},
		{"redaction of another event", "1-12", bob, func(r *room) *fakeEvent { return r.message(carol) },
			func(red *fakeEvent) { red.redacts = "$other:a.example" }, false},
		{"target in another room", "1-12", bob, func(r *room) *fakeEvent {
			ev := r.message(carol)
			ev.room = "!elsewhere:a.example"
			return ev
		}, nil, false},
	}
	for _, tt := range tests {
		lo, hi := versions(tt.vers)
		for n := lo; n <= hi; n++ {
			t.Run(fmt.Sprintf("v%d/%s", n, tt.desc), func(t *testing.T) {
				r := std(n)
				target := tt.target(r)
				red := r.event("m.room.redaction", tt.sender, nil, fmt.Sprintf(`{"redacts":%q}`, target.id))
				red.redacts = target.id
				if tt.mutate != nil {
					tt.mutate(red)
				}
				pl, err := eventauth.NewPowerLevels(r.version, r.create, r.lookup()("m.room.power_levels", ""))
				if err != nil {
					t.Fatal(err)
				}
				got, err := eventauth.RedactionApplies(r.version, red, target, pl)
				if err != nil || got != tt.want {
					t.Errorf("RedactionApplies = %v, %v, want %v", got, err, tt.want)
				}
			})
		}
	}
	r := std(11)
	pl, _ := eventauth.NewPowerLevels(r.version, r.create, nil)
	if _, err := eventauth.RedactionApplies("0", r.message(bob), r.message(bob), pl); !errors.Is(err, eventauth.ErrUnknownVersion) {
		t.Errorf("RedactionApplies(0) error = %v, want ErrUnknownVersion", err)
	}
}

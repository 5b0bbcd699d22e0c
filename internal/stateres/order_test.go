package stateres_test

import (
	"context"
	"math"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/stateres"
)

const (
	alice id.UserID = "@alice:x"
	bob   id.UserID = "@bob:x"
	carol id.UserID = "@carol:x"
	dave  id.UserID = "@dave:x"
)

// levelsRoom starts a v11 room whose power levels (PL) give alice 100, bob
// 50, carol 50 and dave 0 (the default). Test events cite CREATE and PL.
func levelsRoom(t *testing.T) *builder {
	b := newBuilder(t, "11")
	b.add("CREATE", "m.room.create", "", alice, `{"room_version":"11"}`)
	b.add("PL", "m.room.power_levels", "", alice, `{"users":{"@alice:x":100,"@bob:x":50,"@carol:x":50}}`, "CREATE")
	return b
}

// TestReverseTopologicalPowerOrder checks the reverse topological power
// ordering of state resolution v2 (rooms/v2.md "Definitions") alone, on
// small graphs: Kahn's algorithm over the auth DAG, taking the smallest
// free event by sender power level (greater first), then origin_server_ts,
// then event_id.
func TestReverseTopologicalPowerOrder(t *testing.T) {
	tests := []struct {
		name  string
		build func(b *builder)
		sort  []string
		want  []string
	}{
		{
			name: "auth events come first whatever the power",
			build: func(b *builder) {
				b.add("A", "m.room.topic", "", dave, `{}`, "CREATE", "PL")
				b.add("B", "m.room.topic", "", bob, `{}`, "CREATE", "PL", "A")
				b.add("C", "m.room.topic", "", alice, `{}`, "CREATE", "PL", "B")
			},
			sort: []string{"C", "B", "A"},
			want: []string{"A", "B", "C"},
		},
		{
			name: "greater sender power level first",
			build: func(b *builder) {
				b.add("D0", "m.room.topic", "", dave, `{}`, "CREATE", "PL")
				b.add("B50", "m.room.topic", "", bob, `{}`, "CREATE", "PL")
				b.add("A100", "m.room.topic", "", alice, `{}`, "CREATE", "PL")
			},
			sort: []string{"D0", "B50", "A100"},
			want: []string{"A100", "B50", "D0"},
		},
		{
			name: "same power level: smaller origin_server_ts first",
			build: func(b *builder) {
				b.add("LATE", "m.room.topic", "", bob, `{}`, "CREATE", "PL").ts = 20
				b.add("EARLY", "m.room.topic", "", carol, `{}`, "CREATE", "PL").ts = 10
			},
			sort: []string{"LATE", "EARLY"},
			want: []string{"EARLY", "LATE"},
		},
		{
			name: "same power level and ts: smaller event_id first",
			build: func(b *builder) {
				b.add("Y", "m.room.topic", "", bob, `{}`, "CREATE", "PL").ts = 10
				b.add("X", "m.room.topic", "", carol, `{}`, "CREATE", "PL").ts = 10
			},
			sort: []string{"Y", "X"},
			want: []string{"X", "Y"},
		},
		{
			name: "lexicographically smallest: a free event beats one still waiting",
			build: func(b *builder) {
				b.add("A", "m.room.topic", "", dave, `{}`, "CREATE", "PL")
				b.add("B", "m.room.topic", "", alice, `{}`, "CREATE", "PL", "A")
				b.add("C", "m.room.topic", "", bob, `{}`, "CREATE", "PL")
			},
			// Free at first: A (0) and C (50): C. Then A, which frees B.
			sort: []string{"A", "B", "C"},
			want: []string{"C", "A", "B"},
		},
		{
			name: "path through an event outside the set orders the set",
			build: func(b *builder) {
				b.add("A", "m.room.topic", "", dave, `{}`, "CREATE", "PL")
				b.add("OUT", "m.room.topic", "", dave, `{}`, "CREATE", "PL", "A")
				b.add("C", "m.room.topic", "", alice, `{}`, "CREATE", "PL", "OUT")
			},
			// C has the greater power but A is in its auth chain.
			sort: []string{"C", "A"},
			want: []string{"A", "C"},
		},
		{
			name: "sender level read from each event's own power levels",
			build: func(b *builder) {
				b.add("PL2", "m.room.power_levels", "", alice, `{"users":{"@alice:x":100,"@dave:x":90}}`, "CREATE", "PL")
				b.add("D90", "m.room.topic", "", dave, `{}`, "CREATE", "PL2").ts = 30
				b.add("B50", "m.room.topic", "", bob, `{}`, "CREATE", "PL").ts = 10
			},
			// By PL2, bob has the default 0 but his event cites PL (50);
			// dave has 90 by PL2.
			sort: []string{"B50", "D90"},
			want: []string{"D90", "B50"},
		},
		{
			name: "no power levels in the auth events: the creator has 100",
			build: func(b *builder) {
				b.add("BYALICE", "m.room.topic", "", alice, `{}`, "CREATE").ts = 30
				b.add("BYBOB", "m.room.topic", "", bob, `{}`, "CREATE", "PL").ts = 10
			},
			sort: []string{"BYBOB", "BYALICE"},
			want: []string{"BYALICE", "BYBOB"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := levelsRoom(t)
			tt.build(b)
			got, err := stateres.ReverseTopologicalPowerOrder(context.Background(), b.resolver(allowAll), b.version, b.ids(tt.sort...))
			if err != nil {
				t.Fatalf("ReverseTopologicalPowerOrder: %v", err)
			}
			if !slices.Equal(names(got), tt.want) {
				t.Errorf("ReverseTopologicalPowerOrder(%v) = %v, want %v", tt.sort, names(got), tt.want)
			}
		})
	}
}

// TestReverseTopologicalPowerOrderCycle checks that auth events forming a
// cycle (possible only with chosen event IDs) are an error, not a loop.
func TestReverseTopologicalPowerOrderCycle(t *testing.T) {
	b := levelsRoom(t)
	a := b.add("A", "m.room.topic", "", bob, `{}`, "CREATE", "PL")
	b.add("B", "m.room.topic", "", bob, `{}`, "CREATE", "PL", "A")
	a.auth = append(a.auth, eventID("B"))
	_, err := stateres.ReverseTopologicalPowerOrder(context.Background(), b.resolver(allowAll), b.version, b.ids("A", "B"))
	if err == nil {
		t.Errorf("ReverseTopologicalPowerOrder(cycle) = nil error, want one")
	}
}

// TestSenderLevel checks the power level of an event's sender as the
// reverse topological power ordering reads it: from the power levels and
// create events among its auth events (from v12 the create event of the
// room ID, and creators are infinite).
func TestSenderLevel(t *testing.T) {
	tests := []struct {
		name    string
		version id.RoomVersion
		create  string
		pl      string // "" for none
		sender  id.UserID
		want    int64
	}{
		{"users entry", "11", `{}`, `{"users":{"@bob:x":42}}`, bob, 42},
		{"users_default", "11", `{}`, `{"users_default":7}`, bob, 7},
		{"string level in v1-9", "9", `{"creator":"@alice:x"}`, `{"users":{"@bob:x":" +042 "}}`, bob, 42},
		{"float level in v1-5", "5", `{"creator":"@alice:x"}`, `{"users":{"@bob:x":50.9}}`, bob, 50},
		{"no power levels: creator from content before v11", "10", `{"creator":"@alice:x"}`, "", alice, 100},
		{"no power levels: creator is the sender from v11", "11", `{}`, "", alice, 100},
		{"no power levels: others 0", "11", `{}`, "", bob, 0},
		{"v12 creator is infinite", "12", `{"room_version":"12"}`, `{"users":{"@bob:x":100}}`, alice, math.MaxInt64},
		{"v12 additional creator is infinite", "12", `{"room_version":"12","additional_creators":["@carol:x"]}`, `{}`, carol, math.MaxInt64},
		{"v12 others from power levels", "12", `{"room_version":"12"}`, `{"users":{"@bob:x":100}}`, bob, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBuilder(t, tt.version)
			b.add("CREATE", "m.room.create", "", alice, tt.create)
			auth := []string{"CREATE"}
			if tt.version.RoomIDIsCreateEventID() {
				auth = nil // v12: the room ID names it
			}
			if tt.pl != "" {
				b.add("PL", "m.room.power_levels", "", alice, tt.pl, auth...)
				auth = append(auth, "PL")
			}
			b.add("EV", "m.room.topic", "", tt.sender, `{}`, auth...)
			got, err := stateres.SenderLevel(context.Background(), b.resolver(allowAll), tt.version, eventID("EV"))
			if err != nil {
				t.Fatalf("SenderLevel: %v", err)
			}
			if got != tt.want {
				t.Errorf("SenderLevel = %d, want %d", got, tt.want)
			}
		})
	}
}

// mainlineRoom builds P1 <- P2 <- P3 (each power levels event citing the
// previous), and Q, a power levels event off the mainline citing P2.
func mainlineRoom(t *testing.T) *builder {
	b := newBuilder(t, "11")
	b.add("CREATE", "m.room.create", "", alice, `{}`)
	b.add("P1", "m.room.power_levels", "", alice, `{}`, "CREATE")
	b.add("P2", "m.room.power_levels", "", alice, `{}`, "CREATE", "P1")
	b.add("P3", "m.room.power_levels", "", alice, `{}`, "CREATE", "P2")
	b.add("Q", "m.room.power_levels", "", alice, `{}`, "CREATE", "P2")
	return b
}

// TestMainlineOrder checks the mainline ordering of state resolution v2
// (rooms/v2.md "Mainline ordering") alone: greater mainline position first,
// then origin_server_ts, then event_id.
func TestMainlineOrder(t *testing.T) {
	tests := []struct {
		name         string
		pl           string
		build        func(b *builder)
		sort         []string
		want         []string
		wantMainline []string
	}{
		{
			name: "earlier power levels epoch first, whatever the ts",
			pl:   "P3",
			build: func(b *builder) {
				b.add("AT_P3", "m.room.topic", "", alice, `{}`, "CREATE", "P3").ts = 1
				b.add("AT_P1", "m.room.topic", "", alice, `{}`, "CREATE", "P1").ts = 2
				b.add("AT_P2", "m.room.topic", "", alice, `{}`, "CREATE", "P2").ts = 3
			},
			sort:         []string{"AT_P3", "AT_P1", "AT_P2"},
			want:         []string{"AT_P1", "AT_P2", "AT_P3"},
			wantMainline: []string{"P3", "P2", "P1"},
		},
		{
			name: "power levels off the mainline: position of the first mainline event below",
			pl:   "P3",
			build: func(b *builder) {
				b.add("AT_Q", "m.room.topic", "", alice, `{}`, "CREATE", "Q").ts = 1 // Q -> P2: position 1
				b.add("AT_P2", "m.room.topic", "", alice, `{}`, "CREATE", "P2").ts = 2
				b.add("AT_P1", "m.room.topic", "", alice, `{}`, "CREATE", "P1").ts = 3
			},
			sort:         []string{"AT_P2", "AT_P1", "AT_Q"},
			want:         []string{"AT_P1", "AT_Q", "AT_P2"},
			wantMainline: []string{"P3", "P2", "P1"},
		},
		{
			name: "no power levels in the auth events: position infinity, first",
			pl:   "P2",
			build: func(b *builder) {
				b.add("AT_P2", "m.room.topic", "", alice, `{}`, "CREATE", "P2").ts = 1
				b.add("NONE", "m.room.topic", "", alice, `{}`, "CREATE").ts = 2
			},
			sort:         []string{"AT_P2", "NONE"},
			want:         []string{"NONE", "AT_P2"},
			wantMainline: []string{"P2", "P1"},
		},
		{
			name: "the event itself is not in its chain: e1 is the first",
			pl:   "P3",
			build: func(b *builder) {
				// P2 is on the mainline (position 1), but its position
				// is that of P1, the power levels among its auth events.
				b.add("AT_P2", "m.room.topic", "", alice, `{}`, "CREATE", "P2").ts = 1
			},
			sort:         []string{"AT_P2", "P2"},
			want:         []string{"P2", "AT_P2"},
			wantMainline: []string{"P3", "P2", "P1"},
		},
		{
			name: "same position: ts, then event_id",
			pl:   "P3",
			build: func(b *builder) {
				b.add("B", "m.room.topic", "", alice, `{}`, "CREATE", "P3").ts = 5
				b.add("A", "m.room.topic", "", alice, `{}`, "CREATE", "P3").ts = 5
				b.add("C", "m.room.topic", "", alice, `{}`, "CREATE", "P3").ts = 4
			},
			sort:         []string{"A", "B", "C"},
			want:         []string{"C", "A", "B"},
			wantMainline: []string{"P3", "P2", "P1"},
		},
		{
			name: "no power levels event: empty mainline, every position infinity",
			pl:   "",
			build: func(b *builder) {
				b.add("AT_P1", "m.room.topic", "", alice, `{}`, "CREATE", "P1").ts = 9
				b.add("AT_P3", "m.room.topic", "", alice, `{}`, "CREATE", "P3").ts = 8
			},
			sort:         []string{"AT_P1", "AT_P3"},
			want:         []string{"AT_P3", "AT_P1"},
			wantMainline: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mainlineRoom(t)
			tt.build(b)
			var pl id.EventID
			if tt.pl != "" {
				pl = eventID(tt.pl)
			}
			got, line, err := stateres.MainlineOrder(context.Background(), b.resolver(allowAll), b.version, pl, b.ids(tt.sort...))
			if err != nil {
				t.Fatalf("MainlineOrder: %v", err)
			}
			if !slices.Equal(names(got), tt.want) {
				t.Errorf("MainlineOrder(%s, %v) = %v, want %v", tt.pl, tt.sort, names(got), tt.want)
			}
			if !slices.Equal(names(line), tt.wantMainline) {
				t.Errorf("MainlineOrder(%s) mainline = %v, want %v", tt.pl, names(line), tt.wantMainline)
			}
		})
	}
}

// TestPowerSet checks X of step 1 of state resolution v2: the power events
// of the full conflicted set and the events of their auth chains in it,
// even through events outside it.
func TestPowerSet(t *testing.T) {
	b := levelsRoom(t)
	b.add("JOIN_D", "m.room.member", string(dave), dave, `{"membership":"join"}`, "CREATE", "PL")
	b.add("OUT", "m.room.member", string(dave), dave, `{"membership":"join","displayname":"D"}`, "CREATE", "PL", "JOIN_D")
	b.add("KICK_D", "m.room.member", string(dave), alice, `{"membership":"leave"}`, "CREATE", "PL", "OUT")
	b.add("TOPIC", "m.room.topic", "", alice, `{}`, "CREATE", "PL")
	b.add("LEAVE_B", "m.room.member", string(bob), bob, `{"membership":"leave"}`, "CREATE", "PL")
	// KICK_D is a power event; JOIN_D is in its auth chain through OUT,
	// which is not in the set. TOPIC and LEAVE_B (bob leaving by himself)
	// are not power events.
	got, err := stateres.PowerSet(context.Background(), b.resolver(allowAll), b.version, b.ids("KICK_D", "JOIN_D", "TOPIC", "LEAVE_B"))
	if err != nil {
		t.Fatalf("PowerSet: %v", err)
	}
	if want := []string{"JOIN_D", "KICK_D"}; !slices.Equal(sortedNames(got), want) {
		t.Errorf("PowerSet = %v, want %v", sortedNames(got), want)
	}
}

// TestIsPowerEvent checks the definition of power events (rooms/v2.md).
func TestIsPowerEvent(t *testing.T) {
	tests := []struct {
		name    string
		typ, sk string
		sender  id.UserID
		content string
		want    bool
	}{
		{"power levels", "m.room.power_levels", "", alice, `{}`, true},
		{"join rules", "m.room.join_rules", "", alice, `{"join_rule":"invite"}`, true},
		{"kick", "m.room.member", "@bob:x", alice, `{"membership":"leave"}`, true},
		{"ban", "m.room.member", "@bob:x", alice, `{"membership":"ban"}`, true},
		{"leave by oneself", "m.room.member", "@bob:x", bob, `{"membership":"leave"}`, false},
		{"ban of oneself", "m.room.member", "@bob:x", bob, `{"membership":"ban"}`, false},
		{"invite", "m.room.member", "@bob:x", alice, `{"membership":"invite"}`, false},
		{"membership not a string", "m.room.member", "@bob:x", alice, `{"membership":["ban"]}`, false},
		{"create", "m.room.create", "", alice, `{}`, false},
		{"topic", "m.room.topic", "", alice, `{}`, false},
		{"message event", "m.room.power_levels", "-", alice, `{}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &fakeEvent{id: "$E", typ: tt.typ, sender: tt.sender, content: []byte(tt.content)}
			if tt.sk != "-" {
				ev.sk = ptr(tt.sk)
			}
			if got := stateres.IsPowerEvent(ev); got != tt.want {
				t.Errorf("IsPowerEvent(%s %q by %s, %s) = %v, want %v", tt.typ, tt.sk, tt.sender, tt.content, got, tt.want)
			}
		})
	}
}

package client_test

import (
	"net/url"
	"slices"
	"testing"

	"polder.dev/polder/internal/hstest"
)

// searchAnswer is a POST /search answer.
type searchAnswer struct {
	SearchCategories struct {
		RoomEvents *struct {
			Count      *int     `json:"count"`
			Highlights []string `json:"highlights"`
			Results    []struct {
				Rank    *float64 `json:"rank"`
				Result  ev       `json:"result"`
				Context *struct {
					Start        string                    `json:"start"`
					End          string                    `json:"end"`
					ProfileInfo  map[string]map[string]any `json:"profile_info"`
					EventsBefore []ev                      `json:"events_before"`
					EventsAfter  []ev                      `json:"events_after"`
				} `json:"context"`
			} `json:"results"`
			State  map[string][]ev `json:"state"`
			Groups map[string]map[string]struct {
				NextBatch string   `json:"next_batch"`
				Order     int      `json:"order"`
				Results   []string `json:"results"`
			} `json:"groups"`
			NextBatch string `json:"next_batch"`
		} `json:"room_events"`
	} `json:"search_categories"`
}

func (a searchAnswer) bodies() []string {
	var out []string
	for _, r := range a.SearchCategories.RoomEvents.Results {
		if b := r.Result.body(); b != "" {
			out = append(out, b)
		} else if n, ok := r.Result.Content["name"].(string); ok {
			out = append(out, "name:"+n)
		} else if tp, ok := r.Result.Content["topic"].(string); ok {
			out = append(out, "topic:"+tp)
		}
	}
	return out
}

// roomEvents is a search of room_events with the given criteria.
func roomEvents(criteria map[string]any) map[string]any {
	return map[string]any{"search_categories": map[string]any{"room_events": criteria}}
}

func doSearch(t *testing.T, c *hstest.Client, nextBatch string, criteria map[string]any) searchAnswer {
	t.Helper()
	path := c3 + "/search"
	if nextBatch != "" {
		path += "?next_batch=" + url.QueryEscape(nextBatch)
	}
	r := c.Do(t, "POST", path, roomEvents(criteria))
	hstest.MustOK(t, r)
	a := hstest.Decode[searchAnswer](t, r)
	re := a.SearchCategories.RoomEvents
	if re == nil || re.Count == nil || re.Highlights == nil || re.Results == nil {
		t.Fatalf("search answer %s lacks room_events' count, highlights or results", r.Body)
	}
	return a
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Server-side search (client-server API, "Server Side Search"): POST
// /search over room_events.
func TestSearch(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		eve := hs.Register(t, "eve", "pw")
		r1 := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Martians embassy", "topic": "Diplomacy with Mars"})
		join(t, bob, r1)
		r2 := createRoom(t, alice, map[string]any{"preset": "private_chat"})
		send(t, alice, r1, "m.room.message", msg("hello everyone"))
		m1 := send(t, alice, r1, "m.room.message", msg("The Martians are coming"))
		send(t, bob, r1, "m.room.message", msg("really?"))
		m2 := send(t, bob, r1, "m.room.message", msg("martians martians, MARTIANS everywhere"))
		send(t, alice, r1, "m.room.message", msg("calm down"))
		m3 := send(t, alice, r2, "m.room.message", map[string]any{"msgtype": "m.image", "body": "martians.png", "url": "mxc://x/y"})
		send(t, alice, r2, "m.room.message", msg("unrelated"))

		t.Run("basic", func(t *testing.T) {
			a := doSearch(t, alice, "", map[string]any{"search_term": "martians"})
			re := a.SearchCategories.RoomEvents
			if !sameSet(a.bodies(), []string{"The Martians are coming", "martians martians, MARTIANS everywhere", "martians.png", "name:Martians embassy"}) {
				t.Errorf("bodies = %q", a.bodies())
			}
			if *re.Count != 4 || re.NextBatch != "" {
				t.Errorf("count %d next %q, want 4 and none", *re.Count, re.NextBatch)
			}
			for i := 1; i < len(re.Results); i++ {
				if *re.Results[i].Rank > *re.Results[i-1].Rank {
					t.Errorf("results not by rank: %v before %v", *re.Results[i-1].Rank, *re.Results[i].Rank)
				}
			}
			if re.Results[0].Result.EventID != m2 {
				t.Errorf("first result = %s, want the message with three mentions %s", re.Results[0].Result.EventID, m2)
			}
			if r := re.Results[0].Result; r.Sender != bob.UserID || r.Type != "m.room.message" {
				t.Errorf("result event = %+v", r)
			}
			for _, w := range []string{"martians", "Martians", "MARTIANS"} {
				if !slices.Contains(re.Highlights, w) {
					t.Errorf("highlights %q lack %q", re.Highlights, w)
				}
			}
			// eve is in no room: nothing.
			if got := doSearch(t, eve, "", map[string]any{"search_term": "martians"}); len(got.bodies()) != 0 {
				t.Errorf("eve found %q", got.bodies())
			}
		})

		t.Run("keys and query syntax", func(t *testing.T) {
			for _, tc := range []struct {
				name     string
				criteria map[string]any
				want     []string
			}{
				{"names only", map[string]any{"search_term": "martian", "keys": []string{"content.name"}}, []string{"name:Martians embassy"}},
				{"topics only", map[string]any{"search_term": "mars", "keys": []string{"content.topic"}}, []string{"topic:Diplomacy with Mars"}},
				{"prefix", map[string]any{"search_term": "every"}, []string{"hello everyone", "martians martians, MARTIANS everywhere"}},
				{"all words", map[string]any{"search_term": "martians coming"}, []string{"The Martians are coming"}},
				{"phrase", map[string]any{"search_term": `"calm down"`}, []string{"calm down"}},
				{"phrase in the wrong order", map[string]any{"search_term": `"down calm"`}, nil},
				{"exclusion", map[string]any{"search_term": "martians -coming", "keys": []string{"content.body"}}, []string{"martians martians, MARTIANS everywhere", "martians.png"}},
				{"or", map[string]any{"search_term": "calm OR unrelated"}, []string{"calm down", "unrelated"}},
				{"nothing to find", map[string]any{"search_term": "   "}, nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					if got := doSearch(t, alice, "", tc.criteria).bodies(); !sameSet(got, tc.want) {
						t.Errorf("search %v = %q, want %q", tc.criteria, got, tc.want)
					}
				})
			}
		})

		t.Run("filters", func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				filter map[string]any
				want   []string
			}{
				{"rooms", map[string]any{"rooms": []string{r2}}, []string{"martians.png"}},
				{"not_rooms", map[string]any{"not_rooms": []string{r2}}, []string{"The Martians are coming", "martians martians, MARTIANS everywhere", "name:Martians embassy"}},
				{"senders", map[string]any{"senders": []string{bob.UserID}}, []string{"martians martians, MARTIANS everywhere"}},
				{"not_senders", map[string]any{"not_senders": []string{alice.UserID}}, []string{"martians martians, MARTIANS everywhere"}},
				{"types", map[string]any{"types": []string{"m.room.n*"}}, []string{"name:Martians embassy"}},
				{"not_types", map[string]any{"not_types": []string{"m.room.message"}}, []string{"name:Martians embassy"}},
				{"contains_url", map[string]any{"contains_url": true}, []string{"martians.png"}},
				{"no rooms", map[string]any{"rooms": []string{}}, nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					got := doSearch(t, alice, "", map[string]any{"search_term": "martians", "filter": tc.filter}).bodies()
					if !sameSet(got, tc.want) {
						t.Errorf("filter %v = %q, want %q", tc.filter, got, tc.want)
					}
				})
			}
		})

		t.Run("recent order and pages", func(t *testing.T) {
			crit := map[string]any{"search_term": "martians", "order_by": "recent", "keys": []string{"content.body"}, "filter": map[string]any{"limit": 2}}
			p1 := doSearch(t, alice, "", crit)
			re := p1.SearchCategories.RoomEvents
			if want := []string{"martians.png", "martians martians, MARTIANS everywhere"}; !slices.Equal(p1.bodies(), want) || re.NextBatch == "" || *re.Count != 3 {
				t.Fatalf("page 1 = %q next %q count %d, want %q, a next batch, 3", p1.bodies(), re.NextBatch, *re.Count, want)
			}
			p2 := doSearch(t, alice, re.NextBatch, crit)
			if want := []string{"The Martians are coming"}; !slices.Equal(p2.bodies(), want) || p2.SearchCategories.RoomEvents.NextBatch != "" {
				t.Errorf("page 2 = %q next %q, want %q and no next batch", p2.bodies(), p2.SearchCategories.RoomEvents.NextBatch, want)
			}
			// Rank order pages too.
			rank := map[string]any{"search_term": "martians", "filter": map[string]any{"limit": 3}}
			q1 := doSearch(t, alice, "", rank)
			q2 := doSearch(t, alice, q1.SearchCategories.RoomEvents.NextBatch, rank)
			all := append(q1.bodies(), q2.bodies()...)
			if len(q1.bodies()) != 3 || len(q2.bodies()) != 1 || !sameSet(all, doSearch(t, alice, "", map[string]any{"search_term": "martians"}).bodies()) {
				t.Errorf("rank pages = %q + %q", q1.bodies(), q2.bodies())
			}
			// A token of one order does not fit the other.
			r := alice.Do(t, "POST", c3+"/search?next_batch="+url.QueryEscape(re.NextBatch), roomEvents(rank))
			hstest.MustErr(t, r, 400, "M_INVALID_PARAM")
		})

		t.Run("context, profiles and state", func(t *testing.T) {
			a := doSearch(t, bob, "", map[string]any{"search_term": "coming", "include_state": true,
				"event_context": map[string]any{"before_limit": 1, "after_limit": 2, "include_profile": true}})
			re := a.SearchCategories.RoomEvents
			if len(re.Results) != 1 || re.Results[0].Result.EventID != m1 {
				t.Fatalf("results = %q, want %s", a.bodies(), m1)
			}
			ctx := re.Results[0].Context
			if ctx == nil {
				t.Fatal("no context")
			}
			if got := bodies(ctx.EventsBefore); !slices.Equal(got, []string{"hello everyone"}) {
				t.Errorf("events_before = %q", got)
			}
			if got := bodies(ctx.EventsAfter); !slices.Equal(got, []string{"really?", "martians martians, MARTIANS everywhere"}) {
				t.Errorf("events_after = %q", got)
			}
			if p := ctx.ProfileInfo[alice.UserID]; p["displayname"] != "alice" {
				t.Errorf("profile_info = %v, want alice's display name", ctx.ProfileInfo)
			}
			if _, ok := ctx.ProfileInfo[bob.UserID]; !ok {
				t.Errorf("profile_info = %v, want bob (sender of a context event) too", ctx.ProfileInfo)
			}
			// The start token pages back from the first event before.
			back := getPage(t, bob, r1, "dir=b", "limit=50", "from="+url.QueryEscape(ctx.Start))
			if len(back.Chunk) == 0 || slices.Contains(bodies(back.Chunk), "hello everyone") {
				t.Errorf("/messages back from start = %q, want the events before hello everyone", bodies(back.Chunk))
			}
			fwd := getPage(t, bob, r1, "dir=f", "limit=50", "from="+url.QueryEscape(ctx.End))
			if got := bodies(fwd.Chunk); !slices.Equal(got, []string{"calm down"}) {
				t.Errorf("/messages forward from end = %q, want calm down", got)
			}
			st := re.State[r1]
			if len(st) == 0 || !slices.ContainsFunc(st, func(e ev) bool { return e.Type == "m.room.create" }) {
				t.Errorf("state of %s = %d events, want the current state", r1, len(st))
			}
			if len(re.State) != 1 {
				t.Errorf("state for %d rooms, want 1", len(re.State))
			}
		})

		t.Run("groups", func(t *testing.T) {
			a := doSearch(t, alice, "", map[string]any{"search_term": "martians", "keys": []string{"content.body"},
				"groupings": map[string]any{"group_by": []any{map[string]any{"key": "room_id"}, map[string]any{"key": "sender"}}}})
			g := a.SearchCategories.RoomEvents.Groups
			if len(g["room_id"][r1].Results) != 2 || !slices.Equal(g["room_id"][r2].Results, []string{m3}) {
				t.Errorf("room groups = %+v", g["room_id"])
			}
			if len(g["sender"][alice.UserID].Results) != 2 || !slices.Equal(g["sender"][bob.UserID].Results, []string{m2}) {
				t.Errorf("sender groups = %+v", g["sender"])
			}
			// A group's next_batch stays in its group.
			p1 := doSearch(t, alice, "", map[string]any{"search_term": "martians", "keys": []string{"content.body"}, "order_by": "recent",
				"filter":    map[string]any{"limit": 1},
				"groupings": map[string]any{"group_by": []any{map[string]any{"key": "room_id"}}}})
			grp := p1.SearchCategories.RoomEvents.Groups["room_id"][r2]
			if grp.NextBatch == "" {
				t.Fatalf("group %s of page 1 has no next_batch: %+v", r2, p1.SearchCategories.RoomEvents.Groups)
			}
			p2 := doSearch(t, alice, grp.NextBatch, map[string]any{"search_term": "martians", "keys": []string{"content.body"}, "order_by": "recent",
				"filter": map[string]any{"limit": 1}})
			if len(p2.bodies()) != 0 {
				t.Errorf("more of group %s = %q, want nothing (its only match came first)", r2, p2.bodies())
			}
		})

		t.Run("history visibility", func(t *testing.T) {
			carol := hs.Register(t, "carol", "pw")
			r3 := createRoom(t, alice, map[string]any{"preset": "public_chat",
				"initial_state": []any{map[string]any{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": "joined"}}}})
			send(t, alice, r3, "m.room.message", msg("kiwi before carol"))
			join(t, carol, r3)
			send(t, alice, r3, "m.room.message", msg("kiwi with carol"))
			hstest.MustOK(t, carol.Do(t, "POST", roomPath(r3, "/leave"), nil))
			send(t, alice, r3, "m.room.message", msg("kiwi after carol"))
			if got := doSearch(t, carol, "", map[string]any{"search_term": "kiwi"}).bodies(); !slices.Equal(got, []string{"kiwi with carol"}) {
				t.Errorf("carol's search = %q, want only what she saw", got)
			}
			if got := doSearch(t, alice, "", map[string]any{"search_term": "kiwi"}).bodies(); len(got) != 3 {
				t.Errorf("alice's search = %q, want all 3", got)
			}
			// Forgotten rooms are not searched.
			hstest.MustOK(t, carol.Do(t, "POST", roomPath(r3, "/forget"), nil))
			if got := doSearch(t, carol, "", map[string]any{"search_term": "kiwi"}).bodies(); len(got) != 0 {
				t.Errorf("carol's search after forgetting = %q", got)
			}
		})

		t.Run("redactions", func(t *testing.T) {
			redactEv(t, alice, r1, m1)
			if got := doSearch(t, bob, "", map[string]any{"search_term": "coming"}).bodies(); len(got) != 0 {
				t.Errorf("search after redaction = %q", got)
			}
		})

		t.Run("ignored users", func(t *testing.T) {
			hstest.MustOK(t, bob.Do(t, "PUT", c3+"/user/"+url.PathEscape(bob.UserID)+"/account_data/m.ignored_user_list",
				map[string]any{"ignored_users": map[string]any{alice.UserID: map[string]any{}}}))
			a := doSearch(t, bob, "", map[string]any{"search_term": "martians", "event_context": map[string]any{"before_limit": 3}})
			if got := a.bodies(); !slices.Equal(got, []string{"martians martians, MARTIANS everywhere"}) {
				t.Errorf("bob's search, ignoring alice = %q, want only his own message", got)
			}
			for _, r := range a.SearchCategories.RoomEvents.Results {
				for _, e := range r.Context.EventsBefore {
					if e.Sender == alice.UserID {
						t.Errorf("context event %s of ignored alice", e.EventID)
					}
				}
			}
		})

		t.Run("errors", func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				body   any
				query  string
				status int
				code   string
			}{
				{"no categories", map[string]any{}, "", 400, "M_MISSING_PARAM"},
				{"no search_term", roomEvents(map[string]any{}), "", 400, "M_MISSING_PARAM"},
				{"bad key", roomEvents(map[string]any{"search_term": "x", "keys": []string{"content.url"}}), "", 400, "M_INVALID_PARAM"},
				{"bad order", roomEvents(map[string]any{"search_term": "x", "order_by": "random"}), "", 400, "M_INVALID_PARAM"},
				{"bad group", roomEvents(map[string]any{"search_term": "x", "groupings": map[string]any{"group_by": []any{map[string]any{"key": "type"}}}}), "", 400, "M_INVALID_PARAM"},
				{"negative limit", roomEvents(map[string]any{"search_term": "x", "filter": map[string]any{"limit": -1}}), "", 400, "M_INVALID_PARAM"},
				{"negative context", roomEvents(map[string]any{"search_term": "x", "event_context": map[string]any{"before_limit": -1}}), "", 400, "M_INVALID_PARAM"},
				{"wrong type", roomEvents(map[string]any{"search_term": 5}), "", 400, "M_BAD_JSON"},
				{"bad next_batch", roomEvents(map[string]any{"search_term": "x"}), "?next_batch=%21%21", 400, "M_INVALID_PARAM"},
				{"not JSON", "{", "", 400, "M_NOT_JSON"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					hstest.MustErr(t, alice.Do(t, "POST", c3+"/search"+tc.query, tc.body), tc.status, tc.code)
				})
			}
			hstest.MustErr(t, hs.Anon().Do(t, "POST", c3+"/search", roomEvents(map[string]any{"search_term": "x"})), 401, "M_MISSING_TOKEN")
			// No room_events: nothing to do.
			m := hstest.MustOK(t, alice.Do(t, "POST", c3+"/search", map[string]any{"search_categories": map[string]any{}}))
			if c, _ := m["search_categories"].(map[string]any); c == nil || len(c) != 0 {
				t.Errorf("search without categories = %v", m)
			}
		})
	})
}

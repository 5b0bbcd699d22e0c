package client_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
)

// /messages pages through the whole timeline in both directions with
// stable tokens (client-server API, "GET /rooms/{roomId}/messages").
func TestMessagesPagination(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "private_chat"})
		var want []string
		for i := range 25 {
			b := fmt.Sprintf("m%02d", i)
			send(t, alice, roomID, "m.room.message", msg(b))
			want = append(want, b)
		}

		// Backwards from the end, 10 at a time, until there is no end.
		var got []ev
		p := getPage(t, alice, roomID, "dir=b", "limit=10")
		first := p
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatalf("pagination does not end")
			}
			if len(p.Chunk) > 10 {
				t.Fatalf("page of %d events with limit=10", len(p.Chunk))
			}
			got = append(got, p.Chunk...)
			if p.End == nil {
				break
			}
			p = getPage(t, alice, roomID, "dir=b", "limit=10", "from="+q(*p.End))
		}
		if b := bodies(got); !slices.Equal(b, reverse(want)) {
			t.Fatalf("backwards bodies = %v, want %v", b, reverse(want))
		}
		if got[len(got)-1].Type != "m.room.create" {
			t.Errorf("oldest event is %s, want m.room.create", got[len(got)-1].Type)
		}
		seen := map[string]bool{}
		for _, e := range got {
			if seen[e.EventID] {
				t.Errorf("event %s returned twice", e.EventID)
			}
			seen[e.EventID] = true
		}

		// The same request gives the same page and tokens.
		again := getPage(t, alice, roomID, "dir=b", "limit=10")
		if !slices.Equal(ids(again.Chunk), ids(first.Chunk)) || *again.End != *first.End || again.Start != first.Start {
			t.Errorf("repeated /messages differs: %v %v / %v %v", again.Start, *again.End, first.Start, *first.End)
		}

		// Forwards from the beginning gives the same events, oldest first.
		var fwd []ev
		p = getPage(t, alice, roomID, "dir=f", "limit=7")
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatalf("forward pagination does not end")
			}
			fwd = append(fwd, p.Chunk...)
			if p.End == nil {
				break
			}
			p = getPage(t, alice, roomID, "dir=f", "limit=7", "from="+q(*p.End))
		}
		if !slices.Equal(ids(fwd), reverse(ids(got))) {
			t.Fatalf("forward pagination gives %d events, not the %d of backwards in reverse", len(fwd), len(got))
		}

		// The end of a backwards page is a valid start forwards: forwards
		// from it gives back the same events, in the other order.
		p1 := getPage(t, alice, roomID, "dir=b", "limit=5")
		p2 := getPage(t, alice, roomID, "dir=f", "limit=5", "from="+q(*p1.End))
		if !slices.Equal(ids(p2.Chunk), reverse(ids(p1.Chunk))) {
			t.Errorf("forwards from a backwards end = %v, want %v", bodies(p2.Chunk), reverse(bodies(p1.Chunk)))
		}

		// to stops the page: from the end back to the end of the first page.
		p3 := getPage(t, alice, roomID, "dir=b", "limit=100", "to="+q(*p1.End))
		if !slices.Equal(ids(p3.Chunk), ids(p1.Chunk)) {
			t.Errorf("dir=b to=%s gives %v, want %v", *p1.End, bodies(p3.Chunk), bodies(p1.Chunk))
		}
		if p3.End != nil {
			t.Errorf("a page that reached to has end %q", *p3.End)
		}

		// A stream token (as /sync's next_batch) stands for the point after
		// the events at or before its position.
		mid := got[9] // the tenth newest
		pos := streamPos(t, hs, mid.EventID)
		p4 := getPage(t, alice, roomID, "dir=b", "limit=3", "from="+q(fmt.Sprintf("s%d_0", pos)))
		if !slices.Equal(ids(p4.Chunk), ids(got[9:12])) {
			t.Errorf("backwards from a stream token = %v, want %v", bodies(p4.Chunk), bodies(got[9:12]))
		}
		p5 := getPage(t, alice, roomID, "dir=f", "limit=3", "from="+q(fmt.Sprintf("s%d_0", pos)))
		if !slices.Equal(ids(p5.Chunk), reverse(ids(got[6:9]))) {
			t.Errorf("forwards from a stream token = %v, want %v", bodies(p5.Chunk), reverse(bodies(got[6:9])))
		}

		// Default limit 10; dir defaults to forwards (as Synapse).
		if p := getPage(t, alice, roomID, "dir=b"); len(p.Chunk) != 10 {
			t.Errorf("default limit gave %d events", len(p.Chunk))
		}
		if p := getPage(t, alice, roomID, "limit=1"); len(p.Chunk) != 1 || p.Chunk[0].Type != "m.room.create" {
			t.Errorf("without dir: %v", ids(p.Chunk))
		}

		// Bad parameters.
		for _, params := range [][]string{
			{"dir=x"}, {"dir=b", "limit=-1"}, {"dir=b", "limit=ten"}, {"dir=b", "from=nonsense"},
			{"dir=b", "from=t1"}, {"dir=b", "to=x_1"}, {"dir=b", "filter=" + q("{not json")},
			{"dir=b", "filter=" + q(`{"types":"m.room.message"}`)},
		} {
			hstest.MustErr(t, alice.Do(t, "GET", messagesPath(roomID, params...), nil), 400, "M_INVALID_PARAM")
		}
		// Non-members may not read; an unknown room is the same.
		eve := hs.Register(t, "eve", "pw")
		hstest.MustErr(t, eve.Do(t, "GET", messagesPath(roomID, "dir=b"), nil), 403, "M_FORBIDDEN")
		hstest.MustErr(t, eve.Do(t, "GET", messagesPath("!nope:"+hs.ServerName(), "dir=b"), nil), 403, "M_FORBIDDEN")
		hstest.MustErr(t, hs.Anon().Do(t, "GET", messagesPath(roomID, "dir=b"), nil), 401, "M_MISSING_TOKEN")
	})
}

func streamPos(t testing.TB, hs *hstest.Server, eventID string) int64 {
	t.Helper()
	e, err := hs.DB().Event(t.Context(), id.EventID(eventID))
	if err != nil {
		t.Fatalf("Event(%s): %v", eventID, err)
	}
	return e.StreamPos
}

// Filters of /messages: types (with wildcards), senders, contains_url,
// relation types and lazy-loaded members.
func TestMessagesFilter(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		join(t, bob, roomID)
		a1 := send(t, alice, roomID, "m.room.message", msg("a1"))
		send(t, bob, roomID, "m.room.message", msg("b1"))
		send(t, alice, roomID, "m.room.message", map[string]any{"msgtype": "m.image", "body": "img", "url": "mxc://x/y"})
		send(t, bob, roomID, "org.example.custom", map[string]any{"n": 1})
		hstest.MustOK(t, sendRel(t, bob, roomID, "m.reaction", "m.annotation", a1, map[string]any{"key": "👍"}))
		hstest.MustOK(t, sendRel(t, bob, roomID, "m.room.message", "m.thread", a1, msg("in thread")))

		filtered := func(f string) []ev {
			t.Helper()
			return getPage(t, alice, roomID, "dir=b", "limit=50", "filter="+q(f)).Chunk
		}
		types := func(evs []ev) string {
			var out []string
			for _, e := range evs {
				out = append(out, e.Type+":"+e.body())
			}
			return strings.Join(out, ",")
		}
		for _, c := range []struct{ name, filter, want string }{
			{"types", `{"types":["m.room.message"]}`, "m.room.message:in thread,m.room.message:img,m.room.message:b1,m.room.message:a1"},
			{"wildcard", `{"types":["org.*"]}`, "org.example.custom:"},
			{"wildcard is case sensitive", `{"types":["ORG.*"]}`, ""},
			{"not_types wins", `{"types":["m.room.message","m.reaction"],"not_types":["m.room.mess*"]}`, "m.reaction:"},
			{"senders", `{"senders":["@bob:` + hs.ServerName() + `"],"types":["m.room.message"]}`, "m.room.message:in thread,m.room.message:b1"},
			{"not_senders", `{"not_senders":["@bob:` + hs.ServerName() + `"],"types":["m.room.message"]}`, "m.room.message:img,m.room.message:a1"},
			{"contains_url", `{"contains_url":true}`, "m.room.message:img"},
			{"no url", `{"contains_url":false,"types":["m.room.message"]}`, "m.room.message:in thread,m.room.message:b1,m.room.message:a1"},
			{"rel_types", `{"rel_types":["m.thread"]}`, "m.room.message:in thread"},
			{"unstable rel_types", `{"org.matrix.msc3874.rel_types":["m.annotation"]}`, "m.reaction:"},
			{"not_rel_types", `{"not_rel_types":["m.thread","m.annotation"],"types":["m.room.message"]}`, "m.room.message:img,m.room.message:b1,m.room.message:a1"},
			{"empty types", `{"types":[]}`, ""},
			{"other room", `{"rooms":["!other:x"]}`, ""},
		} {
			if got := types(filtered(c.filter)); got != c.want {
				t.Errorf("%s: filter %s gives %q, want %q", c.name, c.filter, got, c.want)
			}
		}

		// A filter that keeps few events still pages: at most limit events
		// per page, and every match eventually.
		var all []ev
		p := getPage(t, alice, roomID, "dir=b", "limit=1", "filter="+q(`{"types":["m.room.message"]}`))
		for i := 0; ; i++ {
			if i > 20 {
				t.Fatal("filtered pagination does not end")
			}
			all = append(all, p.Chunk...)
			if p.End == nil {
				break
			}
			p = getPage(t, alice, roomID, "dir=b", "limit=1", "from="+q(*p.End), "filter="+q(`{"types":["m.room.message"]}`))
		}
		if len(all) != 4 {
			t.Errorf("filtered pagination found %d messages, want 4", len(all))
		}

		// Lazy-loading members: state holds the senders' member events.
		lp := getPage(t, alice, roomID, "dir=b", "limit=2", "filter="+q(`{"lazy_load_members":true,"types":["m.room.message"]}`))
		var members []string
		for _, e := range lp.State {
			if e.Type != "m.room.member" {
				t.Errorf("lazy-loaded state holds a %s", e.Type)
				continue
			}
			members = append(members, *e.StateKey)
		}
		slices.Sort(members)
		if want := []string{alice.UserID, bob.UserID}; !slices.Equal(members, want) {
			t.Errorf("lazy-loaded members = %v, want %v (senders of %v)", members, want, bodies(lp.Chunk))
		}
		if p := getPage(t, alice, roomID, "dir=b", "limit=2"); len(p.State) != 0 {
			t.Errorf("state without lazy loading: %d events", len(p.State))
		}
	})
}

// History visibility: a later joiner of a "joined" room sees nothing from
// before its join, and a former member nothing after its leave
// (client-server API, "Room history visibility").
func TestMessagesVisibility(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "private_chat", "topic": "old topic"})
		putState(t, alice, roomID, "m.room.history_visibility", "", map[string]any{"history_visibility": "joined"})
		before := send(t, alice, roomID, "m.room.message", msg("before bob"))
		invite(t, alice, roomID, bob.UserID)
		send(t, alice, roomID, "m.room.message", msg("while invited"))
		join(t, bob, roomID)
		during := send(t, alice, roomID, "m.room.message", msg("while joined"))
		send(t, bob, roomID, "m.room.message", msg("bob speaks"))

		all := func(c *hstest.Client) []string {
			t.Helper()
			return bodies(getPage(t, c, roomID, "dir=b", "limit=100").Chunk)
		}
		if got, want := all(bob), []string{"bob speaks", "while joined"}; !slices.Equal(got, want) {
			t.Errorf("bob (joined later, visibility joined) sees %v, want %v", got, want)
		}
		if got := all(alice); len(got) != 4 {
			t.Errorf("alice sees %v, want all 4 messages", got)
		}
		// Page by page, through the history bob may not see, to the end.
		var paged []ev
		p := getPage(t, bob, roomID, "dir=b", "limit=1")
		for i := 0; ; i++ {
			if i > 10 {
				t.Fatal("bob's pagination does not end")
			}
			paged = append(paged, p.Chunk...)
			if p.End == nil {
				break
			}
			p = getPage(t, bob, roomID, "dir=b", "limit=1", "from="+q(*p.End))
		}
		if got := bodies(paged); !slices.Equal(got, []string{"bob speaks", "while joined"}) {
			t.Errorf("bob paging one by one sees %v", got)
		}
		hstest.MustErr(t, bob.Do(t, "GET", roomPath(roomID, "/event/"+url.PathEscape(before)), nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, bob.Do(t, "GET", roomPath(roomID, "/context/"+url.PathEscape(before)), nil), 404, "M_NOT_FOUND")
		getEv(t, bob, roomID, during)

		// Bob leaves; what follows is hidden from him.
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/leave"), map[string]any{}))
		after := send(t, alice, roomID, "m.room.message", msg("after bob left"))
		putState(t, alice, roomID, "m.room.topic", "", map[string]any{"topic": "new topic"})
		if got, want := all(bob), []string{"bob speaks", "while joined"}; !slices.Equal(got, want) {
			t.Errorf("bob after leaving sees %v, want %v", got, want)
		}
		fwd := getPage(t, bob, roomID, "dir=f", "limit=100")
		if b := bodies(fwd.Chunk); !slices.Equal(b, []string{"while joined", "bob speaks"}) {
			t.Errorf("bob forwards sees %v", b)
		}
		if fwd.End != nil {
			t.Errorf("bob's forward page past his leave has an end")
		}
		hstest.MustErr(t, bob.Do(t, "GET", roomPath(roomID, "/event/"+url.PathEscape(after)), nil), 404, "M_NOT_FOUND")
		// State and members as of his leave.
		topic := hstest.MustOK(t, bob.Do(t, "GET", roomPath(roomID, "/state/m.room.topic/"), nil))
		if topic["topic"] != "old topic" {
			t.Errorf("bob sees topic %v, want the old one", topic)
		}
		st := decodeOK[[]ev](t, bob.Do(t, "GET", roomPath(roomID, "/state"), nil))
		for _, e := range st {
			if e.Type == "m.room.topic" && e.Content["topic"] != "old topic" {
				t.Errorf("bob's /state has topic %v", e.Content)
			}
		}
		if len(st) == 0 {
			t.Errorf("bob's /state is empty")
		}
		// A context around the last event he saw stops at his leave.
		c := hstest.MustOK(t, bob.Do(t, "GET", roomPath(roomID, "/context/"+url.PathEscape(during)+"?limit=20"), nil))
		for _, e := range c["events_after"].([]any) {
			if e.(map[string]any)["event_id"] == after {
				t.Errorf("context shows bob an event after his leave")
			}
		}
		hstest.MustErr(t, bob.Do(t, "GET", roomPath(roomID, "/joined_members"), nil), 403, "M_FORBIDDEN")

		// A world-readable room can be read by anyone.
		pub := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		putState(t, alice, pub, "m.room.history_visibility", "", map[string]any{"history_visibility": "world_readable"})
		e1 := send(t, alice, pub, "m.room.message", msg("for the world"))
		eve := hs.Register(t, "eve", "pw")
		if got := bodies(getPage(t, eve, pub, "dir=b").Chunk); !slices.Equal(got, []string{"for the world"}) {
			t.Errorf("non-member reads a world-readable room: %v", got)
		}
		getEv(t, eve, pub, e1)
		hstest.MustOK(t, eve.Do(t, "GET", roomPath(pub, "/joined_members"), nil))
		hstest.MustErr(t, eve.Do(t, "GET", roomPath(roomID, "/state"), nil), 403, "M_FORBIDDEN")
		// 404, as for an event that does not exist (Complement
		// TestFetchEventNonWorldReadable).
		hstest.MustErr(t, eve.Do(t, "GET", roomPath(roomID, "/event/"+url.PathEscape(during)), nil), 404, "M_NOT_FOUND")
	})
}

// Events of users one ignores are left out (client-server API, "Ignoring
// users"); their state events stay.
func TestMessagesIgnoredUsers(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		join(t, bob, roomID)
		send(t, alice, roomID, "m.room.message", msg("from alice"))
		b1 := send(t, bob, roomID, "m.room.message", msg("from bob"))
		ignore(t, hs, alice, bob.UserID)
		p := getPage(t, alice, roomID, "dir=b")
		if got := bodies(p.Chunk); !slices.Equal(got, []string{"from alice"}) {
			t.Errorf("alice ignoring bob sees %v", got)
		}
		joined := false
		for _, e := range p.Chunk {
			joined = joined || (e.Type == "m.room.member" && *e.StateKey == bob.UserID)
		}
		if !joined {
			t.Errorf("bob's member event (state) is hidden too")
		}
		hstest.MustErr(t, alice.Do(t, "GET", roomPath(roomID, "/event/"+url.PathEscape(b1)), nil), 404, "M_NOT_FOUND")
		if got := bodies(getPage(t, bob, roomID, "dir=b").Chunk); len(got) != 2 {
			t.Errorf("bob (ignoring no one) sees %v", got)
		}
	})
}

// ignore sets c's m.ignored_user_list through the store: a set-up
// shortcut, as the account data endpoints are another area's.
func ignore(t testing.TB, hs *hstest.Server, c *hstest.Client, users ...string) {
	t.Helper()
	m := map[string]any{}
	for _, u := range users {
		m[u] = map[string]any{}
	}
	content := fmt.Sprintf(`{"ignored_users":%s}`, mustJSON(t, m))
	if _, err := hs.DB().SetAccountData(t.Context(), id.UserID(c.UserID), "", "m.ignored_user_list", []byte(content)); err != nil {
		t.Fatalf("SetAccountData: %v", err)
	}
}

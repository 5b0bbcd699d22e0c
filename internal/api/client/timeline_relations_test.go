package client_test

import (
	"net/url"
	"slices"
	"testing"
	"time"

	"polder.dev/polder/internal/hstest"
)

// relPage is a /relations response.
type relPage struct {
	Chunk          []ev    `json:"chunk"`
	NextBatch      *string `json:"next_batch"`
	PrevBatch      *string `json:"prev_batch"`
	RecursionDepth *int    `json:"recursion_depth"`
}

func relationsPath(roomID, eventID, rest string) string {
	return c1 + "/rooms/" + url.PathEscape(roomID) + "/relations/" + url.PathEscape(eventID) + rest
}

// Bundled aggregations of threads, edits and references (client-server
// API, "Aggregations of child events"), and how redactions and ignored
// users change them.
func TestBundledAggregations(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		carol := hs.Register(t, "carol", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		join(t, bob, roomID)
		join(t, carol, roomID)
		root := send(t, alice, roomID, "m.room.message", msg("root"))

		// A thread of two replies, the latest of them edited.
		r1 := hstest.Str(t, hstest.MustOK(t, sendRel(t, bob, roomID, "m.room.message", "m.thread", root, msg("reply 1"))), "event_id")
		r2 := hstest.Str(t, hstest.MustOK(t, sendRel(t, carol, roomID, "m.room.message", "m.thread", root, msg("reply 2"))), "event_id")
		r2edit := hstest.Str(t, hstest.MustOK(t, sendRel(t, carol, roomID, "m.room.message", "m.replace", r2,
			map[string]any{"body": "* reply 2!", "msgtype": "m.text", "m.new_content": msg("reply 2!")})), "event_id")
		// Edits of the root: two valid ones, and invalid ones that must be
		// ignored (another sender, another type, no m.new_content).
		e1 := hstest.Str(t, hstest.MustOK(t, sendRel(t, alice, roomID, "m.room.message", "m.replace", root,
			map[string]any{"body": "* root 1", "m.new_content": msg("root 1")})), "event_id")
		// Edits in the same millisecond are ordered by event ID (spec:
		// "Event replacements", choosing which replacement to use), so the
		// second edit must carry a later origin_server_ts to be the latest.
		time.Sleep(2 * time.Millisecond)
		e2 := hstest.Str(t, hstest.MustOK(t, sendRel(t, alice, roomID, "m.room.message", "m.replace", root,
			map[string]any{"body": "* root 2", "m.new_content": msg("root 2")})), "event_id")
		hstest.MustOK(t, sendRel(t, bob, roomID, "m.room.message", "m.replace", root,
			map[string]any{"body": "* hijack", "m.new_content": msg("hijack")}))
		hstest.MustOK(t, sendRel(t, alice, roomID, "org.example.other", "m.replace", root,
			map[string]any{"m.new_content": msg("other type")}))
		hstest.MustOK(t, sendRel(t, alice, roomID, "m.room.message", "m.replace", root, map[string]any{"body": "no new content"}))
		ref := hstest.Str(t, hstest.MustOK(t, sendRel(t, bob, roomID, "org.example.vote", "m.reference", root, nil)), "event_id")
		// Annotations are not aggregated by the server.
		hstest.MustOK(t, sendRel(t, bob, roomID, "m.reaction", "m.annotation", root, map[string]any{"key": "👍"}))

		check := func(c *hstest.Client, wantCount int, wantLatest string, wantMine bool, wantEdit string) ev {
			t.Helper()
			e := getEv(t, c, roomID, root)
			th, ok := relOf[thread](t, e, "m.thread")
			if !ok {
				t.Fatalf("%s: no m.thread aggregation in %v", c.UserID, e.Unsigned.Relations)
			}
			if th.Count != wantCount || th.LatestEvent.EventID != wantLatest || th.Participated != wantMine {
				t.Errorf("%s: m.thread = count %d latest %s participated %v; want %d %s %v",
					c.UserID, th.Count, th.LatestEvent.EventID, th.Participated, wantCount, wantLatest, wantMine)
			}
			edit, ok := relOf[ev](t, e, "m.replace")
			if wantEdit == "" && ok {
				t.Errorf("%s: m.replace = %s, want none", c.UserID, edit.EventID)
			} else if wantEdit != "" && edit.EventID != wantEdit {
				t.Errorf("%s: m.replace = %q, want %s", c.UserID, edit.EventID, wantEdit)
			}
			if _, ok := e.Unsigned.Relations["m.annotation"]; ok {
				t.Errorf("m.annotation is aggregated")
			}
			return e
		}
		e := check(alice, 2, r2, true, e2)
		th, _ := relOf[thread](t, e, "m.thread")
		// The latest event carries its own aggregations (its edit).
		if le, ok := relOf[ev](t, th.LatestEvent, "m.replace"); !ok || le.EventID != r2edit {
			t.Errorf("latest_event's m.replace = %v, want %s", le.EventID, r2edit)
		}
		if th.LatestEvent.body() != "reply 2" || th.LatestEvent.Sender != carol.UserID {
			t.Errorf("latest_event = %+v", th.LatestEvent)
		}
		refs, _ := relOf[struct {
			Chunk []struct {
				EventID string `json:"event_id"`
			} `json:"chunk"`
		}](t, e, "m.reference")
		if len(refs.Chunk) != 1 || refs.Chunk[0].EventID != ref {
			t.Errorf("m.reference = %+v, want [%s]", refs, ref)
		}
		check(bob, 2, r2, true, e2)
		// The same aggregation comes with /messages and /context.
		p := getPage(t, alice, roomID, "dir=b", "limit=50")
		for _, m := range p.Chunk {
			if m.EventID == root {
				if th, ok := relOf[thread](t, m, "m.thread"); !ok || th.Count != 2 {
					t.Errorf("/messages root aggregation = %v", m.Unsigned.Relations)
				}
			}
		}

		// Redacting the latest edit falls back to the previous one; a
		// redacted thread reply leaves the thread.
		redactEv(t, alice, roomID, e2)
		redactEv(t, carol, roomID, r2)
		check(alice, 1, r1, true, e1)
		check(carol, 1, r1, false, e1)

		// Ignored users' children are left out.
		carol2 := hstest.Str(t, hstest.MustOK(t, sendRel(t, carol, roomID, "m.room.message", "m.thread", root, msg("reply 3"))), "event_id")
		check(alice, 2, carol2, true, e1)
		ignore(t, hs, alice, carol.UserID)
		check(alice, 1, r1, true, e1)

		// A redacted original gets no m.replace, but keeps its thread.
		redactEv(t, alice, roomID, root)
		e = getEv(t, bob, roomID, root)
		if _, ok := e.Unsigned.Relations["m.replace"]; ok {
			t.Errorf("redacted event still has m.replace")
		}
		if _, ok := e.Unsigned.Relations["m.thread"]; !ok {
			t.Errorf("redacted root lost its thread: %v", e.Unsigned.Relations)
		}
		if len(e.Unsigned.RedactedBecause) == 0 {
			t.Errorf("redacted root has no redacted_because")
		}
	})
}

// The relation rules checked on send: duplicate annotations, threads off
// relations, relations to unknown events or other rooms.
func TestRelationRules(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		other := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		join(t, bob, roomID)
		root := send(t, alice, roomID, "m.room.message", msg("root"))

		react := func(c *hstest.Client, key string) *hstest.Response {
			return sendRel(t, c, roomID, "m.reaction", "m.annotation", root, map[string]any{"key": key})
		}
		first := hstest.Str(t, hstest.MustOK(t, react(bob, "👍")), "event_id")
		hstest.MustErr(t, react(bob, "👍"), 400, "M_DUPLICATE_ANNOTATION")
		hstest.MustOK(t, react(bob, "👎"))   // another key
		hstest.MustOK(t, react(alice, "👍")) // another sender
		// Another event type with the same key is not a duplicate.
		hstest.MustOK(t, sendRel(t, bob, roomID, "org.example.reaction", "m.annotation", root, map[string]any{"key": "👍"}))
		// Once the first is redacted, the same reaction may be sent again.
		redactEv(t, bob, roomID, first)
		hstest.MustOK(t, react(bob, "👍"))
		hstest.MustErr(t, react(bob, "👍"), 400, "M_DUPLICATE_ANNOTATION")
		hstest.MustErr(t, sendRel(t, bob, roomID, "m.reaction", "m.annotation", root, nil), 400, "M_UNKNOWN")

		// A thread may not start at an event that has a relation.
		reply := hstest.Str(t, hstest.MustOK(t, sendRel(t, bob, roomID, "m.room.message", "m.thread", root, msg("in thread"))), "event_id")
		hstest.MustErr(t, sendRel(t, bob, roomID, "m.room.message", "m.thread", reply, msg("nested")), 400, "M_UNKNOWN")
		// Relations to unknown events, or to events of another room.
		hstest.MustErr(t, sendRel(t, bob, roomID, "m.room.message", "m.reference", "$unknown", nil), 400, "M_UNKNOWN")
		otherEv := send(t, alice, other, "m.room.message", msg("elsewhere"))
		hstest.MustErr(t, sendRel(t, bob, roomID, "m.room.message", "m.reference", otherEv, nil), 400, "M_UNKNOWN")
		// Nothing was stored by the refused sends.
		p := getPage(t, alice, roomID, "dir=b", "limit=50", "filter="+q(`{"types":["m.room.message"]}`))
		if got := bodies(p.Chunk); !slices.Equal(got, []string{"in thread", "root"}) {
			t.Errorf("messages after refused sends: %v", got)
		}
	})
}

// GET /relations: children of an event, filtered by relation and event
// type, paginated in both directions, recursively.
func TestRelationsAPI(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		eve := hs.Register(t, "eve", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		join(t, bob, roomID)
		root := send(t, alice, roomID, "m.room.message", msg("root"))
		var thread []string
		for _, b := range []string{"t1", "t2", "t3", "t4"} {
			thread = append(thread, hstest.Str(t, hstest.MustOK(t, sendRel(t, bob, roomID, "m.room.message", "m.thread", root, msg(b))), "event_id"))
		}
		react := hstest.Str(t, hstest.MustOK(t, sendRel(t, alice, roomID, "m.reaction", "m.annotation", root, map[string]any{"key": "x"})), "event_id")
		// A reaction to a thread event: an indirect relation of the root.
		deep := hstest.Str(t, hstest.MustOK(t, sendRel(t, alice, roomID, "m.reaction", "m.annotation", thread[0], map[string]any{"key": "y"})), "event_id")
		vote := hstest.Str(t, hstest.MustOK(t, sendRel(t, alice, roomID, "org.example.vote", "m.thread", root, map[string]any{"v": 1})), "event_id")

		get := func(rest string) relPage {
			t.Helper()
			return decodeOK[relPage](t, alice.Do(t, "GET", relationsPath(roomID, root, rest), nil))
		}
		all := get("?limit=50")
		if want := []string{vote, react, thread[3], thread[2], thread[1], thread[0]}; !slices.Equal(ids(all.Chunk), want) {
			t.Errorf("/relations = %v, want %v (newest first)", ids(all.Chunk), want)
		}
		if all.NextBatch != nil || all.PrevBatch != nil || all.RecursionDepth != nil {
			t.Errorf("single page has tokens %v %v or recursion_depth", all.NextBatch, all.PrevBatch)
		}
		if got := ids(get("/m.thread?limit=50").Chunk); !slices.Equal(got, []string{vote, thread[3], thread[2], thread[1], thread[0]}) {
			t.Errorf("/relations/m.thread = %v", got)
		}
		if got := ids(get("/m.thread/m.room.message?limit=50").Chunk); !slices.Equal(got, reverse(thread)) {
			t.Errorf("/relations/m.thread/m.room.message = %v", got)
		}
		if got := get("/m.reference").Chunk; len(got) != 0 {
			t.Errorf("/relations/m.reference = %v", ids(got))
		}
		// Forwards: oldest first.
		if got := ids(get("/m.thread/m.room.message?dir=f").Chunk); !slices.Equal(got, thread) {
			t.Errorf("dir=f = %v, want %v", got, thread)
		}
		// Pages of 3, both directions.
		for _, dir := range []string{"b", "f"} {
			var got []string
			p := get("/m.thread/m.room.message?limit=3&dir=" + dir)
			for i := 0; ; i++ {
				if i > 5 {
					t.Fatal("relations pagination does not end")
				}
				got = append(got, ids(p.Chunk)...)
				if p.NextBatch == nil {
					break
				}
				p = get("/m.thread/m.room.message?limit=3&dir=" + dir + "&from=" + q(*p.NextBatch))
				if p.PrevBatch == nil {
					t.Errorf("second page has no prev_batch")
				}
			}
			want := thread
			if dir == "b" {
				want = reverse(thread)
			}
			if !slices.Equal(got, want) {
				t.Errorf("dir=%s pages = %v, want %v", dir, got, want)
			}
		}
		// to bounds the page.
		p1 := get("/m.thread/m.room.message?limit=2")
		if got := ids(get("/m.thread/m.room.message?to=" + q(*p1.NextBatch)).Chunk); !slices.Equal(got, ids(p1.Chunk)) {
			t.Errorf("to=next_batch gives %v, want %v", got, ids(p1.Chunk))
		}
		// Recursion adds the reaction to the thread event.
		rec := get("?limit=50&recurse=true")
		if !slices.Contains(ids(rec.Chunk), deep) || len(rec.Chunk) != len(all.Chunk)+1 {
			t.Errorf("recurse=true = %v, want %v plus %s", ids(rec.Chunk), ids(all.Chunk), deep)
		}
		if rec.RecursionDepth == nil || *rec.RecursionDepth < 3 {
			t.Errorf("recursion_depth = %v", rec.RecursionDepth)
		}
		// The filter applies to every level: the reaction is only reached
		// through a thread event.
		if got := ids(get("/m.annotation?recurse=true").Chunk); !slices.Equal(got, []string{react}) {
			t.Errorf("/m.annotation?recurse=true = %v, want only %s", got, react)
		}
		if nr := get("?recurse=false"); nr.RecursionDepth == nil || *nr.RecursionDepth != 1 {
			t.Errorf("recurse=false: recursion_depth = %v, want 1", nr.RecursionDepth)
		}
		// A redacted child leaves the relations.
		redactEv(t, bob, roomID, thread[3])
		if got := ids(get("/m.thread/m.room.message").Chunk); slices.Contains(got, thread[3]) {
			t.Errorf("redacted child still listed: %v", got)
		}

		// Errors.
		hstest.MustErr(t, alice.Do(t, "GET", relationsPath(roomID, "$nope", ""), nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, eve.Do(t, "GET", relationsPath(roomID, root, ""), nil), 403, "M_FORBIDDEN")
		hstest.MustErr(t, alice.Do(t, "GET", relationsPath(roomID, root, "?dir=x"), nil), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, alice.Do(t, "GET", relationsPath(roomID, root, "?from=garbage"), nil), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, alice.Do(t, "GET", relationsPath(roomID, root, "?recurse=maybe"), nil), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, alice.Do(t, "GET", relationsPath(roomID, root, "?limit=0"), nil), 400, "M_INVALID_PARAM")
	})
}

// GET /threads lists thread roots by latest activity (client-server API,
// "Querying threads in a room").
func TestThreadsList(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		eve := hs.Register(t, "eve", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		join(t, bob, roomID)
		rootA := send(t, alice, roomID, "m.room.message", msg("A"))
		rootB := send(t, bob, roomID, "m.room.message", msg("B"))
		rootC := send(t, bob, roomID, "m.room.message", msg("C"))
		send(t, alice, roomID, "m.room.message", msg("not a thread"))
		inThread := func(c *hstest.Client, root, body string) {
			hstest.MustOK(t, sendRel(t, c, roomID, "m.room.message", "m.thread", root, msg(body)))
		}
		inThread(bob, rootA, "a1")
		inThread(bob, rootB, "b1")
		inThread(bob, rootC, "c1")
		inThread(bob, rootA, "a2") // A is now the most recent

		type threadsResp struct {
			Chunk     []ev    `json:"chunk"`
			NextBatch *string `json:"next_batch"`
		}
		get := func(c *hstest.Client, params string) threadsResp {
			t.Helper()
			return decodeOK[threadsResp](t, c.Do(t, "GET", c1+"/rooms/"+url.PathEscape(roomID)+"/threads?"+params, nil))
		}
		all := get(alice, "")
		if want := []string{rootA, rootC, rootB}; !slices.Equal(ids(all.Chunk), want) {
			t.Errorf("/threads = %v, want %v", ids(all.Chunk), want)
		}
		if all.NextBatch != nil {
			t.Errorf("single page has next_batch %s", *all.NextBatch)
		}
		if th, ok := relOf[thread](t, all.Chunk[0], "m.thread"); !ok || th.Count != 2 || !th.Participated {
			t.Errorf("thread A aggregation = %+v", th)
		}
		// Alice took part in A only (she sent its root).
		if got := ids(get(alice, "include=participated").Chunk); !slices.Equal(got, []string{rootA}) {
			t.Errorf("alice's participated threads = %v", got)
		}
		if got := ids(get(bob, "include=participated").Chunk); len(got) != 3 {
			t.Errorf("bob's participated threads = %v", got)
		}
		// Pages of one.
		var paged []string
		p := get(alice, "limit=1")
		for i := 0; ; i++ {
			if i > 5 {
				t.Fatal("threads pagination does not end")
			}
			paged = append(paged, ids(p.Chunk)...)
			if p.NextBatch == nil {
				break
			}
			p = get(alice, "limit=1&from="+q(*p.NextBatch))
		}
		if !slices.Equal(paged, ids(all.Chunk)) {
			t.Errorf("paged threads = %v, want %v", paged, ids(all.Chunk))
		}
		// A root from an ignored user comes back redacted.
		ignore(t, hs, alice, bob.UserID)
		found := false
		for _, e := range get(alice, "").Chunk {
			if e.EventID == rootB {
				found = true
				if e.body() != "" || e.Sender != bob.UserID {
					t.Errorf("ignored user's root not redacted: %v", e.Content)
				}
			}
		}
		if !found {
			t.Errorf("thread of an ignored user's root is not listed")
		}
		hstest.MustErr(t, alice.Do(t, "GET", c1+"/rooms/"+url.PathEscape(roomID)+"/threads?include=mine", nil), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, alice.Do(t, "GET", c1+"/rooms/"+url.PathEscape(roomID)+"/threads?from=zz", nil), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, eve.Do(t, "GET", c1+"/rooms/"+url.PathEscape(roomID)+"/threads", nil), 403, "M_FORBIDDEN")
	})
}

package client_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"polder.dev/polder/internal/hstest"
)

const ssPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

// ssRoom is a room result of a sliding sync response (MSC4186 "RoomResult").
type ssRoom struct {
	Name             *string           `json:"name"`
	Avatar           *string           `json:"avatar"`
	Heroes           []map[string]any  `json:"heroes"`
	IsDM             bool              `json:"is_dm"`
	Initial          bool              `json:"initial"`
	ExpandedTimeline bool              `json:"expanded_timeline"`
	RequiredState    []syncEvent       `json:"required_state"`
	RawTimeline      []json.RawMessage `json:"timeline"`
	Timeline         []syncEvent       `json:"-"`
	PrevBatch        string            `json:"prev_batch"`
	Limited          bool              `json:"limited"`
	NumLive          *int              `json:"num_live"`
	JoinedCount      *int              `json:"joined_count"`
	InvitedCount     *int              `json:"invited_count"`
	Notifications    *int              `json:"notification_count"`
	Highlights       *int              `json:"highlight_count"`
	StrippedState    []syncEvent       `json:"stripped_state"`
	BumpStamp        *int64            `json:"bump_stamp"`
	Membership       string            `json:"membership"`
	Lists            []string          `json:"lists"`
}

type ssResponse struct {
	Pos   string `json:"pos"`
	Lists map[string]struct {
		Count int `json:"count"`
	} `json:"lists"`
	Rooms      map[string]*ssRoom         `json:"rooms"`
	Extensions map[string]json.RawMessage `json:"extensions"`
}

// slide sends a sliding sync request and decodes the 200 answer.
func slide(t testing.TB, c *hstest.Client, body map[string]any) ssResponse {
	t.Helper()
	r := c.Do(t, "POST", ssPath, body)
	if r.Status != 200 {
		t.Fatalf("POST sliding sync %v: status %d: %s", body, r.Status, r.Body)
	}
	var out ssResponse
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	for _, rm := range out.Rooms {
		for _, raw := range rm.RawTimeline {
			var ev syncEvent
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Fatalf("decode timeline event %s: %v", raw, err)
			}
			rm.Timeline = append(rm.Timeline, ev)
		}
	}
	if out.Pos == "" {
		t.Fatalf("sliding sync: no pos in %s", r.Body)
	}
	return out
}

// allList is a list of every room with the given range and timeline limit.
func allList(start, end, limit int, rs any) map[string]any {
	return map[string]any{"range": []int{start, end}, "timeline_limit": limit, "required_state": rs}
}

func ssBodies(evs []syncEvent) []string {
	var out []string
	for _, e := range evs {
		if b, ok := e.Content["body"].(string); ok {
			out = append(out, b)
		}
	}
	return out
}

func stateKeys(evs []syncEvent) []string {
	var out []string
	for _, e := range evs {
		k := ""
		if e.StateKey != nil {
			k = *e.StateKey
		}
		out = append(out, e.Type+"|"+k)
	}
	slices.Sort(out)
	return out
}

func TestSlidingSyncLists(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		var rooms []string
		for i := range 3 {
			r := createRoom(t, alice, map[string]any{"name": fmt.Sprintf("room %d", i)})
			rooms = append(rooms, r)
		}
		for i, r := range rooms {
			sendText(t, alice, r, fmt.Sprintf("hello %d", i))
		}
		// rooms[2] had the latest message: the order is 2, 1, 0.
		rs := [][]string{{"m.room.create", ""}}
		resp := slide(t, alice, map[string]any{"lists": map[string]any{"all": allList(0, 1, 1, rs)}})
		if got := resp.Lists["all"].Count; got != 3 {
			t.Errorf("lists.all.count = %d, want 3", got)
		}
		if len(resp.Rooms) != 2 || resp.Rooms[rooms[2]] == nil || resp.Rooms[rooms[1]] == nil {
			t.Fatalf("rooms = %v, want %s and %s", keys(resp.Rooms), rooms[2], rooms[1])
		}
		r2 := resp.Rooms[rooms[2]]
		if !r2.Initial || r2.Name == nil || *r2.Name != "room 2" || r2.Membership != "join" {
			t.Errorf("room 2: initial %v name %v membership %q, want initial, room 2, join", r2.Initial, r2.Name, r2.Membership)
		}
		if got := ssBodies(r2.Timeline); !slices.Equal(got, []string{"hello 2"}) || !r2.Limited {
			t.Errorf("room 2 timeline = %v limited %v, want [hello 2] limited", got, r2.Limited)
		}
		if got := stateKeys(r2.RequiredState); !slices.Equal(got, []string{"m.room.create|"}) {
			t.Errorf("room 2 required_state = %v, want the create event", got)
		}
		if r2.JoinedCount == nil || *r2.JoinedCount != 1 || r2.NumLive == nil || *r2.NumLive != 0 {
			t.Errorf("room 2 joined_count %v num_live %v, want 1 and 0", r2.JoinedCount, r2.NumLive)
		}
		if r2.BumpStamp == nil || resp.Rooms[rooms[1]].BumpStamp == nil || *r2.BumpStamp <= *resp.Rooms[rooms[1]].BumpStamp {
			t.Errorf("bump stamps: room 2 %v, room 1 %v: want room 2's greater", r2.BumpStamp, resp.Rooms[rooms[1]].BumpStamp)
		}
		if !slices.Equal(r2.Lists, []string{"all"}) {
			t.Errorf("room 2 lists = %v, want [all]", r2.Lists)
		}
		// The range grows: only the room not sent yet comes.
		resp = slide(t, alice, map[string]any{"pos": resp.Pos, "lists": map[string]any{"all": allList(0, 2, 1, rs)}})
		if len(resp.Rooms) != 1 || resp.Rooms[rooms[0]] == nil || !resp.Rooms[rooms[0]].Initial {
			t.Fatalf("after growing the range: rooms = %v, want only %s (initial)", keys(resp.Rooms), rooms[0])
		}
		// A new message: room 0 comes with it, live, not initial; the
		// pos is passed in the query string (matrix-js-sdk).
		sendText(t, alice, rooms[0], "again")
		r := alice.Do(t, "POST", ssPath+"?pos="+url.QueryEscape(resp.Pos)+"&timeout=0", map[string]any{"lists": map[string]any{"all": allList(0, 2, 1, rs)}})
		resp = decodeSS(t, r)
		r0 := resp.Rooms[rooms[0]]
		if len(resp.Rooms) != 1 || r0 == nil {
			t.Fatalf("after a message: rooms = %v, want %s", keys(resp.Rooms), rooms[0])
		}
		if r0.Initial || r0.Name != nil || !slices.Equal(ssBodies(r0.Timeline), []string{"again"}) || r0.NumLive == nil || *r0.NumLive != 1 {
			t.Errorf("room 0 delta: initial %v name %v timeline %v num_live %v; want not initial, no name, [again], 1", r0.Initial, r0.Name, ssBodies(r0.Timeline), r0.NumLive)
		}
		if len(r0.RequiredState) != 0 {
			t.Errorf("room 0 delta required_state = %v, want none (nothing changed)", stateKeys(r0.RequiredState))
		}
		// Nothing new: an empty answer at once with timeout 0.
		resp = slide(t, alice, map[string]any{"pos": resp.Pos, "lists": map[string]any{"all": allList(0, 2, 1, rs)}})
		if len(resp.Rooms) != 0 {
			t.Errorf("nothing new: rooms = %v, want none", keys(resp.Rooms))
		}
		// A room renamed: the new name, and the state in required_state
		// when asked for.
		alice.Do(t, "PUT", roomPath(rooms[1], "/state/m.room.name/"), map[string]any{"name": "renamed"})
		resp = slide(t, alice, map[string]any{"pos": resp.Pos, "lists": map[string]any{"all": allList(0, 2, 1, [][]string{{"m.room.name", ""}})}})
		r1 := resp.Rooms[rooms[1]]
		if r1 == nil || r1.Name == nil || *r1.Name != "renamed" {
			t.Fatalf("after renaming: room 1 = %+v, want name renamed", r1)
		}
	})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func decodeSS(t testing.TB, r *hstest.Response) ssResponse {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("%s: status %d: %s", r.Call, r.Status, r.Body)
	}
	var out ssResponse
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	for _, rm := range out.Rooms {
		for _, raw := range rm.RawTimeline {
			var ev syncEvent
			json.Unmarshal(raw, &ev)
			rm.Timeline = append(rm.Timeline, ev)
		}
	}
	return out
}

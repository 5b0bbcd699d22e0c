package eventauth_test

import (
	"bufio"
	"encoding/json"
	"encoding/json/jsontext"
	"go/build"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

// TestRealRoomV12 authorizes every event of a real v12 room captured over
// federation, which mautrix-go v0.31.0 ships as test data
// (federation/eventauth/testroom-v12-success.jsonl, read from the module
// cache, not copied). All of them were accepted by the servers in the room.
func TestRealRoomV12(t *testing.T) {
	modcache := os.Getenv("GOMODCACHE")
	if modcache == "" {
		modcache = filepath.Join(build.Default.GOPATH, "pkg", "mod")
	}
	path := filepath.Join(modcache, "maunium.net", "go", "mautrix@v0.31.0", "federation", "eventauth", "testroom-v12-success.jsonl")
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("mautrix test room not available: %v", err)
	}
	defer f.Close()

	var create *fakeEvent
	events := map[id.EventID]*fakeEvent{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for i := 1; sc.Scan(); i++ {
		var raw struct {
			AuthEvents []id.EventID                 `json:"auth_events"`
			Content    jsontext.Value               `json:"content"`
			Depth      int64                        `json:"depth"`
			TS         int64                        `json:"origin_server_ts"`
			PrevEvents []id.EventID                 `json:"prev_events"`
			RoomID     id.RoomID                    `json:"room_id"`
			Sender     id.UserID                    `json:"sender"`
			Signatures map[string]map[string]string `json:"signatures"`
			StateKey   *string                      `json:"state_key"`
			Type       string                       `json:"type"`
			Redacts    id.EventID                   `json:"redacts"`
			Unsigned   struct {
				EventID id.EventID `json:"event_id"`
			} `json:"unsigned"`
		}
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		ev := &fakeEvent{
			id: raw.Unsigned.EventID, room: raw.RoomID, typ: raw.Type, sk: raw.StateKey, sender: raw.Sender,
			content: string(raw.Content), prev: raw.PrevEvents, auth: raw.AuthEvents, depth: raw.Depth, ts: raw.TS,
			redacts: raw.Redacts,
		}
		// The signatures are not verified here: take them as verified.
		for server := range raw.Signatures {
			ev.signedBy = append(ev.signedBy, server)
		}
		if create == nil {
			create = ev
			if strings.TrimPrefix(string(ev.id), "$") == "" {
				t.Fatalf("create event without ID")
			}
		}
		var auth []eventauth.Event
		for _, eid := range ev.auth {
			if ae, ok := events[eid]; ok {
				auth = append(auth, ae)
			}
		}
		if err := eventauth.CheckAuthEvents("12", ev, auth); err != nil {
			t.Errorf("event %d %s (%s): CheckAuthEvents = %v, want nil", i, ev.id, ev.typ, err)
		}
		if err := eventauth.Check("12", ev, eventauth.LookupEvents(append(auth, create)...)); err != nil {
			t.Errorf("event %d %s (%s): Check = %v, want nil", i, ev.id, ev.typ, err)
		}
		events[ev.id] = ev
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(events) < 20 {
		t.Errorf("read %d events, want the whole room", len(events))
	}
}

//go:build synapse

// Package synapse_test is the Synapse interoperability test: a Synapse user
// and a Polder user join each other's rooms (each side creates one),
// exchange messages both ways, see typing, receipts and profile changes,
// exchange end-to-end encryption keys and to-device messages (e2ee_test.go),
// and leave. Both servers are real processes that tests/synapse/run.sh
// starts on loopback; this program drives them only through their client
// APIs (and reads their public key endpoints), so every cross-server effect
// it sees went over federation, with TLS checked against the test CA.
//
// Run it with tests/synapse/run.sh; without the INTEROP_* variables that
// run.sh sets, the tests skip.
package synapse_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/keys"
)

// serverKeys is a /_matrix/key/v2/server answer (server-server API,
// "Publishing Keys").
type serverKeys struct {
	ServerName   string `json:"server_name"`
	ValidUntilTS int64  `json:"valid_until_ts"`
	VerifyKeys   map[string]struct {
		Key string `json:"key"`
	} `json:"verify_keys"`
}

// checkKeys checks that raw is serverName's key object, self-signed with
// each of its verify keys, and still valid.
func checkKeys(t *testing.T, raw []byte, serverName string) serverKeys {
	t.Helper()
	var k serverKeys
	if err := json.Unmarshal(raw, &k); err != nil {
		t.Fatalf("keys of %s: %v in %s", serverName, err, raw)
	}
	if k.ServerName != serverName {
		t.Fatalf("keys of %s: server_name %q", serverName, k.ServerName)
	}
	if len(k.VerifyKeys) == 0 {
		t.Fatalf("keys of %s: no verify_keys in %s", serverName, raw)
	}
	if until := time.UnixMilli(k.ValidUntilTS); until.Before(time.Now()) {
		t.Errorf("keys of %s: valid_until_ts %v is in the past", serverName, until)
	}
	for keyID, v := range k.VerifyKeys {
		pub, err := keys.DecodeBase64(v.Key)
		if err != nil {
			t.Fatalf("keys of %s: key %s: %v", serverName, keyID, err)
		}
		if err := keys.VerifyJSON(raw, serverName, id.KeyID(keyID), ed25519.PublicKey(pub)); err != nil {
			t.Errorf("keys of %s: self-signature with %s: %v", serverName, keyID, err)
		}
	}
	return k
}

// TestTLS checks the plumbing under federation: each server serves its
// keys on its federation port over TLS with a certificate from the test
// CA, Polder verifies Synapse's signature, and Synapse reaches Polder (its
// certificate and loopback settings are right) to fetch Polder's keys.
func TestTLS(t *testing.T) {
	e := mustEnv(t)
	hc := e.tlsClient()
	var polderKeyIDs []string
	for _, srv := range []server{e.synapse, e.polder} {
		t.Run(srv.label+" serves its keys over TLS", func(t *testing.T) {
			u := srv.federationURL() + "/_matrix/key/v2/server"
			status, body := call(t, hc, "GET", u, "", nil)
			if status != 200 {
				t.Fatalf("GET %s: %d %s", u, status, body)
			}
			k := checkKeys(t, body, srv.name)
			if srv == e.polder {
				for id := range k.VerifyKeys {
					polderKeyIDs = append(polderKeyIDs, id)
				}
			}
			u = srv.federationURL() + "/_matrix/federation/v1/version"
			if status, body = call(t, hc, "GET", u, "", nil); status != 200 {
				t.Fatalf("GET %s: %d %s", u, status, body)
			}
			t.Logf("%s at %s: %s", srv.label, srv.name, body)
		})
	}
	t.Run("Synapse fetches "+e.polder.label+"'s keys over TLS", func(t *testing.T) {
		if len(polderKeyIDs) == 0 {
			t.Skip("needs the key IDs that the step before reads")
		}
		// Synapse's notary endpoint (server-server API, "Querying Keys
		// Through Another Server"): with trusted_key_servers empty, it
		// fetches keys it does not have from the server itself. It fetches
		// only for named key IDs, and wants minimum_valid_until_ts.
		query := map[string]any{}
		for _, id := range polderKeyIDs {
			query[id] = map[string]any{"minimum_valid_until_ts": time.Now().UnixMilli()}
		}
		u := e.synapse.federationURL() + "/_matrix/key/v2/query"
		status, body := call(t, hc, "POST", u, "", map[string]any{"server_keys": map[string]any{e.polder.name: query}})
		if status != 200 {
			t.Fatalf("POST %s: %d %s", u, status, body)
		}
		var r struct {
			ServerKeys []json.RawMessage `json:"server_keys"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("POST %s: %v in %s", u, err, body)
		}
		for _, raw := range r.ServerKeys {
			var k serverKeys
			if json.Unmarshal(raw, &k) == nil && k.ServerName == e.polder.name {
				checkKeys(t, raw, e.polder.name)
				return
			}
		}
		t.Fatalf("POST %s: Synapse returned no keys of %s (%s): it could not fetch them from %s's TLS listener; "+
			"see the key fetching lines in Synapse's log", u, e.polder.name, body, e.polder.label)
	})
}

// step is one named part of the scenario.
type step struct {
	key   string   // short name that later steps list in needs
	needs []string // keys of the steps whose results this one builds on
	name  string
	run   func(t *testing.T)
}

// runSteps runs steps in order as subtests. A step whose needs did not
// pass is skipped, saying which; the others still run, so that one broken
// direction of federation does not hide how the other fares.
func runSteps(t *testing.T, steps []step) {
	passed := map[string]bool{}
	for i, s := range steps {
		var missing []string
		for _, n := range s.needs {
			if !passed[n] {
				missing = append(missing, n)
			}
		}
		passed[s.key] = t.Run(fmt.Sprintf("%02d %s", i+1, s.name), func(t *testing.T) {
			if len(missing) > 0 {
				t.Skipf("skipped: needs %v, which did not pass", missing)
			}
			s.run(t)
		}) && len(missing) == 0
	}
}

// TestInterop is the scenario. Each step names who does what, on which
// server, and what must arrive over federation.
func TestInterop(t *testing.T) {
	e := mustEnv(t)
	// Fresh user names per run, so that a re-run against the same servers
	// (POLDER_SYNAPSE_KEEP with servers left up) does not collide.
	sfx := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	// alice on Polder, bob on Synapse; the first step registers them. The
	// steps are built before they run, so they hold the pointers.
	alice, bob := new(user), new(user)
	var r1, r2 string // r1 created on Polder, r2 on Synapse
	// The messages that exchange sent, by room: [0] alice's, [1] bob's.
	sent := map[*string]*[2]string{&r1: new([2]string), &r2: new([2]string)}

	isMsg := func(eventID, sender, body string) func(seen) bool {
		return func(s seen) bool {
			return s.section == "join" && s.part == "timeline" && s.ev.EventID == eventID &&
				s.ev.Sender == sender && s.ev.content()["body"] == body
		}
	}
	isInvite := func(userID, sender string) func(seen) bool {
		return func(s seen) bool {
			return s.section == "invite" && s.ev.Type == "m.room.member" && s.ev.StateKey != nil &&
				*s.ev.StateKey == userID && s.ev.Sender == sender && s.ev.content()["membership"] == "invite"
		}
	}
	isTyping := func(userID string) func(seen) bool {
		return func(s seen) bool {
			if s.part != "ephemeral" || s.ev.Type != "m.typing" {
				return false
			}
			ids, _ := s.ev.content()["user_ids"].([]any)
			return slices.Contains(ids, any(userID))
		}
	}
	isReceipt := func(eventID, userID string) func(seen) bool {
		return func(s seen) bool {
			if s.part != "ephemeral" || s.ev.Type != "m.receipt" {
				return false
			}
			byType, _ := s.ev.content()[eventID].(map[string]any)
			users, _ := byType["m.read"].(map[string]any)
			_, ok := users[userID]
			return ok
		}
	}
	// The rooms are filled in by the steps that create them, so steps
	// take pointers to them.
	exchange := func(room *string) func(t *testing.T) {
		return func(t *testing.T) {
			text := "hello from " + alice.srv.label + " " + sfx
			id := alice.send(t, *room, text)
			e.waitFor(t, bob, *room, bob.String()+" sees "+alice.local+"'s message "+id, isMsg(id, alice.id, text))
			sent[room][0] = id
			text = "hello from " + bob.srv.label + " " + sfx
			id = bob.send(t, *room, text)
			e.waitFor(t, alice, *room, alice.String()+" sees "+bob.local+"'s message "+id, isMsg(id, bob.id, text))
			sent[room][1] = id
		}
	}
	joinPath := func(room string, via server) string {
		return "/_matrix/client/v3/join/" + esc(room) + "?server_name=" + esc(via.name) + "&via=" + esc(via.name)
	}
	typing := func(u, other *user, room *string) func(t *testing.T) {
		return func(t *testing.T) {
			u.mustDo(t, "start typing", "PUT", "/_matrix/client/v3/rooms/"+esc(*room)+"/typing/"+esc(u.id),
				map[string]any{"typing": true, "timeout": 30000})
			e.waitFor(t, other, *room, other.String()+" sees "+u.String()+" typing", isTyping(u.id))
		}
	}
	// receipt: u reads other's message in room.
	receipt := func(u, other *user, room *string) func(t *testing.T) {
		return func(t *testing.T) {
			eventID := sent[room][0]
			if other == bob {
				eventID = sent[room][1]
			}
			u.mustDo(t, "send a read receipt", "POST",
				"/_matrix/client/v3/rooms/"+esc(*room)+"/receipt/m.read/"+esc(eventID), map[string]any{})
			e.waitFor(t, other, *room, other.String()+" sees "+u.String()+"'s read receipt for "+eventID,
				isReceipt(eventID, u.id))
		}
	}
	profile := func(u, other *user) func(t *testing.T) {
		return func(t *testing.T) {
			name := u.local + " (" + u.srv.label + ") renamed"
			u.mustDo(t, "set the display name", "PUT", "/_matrix/client/v3/profile/"+esc(u.id)+"/displayname",
				map[string]any{"displayname": name})
			for _, room := range []string{r1, r2} {
				e.waitFor(t, other, room, other.String()+" sees "+u.String()+"'s new display name in "+room,
					isMember(u.id, "join", name))
			}
			// A profile query over federation (GET /_matrix/federation/v1/query/profile).
			deadline := time.Now().Add(e.wait)
			for {
				status, m := other.do(t, "GET", "/_matrix/client/v3/profile/"+esc(u.id), nil)
				if status == 200 && m["displayname"] == name {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: GET /profile/%s on %s: %d %v; want displayname %q", other, u.id, other.srv.label, status, m, name)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
	}
	leave := func(u, other *user, room *string) func(t *testing.T) {
		return func(t *testing.T) {
			u.mustDo(t, "leave", "POST", "/_matrix/client/v3/rooms/"+esc(*room)+"/leave", map[string]any{})
			e.waitFor(t, other, *room, other.String()+" sees "+u.String()+" leave "+*room, isMember(u.id, "leave", ""))
		}
	}

	runSteps(t, []step{
		{"users", nil, "register alice on Polder and bob on Synapse", func(t *testing.T) {
			*alice = *register(t, e.polder, "alice"+sfx)
			*bob = *register(t, e.synapse, "bob"+sfx)
			alice.sync(t, 0)
			bob.sync(t, 0)
		}},
		{"inviteR1", []string{"users"}, "alice creates R1 on Polder and invites bob (Polder sends /invite to Synapse)", func(t *testing.T) {
			m := alice.mustDo(t, "create R1", "POST", "/_matrix/client/v3/createRoom",
				map[string]any{"preset": "private_chat", "name": "R1 " + sfx})
			r1, _ = m["room_id"].(string)
			alice.mustDo(t, "invite bob to R1", "POST", "/_matrix/client/v3/rooms/"+esc(r1)+"/invite",
				map[string]any{"user_id": bob.id})
			e.waitFor(t, bob, r1, bob.String()+" sees the invite to R1", isInvite(bob.id, alice.id))
		}},
		{"joinR1", []string{"inviteR1"}, "bob joins R1 (Synapse: make_join, send_join to Polder)", func(t *testing.T) {
			bob.mustDo(t, "join R1", "POST", joinPath(r1, e.polder), map[string]any{})
			e.waitFor(t, alice, r1, alice.String()+" sees bob join R1", isMember(bob.id, "join", ""))
			e.waitFor(t, bob, r1, bob.String()+" has R1's state with alice joined", isMember(alice.id, "join", ""))
		}},
		{"msgR1", []string{"joinR1"}, "messages both ways in R1", exchange(&r1)},
		{"inviteR2", []string{"users"}, "bob creates R2 on Synapse and invites alice (Synapse sends /invite to Polder)", func(t *testing.T) {
			m := bob.mustDo(t, "create R2", "POST", "/_matrix/client/v3/createRoom",
				map[string]any{"preset": "private_chat", "name": "R2 " + sfx})
			r2, _ = m["room_id"].(string)
			bob.mustDo(t, "invite alice to R2", "POST", "/_matrix/client/v3/rooms/"+esc(r2)+"/invite",
				map[string]any{"user_id": alice.id})
			e.waitFor(t, alice, r2, alice.String()+" sees the invite to R2", isInvite(alice.id, bob.id))
		}},
		{"joinR2", []string{"inviteR2"}, "alice joins R2 (Polder: make_join, send_join to Synapse)", func(t *testing.T) {
			alice.mustDo(t, "join R2", "POST", joinPath(r2, e.synapse), map[string]any{})
			e.waitFor(t, bob, r2, bob.String()+" sees alice join R2", isMember(alice.id, "join", ""))
			e.waitFor(t, alice, r2, alice.String()+" has R2's state with bob joined", isMember(bob.id, "join", ""))
		}},
		{"msgR2", []string{"joinR2"}, "messages both ways in R2", exchange(&r2)},
		{"typingR1", []string{"joinR1"}, "bob sees alice typing in R1", typing(alice, bob, &r1)},
		{"typingR2", []string{"joinR2"}, "alice sees bob typing in R2", typing(bob, alice, &r2)},
		{"receiptR1", []string{"msgR1"}, "bob sees alice's read receipt in R1", receipt(alice, bob, &r1)},
		{"receiptR2", []string{"msgR2"}, "alice sees bob's read receipt in R2", receipt(bob, alice, &r2)},
		{"profileAlice", []string{"joinR1", "joinR2"}, "bob sees alice's new display name in R1 and R2, and in her profile", profile(alice, bob)},
		{"profileBob", []string{"joinR1", "joinR2"}, "alice sees bob's new display name in R1 and R2, and in his profile", profile(bob, alice)},
		{"e2ee", []string{"joinR1", "joinR2"}, "end-to-end encryption keys and to-device messages both ways (e2ee_test.go)", e2eeSteps(e, alice, bob)},
		{"leaveR1", []string{"joinR1"}, "bob leaves R1 (Synapse: make_leave, send_leave to Polder); alice sees it", leave(bob, alice, &r1)},
		{"leaveR2", []string{"joinR2"}, "alice leaves R2 (Polder: make_leave, send_leave to Synapse); bob sees it", leave(alice, bob, &r2)},
		{"e2eeLeft", []string{"e2ee", "leaveR1", "leaveR2"}, "sharing no room, alice and bob see each other in device_lists.left", e2eeLeft(e, alice, bob)},
	})
}

package federation_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"polder.dev/polder/internal/config"
	fed "polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/identity"
	"polder.dev/polder/internal/keys"
)

// fakeIS is an identity server: hash_details, lookup (sha256 over its
// bindings), store-invite (tokens signed later with key) and
// pubkey/isvalid. Requests must carry the access token "is-token".
type fakeIS struct {
	t   *testing.T
	srv *httptest.Server
	key *keys.SigningKey

	mu       sync.Mutex
	bindings map[string]string // address -> mxid
	invites  []storedInvite
	revoked  bool
}

type storedInvite struct {
	address, roomID, sender, token string
}

const isToken = "is-token"

func newFakeIS(t *testing.T) *fakeIS {
	is := &fakeIS{t: t, bindings: map[string]string{}, key: mustKey(t, "0")}
	mux := http.NewServeMux()
	const v2 = "/_matrix/identity/v2"
	authed := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+isToken {
				w.WriteHeader(401)
				writeJSON(w, map[string]string{"errcode": "M_UNAUTHORIZED", "error": "bad token"})
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET "+v2+"/hash_details", authed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"lookup_pepper": "pepper", "algorithms": []string{"none", "sha256"}})
	}))
	mux.HandleFunc("POST "+v2+"/lookup", authed(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Algorithm string   `json:"algorithm"`
			Pepper    string   `json:"pepper"`
			Addresses []string `json:"addresses"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Algorithm != "sha256" || req.Pepper != "pepper" {
			w.WriteHeader(400)
			writeJSON(w, map[string]string{"errcode": "M_INVALID_PARAM", "error": "bad lookup"})
			return
		}
		is.mu.Lock()
		defer is.mu.Unlock()
		mappings := map[string]string{}
		for addr, mxid := range is.bindings {
			h := identity.HashAddress(addr, "email", "pepper")
			for _, q := range req.Addresses {
				if q == h {
					mappings[h] = mxid
				}
			}
		}
		writeJSON(w, map[string]any{"mappings": mappings})
	}))
	mux.HandleFunc("POST "+v2+"/store-invite", authed(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Medium  string `json:"medium"`
			Address string `json:"address"`
			RoomID  string `json:"room_id"`
			Sender  string `json:"sender"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Medium != "email" || req.RoomID == "" || req.Sender == "" {
			w.WriteHeader(400)
			writeJSON(w, map[string]string{"errcode": "M_BAD_JSON", "error": "bad store-invite"})
			return
		}
		is.mu.Lock()
		tok := fmt.Sprintf("tok%d", len(is.invites)+1)
		is.invites = append(is.invites, storedInvite{address: req.Address, roomID: req.RoomID, sender: req.Sender, token: tok})
		is.mu.Unlock()
		writeJSON(w, map[string]any{
			"token": tok,
			"public_keys": []map[string]string{{
				"public_key":       is.key.PublicBase64(),
				"key_validity_url": is.srv.URL + v2 + "/pubkey/isvalid",
			}},
			"display_name": req.Address[:1] + "...",
		})
	}))
	mux.HandleFunc("GET "+v2+"/pubkey/isvalid", func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		defer is.mu.Unlock()
		writeJSON(w, map[string]bool{"valid": !is.revoked && r.URL.Query().Get("public_key") == is.key.PublicBase64()})
	})
	is.srv = httptest.NewTLSServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

// name is the id_server clients give: host:port.
func (is *fakeIS) name() string { return strings.TrimPrefix(is.srv.URL, "https://") }

// caFile writes the server's certificate, which the homeservers are told
// to trust (federation_trusted_ca).
func (is *fakeIS) caFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "is.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// signedInvite is the signed object of an onbind invite, signed with key.
func signedInvite(t *testing.T, key *keys.SigningKey, mxid, sender, token string) json.RawMessage {
	t.Helper()
	raw, _ := json.Marshal(map[string]string{"mxid": mxid, "sender": sender, "token": token})
	signed, err := keys.SignJSON(raw, "is.example", key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// onBind is the notice the identity server sends to mxid's server when
// address is bound: every invite stored for address, signed.
func (is *fakeIS) onBind(t *testing.T, f *hstest.Federation, server, address, mxid string) {
	t.Helper()
	is.mu.Lock()
	is.bindings[address] = mxid
	var invites []map[string]any
	for _, inv := range is.invites {
		if inv.address == address {
			invites = append(invites, map[string]any{
				"medium": "email", "address": address, "mxid": mxid, "room_id": inv.roomID, "sender": inv.sender,
				"signed": signedInvite(t, is.key, mxid, inv.sender, inv.token),
			})
		}
	}
	is.mu.Unlock()
	body := map[string]any{"medium": "email", "address": address, "mxid": mxid, "invites": invites}
	if code := putJSON(t, f, "https://"+server+"/_matrix/federation/v1/3pid/onbind", body); code != 200 {
		t.Fatalf("PUT 3pid/onbind on %s: status %d, want 200", server, code)
	}
}

func putJSON(t *testing.T, f *hstest.Federation, u string, body any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest("PUT", u, strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", u, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// membershipOf reads the m.room.member state of user in roomID as c sees
// it ("" when there is none).
func membershipOf(t *testing.T, c *hstest.Client, roomID, user string) string {
	t.Helper()
	r := c.Do(t, "GET", clientRoomPath0(roomID, "/state/m.room.member/"+url.PathEscape(user)), nil)
	if r.Status != 200 {
		return ""
	}
	m, _ := r.JSON(t)["membership"].(string)
	return m
}

func clientRoomPath0(roomID, rest string) string {
	return "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + rest
}

// invitedTo reports whether c's sync has an invite to roomID.
func invitedTo(t *testing.T, c *hstest.Client, roomID string) bool {
	t.Helper()
	type syncBody struct {
		Rooms struct {
			Invite map[string]json.RawMessage `json:"invite"`
		} `json:"rooms"`
	}
	s := hstest.Decode[syncBody](t, c.Do(t, "GET", "/_matrix/client/v3/sync?timeout=0", nil))
	_, ok := s.Rooms.Invite[roomID]
	return ok
}

func TestThirdPartyInvites(t *testing.T) {
	is := newFakeIS(t)
	ca := is.caFile(t)
	f := hstest.NewFederation(t, hstest.Options{Config: func(c *config.Config) { c.FederationTrustedCA = ca }})
	hs1, hs2 := f.Server("hs1.polder.test"), f.Server("hs2.polder.test")
	alice := hs1.Register(t, "alice", "password-alice")
	bob := hs2.Register(t, "bob", "password-bob")
	carol := hs1.Register(t, "carol", "password-carol")
	dave := hs2.Register(t, "dave", "password-dave")
	t.Cleanup(func() {
		if t.Failed() {
			for _, hs := range f.Servers() {
				for _, l := range strings.Split(hs.Logs(), "\n") {
					if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "third-party") {
						t.Logf("%s: %s", hs.ServerName(), l)
					}
				}
			}
		}
	})
	roomID := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", "/_matrix/client/v3/createRoom", map[string]any{
		"preset": "private_chat", "name": "By email",
	})), "room_id")
	invite3PID := func(c *hstest.Client, address string) *hstest.Response {
		return c.Do(t, "POST", clientRoomPath0(roomID, "/invite"), map[string]any{
			"id_server": is.name(), "id_access_token": isToken, "medium": "email", "address": address,
		})
	}
	tokenOf := func(address string) string {
		is.mu.Lock()
		defer is.mu.Unlock()
		for _, inv := range is.invites {
			if inv.address == address {
				return inv.token
			}
		}
		t.Fatalf("no invite stored for %s", address)
		return ""
	}

	t.Run("remote invitee through exchange_third_party_invite", func(t *testing.T) {
		hstest.MustOK(t, invite3PID(alice, "bob@example.org"))
		tok := tokenOf("bob@example.org")
		st := hstest.MustOK(t, alice.Do(t, "GET", clientRoomPath0(roomID, "/state/m.room.third_party_invite/"+tok), nil))
		if st["public_key"] != is.key.PublicBase64() || st["display_name"] != "b..." {
			t.Fatalf("m.room.third_party_invite content = %v, want the identity server's key and display name", st)
		}
		if st["key_validity_url"] == "" {
			t.Fatalf("m.room.third_party_invite content = %v, want key_validity_url", st)
		}

		is.onBind(t, f, "hs2.polder.test", "bob@example.org", bob.UserID)
		waitFor(t, "bob sees the invite", func() error {
			if !invitedTo(t, bob, roomID) {
				return errors.New("no invite in sync")
			}
			return nil
		})
		if m := membershipOf(t, alice, roomID, bob.UserID); m != "invite" {
			t.Fatalf("bob's membership on hs1 = %q, want invite", m)
		}
		hstest.MustOK(t, bob.Do(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name=hs1.polder.test", map[string]any{}))
		waitFor(t, "alice sees bob joined", func() error {
			if m := membershipOf(t, alice, roomID, bob.UserID); m != "join" {
				return fmt.Errorf("membership %q", m)
			}
			return nil
		})
	})

	t.Run("local invitee, sent by the resident server itself", func(t *testing.T) {
		hstest.MustOK(t, invite3PID(alice, "carol@example.org"))
		is.onBind(t, f, "hs1.polder.test", "carol@example.org", carol.UserID)
		if m := membershipOf(t, alice, roomID, carol.UserID); m != "invite" {
			t.Fatalf("carol's membership = %q, want invite", m)
		}
		waitFor(t, "bob's server sees carol invited", func() error {
			if m := membershipOf(t, bob, roomID, carol.UserID); m != "invite" {
				return fmt.Errorf("membership %q", m)
			}
			return nil
		})
		hstest.MustOK(t, carol.Do(t, "POST", clientRoomPath0(roomID, "/join"), map[string]any{}))
	})

	t.Run("bound address: a plain invite", func(t *testing.T) {
		is.mu.Lock()
		is.bindings["dave@example.org"] = dave.UserID
		n := len(is.invites)
		is.mu.Unlock()
		hstest.MustOK(t, invite3PID(alice, "dave@example.org"))
		is.mu.Lock()
		stored := len(is.invites) - n
		is.mu.Unlock()
		if stored != 0 {
			t.Fatalf("store-invite called %d times for a bound address, want 0", stored)
		}
		if m := membershipOf(t, alice, roomID, dave.UserID); m != "invite" {
			t.Fatalf("dave's membership = %q, want invite", m)
		}
	})

	t.Run("onbind for a user of another server is ignored", func(t *testing.T) {
		hstest.MustOK(t, invite3PID(alice, "erin@example.org"))
		erin := hs1.UserID("erin")
		// Sent to hs2 about a user of hs1: hs2 must not act on it.
		is.onBind(t, f, "hs2.polder.test", "erin@example.org", erin)
		if m := membershipOf(t, alice, roomID, erin); m != "" {
			t.Fatalf("erin's membership = %q, want none", m)
		}
	})

	t.Run("exchange whose signature does not verify", func(t *testing.T) {
		hstest.MustOK(t, invite3PID(alice, "frank@example.org"))
		frank := hs2.UserID("frank")
		otherKey := mustKey(t, "1")
		x := map[string]any{
			"type": "m.room.member", "room_id": roomID, "sender": alice.UserID, "state_key": frank,
			"content": map[string]any{
				"membership": "invite",
				"third_party_invite": map[string]any{
					"display_name": "f...",
					"signed":       signedInvite(t, otherKey, frank, alice.UserID, tokenOf("frank@example.org")),
				},
			},
		}
		err := hs2.Process().Federation.Do(context.Background(), "hs1.polder.test", "PUT",
			"/_matrix/federation/v1/exchange_third_party_invite/"+url.PathEscape(roomID), x, nil)
		var re *fed.RemoteError
		if !errors.As(err, &re) || re.Status != 403 || re.ErrCode != "M_FORBIDDEN" {
			t.Fatalf("exchange with a foreign signature: %v, want 403 M_FORBIDDEN", err)
		}
		if m := membershipOf(t, alice, roomID, frank); m != "" {
			t.Fatalf("frank's membership = %q, want none", m)
		}
	})

	// bob has joined: hs2 is now in the room and sends invites of its
	// users itself, as alice (hs1 gets them relayed).
	seesToken := func(t *testing.T, c *hstest.Client, address string) {
		t.Helper()
		tok := tokenOf(address)
		waitFor(t, c.UserID+" sees the m.room.third_party_invite", func() error {
			if r := c.Do(t, "GET", clientRoomPath0(roomID, "/state/m.room.third_party_invite/"+tok), nil); r.Status != 200 {
				return fmt.Errorf("state: %d", r.Status)
			}
			return nil
		})
	}
	t.Run("invitee's server in the room sends the invite itself", func(t *testing.T) {
		hstest.MustOK(t, invite3PID(alice, "harry@example.org"))
		seesToken(t, bob, "harry@example.org")
		harry := hs2.UserID("harry")
		is.onBind(t, f, "hs2.polder.test", "harry@example.org", harry)
		if m := membershipOf(t, bob, roomID, harry); m != "invite" {
			t.Fatalf("harry's membership on hs2 = %q, want invite", m)
		}
		waitFor(t, "hs1 gets harry's invite", func() error {
			if m := membershipOf(t, alice, roomID, harry); m != "invite" {
				return fmt.Errorf("membership %q", m)
			}
			return nil
		})
	})

	t.Run("revoked key", func(t *testing.T) {
		hstest.MustOK(t, invite3PID(alice, "gina@example.org"))
		seesToken(t, bob, "gina@example.org")
		is.mu.Lock()
		is.revoked = true
		is.mu.Unlock()
		defer func() { is.mu.Lock(); is.revoked = false; is.mu.Unlock() }()
		gina := hs2.UserID("gina")
		is.onBind(t, f, "hs2.polder.test", "gina@example.org", gina)
		if m := membershipOf(t, bob, roomID, gina); m != "" {
			t.Fatalf("gina's membership = %q, want none", m)
		}
		if !strings.Contains(hs2.Logs(), "revoked") {
			t.Fatalf("hs2 did not log the revoked key")
		}
	})

	t.Run("errors of the client endpoint", func(t *testing.T) {
		tests := []struct {
			name    string
			client  *hstest.Client
			body    map[string]any
			status  int
			errcode string
		}{
			{"no access token for the identity server", alice, map[string]any{"id_server": is.name(), "medium": "email", "address": "x@example.org"}, 400, "M_MISSING_PARAM"},
			{"identity server refuses the token", alice, map[string]any{"id_server": is.name(), "id_access_token": "wrong", "medium": "email", "address": "x@example.org"}, 403, "M_FORBIDDEN"},
			{"invalid id_server", alice, map[string]any{"id_server": "evil/path", "id_access_token": isToken, "medium": "email", "address": "x@example.org"}, 400, "M_INVALID_PARAM"},
			{"unreachable identity server", alice, map[string]any{"id_server": "127.0.0.1:1", "id_access_token": isToken, "medium": "email", "address": "x@example.org"}, 502, "M_UNKNOWN"},
			{"inviter not in the room", dave, map[string]any{"id_server": is.name(), "id_access_token": isToken, "medium": "email", "address": "x@example.org"}, 403, "M_FORBIDDEN"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				hstest.MustErr(t, tc.client.Do(t, "POST", clientRoomPath0(roomID, "/invite"), tc.body), tc.status, tc.errcode)
			})
		}
	})
}

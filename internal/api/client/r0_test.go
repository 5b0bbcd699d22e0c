package client_test

import (
	"net/url"
	"slices"
	"testing"

	"polder.dev/polder/internal/hstest"
)

// /_matrix/client/r0/... is served as /_matrix/client/v3/... (Complement
// uses r0 in TestKeyChangesLocal, TestMessagesOverFederation, TestRoomState
// and others), and /versions lists the r0 releases.
func TestR0Paths(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		const r0 = "/_matrix/client/r0"
		anon := hs.Anon()
		login := hstest.MustOK(t, func() *hstest.Response {
			hs.Register(t, "alice", "pw")
			return anon.Do(t, "POST", r0+"/login", map[string]any{
				"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "pw",
			})
		}())
		alice := anon.WithToken(hstest.Str(t, login, "access_token"))
		roomID := hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", r0+"/createRoom", map[string]any{"preset": "public_chat"})), "room_id")
		m := hstest.MustOK(t, alice.Do(t, "GET", r0+"/rooms/"+url.PathEscape(roomID)+"/joined_members", nil))
		if joined, _ := m["joined"].(map[string]any); len(joined) != 1 {
			t.Errorf("r0 joined_members = %v, want alice", m)
		}
		hstest.MustErr(t, alice.Do(t, "GET", r0+"/no/such/endpoint", nil), 404, "M_UNRECOGNIZED")
		hstest.MustErr(t, alice.Do(t, "DELETE", r0+"/createRoom", nil), 405, "M_UNRECOGNIZED")
		v := hstest.MustOK(t, anon.Do(t, "GET", "/_matrix/client/versions", nil))
		vs, _ := v["versions"].([]any)
		if !slices.Contains(vs, any("r0.6.1")) || !slices.Contains(vs, any("v1.12")) {
			t.Errorf("versions = %v, want r0.6.1 and v1.12 among them", vs)
		}
	})
}

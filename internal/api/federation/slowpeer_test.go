package federation_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
)

// A server that is slow to answer an invite does not hold up the room:
// alice's messages go out while it thinks, and the invite fails cleanly
// when it refuses.
func TestSlowInviteeDoesNotBlockRoom(t *testing.T) {
	t.Parallel()
	e := newBadEnv(t)
	roomID := hstest.Str(t, hstest.MustOK(t, e.alice.Do(t, "POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat"})), "room_id")
	release := make(chan struct{})
	asked := make(chan struct{}, 1)
	e.evil.Mux.HandleFunc("PUT /_matrix/federation/v2/invite/{roomId}/{eventId}", func(w http.ResponseWriter, r *http.Request) {
		asked <- struct{}{}
		<-release
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"errcode":"M_FORBIDDEN","error":"not today"}`))
	})
	done := make(chan *hstest.Response, 1)
	go func() {
		done <- e.alice.Do(t, "POST", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/invite", map[string]any{"user_id": string(e.evil.UserID("mallory"))})
	}()
	select {
	case <-asked:
	case <-time.After(30 * time.Second):
		t.Fatal("the invitee's server was never asked")
	}
	// The invitee's server is still thinking: the room takes messages.
	for range 3 {
		e.aliceSays(t, idOf(roomID), "while the invitee thinks")
	}
	close(release)
	hstest.MustErr(t, <-done, 403, "M_FORBIDDEN")
	r := e.alice.Do(t, "GET", clientRoomPath(idOf(roomID), "/state/m.room.member/"+url.PathEscape(string(e.evil.UserID("mallory")))), nil)
	if r.Status != 404 {
		t.Errorf("mallory's membership after a refused invite: %d %s, want 404", r.Status, r.Body)
	}
}

func idOf(roomID string) id.RoomID { return id.RoomID(roomID) }

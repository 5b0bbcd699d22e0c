package client_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"polder.dev/polder/internal/hstest"
)

// An event's notification counts come in the very /sync response that
// carries the event (client-server API, "Receiving notifications"), while
// several members send at once: the rows are written in the event's own
// transaction, so no response may show an event without its count or a
// count without its event.
func TestPushCountsWithEvent(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		const senders, each = 4, 10
		alice := hs.Register(t, "alice", "pw")
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat"})
		var cs []*hstest.Client
		for i := range senders {
			c := hs.Register(t, fmt.Sprintf("sender%d", i), "pw")
			hstest.MustOK(t, c.Do(t, "POST", roomPath(roomID, "/join"), nil))
			cs = append(cs, c)
		}
		filter := syncFilter(map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 1000}}})
		since := doSync(t, alice, filter).NextBatch

		var wg sync.WaitGroup
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range each {
					r := c.Do(t, "PUT", roomPath(roomID, fmt.Sprintf("/send/m.room.message/cw%d-%d", i, j)),
						map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("%d/%d", i, j)})
					if r.Status != http.StatusOK {
						t.Errorf("send %d/%d: status %d, body %s", i, j, r.Status, r.Body)
						return
					}
				}
			}()
		}

		// alice never reads: after each response her count must be the
		// number of messages she has seen.
		seen := 0
		deadline := time.Now().Add(90 * time.Second)
		for seen < senders*each && time.Now().Before(deadline) && !t.Failed() {
			s := doSync(t, alice, filter+"&timeout=10000&since="+since)
			since = s.NextBatch
			jr := s.join(roomID)
			if jr == nil {
				continue
			}
			if jr.Timeline.Limited {
				t.Fatalf("timeline limited after %d messages", seen)
			}
			for _, ev := range jr.Timeline.Events {
				if ev.Type == "m.room.message" {
					seen++
				}
			}
			if jr.Unread == nil || jr.Unread.Notifications != seen || jr.Unread.Highlights != 0 {
				t.Errorf("after %d messages: unread_notifications %+v, want %d notifications", seen, jr.Unread, seen)
			}
		}
		wg.Wait()
		if seen != senders*each {
			t.Fatalf("saw %d messages by the deadline, want %d", seen, senders*each)
		}
		n := hstest.MustOK(t, alice.Do(t, "GET", c3+"/notifications?limit=100", nil))["notifications"].([]any)
		if len(n) != senders*each {
			t.Errorf("GET /notifications: %d, want %d", len(n), senders*each)
		}
	})
}

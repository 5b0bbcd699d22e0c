package client_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"polder.dev/polder/internal/hstest"
)

// gateway is a push gateway (push gateway API) that records what it gets.
// Its mode says how it answers: "ok", "fail" (500) or "drop" (the
// connection is closed without an answer); rejected pushkeys are named in
// every answer.
type gateway struct {
	*httptest.Server
	mu       sync.Mutex
	mode     string
	rejected []string
	got      []gwNotification // accepted
	attempts int              // all requests
}

type gwNotification struct {
	EventID           string         `json:"event_id"`
	RoomID            string         `json:"room_id"`
	Type              string         `json:"type"`
	Sender            string         `json:"sender"`
	SenderDisplayName string         `json:"sender_display_name"`
	RoomName          string         `json:"room_name"`
	Prio              string         `json:"prio"`
	Content           map[string]any `json:"content"`
	Counts            map[string]int `json:"counts"`
	Devices           []struct {
		AppID     string         `json:"app_id"`
		Pushkey   string         `json:"pushkey"`
		PushkeyTS int64          `json:"pushkey_ts"`
		Data      map[string]any `json:"data"`
		Tweaks    map[string]any `json:"tweaks"`
	} `json:"devices"`
}

func newGateway(t *testing.T) *gateway {
	g := &gateway{mode: "ok"}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		g.mu.Lock()
		defer g.mu.Unlock()
		g.attempts++
		if r.URL.Path != "/_matrix/push/v1/notify" || r.Method != "POST" {
			t.Errorf("gateway got %s %s", r.Method, r.URL.Path)
		}
		switch g.mode {
		case "fail":
			w.WriteHeader(500)
			return
		case "drop":
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				c.Close()
			}
			return
		}
		var req struct {
			Notification gwNotification `json:"notification"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			t.Errorf("gateway got invalid JSON %s", body)
		}
		g.got = append(g.got, req.Notification)
		rej := g.rejected
		if rej == nil {
			rej = []string{}
		}
		json.NewEncoder(w).Encode(map[string]any{"rejected": rej})
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *gateway) set(mode string) {
	g.mu.Lock()
	g.mode = mode
	g.mu.Unlock()
}

func (g *gateway) url() string { return g.URL + "/_matrix/push/v1/notify" }

// await waits until the gateway accepted n notifications for pushkey and
// returns them.
func (g *gateway) await(t *testing.T, pushkey string, n int) []gwNotification {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var out []gwNotification
		g.mu.Lock()
		for _, x := range g.got {
			if len(x.Devices) > 0 && x.Devices[0].Pushkey == pushkey {
				out = append(out, x)
			}
		}
		g.mu.Unlock()
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway got %d notifications for %s, want %d: %+v", len(out), pushkey, n, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *gateway) awaitAttempts(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		g.mu.Lock()
		a := g.attempts
		g.mu.Unlock()
		if a >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway got %d requests, want %d", a, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func setPusher(t *testing.T, c *hstest.Client, pushkey string, data map[string]any) {
	t.Helper()
	hstest.MustOK(t, c.Do(t, "POST", c3+"/pushers/set", map[string]any{
		"kind": "http", "app_id": "org.example.app", "pushkey": pushkey, "app_display_name": "Example",
		"device_display_name": "Phone", "lang": "en", "data": data,
	}))
}

func pushkeys(t *testing.T, c *hstest.Client) []string {
	t.Helper()
	var out []string
	for _, p := range hstest.MustOK(t, c.Do(t, "GET", c3+"/pushers", nil))["pushers"].([]any) {
		out = append(out, p.(map[string]any)["pushkey"].(string))
	}
	return out
}

func awaitPushers(t *testing.T, c *hstest.Client, want []string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := pushkeys(t, c)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pushers = %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A message, a mention, an encrypted event and a reaction reach a real
// push gateway as the default rules say, with counts; a gateway that is
// down gets the queue when it is back, also across a restart; a rejected
// pushkey removes its pusher; deleting a device removes its pusher.
func TestPushGateway(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		gw := newGateway(t)
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		carol := hs.Register(t, "carol", "pw")
		hstest.MustOK(t, bob.Do(t, "PUT", c3+"/profile/"+url.PathEscape(bob.UserID)+"/displayname", map[string]any{"displayname": "Bob B"}))
		roomID := createRoom(t, alice, map[string]any{"preset": "public_chat", "name": "Lunch"})
		hstest.MustOK(t, bob.Do(t, "POST", roomPath(roomID, "/join"), nil))
		hstest.MustOK(t, carol.Do(t, "POST", roomPath(roomID, "/join"), nil))
		setPusher(t, alice, "alice-key", map[string]any{"url": gw.url(), "custom": "kept"})
		setPusher(t, carol, "carol-key", map[string]any{"url": gw.url(), "format": "event_id_only"})
		if got := pushkeys(t, alice); !slices.Equal(got, []string{"alice-key"}) {
			t.Fatalf("GET /pushers = %v", got)
		}

		m1 := sendText(t, bob, roomID, "hello")
		m2 := syncSend(t, bob, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "alice?",
			"m.mentions": map[string]any{"user_ids": []string{alice.UserID}}})
		m3 := syncSend(t, bob, roomID, "m.room.encrypted", map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x", "session_id": "s", "sender_key": "k", "device_id": "D"})
		syncSend(t, bob, roomID, "m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": m1, "key": "👍"}})
		syncSend(t, bob, roomID, "m.room.message", map[string]any{"msgtype": "m.notice", "body": "a bot"})
		m4 := sendText(t, bob, roomID, "last")

		got := gw.await(t, "alice-key", 4)
		if len(got) != 4 {
			t.Fatalf("alice's gateway got %d notifications, want 4 (message, mention, encrypted, last): %+v", len(got), got)
		}
		for i, want := range []struct {
			eventID, prio string
			unread        int
			highlight     bool
		}{{m1, "low", 1, false}, {m2, "high", 2, true}, {m3, "high", 3, false}, {m4, "low", 4, false}} {
			n := got[i]
			if n.EventID != want.eventID || n.Prio != want.prio || n.Counts["unread"] != want.unread || (n.Devices[0].Tweaks["highlight"] == true) != want.highlight {
				t.Errorf("notification %d = %+v, want %+v", i, n, want)
			}
		}
		n := got[0]
		if n.RoomID != roomID || n.Type != "m.room.message" || n.Sender != bob.UserID || n.SenderDisplayName != "Bob B" || n.RoomName != "Lunch" || n.Content["body"] != "hello" {
			t.Errorf("full notification = %+v", n)
		}
		d := n.Devices[0]
		if d.AppID != "org.example.app" || d.PushkeyTS == 0 || d.Data["custom"] != "kept" || d.Data["url"] != nil {
			t.Errorf("device = %+v", d)
		}
		if got[1].Devices[0].Tweaks["sound"] != "default" {
			t.Errorf("mention tweaks = %v", got[1].Devices[0].Tweaks)
		}
		// Carol: event_id_only; the mention was not hers.
		cg := gw.await(t, "carol-key", 4)
		if c := cg[0]; c.EventID != m1 || c.Type != "" || c.Sender != "" || c.Content != nil || c.Counts["unread"] != 1 {
			t.Errorf("event_id_only notification = %+v", c)
		}
		if cg[1].Devices[0].Tweaks["highlight"] == true {
			t.Errorf("carol was highlighted by alice's mention")
		}

		// Counts in /sync and /notifications agree.
		jr := doSync(t, alice, "").join(roomID)
		if jr.Unread.Notifications != 4 || jr.Unread.Highlights != 1 {
			t.Errorf("alice's unread = %+v, want 4/1", *jr.Unread)
		}
		all := hstest.MustOK(t, alice.Do(t, "GET", c3+"/notifications", nil))["notifications"].([]any)
		if len(all) != 4 || all[0].(map[string]any)["event"].(map[string]any)["event_id"] != m4 || all[0].(map[string]any)["read"] != false {
			t.Errorf("/notifications = %v", all)
		}
		hl := hstest.MustOK(t, alice.Do(t, "GET", c3+"/notifications?only=highlight", nil))["notifications"].([]any)
		if len(hl) != 1 || hl[0].(map[string]any)["event"].(map[string]any)["event_id"] != m2 {
			t.Errorf("/notifications?only=highlight = %v", hl)
		}
		p1 := hstest.MustOK(t, alice.Do(t, "GET", c3+"/notifications?limit=3", nil))
		p2 := hstest.MustOK(t, alice.Do(t, "GET", c3+"/notifications?limit=3&from="+hstest.Str(t, p1, "next_token"), nil))
		if len(p1["notifications"].([]any)) != 3 || len(p2["notifications"].([]any)) != 1 || p2["next_token"] != nil {
			t.Errorf("pages = %v then %v", p1, p2)
		}
		// A receipt on m3 reads m1..m3.
		hstest.MustOK(t, alice.Do(t, "POST", roomPath(roomID, "/receipt/m.read/"+url.PathEscape(m3)), map[string]any{}))
		if jr := doSync(t, alice, "").join(roomID); jr.Unread.Notifications != 1 || jr.Unread.Highlights != 0 {
			t.Errorf("after the receipt: %+v, want 1/0", *jr.Unread)
		}
		reads := hstest.MustOK(t, alice.Do(t, "GET", c3+"/notifications", nil))["notifications"].([]any)
		if reads[0].(map[string]any)["read"] != false || reads[1].(map[string]any)["read"] != true {
			t.Errorf("read flags = %v", reads)
		}

		// The gateway fails, then drops connections, across a restart;
		// then it is back and gets what was queued, in order.
		gw.set("fail")
		before := func() int { gw.mu.Lock(); defer gw.mu.Unlock(); return gw.attempts }()
		q1 := sendText(t, bob, roomID, "while down 1")
		gw.awaitAttempts(t, before+2) // alice's and carol's first tries
		hs.Restart(t)
		gw.set("drop")
		q2 := sendText(t, bob, roomID, "while down 2")
		gw.awaitAttempts(t, before+4)
		gw.set("ok")
		got = gw.await(t, "alice-key", 6)
		if got[4].EventID != q1 || got[5].EventID != q2 || got[4].Counts["unread"] != 2 || got[5].Counts["unread"] != 3 {
			t.Errorf("after the outage: %+v %+v, want %s (unread 2) then %s (unread 3)", got[4], got[5], q1, q2)
		}

		// Carol's pushkey is rejected: her pusher goes.
		gw.mu.Lock()
		gw.rejected = []string{"carol-key"}
		gw.mu.Unlock()
		sendText(t, bob, roomID, "reject me")
		awaitPushers(t, carol, nil)

		// A pusher of a deleted device goes with it.
		phone := hs.Login(t, "alice", "pw")
		setPusher(t, phone, "phone-key", map[string]any{"url": gw.url()})
		if got := pushkeys(t, alice); !slices.Equal(got, []string{"alice-key", "phone-key"}) {
			t.Fatalf("pushers = %v", got)
		}
		hstest.MustOK(t, alice.UIA(t, "DELETE", c3+"/devices/"+url.PathEscape(phone.DeviceID), map[string]any{}, alice.PasswordAuth()))
		awaitPushers(t, alice, []string{"alice-key"})
		// Logging out deletes the device too.
		phone2 := hs.Login(t, "alice", "pw")
		setPusher(t, phone2, "phone2-key", map[string]any{"url": gw.url()})
		hstest.MustOK(t, phone2.Do(t, "POST", c3+"/logout", map[string]any{}))
		awaitPushers(t, alice, []string{"alice-key"})
	})
}

func TestPushersSetErrors(t *testing.T) {
	t.Parallel()
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw")
		bob := hs.Register(t, "bob", "pw")
		base := func() map[string]any {
			return map[string]any{"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "A", "device_display_name": "D", "lang": "en",
				"data": map[string]any{"url": "https://push.example/_matrix/push/v1/notify"}}
		}
		for _, tc := range []struct {
			name   string
			change func(m map[string]any)
			code   string
		}{
			{"no app_id", func(m map[string]any) { delete(m, "app_id") }, "M_MISSING_PARAM"},
			{"no lang", func(m map[string]any) { delete(m, "lang") }, "M_MISSING_PARAM"},
			{"no data", func(m map[string]any) { delete(m, "data") }, "M_MISSING_PARAM"},
			{"no url", func(m map[string]any) { m["data"] = map[string]any{} }, "M_MISSING_PARAM"},
			{"wrong path", func(m map[string]any) { m["data"] = map[string]any{"url": "https://push.example/notify"} }, "M_INVALID_PARAM"},
			{"not a URL", func(m map[string]any) { m["data"] = map[string]any{"url": "push.example"} }, "M_INVALID_PARAM"},
			{"email", func(m map[string]any) { m["kind"] = "email"; m["app_id"] = "m.email" }, "M_INVALID_PARAM"},
			{"long app_id", func(m map[string]any) { m["app_id"] = fmt.Sprintf("%065d", 0) }, "M_INVALID_PARAM"},
			{"long pushkey", func(m map[string]any) { m["pushkey"] = fmt.Sprintf("%0513d", 0) }, "M_INVALID_PARAM"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				m := base()
				tc.change(m)
				hstest.MustErr(t, alice.Do(t, "POST", c3+"/pushers/set", m), 400, tc.code)
			})
		}
		// append: false takes the pushkey from other users; true shares it.
		hstest.MustOK(t, alice.Do(t, "POST", c3+"/pushers/set", base()))
		hstest.MustOK(t, bob.Do(t, "POST", c3+"/pushers/set", base()))
		if got := pushkeys(t, alice); got != nil {
			t.Errorf("alice's pusher stayed though bob set the same key without append: %v", got)
		}
		m := base()
		m["append"] = true
		hstest.MustOK(t, alice.Do(t, "POST", c3+"/pushers/set", m))
		if a, b := pushkeys(t, alice), pushkeys(t, bob); len(a) != 1 || len(b) != 1 {
			t.Errorf("with append: alice %v, bob %v", a, b)
		}
		// Updating keeps one pusher; kind null deletes it.
		m["lang"] = "nl"
		hstest.MustOK(t, alice.Do(t, "POST", c3+"/pushers/set", m))
		ps := hstest.MustOK(t, alice.Do(t, "GET", c3+"/pushers", nil))["pushers"].([]any)
		if len(ps) != 1 || ps[0].(map[string]any)["lang"] != "nl" {
			t.Errorf("after update: %v", ps)
		}
		hstest.MustOK(t, alice.Do(t, "POST", c3+"/pushers/set", map[string]any{"kind": nil, "app_id": "a", "pushkey": "k"}))
		if got := pushkeys(t, alice); got != nil {
			t.Errorf("after kind null: %v", got)
		}
	})
}

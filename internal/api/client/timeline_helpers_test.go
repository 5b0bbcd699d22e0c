package client_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"polder.dev/polder/internal/hstest"
)

const c1 = "/_matrix/client/v1"

var tlTxn atomic.Int64

// send sends an event of any type and returns its ID.
func send(t testing.TB, c *hstest.Client, roomID, typ string, content map[string]any) string {
	t.Helper()
	r := c.Do(t, "PUT", roomPath(roomID, fmt.Sprintf("/send/%s/tl%d", typ, tlTxn.Add(1))), content)
	return hstest.Str(t, hstest.MustOK(t, r), "event_id")
}

// sendRel sends an event that relates to another.
func sendRel(t testing.TB, c *hstest.Client, roomID, typ, rel, to string, extra map[string]any) *hstest.Response {
	t.Helper()
	content := map[string]any{"m.relates_to": map[string]any{"rel_type": rel, "event_id": to}}
	for k, v := range extra {
		if k == "key" {
			content["m.relates_to"].(map[string]any)["key"] = v
			continue
		}
		content[k] = v
	}
	return c.Do(t, "PUT", roomPath(roomID, fmt.Sprintf("/send/%s/tl%d", typ, tlTxn.Add(1))), content)
}

func msg(body string) map[string]any { return map[string]any{"msgtype": "m.text", "body": body} }

func putState(t testing.TB, c *hstest.Client, roomID, typ, key string, content map[string]any) string {
	t.Helper()
	r := c.Do(t, "PUT", roomPath(roomID, "/state/"+typ+"/"+key), content)
	return hstest.Str(t, hstest.MustOK(t, r), "event_id")
}

func redactEv(t testing.TB, c *hstest.Client, roomID, eventID string) {
	t.Helper()
	hstest.MustOK(t, c.Do(t, "PUT", roomPath(roomID, fmt.Sprintf("/redact/%s/tl%d", url.PathEscape(eventID), tlTxn.Add(1))), map[string]any{}))
}

func invite(t testing.TB, c *hstest.Client, roomID, user string) {
	t.Helper()
	hstest.MustOK(t, c.Do(t, "POST", roomPath(roomID, "/invite"), map[string]any{"user_id": user}))
}

func join(t testing.TB, c *hstest.Client, roomID string) {
	t.Helper()
	hstest.MustOK(t, c.Do(t, "POST", roomPath(roomID, "/join"), map[string]any{}))
}

// ev is an event as a client sees it.
type ev struct {
	EventID  string         `json:"event_id"`
	Type     string         `json:"type"`
	Sender   string         `json:"sender"`
	StateKey *string        `json:"state_key"`
	Content  map[string]any `json:"content"`
	Unsigned struct {
		Relations       map[string]json.RawMessage `json:"m.relations"`
		RedactedBecause json.RawMessage            `json:"redacted_because"`
	} `json:"unsigned"`
}

func (e ev) body() string { s, _ := e.Content["body"].(string); return s }

// page is a /messages response.
type page struct {
	Chunk []ev    `json:"chunk"`
	Start string  `json:"start"`
	End   *string `json:"end"`
	State []ev    `json:"state"`
}

func messagesPath(roomID string, params ...string) string {
	return roomPath(roomID, "/messages?"+strings.Join(params, "&"))
}

func getPage(t testing.TB, c *hstest.Client, roomID string, params ...string) page {
	t.Helper()
	r := c.Do(t, "GET", messagesPath(roomID, params...), nil)
	hstest.MustOK(t, r)
	return hstest.Decode[page](t, r)
}

// bodies lists the bodies of the message events of evs.
func bodies(evs []ev) []string {
	var out []string
	for _, e := range evs {
		if e.Type == "m.room.message" {
			out = append(out, e.body())
		}
	}
	return out
}

func ids(evs []ev) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventID
	}
	return out
}

func getEv(t testing.TB, c *hstest.Client, roomID, eventID string) ev {
	t.Helper()
	r := c.Do(t, "GET", roomPath(roomID, "/event/"+url.PathEscape(eventID)), nil)
	hstest.MustOK(t, r)
	return hstest.Decode[ev](t, r)
}

// thread is the m.thread bundled aggregation.
type thread struct {
	Count        int  `json:"count"`
	Participated bool `json:"current_user_participated"`
	LatestEvent  ev   `json:"latest_event"`
}

func relOf[T any](t testing.TB, e ev, rel string) (T, bool) {
	t.Helper()
	var v T
	raw, ok := e.Unsigned.Relations[rel]
	if !ok {
		return v, false
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("unsigned.m.relations[%s] = %s: %v", rel, raw, err)
	}
	return v, true
}

func q(s string) string { return url.QueryEscape(s) }

func reverse[T any](s []T) []T {
	out := make([]T, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %v: %v", v, err)
	}
	return string(b)
}

// decodeOK checks that r is a 200 and decodes its body.
func decodeOK[T any](t testing.TB, r *hstest.Response) T {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("%s: got status %d, body %s; want 200", r.Call, r.Status, r.Body)
	}
	return hstest.Decode[T](t, r)
}

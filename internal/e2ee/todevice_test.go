package e2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/store/storetest"
)

// toDeviceEDUs: every message once, each EDU under the limit as the
// queue writes it, message IDs a function of the request.
func TestToDeviceEDUs(t *testing.T) {
	msgs := map[id.UserID]map[id.DeviceID]json.RawMessage{}
	for u := range 7 {
		user := id.UserID(fmt.Sprintf("@u%d:remote.test", u))
		msgs[user] = map[id.DeviceID]json.RawMessage{}
		for d := range 40 {
			// & and < are escaped by json.Marshal: 6 bytes each on the wire.
			msgs[user][id.DeviceID(fmt.Sprintf("D%d", d))] = json.RawMessage(fmt.Sprintf(`{"i": %d, "p": %q}`, d, strings.Repeat("&<x", 100*d)))
		}
	}
	edus, err := toDeviceEDUs("@a:hs.test", "m.t", "key", msgs)
	if err != nil {
		t.Fatalf("toDeviceEDUs: %v", err)
	}
	seen := map[string]bool{}
	ids := map[string]bool{}
	for _, e := range edus {
		b, err := json.Marshal(federation.Transaction{EDUs: []federation.EDU{e}})
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > toDeviceMaxEDU {
			t.Errorf("EDU of %d bytes, over %d", len(b), toDeviceMaxEDU)
		}
		var c federation.DirectToDevice
		if err := json.Unmarshal(e.Content, &c); err != nil {
			t.Fatal(err)
		}
		if c.Sender != "@a:hs.test" || c.Type != "m.t" || len(c.MessageID) != 22 || ids[c.MessageID] {
			t.Errorf("EDU sender %s type %s message_id %q", c.Sender, c.Type, c.MessageID)
		}
		ids[c.MessageID] = true
		for u, devs := range c.Messages {
			for d, content := range devs {
				k := string(u) + "/" + string(d)
				var want, got any
				json.Unmarshal(msgs[u][d], &want)
				json.Unmarshal(content, &got)
				if seen[k] || fmt.Sprint(want) != fmt.Sprint(got) {
					t.Errorf("message %s repeated or changed", k)
				}
				seen[k] = true
			}
		}
	}
	if len(seen) != 7*40 {
		t.Errorf("%d messages in the EDUs, want %d", len(seen), 7*40)
	}
	t.Logf("%d messages in %d EDUs", len(seen), len(edus))

	// The same request gives the same EDUs; another key other IDs.
	again, _ := toDeviceEDUs("@a:hs.test", "m.t", "key", msgs)
	other, _ := toDeviceEDUs("@a:hs.test", "m.t", "key2", msgs)
	if len(again) != len(edus) || len(other) != len(edus) {
		t.Fatalf("EDU counts %d, %d, %d", len(edus), len(again), len(other))
	}
	for i := range edus {
		if string(again[i].Content) != string(edus[i].Content) {
			t.Errorf("EDU %d differs for the same request", i)
		}
		if string(other[i].Content) == string(edus[i].Content) {
			t.Errorf("EDU %d is the same for another request", i)
		}
	}

	// One message too large for an EDU.
	big := map[id.UserID]map[id.DeviceID]json.RawMessage{"@u:remote.test": {"D": json.RawMessage(`"` + strings.Repeat("<", 20000) + `"`)}}
	if _, err := toDeviceEDUs("@a:hs.test", "m.t", "key", big); err == nil {
		t.Errorf("toDeviceEDUs of a 120 KB (escaped) message: no error")
	} else if mx, ok := mxerr.As(err); !ok || mx.Code != "M_TOO_LARGE" {
		t.Errorf("toDeviceEDUs of a too large message: %v, want M_TOO_LARGE", err)
	}
}

// A database failure is returned by ReceiveToDevice (the federation API
// then fails the transaction, and the origin retries).
func TestReceiveToDeviceDatabaseError(t *testing.T) {
	db := storetest.Open(t, storetest.Engines(t)[0].Options(t))
	s := New(Config{ServerName: "hs.test"}, db, notify.New(notify.Position{}), slog.New(slog.DiscardHandler))
	m := federation.DirectToDevice{Sender: "@c:remote.test", Type: "m.t", MessageID: "m1",
		Messages: map[id.UserID]map[id.DeviceID]json.RawMessage{"@b:hs.test": {"*": json.RawMessage(`{}`)}}}
	if err := s.ReceiveToDevice(context.Background(), "remote.test", m); err != nil {
		t.Fatalf("ReceiveToDevice: %v", err)
	}
	db.Close()
	m.MessageID = "m2"
	err := s.ReceiveToDevice(context.Background(), "remote.test", m)
	if err == nil {
		t.Fatalf("ReceiveToDevice on a closed database: no error")
	}
	if _, ok := mxerr.As(err); ok {
		t.Errorf("ReceiveToDevice on a closed database: %v, want a plain error (not a refusal)", err)
	}
	// Ignored EDUs are no error, whatever the database.
	m.Sender = "@mallory:elsewhere.test"
	if err := s.ReceiveToDevice(context.Background(), "remote.test", m); err != nil {
		t.Errorf("ReceiveToDevice of a spoofed sender: %v, want nil", err)
	}
}

package room

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/cjson"
	"polder.dev/polder/internal/event"
	"polder.dev/polder/internal/store"
)

// Viewer is who an event is formatted for.
type Viewer struct {
	UserID   id.UserID
	DeviceID id.DeviceID
}

// FormatOptions change how events are formatted for clients.
type FormatOptions struct {
	// Federation gives the events in the federation format (filters'
	// event_format: "federation") instead of the client format.
	Federation bool
	// NoAggregations leaves out bundled aggregations (m.relations).
	NoAggregations bool
	// NoRoomID leaves out room_id (sync's timelines and state do).
	NoRoomID bool
}

// clientKeys are the top-level keys of the client event format
// (client-server API, "ClientEvent"). redacts is kept for redactions so
// that clients of every room version find it at the top level.
var clientKeys = []string{"content", "event_id", "origin_server_ts", "redacts", "room_id", "sender", "state_key", "type"}

// Format turns stored events into what clients see: the client event
// format with unsigned age, transaction_id (for the device that sent it),
// prev_content and replaces_state, redacted_because, and bundled
// aggregations.
func (s *Service) Format(ctx context.Context, evs []*store.Event, v Viewer, o FormatOptions) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(evs))
	if len(evs) == 0 {
		return out, nil
	}
	// Redactions that applied, loaded in one batch.
	var redIDs []id.EventID
	for _, ev := range evs {
		if ev.RedactedBy != "" {
			redIDs = append(redIDs, ev.RedactedBy)
		}
	}
	reds := map[id.EventID]*store.Event{}
	if len(redIDs) > 0 {
		loaded, err := s.db.Events(ctx, redIDs)
		if err != nil {
			return nil, err
		}
		for _, r := range loaded {
			reds[r.EventID()] = r
		}
	}
	var agg map[id.EventID][]byte
	if !o.NoAggregations {
		var err error
		if agg, err = s.bundled(ctx, evs, v, o); err != nil {
			return nil, err
		}
	}
	now := time.Now().UnixMilli()
	for i, ev := range evs {
		var redactedBecause []byte
		if r := reds[ev.RedactedBy]; r != nil {
			redactedBecause = s.formatOne(r, v, nil, nil, now, FormatOptions{NoRoomID: o.NoRoomID, Federation: o.Federation})
		}
		out[i] = s.formatOne(ev, v, redactedBecause, agg[ev.EventID()], now, o)
	}
	return out, nil
}

// FormatOne formats a single event (see Format).
func (s *Service) FormatOne(ctx context.Context, ev *store.Event, v Viewer, o FormatOptions) (json.RawMessage, error) {
	out, err := s.Format(ctx, []*store.Event{ev}, v, o)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

func (s *Service) formatOne(ev *store.Event, v Viewer, redactedBecause, relations []byte, now int64, o FormatOptions) []byte {
	var b []byte
	if o.Federation {
		b = ev.JSON()
	} else {
		b = clientBodies.get(ev, o.NoRoomID)
	}
	u := []byte("{}")
	if len(ev.Added) > 0 {
		u = ev.Added
	}
	u = cjson.Set(nil, u, "age", strconv.AppendInt(nil, max(0, now-ev.OriginServerTS()), 10))
	if ev.TxnID != "" && ev.Sender() == v.UserID && ev.TxnDevice == v.DeviceID && v.DeviceID != "" {
		u = cjson.Set(nil, u, "transaction_id", cjson.AppendString(nil, ev.TxnID))
	}
	if redactedBecause != nil {
		u = cjson.Set(nil, u, "redacted_because", redactedBecause)
	}
	if relations != nil {
		u = cjson.Set(nil, u, "m.relations", relations)
	}
	if o.Federation {
		return cjson.Set(nil, b, "unsigned", u)
	}
	// The client keys all sort before "unsigned": it goes last, as
	// cjson.Set would put it, without walking the event again.
	out := make([]byte, 0, len(b)+len(u)+len(`,"unsigned":`))
	out = append(out, b[:len(b)-1]...)
	if len(b) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"unsigned":`...)
	out = append(out, u...)
	return append(out, '}')
}

// clientBody is the client format of ev without unsigned: the members of
// clientKeys (room_id unless noRoomID), with event_id, room_id and
// redacts added where the room version leaves them out of the PDU.
func clientBody(ev *store.Event, noRoomID bool) []byte {
	raw := ev.JSON()
	b := make([]byte, 0, len(raw)+128)
	b = append(b, '{')
	n := 0
	for k, val := range cjson.Members(raw) {
		key := string(k) // encoded, without quotes; the client keys need no escapes
		if !contains(clientKeys, key) || (noRoomID && key == "room_id") {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		b = append(b, val...)
	}
	if ev.Redacts() != "" && !hasKey(raw, "redacts") {
		b = append(b, `,"redacts":`...)
		b = cjson.AppendString(b, string(ev.Redacts()))
	}
	b = append(b, '}')
	if !hasKey(raw, "event_id") { // room versions 3+ derive it from the hash
		b = cjson.Set(nil, b, "event_id", cjson.AppendString(nil, string(ev.EventID())))
	}
	if !noRoomID && !hasKey(raw, "room_id") { // room version 12's create event
		b = cjson.Set(nil, b, "room_id", cjson.AppendString(nil, string(ev.RoomID())))
	}
	return b
}

// bodyCache keeps the client bodies (clientBody) of the events formatted
// last. Initial syncs format the same events over and over (every room's
// newest events and its state), and the body was most of the cost of
// formatting them: a walk over the event and a copy per key added. A body
// depends only on the parsed event and noRoomID; an entry is used only
// for the very *event.PDU it was made from, so an event redacted in place
// (stored again with other bytes, parsed again) gets a new body and the
// cache needs no invalidation. The store's parse cache (store.CachedEvents)
// hands out the same *event.PDU for the same bytes. Process-wide, as the
// store's cache is.
type bodyCache struct {
	mu   sync.Mutex
	m    map[bodyKey]bodyEntry
	ring []bodyKey // FIFO of the keys, bodyCacheSize long once full
	next int
}

type bodyKey struct {
	event    id.EventID
	noRoomID bool
}

type bodyEntry struct {
	pdu  *event.PDU
	body []byte // never modified
}

// bodyCacheSize holds the bodies of about 500 rooms' newest events and
// state, some 8 MB.
const bodyCacheSize = 16384

var clientBodies bodyCache

// get returns the client body of ev; the caller must not modify it.
func (c *bodyCache) get(ev *store.Event, noRoomID bool) []byte {
	k := bodyKey{ev.EventID(), noRoomID}
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if ok && e.pdu == ev.PDU {
		return e.body
	}
	body := clientBody(ev, noRoomID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[bodyKey]bodyEntry, bodyCacheSize)
		c.ring = make([]bodyKey, 0, bodyCacheSize)
	}
	if _, had := c.m[k]; !had {
		if len(c.ring) < bodyCacheSize {
			c.ring = append(c.ring, k)
		} else {
			delete(c.m, c.ring[c.next])
			c.ring[c.next] = k
			c.next = (c.next + 1) % bodyCacheSize
		}
	}
	c.m[k] = bodyEntry{pdu: ev.PDU, body: body}
	return body
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hasKey(obj []byte, key string) bool {
	_, ok := cjson.Get(obj, key)
	return ok
}

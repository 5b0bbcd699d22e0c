package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// NotifyPath is the only path a pusher's URL may have (client-server API,
// POST /pushers/set: "MUST be an HTTPS URL with a path of
// /_matrix/push/v1/notify").
const NotifyPath = "/_matrix/push/v1/notify"

type metrics struct {
	evaluated, sent, failed, rejected, pruned prometheus.Counter
}

func newMetrics() metrics {
	return metrics{
		evaluated: prometheus.NewCounter(prometheus.CounterOpts{Name: "polder_push_evaluations_total", Help: "Push rule sets evaluated (one per event and local member)."}),
		sent:      prometheus.NewCounter(prometheus.CounterOpts{Name: "polder_pushes_sent_total", Help: "Notifications a push gateway accepted."}),
		failed:    prometheus.NewCounter(prometheus.CounterOpts{Name: "polder_pushes_failed_total", Help: "Attempts to reach a push gateway that failed (retried with backoff)."}),
		rejected:  prometheus.NewCounter(prometheus.CounterOpts{Name: "polder_pushers_rejected_total", Help: "Pushers removed because their gateway rejected the pushkey."}),
		pruned:    prometheus.NewCounter(prometheus.CounterOpts{Name: "polder_push_rows_pruned_total", Help: "Read notification rows deleted after the retention period."}),
	}
}

// Collectors are the service's Prometheus metrics.
func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.m.evaluated, s.m.sent, s.m.failed, s.m.rejected, s.m.pruned}
}

// ---- The client-server API of pushers ----

// PusherSet is the body of POST /pushers/set.
type PusherSet struct {
	Pushkey           *string         `json:"pushkey"`
	Kind              *string         `json:"kind"`
	AppID             *string         `json:"app_id"`
	AppDisplayName    *string         `json:"app_display_name"`
	DeviceDisplayName *string         `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag"`
	Lang              *string         `json:"lang"`
	Data              json.RawMessage `json:"data"`
	Append            bool            `json:"append"`
}

// SetPusher is POST /pushers/set for the user's device. Errors:
// M_MISSING_PARAM, M_INVALID_PARAM (a pushkey over 512 bytes, an app_id
// over 64 characters, a kind other than http, a data.url that is not an
// http(s) URL with the path /_matrix/push/v1/notify).
func (s *Service) SetPusher(ctx context.Context, user id.UserID, localpart string, device id.DeviceID, req PusherSet) error {
	var missing []string
	if req.AppID == nil {
		missing = append(missing, "app_id")
	}
	if req.Pushkey == nil {
		missing = append(missing, "pushkey")
	}
	if len(missing) == 0 && req.Kind == nil {
		// kind null deletes the pusher.
		if err := s.db.DeletePusher(ctx, user, *req.AppID, *req.Pushkey); err != nil {
			return err
		}
		return s.d.reload(ctx)
	}
	if req.Kind == nil {
		missing = append(missing, "kind")
	}
	if req.AppDisplayName == nil {
		missing = append(missing, "app_display_name")
	}
	if req.DeviceDisplayName == nil {
		missing = append(missing, "device_display_name")
	}
	if req.Lang == nil {
		missing = append(missing, "lang")
	}
	if len(req.Data) == 0 || string(req.Data) == "null" {
		missing = append(missing, "data")
	}
	if len(missing) > 0 {
		return mxerr.MissingParam("Missing parameters: %s", strings.Join(missing, ", "))
	}
	if len(*req.Pushkey) > 512 {
		return mxerr.InvalidParam("pushkey is longer than 512 bytes")
	}
	if utf8.RuneCountInString(*req.AppID) > 64 {
		return mxerr.InvalidParam("app_id is longer than 64 characters")
	}
	if *req.Kind != "http" {
		// Email notifications are not served (as Synapse without email
		// configured).
		return mxerr.InvalidParam("pusher kind %q is not supported", *req.Kind)
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(req.Data, &data); err != nil || data == nil {
		return mxerr.InvalidParam("data must be an object")
	}
	var raw string
	if json.Unmarshal(data["url"], &raw) != nil || raw == "" {
		return mxerr.MissingParam("http pushers need data.url")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != NotifyPath {
		return mxerr.InvalidParam("data.url must be an http(s) URL with the path %s", NotifyPath)
	}
	p := store.Pusher{UserID: user, DeviceID: device, Kind: *req.Kind, AppID: *req.AppID, Pushkey: *req.Pushkey,
		AppDisplayName: *req.AppDisplayName, DeviceDisplayName: *req.DeviceDisplayName, ProfileTag: req.ProfileTag,
		Lang: *req.Lang, Data: req.Data, PushkeyTS: time.Now().Unix()}
	if err := s.db.SetPusher(ctx, localpart, p, req.Append); err != nil {
		return fmt.Errorf("set pusher: %w", err)
	}
	return s.d.reload(ctx)
}

// PusherInfo is a pusher as GET /pushers shows it.
type PusherInfo struct {
	Pushkey           string          `json:"pushkey"`
	Kind              string          `json:"kind"`
	AppID             string          `json:"app_id"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag,omitempty"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
}

// Pushers is GET /pushers.
func (s *Service) Pushers(ctx context.Context, user id.UserID) ([]PusherInfo, error) {
	ps, err := s.db.Pushers(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]PusherInfo, 0, len(ps))
	for _, p := range ps {
		out = append(out, PusherInfo{Pushkey: p.Pushkey, Kind: p.Kind, AppID: p.AppID, AppDisplayName: p.AppDisplayName,
			DeviceDisplayName: p.DeviceDisplayName, ProfileTag: p.ProfileTag, Lang: p.Lang, Data: p.Data})
	}
	return out, nil
}

// DevicesDeleted forgets the pushers of deleted devices (the store deleted
// them with the devices); the user service calls it.
func (s *Service) DevicesDeleted(ctx context.Context, _ id.UserID, _ []id.DeviceID) error {
	return s.d.reload(ctx)
}

// Run delivers queued notifications to push gateways, and with a
// retention set prunes old read notification rows (prune.go), until ctx
// ends.
func (s *Service) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.prune(ctx)
	}()
	err := s.d.run(ctx)
	<-done
	return err
}

// ---- Delivery ----

type pusherState struct {
	p       store.Pusher
	pending bool // the queue may hold items
	busy    bool // a worker is sending
	gen     int  // counts queue additions, so that a worker clears pending only if none came during its last read
	retryAt time.Time
}

type job struct {
	ev                          *store.Event
	notices                     []notice
	senderName, roomName, alias string
}

// delivery turns notifications into queued pushes and sends them, one
// worker per pusher at a time, in queue order, with exponential backoff
// per pusher after failures.
type delivery struct {
	s      *Service
	client *http.Client
	wake   chan struct{}

	mu      sync.Mutex
	loaded  bool
	pushers map[int64]*pusherState
	byUser  map[id.UserID][]*pusherState
	jobs    []job
	wg      sync.WaitGroup
}

func newDelivery(s *Service) *delivery {
	c := s.cfg.HTTPClient
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	return &delivery{s: s, client: c, wake: make(chan struct{}, 1), pushers: map[int64]*pusherState{}, byUser: map[id.UserID][]*pusherState{}}
}

func (d *delivery) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// reload reads the pushers again, keeping the state of those that stay.
func (d *delivery) reload(ctx context.Context) error {
	ps, err := d.s.db.Pushers(ctx, "")
	if err != nil {
		return fmt.Errorf("load pushers: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	next := make(map[int64]*pusherState, len(ps))
	byUser := map[id.UserID][]*pusherState{}
	for _, p := range ps {
		st := d.pushers[p.NID]
		if st == nil {
			st = &pusherState{pending: true}
			if p.RetryTS > 0 {
				st.retryAt = time.UnixMilli(p.RetryTS)
			}
		}
		st.p = p
		next[p.NID] = st
		byUser[p.UserID] = append(byUser[p.UserID], st)
	}
	d.pushers, d.byUser, d.loaded = next, byUser, true
	d.poke()
	return nil
}

// enqueue hands notifications over to the delivery loop (the badge counts
// are read there, off the path that persists events).
func (d *delivery) enqueue(j job) {
	d.mu.Lock()
	if d.loaded {
		has := false
		for _, n := range j.notices {
			if len(d.byUser[n.user]) > 0 {
				has = true
				break
			}
		}
		if !has {
			d.mu.Unlock()
			return
		}
	}
	d.jobs = append(d.jobs, j)
	d.mu.Unlock()
	d.poke()
}

func (d *delivery) run(ctx context.Context) error {
	defer d.wg.Wait()
	for {
		if err := d.reload(ctx); err == nil {
			break
		} else if ctx.Err() != nil {
			return nil
		} else {
			d.s.log.Warn("load pushers", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		jobs := d.jobs
		d.jobs = nil
		d.mu.Unlock()
		for _, j := range jobs {
			if err := d.queue(ctx, j); err != nil && ctx.Err() == nil {
				d.s.log.Error("queue pushes", "event_id", j.ev.EventID(), "error", err)
			}
		}
		next := d.dispatch(ctx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		case <-timer.C:
		}
	}
}

// dispatch starts a worker for each pusher with work and no backoff, and
// returns how long until the next backoff ends.
func (d *delivery) dispatch(ctx context.Context) time.Duration {
	now := time.Now()
	next := time.Hour
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, st := range d.pushers {
		if !st.pending || st.busy {
			continue
		}
		if wait := st.retryAt.Sub(now); wait > 0 {
			next = min(next, wait)
			continue
		}
		st.busy = true
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.work(ctx, st)
		}()
	}
	return next
}

// queue builds the gateway requests of a job, one per pusher of each
// notified user, and stores them.
func (d *delivery) queue(ctx context.Context, j job) error {
	var items []store.PushItem
	for _, n := range j.notices {
		d.mu.Lock()
		sts := slices.Clone(d.byUser[n.user])
		d.mu.Unlock()
		if len(sts) == 0 {
			continue
		}
		unread, err := d.s.db.UnreadNotificationTotal(ctx, n.user, j.ev.StreamPos)
		if err != nil {
			return err
		}
		for _, st := range sts {
			body, err := notification(j, n, st.p, unread)
			if err != nil {
				return err
			}
			items = append(items, store.PushItem{PusherNID: st.p.NID, Notification: body})
		}
	}
	if err := d.s.db.EnqueuePushes(ctx, items); err != nil {
		return err
	}
	d.mu.Lock()
	for _, it := range items {
		if st := d.pushers[it.PusherNID]; st != nil {
			st.pending = true
			st.gen++
		}
	}
	d.mu.Unlock()
	return nil
}

// notification is the body of POST /_matrix/push/v1/notify for one
// pusher (push gateway API): the event's fields unless the pusher's
// data.format is event_id_only, the counts, the device with the rule's
// tweaks, and the priority.
func notification(j job, n notice, p store.Pusher, unread int) ([]byte, error) {
	var data map[string]json.RawMessage
	if err := json.Unmarshal(p.Data, &data); err != nil {
		return nil, fmt.Errorf("pusher data: %w", err)
	}
	var format string
	_ = json.Unmarshal(data["format"], &format)
	delete(data, "url")
	tweaks := map[string]any{}
	for _, a := range n.result.Actions() {
		var t map[string]any
		if json.Unmarshal(a, &t) != nil {
			continue
		}
		name, ok := t["set_tweak"].(string)
		if !ok {
			continue
		}
		if v, ok := t["value"]; ok {
			tweaks[name] = v
		} else if name == "highlight" {
			tweaks[name] = true
		}
	}
	counts := map[string]int{}
	if unread > 0 {
		counts["unread"] = unread
	}
	ev := j.ev
	// As Synapse: high priority for what alerts (a sound or a highlight)
	// and for encrypted events, whose importance the server cannot see.
	prio := "low"
	if ev.Type() == "m.room.encrypted" || tweaks["sound"] != nil || n.result.Highlight {
		prio = "high"
	}
	note := map[string]any{
		"event_id": ev.EventID(),
		"room_id":  ev.RoomID(),
		"counts":   counts,
		"prio":     prio,
		"devices": []map[string]any{{
			"app_id": p.AppID, "pushkey": p.Pushkey, "pushkey_ts": p.PushkeyTS, "data": data, "tweaks": tweaks,
		}},
	}
	if format != "event_id_only" {
		note["type"] = ev.Type()
		note["sender"] = ev.Sender()
		if j.senderName != "" {
			note["sender_display_name"] = j.senderName
		}
		if j.roomName != "" {
			note["room_name"] = j.roomName
		}
		if j.alias != "" {
			note["room_alias"] = j.alias
		}
		if ev.IsState() && ev.Type() == "m.room.member" {
			note["user_is_target"] = *ev.StateKey() == string(n.user)
		}
		if c := ev.Content(); len(c) > 2 {
			note["content"] = json.RawMessage(c)
		}
	}
	return json.Marshal(map[string]any{"notification": note})
}

// work sends a pusher's queue in order until it is empty, the gateway
// fails (backoff) or rejects the pushkey (the pusher is deleted).
func (d *delivery) work(ctx context.Context, st *pusherState) {
	defer func() {
		d.mu.Lock()
		st.busy = false
		d.mu.Unlock()
		d.poke()
	}()
	d.mu.Lock()
	p := st.p
	d.mu.Unlock()
	for ctx.Err() == nil {
		d.mu.Lock()
		gen := st.gen
		d.mu.Unlock()
		items, err := d.s.db.PendingPushes(ctx, p.NID, 20)
		if err != nil {
			if ctx.Err() == nil {
				d.s.log.Warn("read push queue", "error", err)
				d.backoff(ctx, st, &p)
			}
			return
		}
		if len(items) == 0 {
			d.mu.Lock()
			if st.gen == gen {
				st.pending = false
			}
			d.mu.Unlock()
			return
		}
		for _, it := range items {
			rejected, err := d.send(ctx, p, it.Notification)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				d.s.m.failed.Inc()
				d.s.log.Warn("push gateway failed; backing off", "app_id", p.AppID, "user_id", p.UserID, "failures", p.Failures+1, "error", err)
				d.backoff(ctx, st, &p)
				return
			}
			if slices.Contains(rejected, p.Pushkey) {
				d.s.m.rejected.Inc()
				d.s.log.Info("push gateway rejected the pushkey: pusher removed", "app_id", p.AppID, "user_id", p.UserID)
				if err := d.s.db.DeletePusherNID(ctx, p.NID); err != nil {
					d.s.log.Warn("delete rejected pusher", "error", err)
				}
				_ = d.reload(ctx)
				return
			}
			d.s.m.sent.Inc()
			if err := d.s.db.PushSent(ctx, p.NID, it.NID); err != nil {
				if ctx.Err() == nil {
					d.s.log.Warn("mark push sent", "error", err)
				}
				return
			}
			if p.Failures > 0 {
				p.Failures = 0
				d.mu.Lock()
				st.p.Failures, st.retryAt = 0, time.Time{}
				d.mu.Unlock()
			}
		}
	}
}

func (d *delivery) backoff(ctx context.Context, st *pusherState, p *store.Pusher) {
	p.Failures++
	wait := d.s.cfg.RetryBase
	for i := 1; i < p.Failures && wait < d.s.cfg.RetryMax; i++ {
		wait *= 2
	}
	wait = min(wait, d.s.cfg.RetryMax)
	at := time.Now().Add(wait)
	d.mu.Lock()
	st.p.Failures, st.retryAt = p.Failures, at
	d.mu.Unlock()
	if err := d.s.db.PushFailed(ctx, p.NID, p.Failures, at.UnixMilli()); err != nil && ctx.Err() == nil {
		d.s.log.Warn("record push failure", "error", err)
	}
}

// send posts one notification; it returns the rejected pushkeys, or an
// error for anything but a 2xx answer.
func (d *delivery) send(ctx context.Context, p store.Pusher, body []byte) ([]string, error) {
	var data struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(p.Data, &data); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, data.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("push gateway answered %d", resp.StatusCode)
	}
	var r struct {
		Rejected []string `json:"rejected"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, errors.New("push gateway answered with invalid JSON")
	}
	return r.Rejected, nil
}

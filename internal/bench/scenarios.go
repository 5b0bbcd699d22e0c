package bench

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// sendSeq: one user sends Messages messages one after the other into one
// room.
func sendSeq(ctx context.Context, r *runner) error {
	sz := r.cfg.Sizes
	r.res.Params["messages"] = sz.Messages
	us, err := r.users(ctx, r.c, 1)
	if err != nil {
		return err
	}
	u := us[0]
	room, err := r.c.CreateRoom(ctx, u, nil)
	if err != nil {
		return err
	}
	for i := range 20 { // warm-up: connections, caches, prepared statements
		if _, err := r.c.Send(ctx, u, room, "warm-up "+strconv.Itoa(i)); err != nil {
			return fmt.Errorf("warm-up send: %w", err)
		}
	}
	var rec Recorder
	wall := r.timed(ctx, sz.Messages, func(i int) {
		t0 := time.Now()
		if _, err := r.c.Send(ctx, u, room, "message "+strconv.Itoa(i)); err != nil {
			rec.Fail(err)
		} else {
			rec.Add(time.Since(t0))
		}
	})
	r.res.Series = append(r.res.Series, rec.Summary("send", wall, true))
	return nil
}

// sendConcurrent: Senders users send Messages messages in total at once,
// into a room each or into one shared room.
func sendConcurrent(ctx context.Context, r *runner, shared bool) error {
	sz := r.cfg.Sizes
	r.res.Params["messages"], r.res.Params["senders"] = sz.Messages, sz.Senders
	us, err := r.users(ctx, r.c, sz.Senders)
	if err != nil {
		return err
	}
	rooms := make([]string, len(us))
	if shared {
		room, err := r.c.CreateRoom(ctx, us[0], nil)
		if err != nil {
			return err
		}
		for i := range rooms {
			rooms[i] = room
		}
		if err := parallel(ctx, len(us)-1, sz.Concurrency, func(i int) error { return r.c.Join(ctx, us[i+1], room) }); err != nil {
			return err
		}
	} else if err := parallel(ctx, len(us), sz.Concurrency, func(i int) error {
		var err error
		rooms[i], err = r.c.CreateRoom(ctx, us[i], nil)
		return err
	}); err != nil {
		return err
	}
	if err := parallel(ctx, len(us), len(us), func(i int) error {
		_, err := r.c.Send(ctx, us[i], rooms[i], "warm-up")
		return err
	}); err != nil {
		return fmt.Errorf("warm-up send: %w", err)
	}
	var rec Recorder
	wall := r.timedParallel(ctx, len(us), sz.Messages, func(w int, i int64) {
		t0 := time.Now()
		if _, err := r.c.Send(ctx, us[w], rooms[w], "message "+strconv.FormatInt(i, 10)); err != nil {
			rec.Fail(err)
		} else {
			rec.Add(time.Since(t0))
		}
	})
	r.res.Series = append(r.res.Series, rec.Summary("send", wall, true))
	return nil
}

// arrivals records when each syncer saw each event. Keys are
// "eventID|syncer".
type arrivals struct {
	mu      sync.Mutex
	seen    map[string]time.Time
	waiters map[string]chan struct{}
}

func newArrivals() *arrivals {
	return &arrivals{seen: map[string]time.Time{}, waiters: map[string]chan struct{}{}}
}

func (a *arrivals) mark(key string, t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.seen[key]; ok {
		return
	}
	a.seen[key] = t
	if ch, ok := a.waiters[key]; ok {
		close(ch)
		delete(a.waiters, key)
	}
}

// wait returns when key arrived, or an error after timeout.
func (a *arrivals) wait(ctx context.Context, key string, timeout time.Duration) (time.Time, error) {
	a.mu.Lock()
	if t, ok := a.seen[key]; ok {
		a.mu.Unlock()
		return t, nil
	}
	ch, ok := a.waiters[key]
	if !ok {
		ch = make(chan struct{})
		a.waiters[key] = ch
	}
	a.mu.Unlock()
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case <-ch:
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.seen[key], nil
	case <-tm.C:
		return time.Time{}, fmt.Errorf("event %s not delivered within %s", key, timeout)
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}

// longPoll runs one long-polling /sync loop per user until ctx ends,
// marking every timeline event each user receives. It returns once every
// user has sent its first long-poll.
func (r *runner) longPoll(ctx context.Context, us []*User, arr *arrivals, errs *Recorder) (wait func(), err error) {
	since := make([]string, len(us))
	if err := parallel(ctx, len(us), r.cfg.Sizes.Concurrency, func(i int) error {
		s, err := r.c.Sync(ctx, us[i], "", 0, quietFilter)
		if err != nil {
			return fmt.Errorf("initial sync: %w", err)
		}
		since[i] = s.NextBatch
		return nil
	}); err != nil {
		return nil, err
	}
	var polling sync.WaitGroup
	var wg sync.WaitGroup
	polling.Add(len(us))
	for i, u := range us {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			tok := since[i]
			for ctx.Err() == nil {
				if first {
					polling.Done()
					first = false
				}
				s, err := r.c.Sync(ctx, u, tok, 30*time.Second, quietFilter)
				now := time.Now()
				if err != nil {
					if ctx.Err() == nil {
						errs.Fail(fmt.Errorf("long-poll: %w", err))
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				tok = s.NextBatch
				for _, jr := range s.Rooms.Join {
					for _, ev := range jr.Timeline.Events {
						arr.mark(ev.EventID+"|"+strconv.Itoa(i), now)
					}
				}
			}
		}()
	}
	polling.Wait()
	// The requests are sent; give the server a moment to park them all.
	time.Sleep(time.Duration(200+len(us)) * time.Millisecond)
	return wg.Wait, nil
}

// timed runs op(i) for i from 0 up to n, one after another, until the
// run's duration is over, with the progress bar; it returns the measured
// phase's wall time.
func (r *runner) timed(ctx context.Context, n int, op func(i int)) time.Duration {
	r.begin(n)
	start := time.Now()
	deadline := start.Add(r.cfg.Sizes.Duration)
	for i := 0; i < n && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		op(i)
		r.tick()
	}
	wall := time.Since(start)
	r.end()
	return wall
}

// timedParallel runs op(w, i) from workers goroutines (w is the worker)
// for i from 1 up to n in all, until the run's duration is over, with the
// progress bar; it returns the measured phase's wall time.
func (r *runner) timedParallel(ctx context.Context, workers, n int, op func(w int, i int64)) time.Duration {
	var next atomic.Int64
	r.begin(n)
	start := time.Now()
	deadline := start.Add(r.cfg.Sizes.Duration)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				op(w, i)
				r.tick()
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	r.end()
	return wall
}

// poller is a set of running long-poll loops (startPolling).
type poller struct {
	r      *runner
	arr    *arrivals
	errs   Recorder
	cancel context.CancelFunc
	wait   func()
}

// startPolling starts a long-poll loop for each user (longPoll); stop ends
// them and notes their errors in the result.
func (r *runner) startPolling(ctx context.Context, us []*User) (*poller, error) {
	pctx, cancel := context.WithCancel(ctx)
	p := &poller{r: r, arr: newArrivals(), cancel: cancel}
	wait, err := r.longPoll(pctx, us, p.arr, &p.errs)
	if err != nil {
		cancel()
		return nil, err
	}
	p.wait = wait
	return p, nil
}

func (p *poller) stop() {
	p.cancel()
	p.wait()
	if pe := p.errs.Summary("", 0, false); pe.Errors > 0 {
		p.r.res.Notes = append(p.r.res.Notes, fmt.Sprintf("%d long-poll errors, last: %s", pe.Errors, pe.LastError))
	}
}

// sendToSync: Syncers users long-poll /sync; ProbeRooms of them share a
// room with a sender, who sends into those rooms in turn. Each message's
// latency runs from the start of its PUT to the receiver's /sync answer
// carrying it.
func sendToSync(ctx context.Context, r *runner) error {
	sz := r.cfg.Sizes
	probes := min(sz.ProbeRooms, sz.Syncers)
	r.res.Params["syncers"], r.res.Params["probe_rooms"], r.res.Params["messages"] = sz.Syncers, probes, sz.SyncMessages
	us, err := r.users(ctx, r.c, sz.Syncers+1)
	if err != nil {
		return err
	}
	sender, syncers := us[0], us[1:]
	rooms := make([]string, probes)
	if err := parallel(ctx, probes, sz.Concurrency, func(i int) error {
		var err error
		if rooms[i], err = r.c.CreateRoom(ctx, syncers[i], nil); err != nil {
			return err
		}
		return r.c.Join(ctx, sender, rooms[i])
	}); err != nil {
		return err
	}
	pl, err := r.startPolling(ctx, syncers)
	if err != nil {
		return err
	}
	defer pl.stop()
	arr := pl.arr
	var deliver, send Recorder
	wall := r.timed(ctx, sz.SyncMessages, func(i int) {
		p := i % probes
		t0 := time.Now()
		id, err := r.c.Send(ctx, sender, rooms[p], "ping "+strconv.Itoa(i))
		if err != nil {
			send.Fail(err)
			deliver.Fail(err)
			return
		}
		send.Add(time.Since(t0))
		at, err := arr.wait(ctx, id+"|"+strconv.Itoa(p), sz.Timeout)
		if err != nil {
			deliver.Fail(err)
		} else {
			deliver.Add(at.Sub(t0))
		}
	})
	r.res.Series = append(r.res.Series, deliver.Summary("send→sync", wall, false), send.Summary("send alone", wall, false))
	return nil
}

// fanout: Members users in one room long-poll /sync; a sender sends
// FanoutMessages messages, each after the previous reached everyone.
func fanout(ctx context.Context, r *runner) error {
	sz := r.cfg.Sizes
	r.res.Params["members"], r.res.Params["messages"] = sz.Members, sz.FanoutMessages
	us, err := r.users(ctx, r.c, sz.Members+1)
	if err != nil {
		return err
	}
	sender, members := us[0], us[1:]
	room, err := r.c.CreateRoom(ctx, sender, nil)
	if err != nil {
		return err
	}
	if err := parallel(ctx, len(members), sz.Concurrency, func(i int) error { return r.c.Join(ctx, members[i], room) }); err != nil {
		return err
	}
	pl, err := r.startPolling(ctx, members)
	if err != nil {
		return err
	}
	defer pl.stop()
	arr := pl.arr
	var each, all Recorder
	wall := r.timed(ctx, sz.FanoutMessages, func(i int) {
		t0 := time.Now()
		id, err := r.c.Send(ctx, sender, room, "fan-out "+strconv.Itoa(i))
		if err != nil {
			all.Fail(err)
			return
		}
		var last time.Time
		var failed error
		for m := range members {
			at, err := arr.wait(ctx, id+"|"+strconv.Itoa(m), sz.Timeout)
			if err != nil {
				each.Fail(err)
				failed = err
				continue
			}
			each.Add(at.Sub(t0))
			if at.After(last) {
				last = at
			}
		}
		if failed != nil {
			all.Fail(failed)
		} else {
			all.Add(last.Sub(t0))
		}
	})
	r.res.Series = append(r.res.Series, all.Summary("all delivered", wall, true), each.Summary("each member", wall, false))
	return nil
}

// fillRooms creates n rooms of u, each with per messages.
func (r *runner) fillRooms(ctx context.Context, u *User, n, per int) ([]string, error) {
	rooms := make([]string, n)
	err := parallel(ctx, n, r.cfg.Sizes.Concurrency, func(i int) error {
		var err error
		if rooms[i], err = r.c.CreateRoom(ctx, u, map[string]any{"name": fmt.Sprintf("room %d", i)}); err != nil {
			return err
		}
		for m := range per {
			if _, err := r.c.Send(ctx, u, rooms[i], "history "+strconv.Itoa(m)); err != nil {
				return err
			}
		}
		return nil
	})
	return rooms, err
}

// initialSync: a user in Rooms rooms of RoomMessages messages each does a
// full GET /sync (default filter), Iterations times.
func initialSync(ctx context.Context, r *runner) error {
	sz := r.cfg.Sizes
	r.res.Params["rooms"], r.res.Params["room_messages"], r.res.Params["iterations"] = sz.Rooms, sz.RoomMessages, sz.Iterations
	us, err := r.users(ctx, r.c, 1)
	if err != nil {
		return err
	}
	u := us[0]
	if _, err := r.fillRooms(ctx, u, sz.Rooms, sz.RoomMessages); err != nil {
		return err
	}
	var rec Recorder
	wall := r.timed(ctx, sz.Iterations, func(i int) {
		t0 := time.Now()
		s, err := r.c.Sync(ctx, u, "", 0, "")
		switch {
		case err != nil:
			rec.Fail(err)
		case len(s.Rooms.Join) < sz.Rooms:
			rec.Fail(fmt.Errorf("initial sync has %d joined rooms, want %d", len(s.Rooms.Join), sz.Rooms))
		default:
			rec.Add(time.Since(t0))
		}
	})
	r.res.Series = append(r.res.Series, rec.Summary("initial sync", wall, true))
	return nil
}

// backpaginate: GET /messages dir=b from the end of a room of History
// messages to its start, PageSize events a request.
func backpaginate(ctx context.Context, r *runner) error {
	sz := r.cfg.Sizes
	r.res.Params["history"], r.res.Params["page_size"] = sz.History, sz.PageSize
	us, err := r.users(ctx, r.c, 1)
	if err != nil {
		return err
	}
	u := us[0]
	room, err := r.c.CreateRoom(ctx, u, nil)
	if err != nil {
		return err
	}
	if err := parallel(ctx, sz.History, sz.Concurrency, func(i int) error {
		_, err := r.c.Send(ctx, u, room, "history "+strconv.Itoa(i))
		return err
	}); err != nil {
		return err
	}
	filter := fmt.Sprintf(`{"room":{"rooms":[%q],"timeline":{"limit":1}},"presence":{"not_types":["*"]}}`, room)
	var s struct {
		Rooms struct {
			Join map[string]struct {
				Timeline struct {
					PrevBatch string `json:"prev_batch"`
				} `json:"timeline"`
			} `json:"join"`
		} `json:"rooms"`
	}
	if err := r.c.Do(ctx, "GET", "/_matrix/client/v3/sync?timeout=0&filter="+url.QueryEscape(filter), u.Token, nil, &s); err != nil {
		return fmt.Errorf("sync for prev_batch: %w", err)
	}
	from := s.Rooms.Join[room].Timeline.PrevBatch
	if from == "" {
		return fmt.Errorf("no prev_batch for room %s in /sync", room)
	}
	var rec Recorder
	events := 0
	r.begin(sz.History/sz.PageSize + 1)
	start := time.Now()
	deadline := start.Add(sz.Duration)
	base := "/_matrix/client/v3/rooms/" + url.PathEscape(room) + "/messages?dir=b&limit=" + strconv.Itoa(sz.PageSize) + "&from="
	for from != "" && time.Now().Before(deadline) && ctx.Err() == nil {
		var page struct {
			Chunk []struct {
				EventID string `json:"event_id"`
			} `json:"chunk"`
			End string `json:"end"`
		}
		t0 := time.Now()
		if err := r.c.Do(ctx, "GET", base+url.QueryEscape(from), u.Token, nil, &page); err != nil {
			rec.Fail(err)
			break
		}
		rec.Add(time.Since(t0))
		r.tick()
		events += len(page.Chunk)
		if len(page.Chunk) == 0 {
			break
		}
		from = page.End
	}
	wall := time.Since(start)
	r.end()
	r.res.Series = append(r.res.Series, rec.Summary("page", wall, true))
	r.res.Params["events_read"] = events
	if wall > 0 {
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("%d events read, %.0f events/s", events, float64(events)/wall.Seconds()))
	}
	if events < sz.History {
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("read %d events, fewer than the %d sent (duration bound or server stopped early)", events, sz.History))
	}
	return nil
}

// registerLogin: Users registrations, each followed by a password login,
// Concurrency at a time.
func registerLogin(ctx context.Context, r *runner) error {
	sz := r.cfg.Sizes
	r.res.Params["users"], r.res.Params["concurrency"] = sz.Users, sz.Concurrency
	if _, err := r.users(ctx, r.c, 1); err != nil { // warm-up, and fail early
		return err
	}
	var rec Recorder
	wall := r.timedParallel(ctx, sz.Concurrency, sz.Users, func(int, int64) {
		name := fmt.Sprintf("%s_%d", r.prefix, r.nuser.Add(1))
		t0 := time.Now()
		u, err := r.c.Register(ctx, name, "pw-"+name)
		if err == nil {
			_, err = r.c.Login(ctx, u.ID, u.Password)
		}
		if err != nil {
			rec.Fail(err)
		} else {
			rec.Add(time.Since(t0))
		}
	})
	r.res.Series = append(r.res.Series, rec.Summary("register+login", wall, true))
	return nil
}

const slidingPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

// slidingBody asks for the first 20 rooms by recency with their name and
// last event: what a client's room list shows first.
var slidingBody = []byte(`{"lists":{"all":{"ranges":[[0,19]],"timeline_limit":1,"required_state":[["m.room.name",""],["m.room.avatar",""]]}}}`)

// slidingSync: the first simplified-sliding-sync response (no pos) of a
// user in SlidingRooms rooms. Skipped when the server does not serve it.
func slidingSync(ctx context.Context, r *runner) error {
	sz := r.cfg.Sizes
	r.res.Params["rooms"], r.res.Params["iterations"] = sz.SlidingRooms, sz.Iterations
	us, err := r.users(ctx, r.c, 1)
	if err != nil {
		return err
	}
	u := us[0]
	if err := r.c.Do(ctx, "POST", slidingPath+"?timeout=0", u.Token, slidingBody, nil); err != nil {
		if IsUnrecognized(err) {
			return skipError("the server does not serve simplified sliding sync (" + slidingPath + "): " + err.Error())
		}
		return fmt.Errorf("sliding sync probe: %w", err)
	}
	if _, err := r.fillRooms(ctx, u, sz.SlidingRooms, 1); err != nil {
		return err
	}
	var rec Recorder
	wall := r.timed(ctx, sz.Iterations, func(i int) {
		var out struct {
			Rooms map[string]any `json:"rooms"`
		}
		t0 := time.Now()
		err := r.c.Do(ctx, "POST", slidingPath+"?timeout=0", u.Token, slidingBody, &out)
		switch {
		case err != nil:
			rec.Fail(err)
		case len(out.Rooms) == 0:
			rec.Fail(fmt.Errorf("sliding sync answered no rooms"))
		default:
			rec.Add(time.Since(t0))
		}
	})
	r.res.Series = append(r.res.Series, rec.Summary("first response", wall, true))
	return nil
}

// federationJoin: on the remote server, FedRooms public rooms of
// FedMembers members each; a local user joins each through the remote.
// The server measured (--pid) is the joining one.
func federationJoin(ctx context.Context, r *runner) error {
	sz := r.cfg.Sizes
	if r.cfg.Remote == nil {
		return skipError("no remote server (--remote-url)")
	}
	rc := r.cfg.Remote
	r.res.Params["members"], r.res.Params["rooms"] = sz.FedMembers, sz.FedRooms
	remote, err := r.users(ctx, rc, sz.FedMembers)
	if err != nil {
		return fmt.Errorf("remote: %w", err)
	}
	rooms := make([]string, sz.FedRooms)
	for i := range rooms {
		if rooms[i], err = rc.CreateRoom(ctx, remote[0], nil); err != nil {
			return fmt.Errorf("remote: %w", err)
		}
		if err := parallel(ctx, len(remote)-1, sz.Concurrency, func(m int) error { return rc.Join(ctx, remote[m+1], rooms[i]) }); err != nil {
			return fmt.Errorf("remote: %w", err)
		}
	}
	local, err := r.users(ctx, r.c, sz.FedRooms)
	if err != nil {
		return err
	}
	via := remote[0].ServerName()
	var rec Recorder
	r.begin(sz.FedRooms)
	start := time.Now()
	for i, room := range rooms {
		if ctx.Err() != nil || time.Since(start) > sz.Duration {
			break
		}
		t0 := time.Now()
		if err := r.c.Join(ctx, local[i], room, via); err != nil {
			rec.Fail(err)
		} else {
			rec.Add(time.Since(t0))
		}
		r.tick()
	}
	wall := time.Since(start)
	r.end()
	r.res.Series = append(r.res.Series, rec.Summary("remote join", wall, true))
	return nil
}

// memory: MemMessages messages into MemRooms rooms from up to 16
// senders; the figures that matter are the server's RSS after and its peak.
func memory(ctx context.Context, r *runner) error {
	sz := r.cfg.Sizes
	if r.cfg.PID == 0 {
		r.res.Notes = append(r.res.Notes, "no --pid: no memory figures")
	}
	senders := max(1, min(16, sz.MemRooms))
	r.res.Params["rooms"], r.res.Params["messages"], r.res.Params["senders"] = sz.MemRooms, sz.MemMessages, senders
	us, err := r.users(ctx, r.c, senders)
	if err != nil {
		return err
	}
	rooms := make([]string, sz.MemRooms)
	if err := parallel(ctx, len(rooms), sz.Concurrency, func(i int) error {
		var err error
		rooms[i], err = r.c.CreateRoom(ctx, us[i%senders], nil)
		return err
	}); err != nil {
		return err
	}
	// Each sender owns the rooms i with i%senders == its index.
	var rec Recorder
	sent := make([]int, senders) // per sender, for its next room
	wall := r.timedParallel(ctx, senders, sz.MemMessages, func(w int, i int64) {
		owned := (len(rooms) - w + senders - 1) / senders
		room := rooms[w+senders*(sent[w]%owned)]
		sent[w]++
		t0 := time.Now()
		if _, err := r.c.Send(ctx, us[w], room, "message "+strconv.FormatInt(i, 10)); err != nil {
			rec.Fail(err)
		} else {
			rec.Add(time.Since(t0))
		}
	})
	r.res.Series = append(r.res.Series, rec.Summary("send", wall, true))
	return nil
}

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// CrashState is what the crash scenario leaves for VerifyCrash: every
// event whose send the server acknowledged before it was killed.
type CrashState struct {
	URL      string   `json:"url"`
	UserID   string   `json:"user_id"`
	Token    string   `json:"access_token"`
	RoomIDs  []string `json:"room_ids"`
	EventIDs []string `json:"event_ids"` // acknowledged, in room RoomIDs[i%len(RoomIDs)] order-free
	Rooms    []string `json:"event_rooms"`
}

// crash: four senders send into their rooms; after CrashAfter the server
// gets SIGKILL in the middle of that. Every acknowledged event ID goes to
// CrashFile; after the caller restarts the server, VerifyCrash reads them
// all back.
func crash(ctx context.Context, r *runner) error {
	sz := r.cfg.Sizes
	switch {
	case r.cfg.PID == 0 || !r.cfg.AllowKill:
		return skipError("needs --pid and --allow-kill (the server is killed with SIGKILL)")
	case r.cfg.CrashFile == "":
		return skipError("needs --crash-file (where acknowledged event IDs are written)")
	}
	const senders = 4
	us, err := r.users(ctx, r.c, 1)
	if err != nil {
		return err
	}
	u := us[0]
	rooms := make([]string, senders)
	for i := range rooms {
		if rooms[i], err = r.c.CreateRoom(ctx, u, nil); err != nil {
			return err
		}
	}
	st := CrashState{URL: r.c.Base, UserID: u.ID, Token: u.Token, RoomIDs: rooms}
	var mu sync.Mutex
	var rec Recorder
	killed := make(chan struct{})
	r.begin(0)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				select {
				case <-killed:
					return
				default:
				}
				t0 := time.Now()
				id, err := r.c.Send(ctx, u, rooms[w], "durable "+strconv.Itoa(i))
				if err != nil {
					select {
					case <-killed: // expected: the server is gone
						return
					default:
					}
					rec.Fail(err)
					continue
				}
				rec.Add(time.Since(t0))
				mu.Lock()
				st.EventIDs = append(st.EventIDs, id)
				st.Rooms = append(st.Rooms, rooms[w])
				mu.Unlock()
			}
		}()
	}
	select {
	case <-time.After(sz.CrashAfter):
	case <-ctx.Done():
	}
	wall := time.Since(start)
	r.watch.end() // CPU and memory before the process is gone
	r.watch.started = false
	r.res.ServerCPUSeconds = round3(r.watch.cpu.Seconds())
	r.res.ServerPeakRSSMB = mb(r.watch.peak)
	// Closed first, so that a send failing because of the kill is never
	// counted as an error; one acknowledged after it is still recorded.
	close(killed)
	killErr := syscall.Kill(r.cfg.PID, syscall.SIGKILL)
	wg.Wait()
	r.end()
	if killErr != nil {
		return fmt.Errorf("kill %d: %w", r.cfg.PID, killErr)
	}
	mu.Lock()
	defer mu.Unlock()
	s := rec.Summary("send until SIGKILL", wall, true)
	r.res.Series = append(r.res.Series, s)
	if s.Ops > 0 {
		r.res.ServerCPUMsPerOp = round3(r.res.ServerCPUSeconds * 1000 / float64(s.Ops))
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.WriteFile(r.cfg.CrashFile, b, 0o600); err != nil {
		return err
	}
	r.res.Notes = append(r.res.Notes, fmt.Sprintf("killed pid %d after %d acknowledged sends; restart the server, then: polder-bench verify-crash --crash-file %s", r.cfg.PID, len(st.EventIDs), r.cfg.CrashFile))
	return nil
}

// VerifyCrash reads every acknowledged event of a crash run back from the
// (restarted) server at c. It returns how many there were and the IDs of
// those that are missing; err is for failures other than a 404.
func VerifyCrash(ctx context.Context, c *Client, file string) (total int, missing []string, err error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, nil, err
	}
	var st CrashState
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, nil, fmt.Errorf("%s: %w", file, err)
	}
	var mu sync.Mutex
	err = parallel(ctx, len(st.EventIDs), 8, func(i int) error {
		p := "/_matrix/client/v3/rooms/" + url.PathEscape(st.Rooms[i]) + "/event/" + url.PathEscape(st.EventIDs[i])
		err := c.Do(ctx, "GET", p, st.Token, nil, nil)
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == 404 {
			mu.Lock()
			missing = append(missing, st.EventIDs[i])
			mu.Unlock()
			return nil
		}
		return err
	})
	return len(st.EventIDs), missing, err
}

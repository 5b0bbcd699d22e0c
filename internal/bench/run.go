package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sizes are the scenarios' sizes. DefaultSizes are the sizes;
// QuickSizes a smoke run of a few seconds.
type Sizes struct {
	Messages       int           // send-seq, send-concurrent, send-shared: messages in total
	Senders        int           // send-concurrent, send-shared: concurrent users
	Syncers        int           // send-to-sync: long-polling users
	ProbeRooms     int           // send-to-sync: rooms shared by the sender and one syncer each
	SyncMessages   int           // send-to-sync: messages measured
	Members        int           // fanout: room members long-polling
	FanoutMessages int           // fanout: messages sent into the room
	Rooms          int           // initial-sync: rooms of the user
	RoomMessages   int           // initial-sync: messages per room
	Iterations     int           // initial-sync, sliding-sync: requests measured
	History        int           // messages-backpaginate: events in the room
	PageSize       int           // messages-backpaginate: limit per /messages request
	Users          int           // register-login: registrations (each followed by a login)
	SlidingRooms   int           // sliding-sync: rooms of the user
	FedMembers     int           // federation-join: members of the remote room
	FedRooms       int           // federation-join: rooms joined (one join each)
	MemRooms       int           // memory: rooms
	MemMessages    int           // memory: messages in total
	CrashAfter     time.Duration // crash: how long to send before SIGKILL
	Concurrency    int           // set-up workers, register-login concurrency
	Duration       time.Duration // upper bound of each measured phase
	Timeout        time.Duration // per awaited delivery
}

// DefaultSizes are the sizes the targets are stated for.
func DefaultSizes() Sizes {
	return Sizes{
		Messages: 5000, Senders: 16,
		Syncers: 1000, ProbeRooms: 20, SyncMessages: 500,
		Members: 1000, FanoutMessages: 10,
		Rooms: 500, RoomMessages: 10, Iterations: 10,
		History: 10000, PageSize: 100,
		Users:        200,
		SlidingRooms: 2000,
		FedMembers:   1000, FedRooms: 2,
		MemRooms: 100, MemMessages: 100000,
		CrashAfter:  3 * time.Second,
		Concurrency: 8,
		Duration:    60 * time.Second,
		Timeout:     30 * time.Second,
	}
}

// QuickSizes are for a smoke run in CI: every scenario in a few seconds.
func QuickSizes() Sizes {
	return Sizes{
		Messages: 200, Senders: 4,
		Syncers: 20, ProbeRooms: 4, SyncMessages: 40,
		Members: 20, FanoutMessages: 3,
		Rooms: 10, RoomMessages: 2, Iterations: 3,
		History: 300, PageSize: 50,
		Users:        10,
		SlidingRooms: 20,
		FedMembers:   10, FedRooms: 1,
		MemRooms: 5, MemMessages: 300,
		CrashAfter:  time.Second,
		Concurrency: 4,
		Duration:    20 * time.Second,
		Timeout:     30 * time.Second,
	}
}

// Config is one run.
type Config struct {
	Client    *Client
	Remote    *Client // federation-join: a second server; nil skips it
	PID       int     // the server's PID (same machine); 0: no CPU or memory figures
	AllowKill bool    // crash may SIGKILL PID
	CrashFile string  // crash: where acknowledged event IDs are written
	Sizes     Sizes
	Progress  io.Writer // a terminal for the progress bar; nil: none
	Log       io.Writer // one line per scenario phase; nil: none
	// OnMeasure, if set, is called with true when a scenario's measured
	// phase starts and with false when it ends (e.g. to profile only that).
	OnMeasure func(start bool)
}

// Result is one scenario's outcome.
type Result struct {
	Scenario string         `json:"scenario"`
	Skipped  string         `json:"skipped,omitempty"`
	Error    string         `json:"error,omitempty"`
	Params   map[string]any `json:"params,omitempty"`
	Series   []Series       `json:"series,omitempty"`
	// Server figures over the measured phase (PID given).
	ServerCPUSeconds float64  `json:"server_cpu_seconds,omitempty"`
	ServerCPUMsPerOp float64  `json:"server_cpu_ms_per_op,omitempty"`
	ServerPeakRSSMB  float64  `json:"server_peak_rss_mb,omitempty"`
	ServerRSSAfterMB float64  `json:"server_rss_after_mb,omitempty"`
	ServerHWMMB      float64  `json:"server_hwm_mb,omitempty"`
	Notes            []string `json:"notes,omitempty"`
	SetupSeconds     float64  `json:"setup_seconds"`
}

// Report is a whole run.
type Report struct {
	URL           string   `json:"url"`
	RemoteURL     string   `json:"remote_url,omitempty"`
	Date          string   `json:"date"`
	CPUs          int      `json:"cpus"`
	CPUModel      string   `json:"cpu_model"`
	Quick         bool     `json:"quick"`
	ServerIdleMB  float64  `json:"server_rss_at_start_mb,omitempty"`
	ServerStartMB float64  `json:"server_hwm_at_start_mb,omitempty"`
	Results       []Result `json:"results"`
}

// Scenario is a named benchmark.
type Scenario struct {
	Name string
	Doc  string
	run  func(ctx context.Context, r *runner) error
}

// Scenarios lists every scenario in the order "all" runs them.
func Scenarios() []Scenario {
	return []Scenario{
		{"send-seq", "sequential PUT /send by one user into one room", sendSeq},
		{"send-concurrent", "Senders users send at once, each into their own room", func(ctx context.Context, r *runner) error { return sendConcurrent(ctx, r, false) }},
		{"send-shared", "Senders users send at once into one shared room", func(ctx context.Context, r *runner) error { return sendConcurrent(ctx, r, true) }},
		{"send-to-sync", "delivery latency from PUT /send to the receiver's /sync, with Syncers users long-polling", sendToSync},
		{"fanout", "one message into a room of Members users, all long-polling /sync", fanout},
		{"initial-sync", "GET /sync without since for a user in Rooms rooms of RoomMessages messages", initialSync},
		{"messages-backpaginate", "GET /messages dir=b through History events", backpaginate},
		{"register-login", "POST /register then POST /login", registerLogin},
		{"sliding-sync", "first response of simplified sliding sync (MSC4186) for a user in SlidingRooms rooms", slidingSync},
		{"federation-join", "join over federation of a room with FedMembers members (needs a remote server)", federationJoin},
		{"memory", "MemMessages messages into MemRooms rooms; server RSS after (needs --pid)", memory},
		{"crash", "send with acknowledgement, SIGKILL the server (needs --pid and --allow-kill)", crash},
	}
}

// Select resolves a comma-separated list of names ("all" for every one).
func Select(names string) ([]Scenario, error) {
	all := Scenarios()
	if names == "" || names == "all" {
		return all, nil
	}
	var out []Scenario
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		found := false
		for _, s := range all {
			if s.Name == n {
				out, found = append(out, s), true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q", n)
		}
	}
	return out, nil
}

// Run runs the scenarios one after the other. A scenario's failure is
// recorded in its Result and the next one runs.
func Run(ctx context.Context, cfg Config, scenarios []Scenario) *Report {
	rep := &Report{
		URL:      cfg.Client.Base,
		Date:     time.Now().UTC().Format(time.RFC3339),
		CPUs:     runtime.NumCPU(),
		CPUModel: cpuModel(),
	}
	if cfg.Remote != nil {
		rep.RemoteURL = cfg.Remote.Base
	}
	if cfg.PID != 0 {
		if rss, hwm, err := (Proc{cfg.PID}).Memory(); err == nil {
			rep.ServerIdleMB, rep.ServerStartMB = mb(rss), mb(hwm)
		}
	}
	run := randHex(3)
	for _, s := range scenarios {
		r := &runner{cfg: cfg, c: cfg.Client, prefix: "pb" + run + strings.ReplaceAll(s.Name, "-", ""), res: &Result{Scenario: s.Name, Params: map[string]any{}}}
		r.watch.p = Proc{cfg.PID}
		r.logf("%s: setting up", s.Name)
		start := time.Now()
		err := s.run(ctx, r)
		r.stopProgress()
		if r.setupDone.IsZero() {
			r.setupDone = time.Now()
		}
		r.res.SetupSeconds = round3(r.setupDone.Sub(start).Seconds())
		var skip skipError
		switch {
		case errors.As(err, &skip):
			r.res.Skipped = string(skip)
		case err != nil:
			r.res.Error = err.Error()
		}
		r.finish()
		rep.Results = append(rep.Results, *r.res)
		r.logf("%s: done", s.Name)
		if ctx.Err() != nil {
			break
		}
	}
	return rep
}

// skipError ends a scenario that cannot run against this server or setup.
type skipError string

func (e skipError) Error() string { return string(e) }

// runner is one scenario's state.
type runner struct {
	cfg    Config
	c      *Client
	prefix string
	res    *Result
	watch  procWatch
	nuser  atomic.Int64

	setupDone time.Time
	measuring bool

	progMu    sync.Mutex
	progTotal int
	progDone  atomic.Int64
	progStop  chan struct{}
	progEnded chan struct{}
	progStart time.Time
}

func (r *runner) logf(format string, args ...any) {
	if r.cfg.Log != nil {
		fmt.Fprintf(r.cfg.Log, "polder-bench: "+format+"\n", args...)
	}
}

// users registers n users on c concurrently.
func (r *runner) users(ctx context.Context, c *Client, n int) ([]*User, error) {
	us := make([]*User, n)
	err := parallel(ctx, n, r.cfg.Sizes.Concurrency, func(i int) error {
		name := fmt.Sprintf("%s_%d", r.prefix, r.nuser.Add(1))
		u, err := c.Register(ctx, name, "pw-"+name)
		us[i] = u
		return err
	})
	return us, err
}

// begin starts the measured phase: CPU and memory watching and the
// progress bar for total operations.
func (r *runner) begin(total int) {
	r.setupDone = time.Now()
	r.measuring = true
	r.logf("%s: measuring (%d ops)", r.res.Scenario, total)
	r.watch.start()
	r.startProgress(total)
	if r.cfg.OnMeasure != nil {
		r.cfg.OnMeasure(true)
	}
}

// end ends the measured phase.
func (r *runner) end() {
	if !r.measuring {
		return
	}
	r.measuring = false
	if r.cfg.OnMeasure != nil {
		r.cfg.OnMeasure(false)
	}
	r.stopProgress()
	r.watch.end()
}

// finish fills in the server figures once the series are known.
func (r *runner) finish() {
	r.end()
	if !r.watch.started {
		return
	}
	r.res.ServerCPUSeconds = round3(r.watch.cpu.Seconds())
	if len(r.res.Series) > 0 && r.res.Series[0].Ops > 0 {
		r.res.ServerCPUMsPerOp = round3(float64(r.watch.cpu.Microseconds()) / 1000 / float64(r.res.Series[0].Ops))
	}
	r.res.ServerPeakRSSMB = mb(r.watch.peak)
	if rss, hwm, err := r.watch.p.Memory(); err == nil {
		r.res.ServerRSSAfterMB, r.res.ServerHWMMB = mb(rss), mb(hwm)
	}
}

func (r *runner) tick() { r.progDone.Add(1) }

func (r *runner) startProgress(total int) {
	r.progDone.Store(0)
	if r.cfg.Progress == nil || total <= 0 {
		return
	}
	r.progMu.Lock()
	defer r.progMu.Unlock()
	r.progTotal, r.progStart = total, time.Now()
	r.progStop, r.progEnded = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.progEnded)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-r.progStop:
				fmt.Fprintf(r.cfg.Progress, "\r%-79s\r", "")
				return
			case <-t.C:
				r.drawProgress()
			}
		}
	}()
}

func (r *runner) drawProgress() {
	done := int(r.progDone.Load())
	const width = 30
	n := min(width, done*width/max(1, r.progTotal))
	fmt.Fprintf(r.cfg.Progress, "\r%-22s [%s%s] %d/%d %.1fs", r.res.Scenario,
		strings.Repeat("=", n), strings.Repeat(" ", width-n), done, r.progTotal, time.Since(r.progStart).Seconds())
}

func (r *runner) stopProgress() {
	r.progMu.Lock()
	defer r.progMu.Unlock()
	if r.progStop != nil {
		close(r.progStop)
		<-r.progEnded
		r.progStop = nil
	}
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first
// error (the others stop taking work).
func parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var once sync.Once
	var first error
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range max(1, min(workers, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func mb(b int64) float64 { return round3(float64(b) / (1 << 20)) }

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

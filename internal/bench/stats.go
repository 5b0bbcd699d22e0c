package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Recorder collects the latencies and errors of one measured series. It is
// safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	lat     []time.Duration
	errs    int
	lastErr error
}

// Add records one successful operation.
func (r *Recorder) Add(d time.Duration) {
	r.mu.Lock()
	r.lat = append(r.lat, d)
	r.mu.Unlock()
}

// Fail records one failed operation.
func (r *Recorder) Fail(err error) {
	r.mu.Lock()
	r.errs++
	r.lastErr = err
	r.mu.Unlock()
}

// Series is a summary of a Recorder over a wall-clock time.
type Series struct {
	Name       string  `json:"name"`
	Ops        int     `json:"ops"`
	Errors     int     `json:"errors"`
	LastError  string  `json:"last_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"per_second"`
	MedianMs   float64 `json:"median_ms"`
	P90Ms      float64 `json:"p90_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	Throughput bool    `json:"throughput"` // PerSecond is meaningful (not a latency-only series)
}

// Summary summarises r. wall is the measured time; throughput says whether
// ops/wall is a rate worth printing.
func (r *Recorder) Summary(name string, wall time.Duration, throughput bool) Series {
	r.mu.Lock()
	lat := slices.Clone(r.lat)
	s := Series{Name: name, Ops: len(lat), Errors: r.errs, Seconds: wall.Seconds(), Throughput: throughput}
	if r.lastErr != nil {
		s.LastError = r.lastErr.Error()
	}
	r.mu.Unlock()
	slices.Sort(lat)
	if wall > 0 && throughput {
		s.PerSecond = float64(len(lat)) / wall.Seconds()
	}
	if len(lat) > 0 {
		s.MedianMs = ms(pct(lat, 0.50))
		s.P90Ms = ms(pct(lat, 0.90))
		s.P99Ms = ms(pct(lat, 0.99))
		s.MaxMs = ms(lat[len(lat)-1])
	}
	return s
}

// pct is the nearest-rank percentile of sorted d.
func pct(d []time.Duration, p float64) time.Duration {
	i := int(float64(len(d))*p+0.5) - 1
	i = max(0, min(i, len(d)-1))
	return d[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Proc reads a process's CPU time and memory from /proc (Linux).
type Proc struct{ PID int }

// clkTck is USER_HZ, 100 on every Linux architecture Go supports.
const clkTck = 100

// CPU is the process's user+system CPU time so far.
func (p Proc) CPU() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after ')' are fixed.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", p.PID)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", p.PID, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", p.PID)
	}
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// Memory returns the process's resident set size now (VmRSS) and its peak
// so far (VmHWM), in bytes.
func (p Proc) Memory() (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64) // kB
		if k == "VmRSS" {
			rss = n * 1024
		} else {
			hwm = n * 1024
		}
	}
	return rss, hwm, sc.Err()
}

// procWatch samples a process's RSS while a scenario runs and measures
// its CPU time over the measured phase.
type procWatch struct {
	p        Proc
	cpu0     time.Duration
	cpu      time.Duration
	peak     int64
	stop     chan struct{}
	done     chan struct{}
	started  bool
	sampling sync.Mutex
}

func (w *procWatch) start() {
	if w.p.PID == 0 {
		return
	}
	w.started = true
	w.cpu0, _ = w.p.CPU()
	w.stop, w.done = make(chan struct{}), make(chan struct{})
	w.sample()
	go func() {
		defer close(w.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				w.sample()
			}
		}
	}()
}

func (w *procWatch) sample() {
	rss, _, err := w.p.Memory()
	if err != nil {
		return
	}
	w.sampling.Lock()
	w.peak = max(w.peak, rss)
	w.sampling.Unlock()
}

// end stops sampling and returns the CPU time used since start.
func (w *procWatch) end() {
	if !w.started {
		return
	}
	close(w.stop)
	<-w.done
	w.sample()
	c, err := w.p.CPU()
	if err == nil {
		w.cpu = c - w.cpu0
	}
}

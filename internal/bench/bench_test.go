package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"polder.dev/polder/internal/bench"
	"polder.dev/polder/internal/hstest"
)

func TestMain(m *testing.M) { os.Exit(hstest.Main(m)) }

// TestQuickRun runs every scenario with the --quick sizes against two
// federating Polders in this process (hs1 measured, hs2 the remote of
// federation-join) and checks that each produced figures without errors.
// Only crash is skipped here (it kills the server's process); TestCrash
// covers it with a subprocess.
func TestQuickRun(t *testing.T) {
	fed := hstest.NewFederation(t, hstest.Options{SharedSecret: "bench-secret"})
	hs1, hs2 := fed.Servers()[0], fed.Servers()[1]
	local := &bench.Client{Base: hs1.URL(), HTTP: bench.NewHTTPClient(64)}
	// The remote registers through the shared-secret admin API, so both
	// ways of registering are exercised.
	remote := &bench.Client{Base: hs2.URL(), HTTP: bench.NewHTTPClient(16), SharedSecret: "bench-secret"}
	t.Cleanup(func() {
		local.HTTP.CloseIdleConnections()
		remote.HTTP.CloseIdleConnections()
	})
	sz := bench.QuickSizes()
	sz.Duration = 60 * time.Second // a bound, not a target: CI is slow
	sz.Timeout = 60 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	scenarios, err := bench.Select("all")
	if err != nil {
		t.Fatal(err)
	}
	rep := bench.Run(ctx, bench.Config{Client: local, Remote: remote, PID: os.Getpid(), Sizes: sz}, scenarios)

	var table bytes.Buffer
	if err := bench.WriteTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", table.String())
	if _, err := json.Marshal(rep); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	if len(rep.Results) != len(scenarios) {
		t.Fatalf("%d results for %d scenarios", len(rep.Results), len(scenarios))
	}
	// Skips allowed here: crash always; sliding-sync while the server
	// does not serve it (a 404 or M_UNRECOGNIZED is the skip, anything
	// else fails the scenario).
	mayskip := map[string]bool{"crash": true, "sliding-sync": true}
	for _, res := range rep.Results {
		if res.Skipped != "" {
			if !mayskip[res.Scenario] {
				t.Errorf("%s skipped: %s", res.Scenario, res.Skipped)
			}
			continue
		}
		if res.Error != "" {
			t.Errorf("%s: %s", res.Scenario, res.Error)
		}
		if len(res.Series) == 0 {
			t.Errorf("%s: no figures", res.Scenario)
		}
		for _, s := range res.Series {
			if s.Ops == 0 || s.Errors != 0 {
				t.Errorf("%s/%s: %d ops, %d errors (last: %s)", res.Scenario, s.Name, s.Ops, s.Errors, s.LastError)
			}
			if s.MedianMs <= 0 || s.P99Ms < s.MedianMs {
				t.Errorf("%s/%s: median %v ms, p99 %v ms", res.Scenario, s.Name, s.MedianMs, s.P99Ms)
			}
		}
		if res.ServerPeakRSSMB <= 0 {
			t.Errorf("%s: no peak RSS with a PID given", res.Scenario)
		}
	}
}

// TestCompare checks that a report compared with itself gives ratios of 1.
func TestCompare(t *testing.T) {
	rep := &bench.Report{Results: []bench.Result{{Scenario: "send-seq", ServerCPUMsPerOp: 0.5,
		Series: []bench.Series{{Name: "send", Ops: 10, PerSecond: 100, MedianMs: 2, P99Ms: 4, Throughput: true}}}}}
	var out bytes.Buffer
	if err := bench.WriteComparison(&out, rep, rep, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out.Bytes(), []byte("1.0")) {
		t.Errorf("comparison of a report with itself:\n%s", out.String())
	}
}

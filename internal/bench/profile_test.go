package bench_test

import (
	"context"
	"os"
	"runtime/pprof"
	"testing"
	"time"

	"polder.dev/polder/internal/bench"
	"polder.dev/polder/internal/hstest"
)

// BenchmarkScenario runs each polder-bench scenario at its default size
// against a Polder in this process (SQLite, two federating servers for
// federation-join), so that a scenario can be profiled, since the server
// serves no pprof endpoint:
//
//	go test ./internal/bench -run '^$' -bench 'BenchmarkScenario/send-seq$' -benchtime 1x -cpuprofile cpu.prof
//	go tool pprof -focus 'net/http.\(\*conn\).serve' internal/bench.test cpu.prof
//
// The client runs in the same process: focus on the server's frames. With
// POLDER_BENCH_CPUPROFILE=file (instead of -cpuprofile) only the measured
// phase is profiled, without the set-up. Each
// op is one whole scenario (set-up untimed); the figures are reported as
// metrics. Measured phases are bounded to 20 s.
func BenchmarkScenario(b *testing.B) {
	for _, s := range bench.Scenarios() {
		if s.Name == "crash" {
			continue // needs a process to kill: TestCrash, tests/bench/crash.sh
		}
		b.Run(s.Name, func(b *testing.B) {
			fed := hstest.NewFederation(b, hstest.Options{})
			hs1, hs2 := fed.Servers()[0], fed.Servers()[1]
			sz := bench.DefaultSizes()
			sz.Duration = 20 * time.Second
			cfg := bench.Config{
				Client: &bench.Client{Base: hs1.URL(), HTTP: bench.NewHTTPClient(sz.Syncers + 64)},
				Remote: &bench.Client{Base: hs2.URL(), HTTP: bench.NewHTTPClient(32)},
				Sizes:  sz,
			}
			b.Cleanup(func() {
				cfg.Client.HTTP.CloseIdleConnections()
				cfg.Remote.HTTP.CloseIdleConnections()
			})
			if path := os.Getenv("POLDER_BENCH_CPUPROFILE"); path != "" {
				cfg.OnMeasure = profileTo(b, path)
			}
			for b.Loop() {
				rep := bench.Run(context.Background(), cfg, []bench.Scenario{s})
				res := rep.Results[0]
				if res.Skipped != "" {
					b.Skip(res.Skipped)
				}
				if res.Error != "" || len(res.Series) == 0 {
					b.Fatalf("%s: %s", s.Name, res.Error)
				}
				main := res.Series[0]
				b.ReportMetric(main.PerSecond, "ops/s")
				b.ReportMetric(main.MedianMs, "p50-ms")
				b.ReportMetric(main.P99Ms, "p99-ms")
				b.ReportMetric(float64(main.Errors), "errors")
			}
		})
	}
}

// profileTo returns an OnMeasure hook that writes a CPU profile of the
// measured phase to path.
func profileTo(b *testing.B, path string) func(bool) {
	return func(start bool) {
		if !start {
			pprof.StopCPUProfile()
			return
		}
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
	}
}

package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints rep as an aligned table, one row per series.
func WriteTable(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "server %s  date %s  %d CPUs (%s)", rep.URL, rep.Date, rep.CPUs, rep.CPUModel)
	if rep.ServerIdleMB > 0 {
		fmt.Fprintf(w, "  server RSS at start %.1f MB", rep.ServerIdleMB)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tseries\tops\terrors\tops/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tsrv CPU ms/op\tsrv peak RSS MB\t")
	var notes []string
	for _, res := range rep.Results {
		switch {
		case res.Skipped != "":
			fmt.Fprintf(tw, "%s\tskipped\t\t\t\t\t\t\t\t\t\t\n", res.Scenario)
			notes = append(notes, res.Scenario+": skipped: "+res.Skipped)
			continue
		case res.Error != "" && len(res.Series) == 0:
			fmt.Fprintf(tw, "%s\tFAILED\t\t\t\t\t\t\t\t\t\t\n", res.Scenario)
			notes = append(notes, res.Scenario+": error: "+res.Error)
			continue
		}
		if res.Error != "" {
			notes = append(notes, res.Scenario+": error: "+res.Error)
		}
		for i, s := range res.Series {
			rate, cpu, rss := "", "", ""
			if s.Throughput {
				rate = fmt.Sprintf("%.1f", s.PerSecond)
			}
			if i == 0 && res.ServerCPUMsPerOp > 0 {
				cpu = fmt.Sprintf("%.3f", res.ServerCPUMsPerOp)
			}
			if i == 0 && res.ServerPeakRSSMB > 0 {
				rss = fmt.Sprintf("%.1f", res.ServerPeakRSSMB)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t\n", res.Scenario, s.Name, s.Ops, s.Errors, rate,
				s.MedianMs, s.P90Ms, s.P99Ms, s.MaxMs, cpu, rss)
			if s.LastError != "" {
				notes = append(notes, fmt.Sprintf("%s/%s: %d errors, last: %s", res.Scenario, s.Name, s.Errors, s.LastError))
			}
		}
		if res.ServerRSSAfterMB > 0 {
			notes = append(notes, fmt.Sprintf("%s: server RSS after %.1f MB, VmHWM %.1f MB", res.Scenario, res.ServerRSSAfterMB, res.ServerHWMMB))
		}
		for _, n := range res.Notes {
			notes = append(notes, res.Scenario+": "+n)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(w, "  "+n)
	}
	return nil
}

// WriteComparison prints, for each series present in both reports, the
// ratio of base's figures to other's: throughput base/other (>1: base is
// faster), latency other/base (>1: base is faster) and CPU per op
// other/base (>1: base uses less).
func WriteComparison(w io.Writer, base, other *Report, baseName, otherName string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario\tseries\t%s ops/s\t%s ops/s\tthroughput ×\tp50 ×\tp99 ×\tCPU/op ×\t\n", baseName, otherName)
	find := func(rep *Report, sc, name string) (*Result, *Series) {
		for i := range rep.Results {
			if rep.Results[i].Scenario != sc {
				continue
			}
			for j := range rep.Results[i].Series {
				if rep.Results[i].Series[j].Name == name {
					return &rep.Results[i], &rep.Results[i].Series[j]
				}
			}
		}
		return nil, nil
	}
	ratio := func(a, b float64) string {
		if a <= 0 || b <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", a/b)
	}
	for _, res := range base.Results {
		for _, s := range res.Series {
			ores, os := find(other, res.Scenario, s.Name)
			if os == nil {
				continue
			}
			cpu := "-"
			if s.Name == res.Series[0].Name {
				cpu = ratio(ores.ServerCPUMsPerOp, res.ServerCPUMsPerOp)
			}
			rate := func(x Series) string {
				if !x.Throughput && x.PerSecond == 0 {
					return "-"
				}
				return fmt.Sprintf("%.1f", x.PerSecond)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", res.Scenario, s.Name, rate(s), rate(*os),
				ratio(s.PerSecond, os.PerSecond), ratio(os.MedianMs, s.MedianMs), ratio(os.P99Ms, s.P99Ms), cpu)
		}
	}
	fmt.Fprintln(tw, strings.Repeat("\t", 8))
	return tw.Flush()
}

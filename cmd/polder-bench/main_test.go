package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"polder.dev/polder/internal/bench"
	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(hstest.Main(m)) }

// TestCommand runs the command as a user would: --quick --json against a
// Polder, then compare on its own report, then --list. Every scenario is
// covered by internal/bench's TestQuickRun; this checks the flags, the
// exit status and the output formats.
func TestCommand(t *testing.T) {
	hs := hstest.Start(t, storetest.Engines(t)[0], hstest.Options{SharedSecret: "s3cret"})
	var out, errb bytes.Buffer
	args := []string{"--url", hs.URL(), "--quick", "--json", "--shared-secret", "s3cret", "--messages", "50",
		"--pid", strconv.Itoa(os.Getpid()), "--scenario", "send-seq,register-login,federation-join"}
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("exit %d, stderr:\n%s\nstdout:\n%s", code, errb.String(), out.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if len(rep.Results) != 3 || rep.Results[0].Series[0].Ops != 50 || rep.Results[0].ServerPeakRSSMB <= 0 {
		t.Errorf("report: %+v", rep)
	}
	if rep.Results[2].Skipped == "" {
		t.Errorf("federation-join without --remote-url: %+v, want skipped", rep.Results[2])
	}

	file := filepath.Join(t.TempDir(), "a.json")
	if err := os.WriteFile(file, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"compare", file, file, "a", "b"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "send-seq") {
		t.Errorf("compare: exit %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"--list"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "messages-backpaginate") {
		t.Errorf("--list: exit %d\n%s", code, out.String())
	}
	if code := run([]string{"--scenario", "nope"}, &out, &errb); code != 2 {
		t.Errorf("unknown scenario: exit %d, want 2", code)
	}
}

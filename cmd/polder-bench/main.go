// Command polder-bench is a load tool for any Matrix homeserver. It drives
// the server only through the public Client-Server API over HTTP, so the
// same run can measure Polder, Synapse or Dendrite:
//
//	polder-bench --url http://127.0.0.1:8008 --scenario send-seq,initial-sync --pid $(pgrep -n polder)
//	polder-bench --url ... --quick --json > polder.json
//	polder-bench compare polder.json synapse.json
//	polder-bench verify-crash --url ... --crash-file acked.json
//
// The scenarios and their sizes are in internal/bench; --list prints them.
// It registers its own users, by open registration (m.login.dummy) or with
// --shared-secret through /_synapse/admin/v1/register. The server's rate
// limits must be off. With --pid (a process on this machine) it reports
// the server's CPU time per operation and its resident memory.
//
// Exit codes: 0 all scenarios ran without errors (skips are fine), 1 a
// scenario failed or had errors, 2 bad flags.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"polder.dev/polder/internal/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "compare":
			return compare(args[1:], stdout, stderr)
		case "verify-crash":
			return verifyCrash(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("polder-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sz := bench.DefaultSizes()
	var (
		base      = fs.String("url", "http://127.0.0.1:8008", "homeserver client API base URL")
		remote    = fs.String("remote-url", "", "second homeserver for federation-join (its users join nothing; the room lives there)")
		secret    = fs.String("shared-secret", "", "register through /_synapse/admin/v1/register with this secret (default: open registration)")
		remoteSec = fs.String("remote-shared-secret", "", "shared secret of --remote-url (default: --shared-secret)")
		scen      = fs.String("scenario", "all", "comma-separated scenarios, or all")
		list      = fs.Bool("list", false, "list the scenarios and exit")
		quick     = fs.Bool("quick", false, "small sizes for a smoke run (size flags given explicitly still win)")
		asJSON    = fs.Bool("json", false, "print the report as JSON")
		pid       = fs.Int("pid", 0, "the server's PID on this machine: CPU per op and memory from /proc")
		allowKill = fs.Bool("allow-kill", false, "crash: may SIGKILL --pid")
		crashFile = fs.String("crash-file", "", "crash: file for the acknowledged event IDs")
		progress  = fs.Bool("progress", true, "progress bar on stderr (only when it is a terminal)")
		verbose   = fs.Bool("v", false, "log scenario phases on stderr")
	)
	ints := []struct {
		name string
		p    *int
		doc  string
	}{
		{"messages", &sz.Messages, "send-seq/-concurrent/-shared: messages"},
		{"senders", &sz.Senders, "send-concurrent/-shared: concurrent senders"},
		{"syncers", &sz.Syncers, "send-to-sync: long-polling users"},
		{"probe-rooms", &sz.ProbeRooms, "send-to-sync: rooms measured (sender + one syncer each)"},
		{"sync-messages", &sz.SyncMessages, "send-to-sync: messages"},
		{"members", &sz.Members, "fanout: room members long-polling"},
		{"fanout-messages", &sz.FanoutMessages, "fanout: messages"},
		{"rooms", &sz.Rooms, "initial-sync: rooms of the user"},
		{"room-messages", &sz.RoomMessages, "initial-sync: messages per room"},
		{"iterations", &sz.Iterations, "initial-sync, sliding-sync: requests measured"},
		{"history", &sz.History, "messages-backpaginate: events in the room"},
		{"page-size", &sz.PageSize, "messages-backpaginate: limit per request"},
		{"users", &sz.Users, "register-login: registrations"},
		{"sliding-rooms", &sz.SlidingRooms, "sliding-sync: rooms of the user"},
		{"fed-members", &sz.FedMembers, "federation-join: members of the remote room"},
		{"fed-rooms", &sz.FedRooms, "federation-join: joins measured"},
		{"mem-rooms", &sz.MemRooms, "memory: rooms"},
		{"mem-messages", &sz.MemMessages, "memory: messages"},
		{"concurrency", &sz.Concurrency, "set-up workers; register-login concurrency"},
	}
	for _, f := range ints {
		fs.IntVar(f.p, f.name, *f.p, f.doc)
	}
	fs.DurationVar(&sz.Duration, "duration", sz.Duration, "upper bound of each measured phase")
	fs.DurationVar(&sz.Timeout, "timeout", sz.Timeout, "how long to wait for each delivery")
	fs.DurationVar(&sz.CrashAfter, "crash-after", sz.CrashAfter, "crash: sending time before SIGKILL")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *list {
		for _, s := range bench.Scenarios() {
			fmt.Fprintf(stdout, "%-22s %s\n", s.Name, s.Doc)
		}
		return 0
	}
	if *quick {
		// --quick sets the sizes not given explicitly.
		q, set := bench.QuickSizes(), map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		qi := map[string]int{"messages": q.Messages, "senders": q.Senders, "syncers": q.Syncers, "probe-rooms": q.ProbeRooms,
			"sync-messages": q.SyncMessages, "members": q.Members, "fanout-messages": q.FanoutMessages, "rooms": q.Rooms,
			"room-messages": q.RoomMessages, "iterations": q.Iterations, "history": q.History, "page-size": q.PageSize,
			"users": q.Users, "sliding-rooms": q.SlidingRooms, "fed-members": q.FedMembers, "fed-rooms": q.FedRooms,
			"mem-rooms": q.MemRooms, "mem-messages": q.MemMessages, "concurrency": q.Concurrency}
		for _, f := range ints {
			if !set[f.name] {
				*f.p = qi[f.name]
			}
		}
		if !set["duration"] {
			sz.Duration = q.Duration
		}
		if !set["crash-after"] {
			sz.CrashAfter = q.CrashAfter
		}
	}
	scenarios, err := bench.Select(*scen)
	if err != nil {
		fmt.Fprintln(stderr, "polder-bench:", err)
		return 2
	}
	conns := max(sz.Syncers, sz.Members) + sz.Senders + sz.Concurrency + 16
	cfg := bench.Config{
		Client:    &bench.Client{Base: strings.TrimRight(*base, "/"), HTTP: bench.NewHTTPClient(conns), SharedSecret: *secret},
		PID:       *pid,
		AllowKill: *allowKill,
		CrashFile: *crashFile,
		Sizes:     sz,
	}
	if *remote != "" {
		rs := *remoteSec
		if rs == "" {
			rs = *secret
		}
		cfg.Remote = &bench.Client{Base: strings.TrimRight(*remote, "/"), HTTP: bench.NewHTTPClient(sz.Concurrency + 16), SharedSecret: rs}
	}
	if *progress && isTerminal(os.Stderr) && stderr == os.Stderr {
		cfg.Progress = stderr
	}
	if *verbose {
		cfg.Log = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := bench.Run(ctx, cfg, scenarios)
	rep.Quick = *quick
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "polder-bench:", err)
			return 1
		}
	} else if err := bench.WriteTable(stdout, rep); err != nil {
		fmt.Fprintln(stderr, "polder-bench:", err)
		return 1
	}
	status := 0
	for _, r := range rep.Results {
		bad := r.Error != ""
		for _, s := range r.Series {
			bad = bad || s.Errors > 0
		}
		if bad {
			status = 1
			if *asJSON {
				fmt.Fprintf(stderr, "polder-bench: %s: failed or had errors\n", r.Scenario)
			}
		}
	}
	return status
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// compare BASE.json OTHER.json [BASE-NAME OTHER-NAME]
func compare(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 && len(args) != 4 {
		fmt.Fprintln(stderr, "usage: polder-bench compare BASE.json OTHER.json [BASE-NAME OTHER-NAME]")
		return 2
	}
	names := []string{"base", "other"}
	if len(args) == 4 {
		names = args[2:]
	}
	var reps [2]bench.Report
	for i, f := range args[:2] {
		b, err := os.ReadFile(f)
		if err == nil {
			err = json.Unmarshal(b, &reps[i])
		}
		if err != nil {
			fmt.Fprintln(stderr, "polder-bench:", err)
			return 1
		}
	}
	if err := bench.WriteComparison(stdout, &reps[0], &reps[1], names[0], names[1]); err != nil {
		fmt.Fprintln(stderr, "polder-bench:", err)
		return 1
	}
	return 0
}

// verify-crash --url URL --crash-file FILE
func verifyCrash(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("polder-bench verify-crash", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("url", "", "the restarted server's base URL (default: the one in the crash file)")
	file := fs.String("crash-file", "", "the file the crash scenario wrote")
	if err := fs.Parse(args); err != nil || *file == "" {
		fmt.Fprintln(stderr, "usage: polder-bench verify-crash --crash-file FILE [--url URL]")
		return 2
	}
	u := *base
	if u == "" {
		var st bench.CrashState
		if b, err := os.ReadFile(*file); err == nil {
			_ = json.Unmarshal(b, &st)
		}
		u = st.URL
	}
	c := &bench.Client{Base: strings.TrimRight(u, "/"), HTTP: bench.NewHTTPClient(16)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	total, missing, err := bench.VerifyCrash(ctx, c, *file)
	if err != nil {
		fmt.Fprintln(stderr, "polder-bench: verify-crash:", err)
		return 1
	}
	fmt.Fprintf(stdout, "crash: %d acknowledged events, %d missing after restart\n", total, len(missing))
	for _, id := range missing {
		fmt.Fprintln(stdout, "  missing", id)
	}
	if len(missing) > 0 || total == 0 {
		return 1
	}
	return 0
}

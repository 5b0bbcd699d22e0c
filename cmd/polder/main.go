// Command polder is the Polder Matrix homeserver.
//
//	polder [serve] [flags]      run the homeserver (the default)
//	polder generate-config      print a commented example config file
//	polder user create NAME     create a user (--admin, --password)
//	polder version              print the version
//	polder healthcheck          exit 0 if the server answers on its listener
//	polder container [flags]    the container image's entrypoint (serve, and
//	                            Complement mode when its CA is mounted); with
//	                            a command as arguments, runs that command
//
// Flags, POLDER_* environment variables and a YAML file (--config) set the
// configuration, in that order of precedence. This package handles flags,
// signals and exit codes only; internal/server does the rest.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"

	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		usage(stdout)
		return 0
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serveWith(args, os.Getenv, "", stdout, stderr)
	case "container":
		return container(args, stdin, stdout, stderr)
	case "healthcheck":
		return healthcheck(args, stdout, stderr)
	case "generate-config":
		fmt.Fprint(stdout, config.Example())
		return 0
	case "version":
		fmt.Fprintln(stdout, "polder", server.VersionString())
		return 0
	case "user":
		return userCmd(args, stdin, stdout, stderr)
	case "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "polder: unknown command %q\n", cmd)
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  polder [serve] [flags]                    run the homeserver
  polder generate-config                    print a commented example config
  polder user create NAME [--admin] [flags] create a user; reads the password from
                                            --password or the first line of stdin
  polder version                            print the version
  polder healthcheck [--url URL] [flags]    exit 0 if GET /_matrix/client/versions
                                            on the configured listener answers 200
  polder container [flags]                  serve with the container image's
                                            conventions (docs/federation.md)
Run 'polder serve -h' for the settings.
`)
}

// loadConfig parses settings for a subcommand. -h prints the settings to
// stdout (exit 0); a bad setting is printed as one line (exit 2).
func loadConfig(fs *flag.FlagSet, args []string, getenv func(string) string, stdout, stderr io.Writer) (config.Config, int, bool) {
	fs.SetOutput(io.Discard) // the flag package would print the whole usage on any error
	cfg, err := config.Load(fs, args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "usage of %s:\n", fs.Name())
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return cfg, 0, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "polder: bad setting: %v\n", err)
		return cfg, 2, false
	}
	return cfg, 0, true
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serveWith runs the server on the settings of args, getenv and the config
// file; note, if not empty, is logged first.
func serveWith(args []string, getenv func(string) string, note string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("polder serve", flag.ContinueOnError)
	cfg, code, ok := loadConfig(fs, args, getenv, stdout, stderr)
	if !ok {
		return code
	}
	log := newLogger(cfg, stderr)
	if note != "" {
		log.Info(note)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go dumpOnSignal(ctx, stderr, log)
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := srv.Run(ctx); err != nil {
		log.Error("server failed", "err", err)
		return 1
	}
	return 0
}

// dumpOnSignal writes the stacks of all goroutines to w each time the
// process gets SIGUSR1, until ctx ends: what an operator (or a test that
// timed out) needs to see where a request hangs, without stopping the
// server (docs/operation.md).
func dumpOnSignal(ctx context.Context, w io.Writer, log *slog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			log.Warn("SIGUSR1: goroutine dump follows", "goroutines", runtime.NumGoroutine())
			fmt.Fprintln(w, "--- goroutine dump (SIGUSR1) ---")
			if err := pprof.Lookup("goroutine").WriteTo(w, 2); err != nil {
				log.Error("goroutine dump", "err", err)
			}
			fmt.Fprintln(w, "--- end of goroutine dump ---")
		}
	}
}

func userCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "create" || strings.HasPrefix(args[1], "-") {
		fmt.Fprintln(stderr, "usage: polder user create NAME [--admin] [--password PW] [settings...]")
		return 2
	}
	name := args[1]
	fs := flag.NewFlagSet("polder user create", flag.ContinueOnError)
	admin := fs.Bool("admin", false, "make the user a server admin")
	password := fs.String("password", "", "the password (default: the first line of stdin)")
	cfg, code, ok := loadConfig(fs, args[2:], os.Getenv, stdout, stderr)
	if !ok {
		return code
	}
	if *password == "" {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && line == "" {
			fmt.Fprintln(stderr, "polder: no password: give --password or one line on stdin")
			return 2
		}
		*password = strings.TrimRight(line, "\r\n")
	}
	cfg.LogLevel = "warn"
	log := newLogger(cfg, stderr)
	ctx := context.Background()
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "polder: %v\n", err)
		return 1
	}
	defer srv.Close()
	sess, err := srv.Users.CreateUser(ctx, name, *password, "", *admin, "", false)
	if err != nil {
		if mx, ok := mxerr.As(err); ok {
			fmt.Fprintf(stderr, "polder: cannot create user: %s\n", mx.Msg)
		} else {
			fmt.Fprintf(stderr, "polder: cannot create user: %v\n", err)
		}
		return 1
	}
	role := "user"
	if *admin {
		role = "admin"
	}
	fmt.Fprintf(stdout, "created %s %s\n", role, sess.UserID)
	return 0
}

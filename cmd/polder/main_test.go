package main

import (
	"bytes"
	"flag"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/hstest"
)

func TestMain(m *testing.M) {
	if os.Getenv("POLDER_TEST_EXEC") == "1" {
		// Re-executed by a test as the polder binary itself (kill_test.go).
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(hstest.Main(m))
}

// polder runs the command in-process and returns its exit code and output.
func polder(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// Issue 2: "A bad setting stops startup with one clear line that names it",
// with exit code 2.
func TestBadSetting(t *testing.T) {
	unknownKey := writeFile(t, "unknown.yaml", "server_name: example.org\nno_such_setting: 1\n")
	badYAML := writeFile(t, "bad.yaml", "server_name: [unclosed\n")
	tests := []struct {
		name    string
		args    []string
		setting string // must appear in the one line
		skip    string // a known bug: skip when the output has more than one line
	}{
		{"bad listen address", []string{"serve", "--listen", "nonsense"}, "listen", ""},
		{"bad server name", []string{"serve", "--server-name", "bad name"}, "server_name", ""},
		{"bcrypt cost out of range", []string{"serve", "--password-hash-cost", "99"}, "password_hash_cost", ""},
		{"bad log level", []string{"serve", "--log-level", "loud"}, "log_level", ""},
		{"database not postgres", []string{"serve", "--database", "mysql://db"}, "database", ""},
		{"default command too", []string{"--listen", "nonsense"}, "listen", ""},
		{"user create checks settings", []string{"user", "create", "alice", "--password", "pw", "--listen", "nonsense"}, "listen", ""},
		{"missing config file", []string{"serve", "--config", filepath.Join(t.TempDir(), "nope.yaml")}, "nope.yaml", ""},
		{"unparsable config file", []string{"serve", "--config", badYAML}, "bad.yaml", ""},
		{"unknown key in the config file", []string{"serve", "--config", unknownKey}, "no_such_setting",
			"config.Load: an unknown key in the YAML file is reported over several lines (yaml.v3's \"unmarshal errors:\\n  line 2: ...\")"},
		{"flag value of the wrong type", []string{"serve", "--password-hash-cost", "abc"}, "password-hash-cost",
			"cmd/polder loadConfig: a flag that does not parse makes the flag package print its error and the whole usage (every setting) before polder's own line; set fs.Usage to a no-op (and print usage only for -h)"},
		{"unknown flag", []string{"serve", "--no-such-flag"}, "no-such-flag",
			"cmd/polder loadConfig: an unknown flag prints the flag package's error and the whole usage, then polder's line again"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := polder(t, "", append(tt.args, "--data-dir", t.TempDir())...)
			if code != 2 {
				t.Fatalf("polder %v: exit %d, want 2 (stderr %q)", tt.args, code, stderr)
			}
			if stdout != "" {
				t.Errorf("polder %v: stdout %q, want nothing", tt.args, stdout)
			}
			ls := lines(stderr)
			if len(ls) != 1 && tt.skip != "" {
				t.Fatalf("%s; got %d lines:\n%s", tt.skip, len(ls), stderr)
			}
			if len(ls) != 1 {
				t.Fatalf("polder %v: stderr has %d lines, want one:\n%s", tt.args, len(ls), stderr)
			}
			if !strings.Contains(ls[0], tt.setting) {
				t.Errorf("polder %v: stderr %q does not name %s", tt.args, ls[0], tt.setting)
			}
		})
	}
}

// The environment's bad value is named by its variable.
func TestBadSettingEnv(t *testing.T) {
	t.Setenv("POLDER_PASSWORD_HASH_COST", "abc")
	code, _, stderr := polder(t, "", "serve", "--data-dir", t.TempDir())
	if code != 2 || len(lines(stderr)) != 1 || !strings.Contains(stderr, "POLDER_PASSWORD_HASH_COST") {
		t.Errorf("polder serve with POLDER_PASSWORD_HASH_COST=abc: exit %d, stderr %q; want 2 and one line naming the variable", code, stderr)
	}
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{"version", []string{"version"}, 0, "polder ", ""},
		{"help", []string{"help"}, 0, "polder generate-config", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"user without create", []string{"user", "delete", "x"}, 2, "", "usage: polder user create"},
		{"user create without a name", []string{"user", "create"}, 2, "", "usage: polder user create"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := polder(t, "", tt.args...)
			if code != tt.code || !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("polder %v: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					tt.args, code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

// `polder --help` is help, not a failed serve.
func TestHelpFlag(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--help", "-h"} {
		code, stdout, stderr := polder(t, "", arg)
		if code != 0 {
			t.Fatalf("`polder %s` exits %d and prints serve's flag list to stderr (%d lines): run() treats any first argument "+
				"starting with '-' as a serve flag, so its \"-h\", \"--help\" case is dead code, and loadConfig turns flag.ErrHelp into exit 2. "+
				"Fix: test for -h/--help before defaulting to serve, and return 0 from serve/user create on flag.ErrHelp", arg, code, len(lines(stderr)))
		}
		if !strings.Contains(stdout+stderr, "polder user create") {
			t.Errorf("polder %s: output %q lacks the command list", arg, stdout+stderr)
		}
	}
}

// `polder generate-config` writes a file that config.Load reads back as the
// defaults.
func TestGenerateConfig(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := polder(t, "", "generate-config")
	if code != 0 || stderr != "" {
		t.Fatalf("polder generate-config: exit %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "# ") {
		t.Errorf("generate-config output has no comments:\n%s", stdout)
	}
	path := writeFile(t, "polder.yaml", stdout)
	got, err := config.Load(flag.NewFlagSet("test", flag.ContinueOnError), []string{"--config", path}, func(string) string { return "" })
	if err != nil {
		t.Fatalf("config.Load(generated file): %v", err)
	}
	if want := config.Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("config.Load(generated file) = %+v, want the defaults %+v", got, want)
	}
	// And the binary accepts it.
	code, _, stderr = polder(t, "pw\n", "user", "create", "alice", "--config", path, "--data-dir", t.TempDir(), "--password-hash-cost", "4")
	if code != 0 {
		t.Errorf("polder user create --config <generated>: exit %d, stderr %q", code, stderr)
	}
}

// `polder user create NAME [--admin]` against a data dir and database; the
// server started on them afterwards lets the user log in.
func TestUserCreate(t *testing.T) {
	hstest.Each(t, hstest.Options{Registration: hstest.RegistrationClosed}, func(t *testing.T, hs *hstest.Server) {
		hs.Stop(t)
		cli := func(t *testing.T, stdin string, args ...string) (int, string, string) {
			t.Helper()
			args = append(args, "--data-dir", hs.Config.DataDir, "--server-name", hs.ServerName(), "--password-hash-cost", "4")
			if hs.Config.Database != "" {
				args = append(args, "--database", hs.Config.Database)
			}
			return polder(t, stdin, args...)
		}
		if code, out, errOut := cli(t, "", "user", "create", "root", "--admin", "--password", "rootpw"); code != 0 || out != "created admin "+hs.UserID("root")+"\n" {
			t.Fatalf("polder user create root --admin: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if code, out, errOut := cli(t, "bobpw\n", "user", "create", "Bob"); code != 0 || out != "created user "+hs.UserID("bob")+"\n" {
			t.Fatalf("polder user create Bob (password on stdin): exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		bad := []struct {
			name, stdin string
			args        []string
			code        int
			stderr      string
		}{
			{"existing user", "", []string{"user", "create", "root", "--password", "x"}, 1, "already taken"},
			{"invalid name", "", []string{"user", "create", "bad name", "--password", "x"}, 1, "cannot create user"},
			{"no password", "", []string{"user", "create", "carol"}, 2, "no password"},
		}
		for _, tt := range bad {
			t.Run(tt.name, func(t *testing.T) {
				code, _, errOut := cli(t, tt.stdin, tt.args...)
				if code != tt.code || !strings.Contains(errOut, tt.stderr) || len(lines(errOut)) != 1 {
					t.Errorf("polder %v: exit %d, stderr %q; want %d and one line with %q", tt.args, code, errOut, tt.code, tt.stderr)
				}
			})
		}

		hs.Restart(t)
		root := hs.Login(t, "root", "rootpw")
		hstest.MustOK(t, root.Do(t, "GET", "/_synapse/admin/v1/registration_tokens", nil))
		bob := hs.Login(t, hs.UserID("bob"), "bobpw")
		hstest.MustErr(t, bob.Do(t, "GET", "/_synapse/admin/v1/registration_tokens", nil), 403, "M_FORBIDDEN")
		if ids := root.DeviceIDs(t); len(ids) != 1 {
			t.Errorf("root's devices = %v: user create must not create a device", ids)
		}
		hstest.MustOK(t, hs.Anon().Do(t, "GET", "/_matrix/client/v3/register/available?username=carol", nil))
	})
}

// Flags beat POLDER_* variables, which beat the config file: observed
// through the server name `polder user create` prints.
func TestPrecedence(t *testing.T) {
	file := writeFile(t, "polder.yaml", "server_name: file.example\npassword_hash_cost: 4\n")
	create := func(t *testing.T, name string, extra ...string) string {
		t.Helper()
		args := append([]string{"user", "create", name, "--password", "pw", "--config", file, "--data-dir", t.TempDir()}, extra...)
		code, out, errOut := polder(t, "", args...)
		if code != 0 {
			t.Fatalf("polder %v: exit %d, stderr %q", args, code, errOut)
		}
		return strings.TrimSpace(out)
	}
	t.Run("file", func(t *testing.T) {
		if got := create(t, "a"); got != "created user @a:file.example" {
			t.Errorf("got %q, want the file's server name", got)
		}
	})
	t.Run("env over file", func(t *testing.T) {
		t.Setenv("POLDER_SERVER_NAME", "env.example")
		if got := create(t, "b"); got != "created user @b:env.example" {
			t.Errorf("got %q, want the environment's server name", got)
		}
	})
	t.Run("flag over env", func(t *testing.T) {
		t.Setenv("POLDER_SERVER_NAME", "env.example")
		if got := create(t, "c", "--server-name", "flag.example"); got != "created user @c:flag.example" {
			t.Errorf("got %q, want the flag's server name", got)
		}
	})
	t.Run("POLDER_CONFIG names the file", func(t *testing.T) {
		t.Setenv("POLDER_CONFIG", file)
		code, out, errOut := polder(t, "", "user", "create", "d", "--password", "pw", "--data-dir", t.TempDir())
		if code != 0 || strings.TrimSpace(out) != "created user @d:file.example" {
			t.Errorf("polder user create with POLDER_CONFIG: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
}

// `polder serve` creates its data dir, serves, logs a startup summary and
// exits 0 on SIGTERM (issue 2: "graceful shutdown on SIGTERM").
func TestServeSIGTERM(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dataDir := filepath.Join(t.TempDir(), "new", "data")
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"serve", "--listen", addr, "--data-dir", dataDir, "--password-hash-cost", "4", "--server-name", "sig.example"},
			strings.NewReader(""), &bytes.Buffer{}, &stderr)
	}()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case code := <-done:
			t.Fatalf("polder serve exited with %d before serving:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("polder serve did not answer within 15s:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "signing.key")); err != nil {
		t.Errorf("data dir: %v", err)
	}
	// The server is up, so its signal handler is installed.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("polder serve after SIGTERM: exit %d, want 0:\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("polder serve did not stop within 15s of SIGTERM")
	}
	logs := stderr.String()
	for _, want := range []string{`msg="Polder is serving"`, "server_name=sig.example", "listen=http://" + addr, `msg="shutting down"`, "msg=stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("serve logs lack %q:\n%s", want, logs)
		}
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

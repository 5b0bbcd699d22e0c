package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// defaultComplementCADir is where Complement mounts the CA it makes for a
// test run (ca.crt and ca.key; Complement's README, "Complement PKI").
// POLDER_CONTAINER_CA_DIR overrides it.
const defaultComplementCADir = "/complement/ca"

// complementDefaults are the settings of Complement mode, as POLDER_*
// variables, below any variable actually set. They are test settings:
// open registration, Complement's well-known shared secret, guests, no
// rate limits, cheap password hashes.
var complementDefaults = map[string]string{
	"POLDER_ENABLE_REGISTRATION":         "true",
	"POLDER_REGISTRATION_SHARED_SECRET":  "complement",
	"POLDER_ALLOW_GUEST_ACCESS":          "true",
	"POLDER_RATE_LIMIT_PER_SECOND":       "0",
	"POLDER_LOGIN_RATE_LIMIT_PER_SECOND": "0",
	"POLDER_PASSWORD_HASH_COST":          "4",
	"POLDER_TLS_LISTEN":                  "0.0.0.0:8448",
	// and POLDER_TLS_CA_CERT, POLDER_TLS_CA_KEY: the files in the CA dir
}

// containerEnv is the environment `polder container` reads its settings
// from: getenv, with SERVER_NAME standing in for POLDER_SERVER_NAME, and,
// when the CA dir holds ca.crt and ca.key (Complement mode), the
// complementDefaults under whatever is set. It also returns the CA dir in
// Complement mode, "" otherwise.
func containerEnv(getenv func(string) string) (func(string) string, string) {
	defaults := map[string]string{"POLDER_SERVER_NAME": getenv("SERVER_NAME")}
	dir := getenv("POLDER_CONTAINER_CA_DIR")
	if dir == "" {
		dir = defaultComplementCADir
	}
	crt, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if !fileExists(crt) || !fileExists(key) {
		dir = ""
	} else {
		for k, v := range complementDefaults {
			defaults[k] = v
		}
		defaults["POLDER_TLS_CA_CERT"], defaults["POLDER_TLS_CA_KEY"] = crt, key
	}
	return func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return defaults[name]
	}, dir
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// containerVars are the variables containerEnv may fill.
var containerVars = func() []string {
	out := []string{"POLDER_SERVER_NAME", "POLDER_TLS_CA_CERT", "POLDER_TLS_CA_KEY"}
	for k := range complementDefaults {
		out = append(out, k)
	}
	return out
}()

// container is the entrypoint of the container image: `polder serve` with
// the environment of containerEnv, which it also exports, so that another
// command given as arguments (`docker run polder:latest user create
// alice`, `... version`) runs on the same settings.
func container(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	getenv, caDir := containerEnv(os.Getenv)
	for _, k := range containerVars {
		if v := getenv(k); v != "" && os.Getenv(k) == "" {
			os.Setenv(k, v)
		}
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") && args[0] != "container" {
		return run(args, stdin, stdout, stderr)
	}
	note := ""
	if caDir != "" {
		note = "Complement mode (CA in " + caDir + "): certificate minted from that CA, open registration, shared secret \"complement\", guests, no rate limits"
	}
	return serveWith(args, os.Getenv, note, stdout, stderr)
}

// healthcheck asks the server's plain HTTP listener for
// /_matrix/client/versions and exits 0 when it answers 200, 1 otherwise. It
// needs no shell or curl, so that an image FROM scratch can use it as its
// HEALTHCHECK.
func healthcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("polder healthcheck", flag.ContinueOnError)
	url := fs.String("url", "", "URL to GET (default http://<listen>/_matrix/client/versions, with a loopback address for an unspecified host)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	cfg, code, ok := loadConfig(fs, args, os.Getenv, stdout, stderr)
	if !ok {
		return code
	}
	u := *url
	if u == "" {
		u = "http://" + loopbackAddr(cfg.Listen) + "/_matrix/client/versions"
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		fmt.Fprintf(stderr, "polder healthcheck: %v\n", err)
		return 1
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "polder healthcheck: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "polder healthcheck: GET %s: %s\n", u, resp.Status)
		return 1
	}
	fmt.Fprintf(stdout, "ok: GET %s: %s\n", u, resp.Status)
	return 0
}

// loopbackAddr is a listen address with an unspecified host (":8008",
// "0.0.0.0:8008", "[::]:8008") replaced by the loopback address of its
// family.
func loopbackAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch ip := net.ParseIP(host); {
	case host == "":
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

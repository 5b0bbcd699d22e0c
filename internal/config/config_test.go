package config_test

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"polder.dev/polder/internal/config"
)

func load(t *testing.T, file string, env map[string]string, args ...string) (config.Config, error) {
	t.Helper()
	if file != "" {
		p := filepath.Join(t.TempDir(), "polder.yaml")
		if err := os.WriteFile(p, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", p}, args...)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(&strings.Builder{})
	return config.Load(fs, args, func(k string) string { return env[k] })
}

// Issue 2: flags beat POLDER_* variables, which beat the YAML file, which
// beats the defaults; for every kind of setting.
func TestLoadPrecedence(t *testing.T) {
	const file = `
server_name: file.example
enable_registration: true
password_hash_cost: 10
rate_limit_per_second: 5.5
refreshable_access_token_lifetime: 10m
max_request_bytes: 4096
`
	tests := []struct {
		name  string
		file  string
		env   map[string]string
		args  []string
		check func(c config.Config) bool
	}{
		{"defaults", "", nil, nil, func(c config.Config) bool { return reflect.DeepEqual(c, config.Default()) }},
		{"file string", file, nil, nil, func(c config.Config) bool { return c.ServerName == "file.example" }},
		{"file bool", file, nil, nil, func(c config.Config) bool { return c.EnableRegistration }},
		{"file int", file, nil, nil, func(c config.Config) bool { return c.PasswordHashCost == 10 }},
		{"file int64", file, nil, nil, func(c config.Config) bool { return c.MaxRequestBytes == 4096 }},
		{"file float", file, nil, nil, func(c config.Config) bool { return c.RateLimitPerSecond == 5.5 }},
		{"file duration", file, nil, nil, func(c config.Config) bool { return c.AccessTokenLifetime == 10*time.Minute }},
		{"file leaves the rest at defaults", file, nil, nil, func(c config.Config) bool { return c.Listen == "127.0.0.1:8008" && c.LogLevel == "info" }},
		{"env over file: string", file, map[string]string{"POLDER_SERVER_NAME": "env.example"}, nil, func(c config.Config) bool { return c.ServerName == "env.example" }},
		{"env over file: bool false", file, map[string]string{"POLDER_ENABLE_REGISTRATION": "false"}, nil, func(c config.Config) bool { return !c.EnableRegistration }},
		{"env over file: int", file, map[string]string{"POLDER_PASSWORD_HASH_COST": "11"}, nil, func(c config.Config) bool { return c.PasswordHashCost == 11 }},
		{"env over file: duration", file, map[string]string{"POLDER_REFRESHABLE_ACCESS_TOKEN_LIFETIME": "1h"}, nil, func(c config.Config) bool { return c.AccessTokenLifetime == time.Hour }},
		{"env over defaults", "", map[string]string{"POLDER_LISTEN": "0.0.0.0:9000"}, nil, func(c config.Config) bool { return c.Listen == "0.0.0.0:9000" }},
		{"flag over env and file", file, map[string]string{"POLDER_SERVER_NAME": "env.example"}, []string{"--server-name", "flag.example"}, func(c config.Config) bool { return c.ServerName == "flag.example" }},
		{"flag false over env true", "", map[string]string{"POLDER_METRICS": "true"}, []string{"--metrics=false"}, func(c config.Config) bool { return !c.Metrics }},
		{"flag false over file true", file, nil, []string{"--enable-registration=false"}, func(c config.Config) bool { return !c.EnableRegistration }},
		{"flag equal to the default still wins", file, nil, []string{"--password-hash-cost", "12"}, func(c config.Config) bool { return c.PasswordHashCost == 12 }},
		{"flag duration", file, nil, []string{"--refreshable-access-token-lifetime", "2m"}, func(c config.Config) bool { return c.AccessTokenLifetime == 2*time.Minute }},
		{"an empty env var is unset", file, map[string]string{"POLDER_SERVER_NAME": ""}, nil, func(c config.Config) bool { return c.ServerName == "file.example" }},
		{"empty file is the defaults", "\n", nil, nil, func(c config.Config) bool { return reflect.DeepEqual(c, config.Default()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := load(t, tt.file, tt.env, tt.args...)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !tt.check(c) {
				t.Errorf("Load(file, env %v, args %v) = %+v", tt.env, tt.args, c)
			}
		})
	}
}

// Errors name the setting, the variable or the file.
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		want string
	}{
		{"env not a bool", "", map[string]string{"POLDER_METRICS": "maybe"}, nil, "POLDER_METRICS"},
		{"env not an int", "", map[string]string{"POLDER_RATE_LIMIT_BURST": "lots"}, nil, "POLDER_RATE_LIMIT_BURST"},
		{"env not a float", "", map[string]string{"POLDER_RATE_LIMIT_PER_SECOND": "fast"}, nil, "POLDER_RATE_LIMIT_PER_SECOND"},
		{"env not a duration", "", map[string]string{"POLDER_SHUTDOWN_TIMEOUT": "10"}, nil, "POLDER_SHUTDOWN_TIMEOUT"},
		{"unknown file key", "no_such_setting: 1\n", nil, nil, "no_such_setting"},
		{"file value of the wrong type", "password_hash_cost: many\n", nil, nil, "config file"},
		{"flag value of the wrong type", "", nil, []string{"--password-hash-cost", "x"}, "password-hash-cost"},
		{"invalid after merging", "", map[string]string{"POLDER_LOG_LEVEL": "loud"}, nil, "log_level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := load(t, tt.file, tt.env, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load: error %v, want one naming %s", err, tt.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		_, err := config.Load(fs, []string{"--config", "/nonexistent/polder.yaml"}, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/polder.yaml") {
			t.Errorf("Load(missing file): error %v, want one naming the file", err)
		}
	})
}

// The example config parses back to the defaults.
func TestExampleRoundTrip(t *testing.T) {
	c, err := load(t, config.Example(), nil)
	if err != nil {
		t.Fatalf("Load(Example()): %v", err)
	}
	if !reflect.DeepEqual(c, config.Default()) {
		t.Errorf("Load(Example()) = %+v, want Default() %+v", c, config.Default())
	}
	for _, name := range []string{"server_name", "data_dir", "listen", "database", "enable_registration", "registration_shared_secret"} {
		if !strings.Contains(config.Example(), "\n"+name+":") {
			t.Errorf("Example() lacks %s", name)
		}
	}
}

// Validate names the first bad setting.
func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*config.Config)
		setting string // "" = valid
	}{
		{"defaults", func(*config.Config) {}, ""},
		{"postgres URL", func(c *config.Config) { c.Database = "postgres://u@h/db" }, ""},
		{"postgresql URL", func(c *config.Config) { c.Database = "postgresql://u@h/db" }, ""},
		{"https public_baseurl", func(c *config.Config) { c.PublicBaseURL = "https://matrix.example.org/" }, ""},
		{"rate limits off", func(c *config.Config) { c.RateLimitPerSecond, c.RateLimitBurst = 0, 0 }, ""},
		{"empty server name", func(c *config.Config) { c.ServerName = "" }, "server_name"},
		{"empty data dir", func(c *config.Config) { c.DataDir = "" }, "data_dir"},
		{"listen without port", func(c *config.Config) { c.Listen = "0.0.0.0" }, "listen"},
		{"sqlite path as database", func(c *config.Config) { c.Database = "/var/lib/polder.db" }, "database"},
		{"public_baseurl without scheme", func(c *config.Config) { c.PublicBaseURL = "matrix.example.org" }, "public_baseurl"},
		{"ftp public_baseurl", func(c *config.Config) { c.PublicBaseURL = "ftp://x" }, "public_baseurl"},
		{"log level", func(c *config.Config) { c.LogLevel = "trace" }, "log_level"},
		{"log format", func(c *config.Config) { c.LogFormat = "xml" }, "log_format"},
		{"tiny body limit", func(c *config.Config) { c.MaxRequestBytes = 10 }, "max_request_bytes"},
		{"negative rate", func(c *config.Config) { c.RateLimitPerSecond = -1 }, "rate_limit_per_second"},
		{"rate without burst", func(c *config.Config) { c.RateLimitBurst = 0 }, "rate_limit_burst"},
		{"login rate without burst", func(c *config.Config) { c.LoginRateLimitBurst = 0 }, "login_rate_limit_burst"},
		{"bcrypt cost 3", func(c *config.Config) { c.PasswordHashCost = 3 }, "password_hash_cost"},
		{"bcrypt cost 32", func(c *config.Config) { c.PasswordHashCost = 32 }, "password_hash_cost"},
		{"token lifetime 59s", func(c *config.Config) { c.AccessTokenLifetime = 59 * time.Second }, "refreshable_access_token_lifetime"},
		{"zero shutdown timeout", func(c *config.Config) { c.ShutdownTimeout = 0 }, "shutdown_timeout"},
		{"token registration, registration closed", func(c *config.Config) { c.RegistrationRequiresToken = true }, "registration_requires_token"},
		{"certificate files", func(c *config.Config) { c.TLSCert, c.TLSKey = "c.pem", "k.pem" }, ""},
		{"minting CA", func(c *config.Config) { c.TLSCACert, c.TLSCAKey = "ca.crt", "ca.key" }, ""},
		{"certificate on another port", func(c *config.Config) { c.TLSCert, c.TLSKey, c.TLSListen = "c.pem", "k.pem", "127.0.0.1:8443" }, ""},
		{"certificate without key", func(c *config.Config) { c.TLSCert = "c.pem" }, "tls_cert"},
		{"key without certificate", func(c *config.Config) { c.TLSKey = "k.pem" }, "tls_cert"},
		{"CA without key", func(c *config.Config) { c.TLSCACert = "ca.crt" }, "tls_ca_cert"},
		{"CA key without CA", func(c *config.Config) { c.TLSCAKey = "ca.key" }, "tls_ca_cert"},
		{"certificate and CA", func(c *config.Config) {
			c.TLSCert, c.TLSKey, c.TLSCACert, c.TLSCAKey = "c.pem", "k.pem", "ca.crt", "ca.key"
		}, "tls_ca_cert"},
		{"tls_listen without certificate", func(c *config.Config) { c.TLSListen = ":8448" }, "tls_listen"},
		{"tls_listen without port", func(c *config.Config) { c.TLSCert, c.TLSKey, c.TLSListen = "c.pem", "k.pem", "0.0.0.0" }, "tls_listen"},
		{"tls_listen equal to listen", func(c *config.Config) { c.TLSCert, c.TLSKey, c.TLSListen = "c.pem", "k.pem", c.Listen }, "tls_listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.setting == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tt.setting != "" && (err == nil || !strings.Contains(err.Error(), tt.setting)):
				t.Errorf("Validate: %v, want an error naming %s", err, tt.setting)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Errorf("Validate: %q is more than one line", err)
			}
		})
	}
}

// TLSAddr: the HTTPS listener is on by default once there is something to
// serve it with, and off otherwise.
func TestTLSAddr(t *testing.T) {
	tests := []struct {
		name   string
		change func(*config.Config)
		want   string
	}{
		{"nothing configured", func(*config.Config) {}, ""},
		{"certificate files", func(c *config.Config) { c.TLSCert, c.TLSKey = "c.pem", "k.pem" }, ":8448"},
		{"minting CA", func(c *config.Config) { c.TLSCACert, c.TLSCAKey = "ca.crt", "ca.key" }, ":8448"},
		{"explicit address", func(c *config.Config) { c.TLSCert, c.TLSKey, c.TLSListen = "c.pem", "k.pem", "0.0.0.0:443" }, "0.0.0.0:443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.change(&c)
			if got := c.TLSAddr(); got != tt.want {
				t.Errorf("TLSAddr() = %q, want %q", got, tt.want)
			}
		})
	}
}

// Federation settings load from every source like the others;
// federation_trusted_ca is a comma-separated list of files.
func TestFederationSettings(t *testing.T) {
	c, err := load(t, "federation_enabled: false\ntls_ca_cert: /ca/ca.crt\n",
		map[string]string{"POLDER_TLS_CA_KEY": "/ca/ca.key", "POLDER_FEDERATION_TRUSTED_CA": " a.pem, ,b.pem"},
		"--tls-listen", "127.0.0.1:8449")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.FederationEnabled || c.TLSCACert != "/ca/ca.crt" || c.TLSCAKey != "/ca/ca.key" || c.TLSAddr() != "127.0.0.1:8449" {
		t.Errorf("Load = %+v, want federation off, CA /ca/ca.crt + /ca/ca.key, tls_listen 127.0.0.1:8449", c)
	}
	if got, want := c.TrustedCAFiles(), []string{"a.pem", "b.pem"}; !reflect.DeepEqual(got, want) {
		t.Errorf("TrustedCAFiles() = %q, want %q", got, want)
	}
	if !config.Default().FederationEnabled {
		t.Errorf("Default().FederationEnabled = false, want true")
	}
}

// ValidServerName follows the spec appendix "Server Name" grammar.
func TestValidServerName(t *testing.T) {
	tests := []struct {
		name  string
		valid bool
	}{
		{"matrix.org", true},
		{"matrix.org:8888", true},
		{"localhost", true},
		{"1.2.3.4", true},
		{"1.2.3.4:1234", true},
		{"[1234:5678::abcd]", true},
		{"[1234:5678::abcd]:5678", true},
		{"Example-1.ORG", true},
		{"", false},
		{"matrix.org:", false},
		{":8448", false},
		{"matrix.org:0", false},
		{"matrix.org:65536", false},
		{"matrix.org:123456", false},
		{"matrix.org:http", false},
		{"bad_host.org", false},
		{"bad host", false},
		{"bad/host", false},
		{"[1234:5678::abcd", false},
		{"[1.2.3.4]", false},
		{"[::1]x", false},
		{"[::1]:", false},
		{strings.Repeat("a", 256), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := config.ValidServerName(tt.name)
			if (err == nil) != tt.valid {
				t.Errorf("ValidServerName(%q) = %v, want valid %v", tt.name, err, tt.valid)
			}
		})
	}
}

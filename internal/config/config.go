// Package config holds Polder's settings: their defaults, how flags,
// POLDER_* environment variables and an optional YAML file combine (flags win
// over the environment, which wins over the file), and validation that names
// the bad setting in one line.
//
// Imported only by cmd/polder and internal/server (and tests).
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is every setting of a Polder process. The yaml tags are the names in
// the config file; each setting's flag is the same name with dashes, and its
// environment variable is POLDER_ + the name in upper case.
type Config struct {
	ServerName string `yaml:"server_name"`
	DataDir    string `yaml:"data_dir"`
	Listen     string `yaml:"listen"`
	// Database is empty for embedded SQLite in DataDir, or a postgres:// URL.
	Database string `yaml:"database"`

	EnableRegistration        bool   `yaml:"enable_registration"`
	RegistrationRequiresToken bool   `yaml:"registration_requires_token"`
	RegistrationSharedSecret  string `yaml:"registration_shared_secret"`
	AllowGuestAccess          bool   `yaml:"allow_guest_access"`

	// PublicBaseURL is the URL clients reach the server at, served in
	// /.well-known/matrix/client. Default http://<listen>.
	PublicBaseURL string `yaml:"public_baseurl"`
	// WellKnownServer is the delegated server (host:port) served in
	// /.well-known/matrix/server; empty serves nothing.
	WellKnownServer string `yaml:"well_known_server"`

	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
	// Metrics enables GET /metrics (Prometheus) on the listener.
	Metrics bool `yaml:"metrics"`

	// MaxRequestBytes bounds a request body on the client and federation APIs.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// RateLimitPerSecond and RateLimitBurst bound requests per user (or per
	// client IP for unauthenticated requests); 0 disables rate limiting.
	RateLimitPerSecond float64 `yaml:"rate_limit_per_second"`
	RateLimitBurst     int     `yaml:"rate_limit_burst"`
	// LoginRateLimitPerSecond bounds login and registration attempts per IP.
	LoginRateLimitPerSecond float64 `yaml:"login_rate_limit_per_second"`
	LoginRateLimitBurst     int     `yaml:"login_rate_limit_burst"`

	// PasswordHashCost is the bcrypt cost of stored password hashes.
	PasswordHashCost int `yaml:"password_hash_cost"`
	// AccessTokenLifetime is the lifetime of access tokens issued together
	// with a refresh token (clients that do not ask for refresh tokens get
	// tokens that do not expire).
	AccessTokenLifetime time.Duration `yaml:"refreshable_access_token_lifetime"`
	// ShutdownTimeout bounds the graceful shutdown on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	// TLSListen is the address of the HTTPS listener, which serves the same
	// APIs as Listen (federation needs HTTPS: server-server API "TLS").
	// Empty means ":8448" when a certificate or a CA is configured, and no
	// HTTPS listener otherwise; see TLSAddr.
	TLSListen string `yaml:"tls_listen"`
	// TLSCert and TLSKey are PEM files of the certificate (chain) and its
	// key. They are read again when they change on disk.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// TLSCACert and TLSCAKey are a CA from which Polder mints its own
	// certificate for the server name at startup (private federations,
	// Complement). Outbound federation trusts that CA too.
	TLSCACert string `yaml:"tls_ca_cert"`
	TLSCAKey  string `yaml:"tls_ca_key"`
	// FederationTrustedCA lists PEM files (comma-separated) of CAs trusted
	// for outbound federation in addition to the system's.
	FederationTrustedCA string `yaml:"federation_trusted_ca"`
	// FederationEnabled serves the federation and key APIs and lets the
	// server talk to others. Off, the server is an island.
	FederationEnabled bool `yaml:"federation_enabled"`

	// PushNotificationRetention is how long read notification rows are
	// kept for GET /notifications (0: for ever); unread rows and
	// highlights are kept (docs/push.md).
	PushNotificationRetention time.Duration `yaml:"push_notification_retention"`

	// Media repository (docs/media.md). MediaMaxUploadBytes bounds an
	// upload and a remote file; MediaUserQuotaBytes bounds what one user
	// may have uploaded (0: no quota); MediaRemoteRetention is how long
	// cached remote media is kept after its last access (0: for ever).
	MediaMaxUploadBytes  int64         `yaml:"media_max_upload_bytes"`
	MediaUserQuotaBytes  int64         `yaml:"media_user_quota_bytes"`
	MediaRemoteRetention time.Duration `yaml:"media_remote_retention"`
	// MediaLegacyCutover is an RFC 3339 time: media created from then on
	// is not served on the unauthenticated /_matrix/media/v3 endpoints.
	// Empty: the time the media repository first started.
	MediaLegacyCutover string `yaml:"media_legacy_cutover"`
	// ClamdAddress is a ClamAV daemon ("unix:/path", "/path" or
	// host:port) that scans every file before it is served; empty: none.
	// ClamdUnreachable is refuse or allow: what to do with a file when
	// clamd cannot be reached.
	ClamdAddress     string `yaml:"clamd_address"`
	ClamdUnreachable string `yaml:"clamd_unreachable"`
	// URLPreviewEnabled serves /media/preview_url. The blocklist (CIDRs,
	// comma-separated) adds to the built-in one (loopback, private,
	// link-local, ...); the allowlist wins over both.
	URLPreviewEnabled     bool   `yaml:"url_preview_enabled"`
	URLPreviewIPBlocklist string `yaml:"url_preview_ip_blocklist"`
	URLPreviewIPAllowlist string `yaml:"url_preview_ip_allowlist"`
}

// DefaultTLSListen is the HTTPS listener's address when a certificate or a
// CA is configured and tls_listen is not set: the spec's default federation
// port on every interface.
const DefaultTLSListen = ":8448"

// TLSAddr is the effective address of the HTTPS listener: TLSListen, or
// DefaultTLSListen when a certificate or a CA is configured; "" when there
// is no HTTPS listener.
func (c *Config) TLSAddr() string {
	switch {
	case c.TLSListen != "":
		return c.TLSListen
	case c.TLSCert != "" || c.TLSCACert != "":
		return DefaultTLSListen
	}
	return ""
}

// TrustedCAFiles is FederationTrustedCA split into file names.
func (c *Config) TrustedCAFiles() []string {
	var out []string
	for _, f := range strings.Split(c.FederationTrustedCA, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Default returns the settings used when nothing else is given.
func Default() Config {
	return Config{
		ServerName:                "localhost",
		DataDir:                   "./polder-data",
		Listen:                    "127.0.0.1:8008",
		LogLevel:                  "info",
		LogFormat:                 "text",
		Metrics:                   true,
		MaxRequestBytes:           10 << 20,
		RateLimitPerSecond:        20,
		RateLimitBurst:            100,
		LoginRateLimitPerSecond:   1,
		LoginRateLimitBurst:       10,
		PasswordHashCost:          12,
		AccessTokenLifetime:       5 * time.Minute,
		ShutdownTimeout:           10 * time.Second,
		FederationEnabled:         true,
		MediaMaxUploadBytes:       50 << 20,
		PushNotificationRetention: 30 * 24 * time.Hour,
		ClamdUnreachable:          "refuse",
	}
}

// setting describes one setting for flags, environment and help text.
type setting struct {
	name  string // yaml name; flag is name with '-', env is POLDER_NAME
	usage string
	ptr   any
}

func (c *Config) settings() []setting {
	return []setting{
		{"server_name", "the server name: the part after ':' in user IDs; cannot change once users exist", &c.ServerName},
		{"data_dir", "directory for the signing key, the SQLite database and media; created if missing", &c.DataDir},
		{"listen", "address for plain HTTP (client and federation APIs)", &c.Listen},
		{"database", "empty for embedded SQLite in the data dir, or a postgres:// URL", &c.Database},
		{"enable_registration", "allow anyone to register (m.login.dummy, or a registration token if registration_requires_token)", &c.EnableRegistration},
		{"registration_requires_token", "open registration needs a registration token (m.login.registration_token)", &c.RegistrationRequiresToken},
		{"registration_shared_secret", "shared secret for /_synapse/admin/v1/register (admin tools); empty disables it", &c.RegistrationSharedSecret},
		{"allow_guest_access", "allow guest accounts (register?kind=guest)", &c.AllowGuestAccess},
		{"public_baseurl", "URL clients use to reach this server (served in /.well-known/matrix/client)", &c.PublicBaseURL},
		{"well_known_server", "host:port served in /.well-known/matrix/server for federation delegation; empty serves none", &c.WellKnownServer},
		{"log_level", "debug, info, warn or error", &c.LogLevel},
		{"log_format", "text or json", &c.LogFormat},
		{"metrics", "serve Prometheus metrics at /metrics", &c.Metrics},
		{"max_request_bytes", "largest request body accepted, in bytes", &c.MaxRequestBytes},
		{"rate_limit_per_second", "requests per second allowed per user or IP; 0 disables", &c.RateLimitPerSecond},
		{"rate_limit_burst", "burst size of the per-user rate limit", &c.RateLimitBurst},
		{"login_rate_limit_per_second", "login and registration attempts per second per IP; 0 disables", &c.LoginRateLimitPerSecond},
		{"login_rate_limit_burst", "burst size of the login rate limit", &c.LoginRateLimitBurst},
		{"password_hash_cost", "bcrypt cost of password hashes (4-31)", &c.PasswordHashCost},
		{"refreshable_access_token_lifetime", "lifetime of access tokens issued with a refresh token", &c.AccessTokenLifetime},
		{"shutdown_timeout", "how long a graceful shutdown waits for requests in flight", &c.ShutdownTimeout},
		{"tls_listen", "address for HTTPS (client and federation APIs); empty: " + DefaultTLSListen + " when tls_cert or tls_ca_cert is set, else none", &c.TLSListen},
		{"tls_cert", "PEM file of the HTTPS certificate chain (with tls_key); reloaded when it changes", &c.TLSCert},
		{"tls_key", "PEM file of the HTTPS certificate's private key", &c.TLSKey},
		{"tls_ca_cert", "PEM file of a CA from which to mint this server's HTTPS certificate at startup (with tls_ca_key); also trusted for federation", &c.TLSCACert},
		{"tls_ca_key", "PEM file of that CA's private key", &c.TLSCAKey},
		{"federation_trusted_ca", "comma-separated PEM files of extra CAs trusted for outbound federation (private federations)", &c.FederationTrustedCA},
		{"federation_enabled", "serve the federation API and talk to other servers", &c.FederationEnabled},
		{"push_notification_retention", "how long read notification rows are kept for GET /notifications; 0 keeps them", &c.PushNotificationRetention},
		{"media_max_upload_bytes", "largest media upload (and remote file) accepted, in bytes", &c.MediaMaxUploadBytes},
		{"media_user_quota_bytes", "bytes of media one user may upload in all; 0 is no quota", &c.MediaUserQuotaBytes},
		{"media_remote_retention", "how long cached remote media is kept after its last access; 0 keeps it", &c.MediaRemoteRetention},
		{"media_legacy_cutover", "RFC 3339 time from which new media is not served on the unauthenticated /_matrix/media/v3 endpoints; empty: the first start", &c.MediaLegacyCutover},
		{"clamd_address", "ClamAV daemon that scans every file before it is served: unix:/path, /path or host:port; empty: no scanning", &c.ClamdAddress},
		{"clamd_unreachable", "refuse or allow: what to do with a file when clamd cannot be reached", &c.ClamdUnreachable},
		{"url_preview_enabled", "serve URL previews (/media/preview_url)", &c.URLPreviewEnabled},
		{"url_preview_ip_blocklist", "comma-separated CIDRs URL previews may not fetch, in addition to the built-in loopback/private/link-local list", &c.URLPreviewIPBlocklist},
		{"url_preview_ip_allowlist", "comma-separated CIDRs URL previews may fetch even when blocked", &c.URLPreviewIPAllowlist},
	}
}

// Flags registers every setting on fs, writing into c. It returns the path of
// --config, filled when fs is parsed.
func (c *Config) Flags(fs *flag.FlagSet) *string {
	path := fs.String("config", os.Getenv("POLDER_CONFIG"), "YAML config file (env POLDER_CONFIG)")
	for _, s := range c.settings() {
		name := strings.ReplaceAll(s.name, "_", "-")
		usage := s.usage + " (env " + envName(s.name) + ")"
		switch p := s.ptr.(type) {
		case *string:
			fs.StringVar(p, name, *p, usage)
		case *bool:
			fs.BoolVar(p, name, *p, usage)
		case *int:
			fs.IntVar(p, name, *p, usage)
		case *int64:
			fs.Int64Var(p, name, *p, usage)
		case *float64:
			fs.Float64Var(p, name, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, name, *p, usage)
		default:
			panic(fmt.Sprintf("config: setting %s has unsupported type %T", s.name, p))
		}
	}
	return path
}

func envName(name string) string { return "POLDER_" + strings.ToUpper(name) }

// Load builds the config from args (flags), the environment (getenv) and the
// YAML file named by --config or POLDER_CONFIG, in that order of precedence,
// over the defaults. Errors name the bad setting.
func Load(fs *flag.FlagSet, args []string, getenv func(string) string) (Config, error) {
	c := Default()
	path := c.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[strings.ReplaceAll(f.Name, "-", "_")] = true })
	// Remember the values given as flags, then lay file and env underneath.
	flagged := c
	if *path != "" {
		data, err := os.ReadFile(*path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		fileCfg := Default()
		if err := decodeYAML(data, &fileCfg); err != nil {
			msg := strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n"), "\n", "; ")
			return c, fmt.Errorf("config file %s: %s", *path, strings.TrimSpace(msg))
		}
		c = fileCfg
	}
	for _, s := range c.settings() {
		v := getenv(envName(s.name))
		if v == "" || set[s.name] {
			continue
		}
		if err := setString(s.ptr, v); err != nil {
			return c, fmt.Errorf("%s: %v", envName(s.name), err)
		}
	}
	// Flags win: copy every explicitly given flag from the parsed values.
	fsettings := flagged.settings()
	for i, s := range c.settings() {
		if set[s.name] {
			copyValue(s.ptr, fsettings[i].ptr)
		}
	}
	return c, c.Validate()
}

func decodeYAML(data []byte, c *Config) error {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) { // an empty file is no settings
		return err
	}
	return nil
}

func setString(ptr any, v string) error {
	switch p := ptr.(type) {
	case *string:
		*p = v
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("not a boolean: %q", v)
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("not an integer: %q", v)
		}
		*p = n
	case *int64:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer: %q", v)
		}
		*p = n
	case *float64:
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("not a number: %q", v)
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("not a duration: %q", v)
		}
		*p = d
	}
	return nil
}

func copyValue(dst, src any) {
	switch d := dst.(type) {
	case *string:
		*d = *src.(*string)
	case *bool:
		*d = *src.(*bool)
	case *int:
		*d = *src.(*int)
	case *int64:
		*d = *src.(*int64)
	case *float64:
		*d = *src.(*float64)
	case *time.Duration:
		*d = *src.(*time.Duration)
	}
}

// Validate checks every setting and names the first bad one.
func (c *Config) Validate() error {
	if err := ValidServerName(c.ServerName); err != nil {
		return fmt.Errorf("server_name %q: %v", c.ServerName, err)
	}
	if c.DataDir == "" {
		return errors.New("data_dir: must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q: want host:port: %v", c.Listen, err)
	}
	if c.Database != "" && !strings.HasPrefix(c.Database, "postgres://") && !strings.HasPrefix(c.Database, "postgresql://") {
		return fmt.Errorf("database: want empty (embedded SQLite) or a postgres:// URL")
	}
	if c.Database != "" {
		if _, err := url.Parse(c.Database); err != nil {
			return fmt.Errorf("database: not a URL")
		}
	}
	if c.PublicBaseURL != "" {
		u, err := url.Parse(c.PublicBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("public_baseurl %q: want an http(s) URL", c.PublicBaseURL)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log_format %q: want text or json", c.LogFormat)
	}
	if c.MaxRequestBytes < 1024 {
		return fmt.Errorf("max_request_bytes %d: must be at least 1024", c.MaxRequestBytes)
	}
	if c.RateLimitPerSecond < 0 || c.LoginRateLimitPerSecond < 0 {
		return errors.New("rate_limit_per_second: must not be negative")
	}
	if c.RateLimitPerSecond > 0 && c.RateLimitBurst < 1 {
		return errors.New("rate_limit_burst: must be at least 1 when rate limiting is on")
	}
	if c.LoginRateLimitPerSecond > 0 && c.LoginRateLimitBurst < 1 {
		return errors.New("login_rate_limit_burst: must be at least 1 when login rate limiting is on")
	}
	if c.PasswordHashCost < 4 || c.PasswordHashCost > 31 {
		return fmt.Errorf("password_hash_cost %d: want 4 to 31", c.PasswordHashCost)
	}
	if c.AccessTokenLifetime < time.Minute {
		return fmt.Errorf("refreshable_access_token_lifetime %s: must be at least 1m", c.AccessTokenLifetime)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("shutdown_timeout %s: must be positive", c.ShutdownTimeout)
	}
	if c.RegistrationRequiresToken && !c.EnableRegistration {
		return errors.New("registration_requires_token: needs enable_registration")
	}
	if err := c.validateMedia(); err != nil {
		return err
	}
	return c.validateTLS()
}

func (c *Config) validateMedia() error {
	if c.MediaMaxUploadBytes < 1024 {
		return fmt.Errorf("media_max_upload_bytes %d: must be at least 1024", c.MediaMaxUploadBytes)
	}
	if c.PushNotificationRetention < 0 {
		return errors.New("push_notification_retention: must not be negative")
	}
	if c.MediaUserQuotaBytes < 0 || c.MediaRemoteRetention < 0 {
		return errors.New("media_user_quota_bytes, media_remote_retention: must not be negative")
	}
	if c.MediaLegacyCutover != "" {
		if _, err := time.Parse(time.RFC3339, c.MediaLegacyCutover); err != nil {
			return fmt.Errorf("media_legacy_cutover %q: want an RFC 3339 time", c.MediaLegacyCutover)
		}
	}
	if c.ClamdUnreachable != "refuse" && c.ClamdUnreachable != "allow" {
		return fmt.Errorf("clamd_unreachable %q: want refuse or allow", c.ClamdUnreachable)
	}
	for _, l := range []struct{ name, v string }{{"url_preview_ip_blocklist", c.URLPreviewIPBlocklist}, {"url_preview_ip_allowlist", c.URLPreviewIPAllowlist}} {
		for _, cidr := range SplitList(l.v) {
			if _, _, err := net.ParseCIDR(cidr); err != nil && net.ParseIP(cidr) == nil {
				return fmt.Errorf("%s: %q is not a CIDR", l.name, cidr)
			}
		}
	}
	return nil
}

// SplitList splits a comma-separated setting, dropping blanks.
func SplitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (c *Config) validateTLS() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls_cert: tls_cert and tls_key go together")
	}
	if (c.TLSCACert == "") != (c.TLSCAKey == "") {
		return errors.New("tls_ca_cert: tls_ca_cert and tls_ca_key go together")
	}
	if c.TLSCert != "" && c.TLSCACert != "" {
		return errors.New("tls_ca_cert: give either tls_cert and tls_key or tls_ca_cert and tls_ca_key, not both")
	}
	if c.TLSListen != "" {
		if c.TLSCert == "" && c.TLSCACert == "" {
			return errors.New("tls_listen: needs tls_cert and tls_key, or tls_ca_cert and tls_ca_key")
		}
		if _, _, err := net.SplitHostPort(c.TLSListen); err != nil {
			return fmt.Errorf("tls_listen %q: want host:port: %v", c.TLSListen, err)
		}
	}
	if addr := c.TLSAddr(); addr != "" && addr == c.Listen {
		return fmt.Errorf("tls_listen %q: must differ from listen", addr)
	}
	return nil
}

// ValidServerName checks the server name grammar (spec appendix "Server
// Name"): a DNS name, IPv4 literal or bracketed IPv6 literal, with an optional
// port.
func ValidServerName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return errors.New("unterminated IPv6 literal")
		}
		host = s[1:end]
		if net.ParseIP(host) == nil || !strings.Contains(host, ":") {
			return errors.New("bad IPv6 literal")
		}
		rest := s[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return errors.New("junk after IPv6 literal")
			}
			port = rest[1:]
			if port == "" {
				return errors.New("empty port")
			}
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if port == "" {
			return errors.New("empty port")
		}
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || len(port) > 5 {
			return fmt.Errorf("bad port %q", port)
		}
	}
	if strings.HasPrefix(s, "[") {
		return nil
	}
	if host == "" || len(host) > 255 {
		return errors.New("bad host length")
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("bad character %q in host", r)
		}
	}
	return nil
}

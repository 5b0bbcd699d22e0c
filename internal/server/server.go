// Package server builds every component of a Polder process from its config
// and runs them until the context ends. It is the only place where
// components are wired together; cmd/polder and the test harness share it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/api/client"
	"polder.dev/polder/internal/api/federation"
	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/directory"
	"polder.dev/polder/internal/e2ee"
	fedclient "polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/identity"
	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/media"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/presence"
	"polder.dev/polder/internal/push"
	"polder.dev/polder/internal/receipt"
	"polder.dev/polder/internal/room"
	"polder.dev/polder/internal/store"
	"polder.dev/polder/internal/sync"
	"polder.dev/polder/internal/typing"
	"polder.dev/polder/internal/user"
)

// Version is the release, set at build time with
// -ldflags "-X polder.dev/polder/internal/server.Version=v1.2.3".
var Version = ""

// VersionString is Version, or the module version and VCS revision when
// built without it.
func VersionString() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}

// Server is one Polder process.
type Server struct {
	cfg   config.Config
	log   *slog.Logger
	db    *store.DB
	key   *keys.SigningKey
	Users *user.Service
	// Notify wakes waiting /sync requests.
	Notify *notify.Notifier
	Rooms  *room.Service
	// Sync serves /sync.
	Sync *sync.Service
	// Typing, Receipts and Presence are the ephemeral and per-user data
	// /sync reports beside events and account data.
	Typing   *typing.Service
	Receipts *receipt.Service
	Presence *presence.Service
	// Federation makes signed requests to other servers; KeyCache holds
	// their verify keys (fetched through Federation, kept in the store).
	Federation *fedclient.Client
	KeyCache   *keys.Cache
	// FederationQueue sends PDUs and EDUs to other servers in
	// transactions, per destination, with backoff.
	FederationQueue *fedclient.Queue
	// E2EE carries device keys, to-device messages, key backups and
	// dehydrated devices.
	E2EE *e2ee.Service
	// Media is the media repository (uploads, downloads, thumbnails,
	// remote media, URL previews, antivirus scanning).
	Media *media.Service
	// Push evaluates push rules on new events and delivers to pushers.
	Push *push.Service

	handler http.Handler
	fedAPI  *federation.API
	reg     *prometheus.Registry
	opts    options
	// tls is the HTTPS listener's certificate and the CAs outbound
	// federation trusts (tls.go); tlsURL is the bound listener, for the log.
	tls     *tlsSetup
	tlsURL  string
	baseURL atomic.Value // string: public_baseurl, or derived from the bound listener
}

// New opens the database (applying migrations), loads or creates the
// signing key and builds the APIs. Close it if Run is never called.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	for _, o := range opts {
		o(&s.opts)
	}
	ts, err := loadTLS(cfg, time.Now(), log.With("component", "tls"))
	if err != nil {
		return nil, err
	}
	s.tls = ts
	s.baseURL.Store(cfg.PublicBaseURL)
	if cfg.PublicBaseURL == "" {
		s.baseURL.Store("http://" + cfg.Listen) // replaced by the bound address in Serve
	}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	dbTime := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "polder_db_operation_duration_seconds",
		Help:    "Database operation latency by operation.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"op"})
	dbErrs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "polder_db_operation_errors_total",
		Help: "Database operations that failed, by operation.",
	}, []string{"op"})
	s.reg.MustRegister(dbTime, dbErrs)

	db, err := store.Open(ctx, store.Options{
		Database: cfg.Database,
		DataDir:  cfg.DataDir,
		Logger:   log.With("component", "store"),
		Observe: func(op string, d time.Duration, err error) {
			dbTime.WithLabelValues(op).Observe(d.Seconds())
			if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
				dbErrs.WithLabelValues(op).Inc()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	s.db = db
	keyPath := filepath.Join(cfg.DataDir, "signing.key")
	if s.key, err = keys.LoadOrGenerate(keyPath); err != nil {
		db.Close()
		return nil, fmt.Errorf("signing key %s: %w", keyPath, err)
	}
	// A remote's media answer may redirect anywhere: the URL preview
	// address filter applies there too (docs/media.md).
	locationFilter, err := media.NewIPFilter(config.SplitList(cfg.URLPreviewIPBlocklist), config.SplitList(cfg.URLPreviewIPAllowlist))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("url_preview_ip_blocklist/allowlist: %w", err)
	}
	s.Federation = fedclient.NewClient(fedclient.Config{
		ServerName:      cfg.ServerName,
		Key:             s.key,
		RootCAs:         s.tls.roots,
		Resolver:        s.federationResolver(),
		UserAgent:       "Polder/" + VersionString(),
		LocationControl: locationFilter.Control,
	}, log.With("component", "federation"))
	s.KeyCache = keys.NewCache(keys.CacheConfig{
		ServerName: cfg.ServerName,
		Key:        s.key,
		Fetch:      s.Federation.ServerKeys,
		Load:       db.ServerKeys,
		Store:      db.PutServerKeys,
		Log:        log.With("component", "keys"),
	})
	pos, err := db.StreamPos(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("read stream position: %w", err)
	}
	s.Notify = notify.New(notify.Position{Stream: pos})
	// Clients' questions about other servers' aliases, directories and
	// profiles go to those servers when federation is on.
	var remoteProfiles user.RemoteProfileFunc
	dirCfg := directory.Config{ServerName: cfg.ServerName}
	if cfg.FederationEnabled {
		remoteProfiles = directory.RemoteProfiles(s.Federation, log.With("component", "user"))
		dirCfg.Remote = s.Federation
	}
	s.Users = user.New(user.Config{
		ServerName:                cfg.ServerName,
		EnableRegistration:        cfg.EnableRegistration,
		RegistrationRequiresToken: cfg.RegistrationRequiresToken,
		AllowGuestAccess:          cfg.AllowGuestAccess,
		RegistrationSharedSecret:  cfg.RegistrationSharedSecret,
		PasswordHashCost:          cfg.PasswordHashCost,
		AccessTokenLifetime:       cfg.AccessTokenLifetime,
		RemoteProfile:             remoteProfiles,
		OnDevicesDeleted: func(ctx context.Context, u id.UserID, devs []id.DeviceID) error {
			if err := s.Push.DevicesDeleted(ctx, u, devs); err != nil {
				return err
			}
			return s.E2EE.DevicesDeleted(ctx, u, devs)
		},
		OnDeactivated: func(ctx context.Context, u id.UserID) error {
			return s.E2EE.DeleteAllBackups(ctx, u)
		},
		OnDeviceRenamed: func(ctx context.Context, u id.UserID, dev id.DeviceID) error {
			return s.E2EE.DeviceRenamed(ctx, u, dev)
		},
	}, db, s.Notify, log.With("component", "user"))

	roomCfg := room.Config{ServerName: cfg.ServerName, Key: s.key, Keys: s.KeyCache}
	// Identity servers (third-party invites) are trusted through the same
	// CAs as federation: the system's plus federation_trusted_ca.
	roomCfg.Identity = identity.New(identity.Config{RootCAs: s.tls.roots})
	if cfg.FederationEnabled {
		roomCfg.Federation = s.Federation
	}
	s.Rooms = room.New(roomCfg, db, s.Notify, log.With("component", "room"))
	persisted := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "polder_events_persisted_total",
		Help: "Room events persisted by this process.",
	})
	s.reg.MustRegister(persisted, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "polder_sync_waiting",
		Help: "Long-polling /sync requests waiting for news.",
	}, func() float64 { return float64(s.Notify.Waiting()) }))
	s.Rooms.OnEvent = func(*store.Event) { persisted.Inc() }
	s.Push = push.New(push.Config{ServerName: cfg.ServerName, Retention: cfg.PushNotificationRetention}, db, s.Users, log.With("component", "push"))
	s.reg.MustRegister(s.Push.Collectors()...)
	s.Rooms.Push = s.Push.Prepare
	svc := client.Services{Rooms: s.Rooms, Push: s.Push}
	var spacesRemote room.HierarchyRemote
	if cfg.FederationEnabled {
		spacesRemote = s.Federation
	}
	svc.Spaces = room.NewSpaces(s.Rooms, spacesRemote, log.With("component", "spaces"))
	s.Typing = typing.New(typing.Config{}, db, s.Notify)
	s.Receipts = receipt.New(db, s.Notify)
	s.Presence = presence.New(presence.Config{}, db, s.Notify, log.With("component", "presence"))
	svc.Typing, svc.Receipts, svc.Presence = s.Typing, s.Receipts, s.Presence
	s.FederationQueue = fedclient.NewQueue(fedclient.QueueConfig{
		ServerName:        cfg.ServerName,
		RoomServers:       s.Rooms.JoinedServers,
		RoomServersJoined: s.Rooms.ServersJoined,
	}, db, s.Federation, log.With("component", "federation_queue"))
	s.reg.MustRegister(s.FederationQueue.Collector())
	if cfg.FederationEnabled {
		// Local users' events, typing, public receipts and presence go to
		// the servers in their rooms (the queue ignores remote users').
		onEvent := s.Rooms.OnEvent
		s.Rooms.OnEvent = func(ev *store.Event) {
			onEvent(ev)
			s.FederationQueue.RoomEvent(ev)
		}
		s.Rooms.OnRelay = s.FederationQueue.Relay
		s.Typing.OnChange = s.FederationQueue.Typing
		s.Receipts.OnPublic = s.FederationQueue.Receipt
		s.Presence.OnChange = func(p presence.Presence) {
			u := fedclient.PresenceUpdate{UserID: p.UserID, Presence: p.State, StatusMsg: p.StatusMsg, CurrentlyActive: p.CurrentlyActive}
			if !p.LastActive.IsZero() {
				u.LastActiveAgo = max(time.Since(p.LastActive).Milliseconds(), 0)
			}
			s.FederationQueue.Presence(u)
		}
	}
	// Several processes share only PostgreSQL: with SQLite this process sees
	// every E2EE write, and /sync may skip reads that would find nothing.
	e2eeCfg := e2ee.Config{ServerName: cfg.ServerName, SoleWriter: db.Dialect() == store.SQLite}
	if cfg.FederationEnabled {
		e2eeCfg.Remote, e2eeCfg.Queue = s.Federation, s.FederationQueue
	}
	s.E2EE = e2ee.New(e2eeCfg, db, s.Notify, log.With("component", "e2ee"))
	svc.E2EE = s.E2EE
	if cfg.FederationEnabled {
		// A local user's join sends its devices to servers new to it.
		onEvent := s.Rooms.OnEvent
		s.Rooms.OnEvent = func(ev *store.Event) {
			onEvent(ev)
			s.E2EE.RoomEvent(ev)
		}
	}
	svc.Directory = directory.New(dirCfg, db, s.Rooms, log.With("component", "directory"))
	s.Sync = sync.New(db, s.Rooms, s.Notify, sync.Sources{
		Users: s.Users, Typing: s.Typing, Receipts: s.Receipts, Presence: s.Presence,
		ToDevice: s.E2EE, DeviceLists: s.E2EE, OneTimeKeys: s.E2EE,
	}, log.With("component", "sync"))
	svc.Sync = s.Sync
	if s.Media, err = newMedia(ctx, cfg, db, s.Federation, func() string { return s.baseURL.Load().(string) },
		s.reg, log.With("component", "media")); err != nil {
		db.Close()
		return nil, err
	}
	svc.Media = s.Media

	rt := api.NewRouter()
	version := VersionString()
	client.New(client.Config{
		ServerName:      cfg.ServerName,
		PublicBaseURL:   func() string { return s.baseURL.Load().(string) },
		WellKnownServer: cfg.WellKnownServer,
		Version:         version,
	}, s.Users, svc,
		api.NewRateLimiter(cfg.RateLimitPerSecond, cfg.RateLimitBurst),
		api.NewRateLimiter(cfg.LoginRateLimitPerSecond, cfg.LoginRateLimitBurst),
		log.With("component", "client_api"),
	).Routes(rt)
	s.fedAPI = federation.New(federation.Config{
		ServerName: cfg.ServerName,
		Version:    version,
		VerifyKey:  s.KeyCache.VerifyKey,
		Keys:       s.KeyCache,
		OnInbound:  s.FederationQueue.Wake,
		Spaces:     svc.Spaces,
		Services: federation.Services{
			Rooms: s.Rooms, Users: s.Users, Directory: svc.Directory,
			Typing: s.Typing, Receipts: s.Receipts, Presence: s.Presence,
			E2EE: s.E2EE, Txns: db, EventByTime: db.RoomEventByTime,
			Media: s.Media,
		},
	}, s.key, log.With("component", "federation_api"))
	s.fedAPI.Routes(rt)
	if cfg.Metrics {
		rt.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	}
	accessLog := log.With("component", "http")
	s.handler = api.Chain(federationGate(cfg, rt),
		api.Recover(log),
		api.Observe(accessLog, api.NewMetrics(s.reg)),
		api.CORS,
		bodyLimit(cfg), // api.MaxBytes, larger for media uploads (media.go)
	)
	return s, nil
}

// Handler is the HTTP handler of every API, for tests that serve it themselves.
func (s *Server) Handler() http.Handler { return s.handler }

// DB is the server's database.
func (s *Server) DB() *store.DB { return s.db }

// Close releases the database and idle federation connections.
func (s *Server) Close() error {
	s.Federation.CloseIdleConnections()
	return s.db.Close()
}

// Run serves until ctx ends, then shuts down gracefully: the listener
// closes, requests in flight get up to ShutdownTimeout to finish, and
// background work flushes. It closes the server.
func (s *Server) Run(ctx context.Context) error {
	defer s.Close()
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.PublicBaseURL == "" {
		s.baseURL.Store("http://" + ln.Addr().String())
	}
	tlsLn, tlsErr := s.listenTLS()
	if tlsErr != nil {
		ln.Close()
		return tlsErr
	}
	s.tlsURL = "off"
	if tlsLn != nil {
		s.tlsURL = "https://" + tlsLn.Addr().String()
	}
	s.logSummary(ctx, ln.Addr().String())
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.tls.config,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if tlsLn != nil {
		g.Go(func() error {
			if err := srv.ServeTLS(tlsLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("tls_listen: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error { return s.Users.Run(gctx) })
	g.Go(func() error { return s.Typing.Run(gctx) })
	g.Go(func() error { return s.Presence.Run(gctx) })
	g.Go(func() error { return s.Sync.Run(gctx) })
	g.Go(func() error { return s.E2EE.Run(gctx) })
	g.Go(func() error { return s.Push.Run(gctx) })
	g.Go(func() error { return s.fedAPI.Run(gctx) })
	g.Go(func() error { return s.Media.Run(gctx) })
	if s.cfg.FederationEnabled {
		g.Go(func() error { return s.FederationQueue.Run(gctx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		s.log.Info("shutting down", "grace", s.cfg.ShutdownTimeout)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			s.log.Warn("requests still in flight at shutdown were cut off", "err", err)
			srv.Close()
		}
		return nil
	})
	err := g.Wait()
	s.log.Info("stopped")
	return err
}

func (s *Server) logSummary(ctx context.Context, addr string) {
	reg := "closed"
	switch {
	case s.cfg.EnableRegistration && s.cfg.RegistrationRequiresToken:
		reg = "open with registration token"
	case s.cfg.EnableRegistration:
		reg = "open"
	}
	if s.cfg.RegistrationSharedSecret != "" {
		reg += ", shared-secret registration on"
	}
	users, _ := s.db.CountAccounts(ctx)
	schema, _ := s.db.SchemaVersion(ctx)
	s.log.Info("Polder is serving",
		"version", VersionString(),
		"server_name", s.cfg.ServerName,
		"listen", "http://"+addr,
		"tls_listen", s.tlsURL,
		"tls", s.tls.about,
		"federation", s.cfg.FederationEnabled,
		"public_baseurl", s.baseURL.Load(),
		"database", s.db.Dialect().String()+" "+s.db.Where(),
		"schema_version", schema,
		"users", users,
		"registration", reg,
		"guests", s.cfg.AllowGuestAccess,
		"signing_key", s.key.KeyID(),
		"metrics", s.cfg.Metrics,
	)
}

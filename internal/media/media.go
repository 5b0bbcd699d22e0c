// Package media is the media repository (client-server API "Content
// repository", server-server API "Content Repository"; docs/media.md):
// uploads (direct and asynchronous), downloads, thumbnails, remote media
// fetched on demand through federation and cached, URL previews, and
// antivirus scanning with ClamAV.
//
// Content is stored on disk under Config.Dir, one file per SHA-256
// (disk.go), and its metadata in the store. Every blob is scanned before it
// is first served (clamav.go), whether uploaded here or fetched from
// another server; an infected one is refused (403 M_FORBIDDEN, reason
// MCS_MEDIA_NOT_CLEAN), never served, and its verdict kept so that the
// same bytes are refused at once next time. Thumbnails are made once per
// size and kept (thumbnail.go); remote media is fetched once however many
// ask at the same time (remote.go); URL previews fetch only addresses the
// IP filter allows, checked when dialling (preview.go, ssrf.go).
//
// Files: media.go (the service, uploads, downloads, admin), disk.go,
// thumbnail.go, clamav.go, remote.go, preview.go, ssrf.go.
//
// Imported by internal/api/client, internal/api/federation and internal/server.
package media

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// Config configures the media repository. Zero values take the defaults.
type Config struct {
	ServerName string
	// Dir is where content is stored (data_dir/media).
	Dir string
	// MaxUploadBytes bounds an upload and a remote file (default 50 MiB).
	MaxUploadBytes int64
	// UserQuotaBytes bounds the bytes a user may have uploaded; 0 is no quota.
	UserQuotaBytes int64
	// QuotaInfoURI is the info_uri of M_USER_LIMIT_EXCEEDED.
	QuotaInfoURI string
	// RemoteRetention is how long cached remote media is kept after its
	// last access; 0 keeps it.
	RemoteRetention time.Duration
	// LegacyCutover: media created at or after it is not served on the
	// unauthenticated /_matrix/media/v3 endpoints. Zero: the time the
	// media repository first started on this database.
	LegacyCutover time.Time
	// MaxPendingUploads bounds a user's asynchronous uploads waiting for
	// content (default 5); UnusedExpiry is how long such an ID lives
	// (default 24h).
	MaxPendingUploads int
	UnusedExpiry      time.Duration
	// Scanner, if not nil, scans every blob before it is served. When it
	// cannot be reached, AllowUnscanned serves the content anyway (policy
	// "allow"); otherwise the request fails (policy "refuse").
	Scanner        Scanner
	AllowUnscanned bool
	// ScanConcurrency bounds scans in flight (default 4).
	ScanConcurrency int
	// Remote, if not nil, fetches other servers' media.
	Remote Remote
	// Preview configures URL previews.
	Preview PreviewConfig
	// Registerer, if not nil, gets the metrics.
	Registerer prometheus.Registerer
}

// Scanner scans content (*ClamAV).
type Scanner interface {
	Scan(ctx context.Context, r io.Reader) (Verdict, error)
}

// Remote fetches media from its origin server (*federation.Client).
type Remote interface {
	DownloadMedia(ctx context.Context, destination, mediaID string) (*federation.MediaContent, error)
}

var _ Remote = (*federation.Client)(nil)

// Service is the media repository.
type Service struct {
	cfg     Config
	db      *store.DB
	log     *slog.Logger
	blobs   *blobs
	cutover int64 // ms
	scanSem chan struct{}
	cpuSem  chan struct{}
	metrics metrics

	// blobMu orders putting a blob and its row against deleting rows and
	// then unreferenced blobs: a blob is never removed between an upload
	// writing it and its row pointing at it.
	blobMu sync.RWMutex

	remoteFlight singleflight.Group
	thumbFlight  singleflight.Group
	scanFlight   singleflight.Group

	mu      sync.Mutex
	waiters map[string]chan struct{} // pending uploads being waited for
	preview *previewer
}

type metrics struct {
	uploads      prometheus.Counter
	uploadBytes  prometheus.Counter
	scans        *prometheus.CounterVec
	remote       *prometheus.CounterVec
	remoteBytes  prometheus.Counter
	thumbnails   prometheus.Counter
	downloads    prometheus.Counter
	previewFetch *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		uploads:      prometheus.NewCounter(prometheus.CounterOpts{Name: "polder_media_uploads_total", Help: "Media uploads stored."}),
		uploadBytes:  prometheus.NewCounter(prometheus.CounterOpts{Name: "polder_media_upload_bytes_total", Help: "Bytes of media uploads stored."}),
		scans:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "polder_media_scans_total", Help: "Antivirus scans by result (clean, infected, error)."}, []string{"result"}),
		remote:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "polder_media_remote_fetches_total", Help: "Remote media fetches by result (ok, not_found, error, too_large, infected)."}, []string{"result"}),
		remoteBytes:  prometheus.NewCounter(prometheus.CounterOpts{Name: "polder_media_remote_bytes_total", Help: "Bytes of remote media fetched."}),
		thumbnails:   prometheus.NewCounter(prometheus.CounterOpts{Name: "polder_media_thumbnails_generated_total", Help: "Thumbnails generated (each once per size)."}),
		downloads:    prometheus.NewCounter(prometheus.CounterOpts{Name: "polder_media_downloads_total", Help: "Media served (downloads and thumbnails)."}),
		previewFetch: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "polder_media_preview_fetches_total", Help: "URL preview fetches by result (ok, blocked, error)."}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.uploads, m.uploadBytes, m.scans, m.remote, m.remoteBytes, m.thumbnails, m.downloads, m.previewFetch)
	}
	return m
}

// New returns the media repository: it creates its directory and fixes
// the legacy cut-over time in the database on first use.
func New(ctx context.Context, cfg Config, db *store.DB, log *slog.Logger) (*Service, error) {
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = 50 << 20
	}
	if cfg.MaxPendingUploads <= 0 {
		cfg.MaxPendingUploads = 5
	}
	if cfg.UnusedExpiry <= 0 {
		cfg.UnusedExpiry = 24 * time.Hour
	}
	if cfg.ScanConcurrency <= 0 {
		cfg.ScanConcurrency = 4
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b, err := newBlobs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cut, err := db.MediaSetting(ctx, "legacy_cutover_ts", time.Now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("media legacy cut-over: %w", err)
	}
	if !cfg.LegacyCutover.IsZero() {
		cut = cfg.LegacyCutover.UnixMilli()
	}
	s := &Service{
		cfg: cfg, db: db, log: log, blobs: b, cutover: cut,
		scanSem: make(chan struct{}, cfg.ScanConcurrency),
		cpuSem:  make(chan struct{}, thumbConcurrency()),
		metrics: newMetrics(cfg.Registerer),
		waiters: map[string]chan struct{}{},
	}
	s.preview = newPreviewer(cfg.Preview)
	return s, nil
}

// MaxUploadBytes is the largest upload accepted (for /media/config).
func (s *Service) MaxUploadBytes() int64 { return s.cfg.MaxUploadBytes }

// ServerName is the local server name.
func (s *Service) ServerName() string { return s.cfg.ServerName }

// Run purges expired asynchronous upload IDs and, with a retention set,
// remote media not accessed within it, every hour until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		s.housekeeping(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Service) housekeeping(ctx context.Context) {
	if n, err := s.db.DeleteExpiredPendingMedia(ctx, time.Now().UnixMilli()); err != nil && ctx.Err() == nil {
		s.log.Warn("forget expired media IDs", "err", err)
	} else if n > 0 {
		s.log.Info("forgot unused media IDs", "count", n)
	}
	if s.cfg.RemoteRetention > 0 {
		before := time.Now().Add(-s.cfg.RemoteRetention).UnixMilli()
		if n, err := s.PurgeRemote(ctx, before); err != nil && ctx.Err() == nil {
			s.log.Warn("purge remote media cache", "err", err)
		} else if n > 0 {
			s.log.Info("purged remote media cache", "count", n)
		}
	}
}

// Errors the client sees.

// ErrInfected is what an infected file gets: 403 M_FORBIDDEN with the
// reason Synapse's matrix-content-scanner gives (MCS_MEDIA_NOT_CLEAN), so
// that clients that know it can say why.
func errInfected() error {
	return mxerr.Forbidden("This file was refused by the antivirus scanner").With("reason", "MCS_MEDIA_NOT_CLEAN")
}

func errNotFound() error { return mxerr.NotFound("Media not found") }

func errScannerDown() error {
	return mxerr.Unknown("The antivirus scanner is unavailable; try again later").WithStatus(502)
}

func errTooLarge(limit int64) error {
	return mxerr.TooLarge("The file is larger than the limit of %d bytes", limit)
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func newMediaID() string {
	var b strings.Builder
	n := big.NewInt(int64(len(idAlphabet)))
	for range 24 {
		i, _ := rand.Int(rand.Reader, n)
		b.WriteByte(idAlphabet[i.Int64()])
	}
	return b.String()
}

// validMediaID reports whether id may name media: the spec's grammar
// (client-server API, "Matrix Content (mxc://) URIs"): [A-Za-z0-9_-]+.
func validMediaID(id string) bool {
	if id == "" || len(id) > 255 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// Upload is a file to store.
type Upload struct {
	Body        io.Reader
	Length      int64 // -1 if unknown
	ContentType string
	FileName    string
}

// Upload stores a file uploaded by userID and returns its mxc URI.
// Errors: 413 M_TOO_LARGE, 403 M_USER_LIMIT_EXCEEDED (quota), 403
// M_FORBIDDEN (infected), 502 M_UNKNOWN (scanner unreachable, policy
// refuse).
func (s *Service) Upload(ctx context.Context, userID string, u Upload) (string, error) {
	m := store.Media{ServerName: s.cfg.ServerName, MediaID: newMediaID(), UserID: userID}
	if err := s.storeUpload(ctx, &m, u, false); err != nil {
		return "", err
	}
	return "mxc://" + m.ServerName + "/" + m.MediaID, nil
}

// storeUpload stages, checks, scans and stores u as m (complete: an
// asynchronous upload's row gets its content).
func (s *Service) storeUpload(ctx context.Context, m *store.Media, u Upload, complete bool) error {
	limit := s.cfg.MaxUploadBytes
	if u.Length > limit {
		return errTooLarge(limit)
	}
	if err := s.checkQuota(ctx, m.UserID, max(u.Length, 0)); err != nil {
		return err
	}
	st, err := s.blobs.stage(u.Body, limit)
	if errors.Is(err, errTooBig) {
		return errTooLarge(limit)
	}
	if err != nil {
		return err
	}
	defer st.discard()
	if err := s.checkQuota(ctx, m.UserID, st.size); err != nil {
		return err
	}
	if err := s.scanStaged(ctx, st); err != nil {
		if mx, ok := mxerr.As(err); ok && mx.Code == "M_FORBIDDEN" {
			s.log.Warn("refused an infected upload", "user_id", m.UserID, "sha256", st.sha)
		}
		return err
	}
	now := time.Now().UnixMilli()
	m.SHA256, m.Size, m.ContentType, m.UploadName = st.sha, st.size, cleanContentType(u.ContentType), u.FileName
	m.UploadedTS, m.LastAccess = now, now
	if m.CreatedTS == 0 {
		m.CreatedTS = now
	}
	s.blobMu.RLock()
	defer s.blobMu.RUnlock()
	if err := s.blobs.commit(st); err != nil {
		return err
	}
	if complete {
		err = s.db.CompleteMedia(ctx, *m)
	} else {
		err = s.db.PutMedia(ctx, *m)
	}
	switch {
	case errors.Is(err, store.ErrConflict):
		return mxerr.New("M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded").WithStatus(409)
	case errors.Is(err, store.ErrNotFound):
		return errNotFound()
	case err != nil:
		return err
	}
	s.metrics.uploads.Inc()
	s.metrics.uploadBytes.Add(float64(st.size))
	if complete {
		s.wake(m.MediaID)
	}
	return nil
}

func cleanContentType(ct string) string {
	ct = strings.TrimSpace(ct)
	if ct == "" || len(ct) > 255 || strings.ContainsAny(ct, "\r\n") {
		return "application/octet-stream"
	}
	return ct
}

func (s *Service) checkQuota(ctx context.Context, userID string, more int64) error {
	if s.cfg.UserQuotaBytes <= 0 || userID == "" {
		return nil
	}
	used, err := s.db.MediaUsage(ctx, userID)
	if err != nil {
		return err
	}
	if used+more > s.cfg.UserQuotaBytes {
		return mxerr.New("M_USER_LIMIT_EXCEEDED", "You have used %d of your %d bytes of media storage", used, s.cfg.UserQuotaBytes).
			WithStatus(403).With("info_uri", s.cfg.QuotaInfoURI)
	}
	return nil
}

// Create reserves a media ID for an asynchronous upload by userID
// (POST /_matrix/media/v1/create) and returns its mxc URI and when the ID
// expires unused (ms). Errors: 429 M_LIMIT_EXCEEDED when the user has
// MaxPendingUploads waiting.
func (s *Service) Create(ctx context.Context, userID string) (string, int64, error) {
	now := time.Now()
	n, err := s.db.PendingMediaCount(ctx, userID, now.UnixMilli())
	if err != nil {
		return "", 0, err
	}
	if n >= s.cfg.MaxPendingUploads {
		return "", 0, mxerr.LimitExceeded(time.Minute)
	}
	m := store.Media{ServerName: s.cfg.ServerName, MediaID: newMediaID(), UserID: userID,
		CreatedTS: now.UnixMilli(), ExpiresTS: now.Add(s.cfg.UnusedExpiry).UnixMilli()}
	if err := s.db.PutMedia(ctx, m); err != nil {
		return "", 0, err
	}
	return "mxc://" + m.ServerName + "/" + m.MediaID, m.ExpiresTS, nil
}

// UploadTo gives an ID reserved with Create its content
// (PUT /_matrix/media/v3/upload/{serverName}/{mediaId}). Errors: 404
// M_NOT_FOUND (unknown or expired ID), 403 M_FORBIDDEN (another user's),
// 409 M_CANNOT_OVERWRITE_MEDIA, and those of Upload.
func (s *Service) UploadTo(ctx context.Context, userID, serverName, mediaID string, u Upload) error {
	if serverName != s.cfg.ServerName || !validMediaID(mediaID) {
		return errNotFound()
	}
	m, err := s.db.Media(ctx, serverName, mediaID)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound()
	} else if err != nil {
		return err
	}
	switch {
	case m.UserID != userID:
		return mxerr.Forbidden("This media ID was created by another user")
	case !m.Pending():
		return mxerr.New("M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded").WithStatus(409)
	case m.ExpiresTS <= time.Now().UnixMilli():
		return errNotFound()
	}
	return s.storeUpload(ctx, &m, u, true)
}

// wake tells those waiting for a pending upload that it came.
func (s *Service) wake(mediaID string) {
	s.mu.Lock()
	if ch, ok := s.waiters[mediaID]; ok {
		close(ch)
		delete(s.waiters, mediaID)
	}
	s.mu.Unlock()
}

func (s *Service) waitFor(mediaID string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.waiters[mediaID]
	if !ok {
		ch = make(chan struct{})
		s.waiters[mediaID] = ch
	}
	return ch
}

// OpenOptions say how to look media up.
type OpenOptions struct {
	// Wait is how long to wait for an asynchronous upload's content
	// (timeout_ms); 0 does not wait.
	Wait time.Duration
	// Remote fetches other servers' media not cached yet.
	Remote bool
	// Legacy serves only media created before the legacy cut-over.
	Legacy bool
}

// Content is media to serve. Close it.
type Content struct {
	store.Media
	File *os.File
}

// Close closes the file.
func (c *Content) Close() error { return c.File.Close() }

// Open finds mxc://serverName/mediaID and opens its content. Errors: 404
// M_NOT_FOUND (unknown, quarantined, or new media on the legacy
// endpoints), 504 M_NOT_YET_UPLOADED, 403 M_FORBIDDEN (infected), 502
// (remote or scanner failures).
func (s *Service) Open(ctx context.Context, serverName, mediaID string, o OpenOptions) (*Content, error) {
	m, err := s.lookup(ctx, serverName, mediaID, o)
	if err != nil {
		return nil, err
	}
	return s.openBlob(ctx, m)
}

// lookup finds a media item's row, waiting for pending content and
// fetching remote media as o says, and checks it may be served.
func (s *Service) lookup(ctx context.Context, serverName, mediaID string, o OpenOptions) (store.Media, error) {
	if !validMediaID(mediaID) || serverName == "" {
		return store.Media{}, errNotFound()
	}
	m, err := s.db.Media(ctx, serverName, mediaID)
	if errors.Is(err, store.ErrNotFound) {
		if serverName == s.cfg.ServerName || !o.Remote || s.cfg.Remote == nil || o.Legacy {
			return store.Media{}, errNotFound()
		}
		m, err = s.fetchRemote(ctx, serverName, mediaID)
	}
	if err != nil {
		return store.Media{}, err
	}
	if o.Legacy && m.CreatedTS >= s.cutover {
		// Spec: servers SHOULD freeze the deprecated endpoints: media
		// created after the cut-over is "not found" there.
		return store.Media{}, errNotFound()
	}
	if m.Pending() {
		if m.ExpiresTS <= time.Now().UnixMilli() {
			return store.Media{}, errNotFound()
		}
		if m, err = s.waitUpload(ctx, m, o.Wait); err != nil {
			return store.Media{}, err
		}
	}
	if strings.HasPrefix(m.Quarantined, "infected") {
		return store.Media{}, errInfected()
	}
	if m.Quarantined != "" {
		return store.Media{}, errNotFound()
	}
	if err := s.checkScanned(ctx, &m); err != nil {
		return store.Media{}, err
	}
	if serverName != s.cfg.ServerName && time.Since(time.UnixMilli(m.LastAccess)) > time.Hour {
		if err := s.db.TouchMedia(ctx, serverName, mediaID, time.Now().UnixMilli()); err != nil {
			return store.Media{}, err
		}
	}
	return m, nil
}

func (s *Service) waitUpload(ctx context.Context, m store.Media, wait time.Duration) (store.Media, error) {
	notYet := mxerr.New("M_NOT_YET_UPLOADED", "Content has not yet been uploaded").WithStatus(504)
	if wait <= 0 {
		return m, notYet
	}
	ch := s.waitFor(m.MediaID)
	// The upload may have completed between the read and waitFor.
	if cur, err := s.db.Media(ctx, m.ServerName, m.MediaID); err == nil && !cur.Pending() {
		return cur, nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		return m, notYet
	case <-ctx.Done():
		return m, ctx.Err()
	}
	cur, err := s.db.Media(ctx, m.ServerName, m.MediaID)
	if err != nil {
		return m, err
	}
	if cur.Pending() {
		return m, notYet
	}
	return cur, nil
}

func (s *Service) openBlob(ctx context.Context, m store.Media) (*Content, error) {
	f, err := s.blobs.open(m.SHA256)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			s.log.Error("media content is missing on disk", "server_name", m.ServerName, "media_id", m.MediaID, "sha256", m.SHA256)
			return nil, errNotFound()
		}
		return nil, err
	}
	s.metrics.downloads.Inc()
	return &Content{Media: m, File: f}, nil
}

// scanStaged scans staged content before it is stored. Infected content
// is refused (and its verdict kept); a scanner that cannot be reached
// refuses it too unless AllowUnscanned.
func (s *Service) scanStaged(ctx context.Context, st *staged) error {
	if s.cfg.Scanner == nil {
		return nil
	}
	if v, err := s.db.MediaScan(ctx, st.sha); err == nil {
		if v.Clean {
			return nil
		}
		s.metrics.scans.WithLabelValues("infected").Inc()
		return errInfected()
	}
	r, err := st.reader()
	if err != nil {
		return err
	}
	v, err := s.scan(ctx, st.sha, r)
	if err != nil {
		return err
	}
	if !v.Clean {
		return errInfected()
	}
	return nil
}

// checkScanned makes sure a stored blob was scanned before it is served:
// content stored before a scanner was configured, or while it was
// unreachable under policy "allow", is scanned now.
func (s *Service) checkScanned(ctx context.Context, m *store.Media) error {
	if s.cfg.Scanner == nil {
		return nil
	}
	v, err := s.db.MediaScan(ctx, m.SHA256)
	if errors.Is(err, store.ErrNotFound) {
		f, err := s.blobs.open(m.SHA256)
		if err != nil {
			return err
		}
		v2, err := s.scan(ctx, m.SHA256, f)
		f.Close()
		if errors.Is(err, errUnscannedAllowed) {
			return nil
		}
		if err != nil {
			return err
		}
		v = store.MediaScan{Clean: v2.Clean, Signature: v2.Signature}
	} else if err != nil {
		return err
	}
	if !v.Clean {
		if m.Quarantined == "" {
			if err := s.db.QuarantineMedia(ctx, m.ServerName, m.MediaID, "infected: "+v.Signature); err != nil {
				return err
			}
		}
		return errInfected()
	}
	return nil
}

var errUnscannedAllowed = errors.New("scanner unreachable; content allowed unscanned")

// scan runs the scanner on r, bounded to ScanConcurrency scans at once,
// and records the verdict. With the scanner unreachable it returns a 502
// under policy refuse, and a clean verdict (not recorded) under allow.
func (s *Service) scan(ctx context.Context, sha string, r io.Reader) (Verdict, error) {
	select {
	case s.scanSem <- struct{}{}:
	case <-ctx.Done():
		return Verdict{}, ctx.Err()
	}
	start := time.Now()
	v, err := s.cfg.Scanner.Scan(ctx, r)
	<-s.scanSem
	if err != nil {
		s.metrics.scans.WithLabelValues("error").Inc()
		if ctx.Err() != nil {
			return Verdict{}, ctx.Err()
		}
		if s.cfg.AllowUnscanned {
			s.log.Warn("antivirus scanner unreachable; serving content unscanned (policy allow)", "sha256", sha, "err", err)
			return Verdict{Clean: true}, nil
		}
		s.log.Error("antivirus scanner unreachable; refusing content (policy refuse)", "sha256", sha, "err", err)
		return Verdict{}, errScannerDown()
	}
	if v.Clean {
		s.metrics.scans.WithLabelValues("clean").Inc()
	} else {
		s.metrics.scans.WithLabelValues("infected").Inc()
		s.log.Warn("antivirus scanner found malware", "sha256", sha, "signature", v.Signature)
	}
	s.log.Debug("scanned media", "sha256", sha, "clean", v.Clean, "duration", time.Since(start))
	if err := s.db.PutMediaScan(ctx, sha, store.MediaScan{Clean: v.Clean, Signature: v.Signature, ScannedTS: time.Now().UnixMilli()}); err != nil {
		return Verdict{}, err
	}
	return v, nil
}

// Admin operations (the Synapse admin API's shapes).

// Quarantine marks media as not to be served. Returns 404 M_NOT_FOUND for
// unknown media.
func (s *Service) Quarantine(ctx context.Context, serverName, mediaID string) error {
	err := s.db.QuarantineMedia(ctx, serverName, mediaID, "admin")
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound()
	}
	if err == nil {
		s.log.Info("quarantined media", "server_name", serverName, "media_id", mediaID)
	}
	return err
}

// Delete deletes a local media item and, when nothing else points at it,
// its content. Returns 404 M_NOT_FOUND for unknown media.
func (s *Service) Delete(ctx context.Context, serverName, mediaID string) error {
	s.blobMu.Lock()
	defer s.blobMu.Unlock()
	orphans, err := s.db.DeleteMedia(ctx, serverName, mediaID)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound()
	}
	if err != nil {
		return err
	}
	s.blobs.remove(orphans)
	return nil
}

// PurgeRemote deletes cached remote media last accessed before before
// (ms) and returns how many items went.
func (s *Service) PurgeRemote(ctx context.Context, before int64) (int, error) {
	s.blobMu.Lock()
	defer s.blobMu.Unlock()
	n, orphans, err := s.db.PurgeRemoteMedia(ctx, s.cfg.ServerName, before)
	if err != nil {
		return 0, err
	}
	s.blobs.remove(orphans)
	return n, nil
}

package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/config"
	fedclient "polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/media"
	"polder.dev/polder/internal/store"
)

// newMedia builds the media repository from the media_*, clamd_* and
// url_preview_* settings (docs/media.md).
func newMedia(ctx context.Context, cfg config.Config, db *store.DB, fed *fedclient.Client, baseURL func() string,
	reg prometheus.Registerer, log *slog.Logger) (*media.Service, error) {
	mc := media.Config{
		ServerName:      cfg.ServerName,
		Dir:             filepath.Join(cfg.DataDir, "media"),
		MaxUploadBytes:  cfg.MediaMaxUploadBytes,
		UserQuotaBytes:  cfg.MediaUserQuotaBytes,
		QuotaInfoURI:    baseURL() + "/_matrix/client/v1/media/config",
		RemoteRetention: cfg.MediaRemoteRetention,
		AllowUnscanned:  cfg.ClamdUnreachable == "allow",
		Registerer:      reg,
	}
	if cfg.MediaLegacyCutover != "" {
		t, err := time.Parse(time.RFC3339, cfg.MediaLegacyCutover)
		if err != nil {
			return nil, fmt.Errorf("media_legacy_cutover: %w", err)
		}
		mc.LegacyCutover = t
	}
	if cfg.ClamdAddress != "" {
		c, err := media.NewClamAV(cfg.ClamdAddress, 0)
		if err != nil {
			return nil, err
		}
		if err := c.Ping(ctx); err != nil {
			log.Warn("clamd does not answer yet; files are refused or allowed by clamd_unreachable until it does",
				"clamd_address", cfg.ClamdAddress, "clamd_unreachable", cfg.ClamdUnreachable, "err", err)
		}
		mc.Scanner = c
	}
	if cfg.FederationEnabled {
		mc.Remote = fed
	}
	if cfg.URLPreviewEnabled {
		f, err := media.NewIPFilter(config.SplitList(cfg.URLPreviewIPBlocklist), config.SplitList(cfg.URLPreviewIPAllowlist))
		if err != nil {
			return nil, fmt.Errorf("url_preview_ip_blocklist/allowlist: %w", err)
		}
		mc.Preview = media.PreviewConfig{Enabled: true, Filter: f, UserAgent: "Polder/" + VersionString() + " (URL preview)"}
	}
	return media.New(ctx, mc, db, log)
}

// bodyLimit is api.MaxBytes with media_max_upload_bytes for media uploads
// and max_request_bytes for everything else.
func bodyLimit(cfg config.Config) api.Middleware {
	small := api.MaxBytes(cfg.MaxRequestBytes)
	large := api.MaxBytes(max(cfg.MediaMaxUploadBytes, cfg.MaxRequestBytes))
	return func(next http.Handler) http.Handler {
		s, l := small(next), large(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if (r.Method == http.MethodPost || r.Method == http.MethodPut) && strings.HasPrefix(r.URL.Path, "/_matrix/media/v3/upload") {
				l.ServeHTTP(w, r)
				return
			}
			s.ServeHTTP(w, r)
		})
	}
}

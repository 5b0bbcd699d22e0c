package media

import (
	"context"
	"errors"
	"mime"
	"time"

	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// remoteTimeout bounds fetching one remote file, whoever waits for it.
const remoteTimeout = 5 * time.Minute

// fetchRemote downloads mxc://serverName/mediaID from its server, scans
// it and caches it. Concurrent requests for the same media share one
// download; it runs on a context of its own so that one client going
// away does not fail the others. Errors: 404 M_NOT_FOUND when the server
// has no such media, 502 M_TOO_LARGE over MaxUploadBytes, 403 M_FORBIDDEN
// (infected), 502 M_UNKNOWN when the server fails.
func (s *Service) fetchRemote(ctx context.Context, serverName, mediaID string) (store.Media, error) {
	key := serverName + "/" + mediaID
	ch := s.remoteFlight.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), remoteTimeout)
		defer cancel()
		return s.download(fctx, serverName, mediaID)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return store.Media{}, r.Err
		}
		return r.Val.(store.Media), nil
	case <-ctx.Done():
		return store.Media{}, ctx.Err()
	}
}

func (s *Service) download(ctx context.Context, serverName, mediaID string) (store.Media, error) {
	// Another process (or an earlier flight) may have it by now.
	if m, err := s.db.Media(ctx, serverName, mediaID); err == nil {
		return m, nil
	}
	mc, err := s.cfg.Remote.DownloadMedia(ctx, serverName, mediaID)
	if err != nil {
		var re *federation.RemoteError
		if errors.As(err, &re) && re.Status == 404 {
			s.metrics.remote.WithLabelValues("not_found").Inc()
			return store.Media{}, errNotFound()
		}
		s.metrics.remote.WithLabelValues("error").Inc()
		s.log.Warn("fetch remote media", "origin", serverName, "media_id", mediaID, "err", err)
		return store.Media{}, federation.Relayable(err)
	}
	defer mc.Body.Close()
	limit := s.cfg.MaxUploadBytes
	if mc.Length > limit {
		s.metrics.remote.WithLabelValues("too_large").Inc()
		return store.Media{}, mxerr.TooLarge("The remote file is larger than the limit of %d bytes", limit).WithStatus(502)
	}
	st, err := s.blobs.stage(mc.Body, limit)
	if errors.Is(err, errTooBig) {
		s.metrics.remote.WithLabelValues("too_large").Inc()
		return store.Media{}, mxerr.TooLarge("The remote file is larger than the limit of %d bytes", limit).WithStatus(502)
	}
	if err != nil {
		s.metrics.remote.WithLabelValues("error").Inc()
		s.log.Warn("read remote media", "origin", serverName, "media_id", mediaID, "err", err)
		return store.Media{}, mxerr.Unknown("Could not fetch the media from %s", serverName).WithStatus(502)
	}
	defer st.discard()
	s.metrics.remoteBytes.Add(float64(st.size))
	now := time.Now().UnixMilli()
	m := store.Media{ServerName: serverName, MediaID: mediaID, SHA256: st.sha, Size: st.size,
		ContentType: cleanContentType(mc.ContentType), UploadName: fileName(mc.ContentDisposition),
		CreatedTS: now, UploadedTS: now, LastAccess: now}
	if err := s.scanStaged(ctx, st); err != nil {
		if mx, ok := mxerr.As(err); ok && mx.Code == "M_FORBIDDEN" {
			// Remember the infected item, without its content, so that it
			// is refused at once and never fetched again.
			s.metrics.remote.WithLabelValues("infected").Inc()
			s.log.Warn("refused infected remote media", "origin", serverName, "media_id", mediaID, "sha256", st.sha)
			m.Quarantined = "infected"
			if perr := s.db.PutMedia(ctx, m); perr != nil && !errors.Is(perr, store.ErrConflict) {
				return store.Media{}, perr
			}
		}
		return store.Media{}, err
	}
	s.blobMu.RLock()
	defer s.blobMu.RUnlock()
	if err := s.blobs.commit(st); err != nil {
		return store.Media{}, err
	}
	if err := s.db.PutMedia(ctx, m); err != nil && !errors.Is(err, store.ErrConflict) {
		return store.Media{}, err
	}
	s.metrics.remote.WithLabelValues("ok").Inc()
	return m, nil
}

// fileName is the file name of a Content-Disposition header, "" if none.
func fileName(cd string) string {
	if cd == "" {
		return ""
	}
	_, params, err := mime.ParseMediaType(cd)
	if err != nil {
		return ""
	}
	return params["filename"]
}

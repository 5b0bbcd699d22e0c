package federation

import (
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"time"

	"polder.dev/polder/internal/media"
	"polder.dev/polder/internal/mxerr"
)

// Media serves this server's media to other servers (media.Service).
type Media interface {
	Open(ctx context.Context, serverName, mediaID string, o media.OpenOptions) (*media.Content, error)
	Thumbnail(ctx context.Context, serverName, mediaID string, w, h int, method string, animated bool, o media.OpenOptions) (*media.Content, error)
}

var _ Media = (*media.Service)(nil)

// GET /_matrix/federation/v1/media/download/{mediaId}
//
// Only this server's media (server-server API, "Content Repository"): the
// answer is multipart/mixed, a JSON object (no metadata yet) and then the
// content with its type and disposition.
func (a *API) mediaDownload(w http.ResponseWriter, r *http.Request) error {
	if a.svc.Media == nil {
		return mxerr.Unrecognized("This server has no media repository")
	}
	c, err := a.svc.Media.Open(r.Context(), a.cfg.ServerName, r.PathValue("mediaId"), media.OpenOptions{Wait: waitOf(r)})
	if err != nil {
		return err
	}
	defer c.Close()
	return writeMultipart(w, c, c.UploadName)
}

// GET /_matrix/federation/v1/media/thumbnail/{mediaId}
func (a *API) mediaThumbnail(w http.ResponseWriter, r *http.Request) error {
	if a.svc.Media == nil {
		return mxerr.Unrecognized("This server has no media repository")
	}
	q := r.URL.Query()
	wd, err := media.ParseSize(q.Get("width"))
	if err != nil {
		return err
	}
	ht, err := media.ParseSize(q.Get("height"))
	if err != nil {
		return err
	}
	animated, _ := strconv.ParseBool(q.Get("animated"))
	c, err := a.svc.Media.Thumbnail(r.Context(), a.cfg.ServerName, r.PathValue("mediaId"), wd, ht, q.Get("method"), animated,
		media.OpenOptions{Wait: waitOf(r)})
	if err != nil {
		return err
	}
	defer c.Close()
	return writeMultipart(w, c, "")
}

// waitOf reads timeout_ms: how long to wait for an asynchronous upload
// (default 20 s, at most 2 minutes).
func waitOf(r *http.Request) time.Duration {
	n, err := strconv.ParseInt(r.URL.Query().Get("timeout_ms"), 10, 64)
	if err != nil || n < 0 {
		n = 20000
	}
	return time.Duration(min(n, 120000)) * time.Millisecond
}

// writeMultipart writes the multipart/mixed answer. Once the status is
// out, a failure (the caller went away) can only cut the answer short.
func writeMultipart(w http.ResponseWriter, c *media.Content, name string) error {
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	w.WriteHeader(http.StatusOK)
	meta, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
	if err != nil {
		return nil
	}
	if _, err := meta.Write([]byte("{}")); err != nil {
		return nil
	}
	h := http.Header{}
	media.SetHeaders(h, c.ContentType, name)
	part, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {h.Get("Content-Type")},
		"Content-Disposition": {h.Get("Content-Disposition")},
	})
	if err != nil {
		return nil
	}
	if _, err := io.Copy(part, c.File); err != nil {
		return nil
	}
	mw.Close()
	return nil
}

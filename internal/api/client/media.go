package client

import (
	"net/http"
	"strconv"
	"time"

	"polder.dev/polder/internal/api"
	"polder.dev/polder/internal/media"
	"polder.dev/polder/internal/mxerr"
)

// The media repository (client-server API, "Content repository"; spec
// v1.11 authenticated media). Uploads stay under /_matrix/media/v3 (and
// /v1/create); downloads, thumbnails, the config and URL previews are
// under /_matrix/client/v1/media and need an access token. The deprecated
// unauthenticated /_matrix/media/v3 download and thumbnail endpoints serve
// only media created before the legacy cut-over (docs/media.md).
func (a *API) mediaRoutes(rt *api.Router) {
	if a.svc.Media == nil {
		return
	}
	const m, c = "/_matrix/media", "/_matrix/client/v1/media"
	rt.Handle("POST "+m+"/v3/upload", a.authed(a.upload))
	rt.Handle("POST "+m+"/v1/create", a.authed(a.createMedia))
	rt.Handle("PUT "+m+"/v3/upload/{serverName}/{mediaId}", a.authed(a.uploadTo))

	rt.Handle("GET "+c+"/config", a.guestOK(a.mediaConfig))
	rt.Handle("GET "+c+"/download/{serverName}/{mediaId}", a.guestOK(a.download))
	rt.Handle("GET "+c+"/download/{serverName}/{mediaId}/{fileName}", a.guestOK(a.download))
	rt.Handle("GET "+c+"/thumbnail/{serverName}/{mediaId}", a.guestOK(a.thumbnail))
	rt.Handle("GET "+c+"/preview_url", a.authed(a.previewURL))

	// Deprecated (spec v1.11): no access token, frozen at the cut-over.
	rt.Handle("GET "+m+"/v3/config", a.guestOK(a.mediaConfig))
	rt.Handle("GET "+m+"/v3/preview_url", a.authed(a.previewURL))
	rt.Handle("GET "+m+"/v3/download/{serverName}/{mediaId}", a.public(a.legacyDownload))
	rt.Handle("GET "+m+"/v3/download/{serverName}/{mediaId}/{fileName}", a.public(a.legacyDownload))
	rt.Handle("GET "+m+"/v3/thumbnail/{serverName}/{mediaId}", a.public(a.legacyThumbnail))

	// Synapse-compatible admin API.
	const s = "/_synapse/admin/v1"
	rt.Handle("POST "+s+"/purge_media_cache", a.admin(a.purgeMediaCache))
	rt.Handle("POST "+s+"/media/quarantine/{serverName}/{mediaId}", a.admin(a.quarantineMedia))
	rt.Handle("DELETE "+s+"/media/{serverName}/{mediaId}", a.admin(a.deleteMedia))
}

func uploadOf(r *http.Request) media.Upload {
	return media.Upload{Body: r.Body, Length: r.ContentLength, ContentType: r.Header.Get("Content-Type"),
		FileName: r.URL.Query().Get("filename")}
}

// POST /_matrix/media/v3/upload
func (a *API) upload(w http.ResponseWriter, r *http.Request) error {
	uri, err := a.svc.Media.Upload(r.Context(), string(Who(r).UserID), uploadOf(r))
	if err != nil {
		return err
	}
	return api.OK(w, map[string]string{"content_uri": uri})
}

// POST /_matrix/media/v1/create
func (a *API) createMedia(w http.ResponseWriter, r *http.Request) error {
	uri, expires, err := a.svc.Media.Create(r.Context(), string(Who(r).UserID))
	if err != nil {
		return err
	}
	return api.OK(w, map[string]any{"content_uri": uri, "unused_expires_at": expires})
}

// PUT /_matrix/media/v3/upload/{serverName}/{mediaId}
func (a *API) uploadTo(w http.ResponseWriter, r *http.Request) error {
	err := a.svc.Media.UploadTo(r.Context(), string(Who(r).UserID), r.PathValue("serverName"), r.PathValue("mediaId"), uploadOf(r))
	if err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// GET /_matrix/client/v1/media/config
func (a *API) mediaConfig(w http.ResponseWriter, r *http.Request) error {
	return api.OK(w, map[string]any{"m.upload.size": a.svc.Media.MaxUploadBytes()})
}

// maxWait bounds timeout_ms.
const maxWait = 2 * time.Minute

// openOptions reads timeout_ms (default 20 s, the spec's) and allow_remote.
func openOptions(r *http.Request, legacy bool) (media.OpenOptions, error) {
	o := media.OpenOptions{Wait: 20 * time.Second, Remote: true, Legacy: legacy}
	q := r.URL.Query()
	if v := q.Get("timeout_ms"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return o, mxerr.InvalidParam("timeout_ms must be a non-negative integer")
		}
		o.Wait = min(time.Duration(n)*time.Millisecond, maxWait)
	}
	if legacy {
		o.Remote = false // the frozen endpoints fetch nothing new
	}
	return o, nil
}

// GET /_matrix/client/v1/media/download/{serverName}/{mediaId}
// GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}
func (a *API) download(w http.ResponseWriter, r *http.Request) error {
	return a.serveDownload(w, r, false)
}

// GET /_matrix/media/v3/download/{serverName}/{mediaId}
func (a *API) legacyDownload(w http.ResponseWriter, r *http.Request) error {
	return a.serveDownload(w, r, true)
}

func (a *API) serveDownload(w http.ResponseWriter, r *http.Request, legacy bool) error {
	o, err := openOptions(r, legacy)
	if err != nil {
		return err
	}
	c, err := a.svc.Media.Open(r.Context(), r.PathValue("serverName"), r.PathValue("mediaId"), o)
	if err != nil {
		return err
	}
	defer c.Close()
	name := c.UploadName
	if n := r.PathValue("fileName"); n != "" {
		name = n
	}
	serveContent(w, r, c, name)
	return nil
}

// GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}
func (a *API) thumbnail(w http.ResponseWriter, r *http.Request) error {
	return a.serveThumbnail(w, r, false)
}

// GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}
func (a *API) legacyThumbnail(w http.ResponseWriter, r *http.Request) error {
	return a.serveThumbnail(w, r, true)
}

func (a *API) serveThumbnail(w http.ResponseWriter, r *http.Request, legacy bool) error {
	o, err := openOptions(r, legacy)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if q.Get("width") == "" || q.Get("height") == "" {
		return mxerr.MissingParam("width and height are required")
	}
	wd, err := media.ParseSize(q.Get("width"))
	if err != nil {
		return err
	}
	ht, err := media.ParseSize(q.Get("height"))
	if err != nil {
		return err
	}
	animated, _ := strconv.ParseBool(q.Get("animated"))
	c, err := a.svc.Media.Thumbnail(r.Context(), r.PathValue("serverName"), r.PathValue("mediaId"), wd, ht, q.Get("method"), animated, o)
	if err != nil {
		return err
	}
	defer c.Close()
	serveContent(w, r, c, "")
	return nil
}

// serveContent writes content with its headers; ServeContent answers
// ranges and HEAD.
func serveContent(w http.ResponseWriter, r *http.Request, c *media.Content, name string) {
	media.SetHeaders(w.Header(), c.ContentType, name)
	w.Header().Set("Cache-Control", "private, max-age=86400")
	http.ServeContent(w, r, "", time.UnixMilli(c.UploadedTS), c.File)
}

// GET /_matrix/client/v1/media/preview_url
func (a *API) previewURL(w http.ResponseWriter, r *http.Request) error {
	if !a.svc.Media.PreviewEnabled() {
		return mxerr.Unrecognized("URL previews are disabled on this server")
	}
	u := r.URL.Query().Get("url")
	if u == "" {
		return mxerr.MissingParam("url is required")
	}
	og, err := a.svc.Media.Preview(r.Context(), string(Who(r).UserID), u)
	if err != nil {
		return err
	}
	return api.OK(w, og)
}

// POST /_synapse/admin/v1/purge_media_cache?before_ts=
func (a *API) purgeMediaCache(w http.ResponseWriter, r *http.Request) error {
	ts, err := strconv.ParseInt(r.URL.Query().Get("before_ts"), 10, 64)
	if err != nil || ts < 0 {
		return mxerr.MissingParam("before_ts (ms) is required")
	}
	n, err := a.svc.Media.PurgeRemote(r.Context(), ts)
	if err != nil {
		return err
	}
	return api.OK(w, map[string]int{"deleted": n})
}

// POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}
func (a *API) quarantineMedia(w http.ResponseWriter, r *http.Request) error {
	if err := a.svc.Media.Quarantine(r.Context(), r.PathValue("serverName"), r.PathValue("mediaId")); err != nil {
		return err
	}
	return api.OK(w, struct{}{})
}

// DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}
//
// As Synapse, only local media may be deleted here (remote media is
// purged with purge_media_cache).
func (a *API) deleteMedia(w http.ResponseWriter, r *http.Request) error {
	server, id := r.PathValue("serverName"), r.PathValue("mediaId")
	if server != a.cfg.ServerName {
		return mxerr.InvalidParam("Can only delete local media")
	}
	if err := a.svc.Media.Delete(r.Context(), server, id); err != nil {
		return err
	}
	return api.OK(w, map[string]any{"deleted_media": []string{id}, "total": 1})
}

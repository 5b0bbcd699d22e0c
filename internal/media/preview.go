package media

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/html"

	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// URL previews (client-server API, GET /_matrix/client/v1/media/preview_url).
// The page is fetched by a client whose dialer refuses every address the
// IPFilter blocks, checked after DNS resolution for each connection, so
// that redirects and DNS rebinding are covered; no proxy is used. The
// page is read up to MaxBytes within Timeout; its OpenGraph tags, or its
// <title> and description, make the preview, and its image (og:image, or
// the URL itself when it is an image) is downloaded and stored as local
// media, scanned like any upload. Previews are cached in memory for
// CacheTTL.

// PreviewConfig configures URL previews. Off unless Enabled.
type PreviewConfig struct {
	Enabled bool
	// Filter decides which addresses may be fetched; nil blocks
	// DefaultIPBlocklist.
	Filter *IPFilter
	// MaxBytes bounds a page or image fetched (default 10 MiB); Timeout
	// bounds one fetch (default 10s); CacheTTL is how long a preview is
	// kept (default 1h).
	MaxBytes  int64
	Timeout   time.Duration
	CacheTTL  time.Duration
	UserAgent string
}

type previewer struct {
	cfg    PreviewConfig
	client *http.Client

	mu    sync.Mutex
	cache map[string]previewEntry
}

type previewEntry struct {
	at   time.Time
	data map[string]any
}

const maxPreviewCache = 1000

func newPreviewer(cfg PreviewConfig) *previewer {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 10 << 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = time.Hour
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "Polder URL preview"
	}
	if cfg.Filter == nil {
		cfg.Filter, _ = NewIPFilter(nil, nil)
	}
	dialer := &net.Dialer{Timeout: cfg.Timeout, Control: cfg.Filter.Control}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would dial for us, past the filter
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConns:          16,
		IdleConnTimeout:       30 * time.Second,
	}
	client := &http.Client{Transport: tr, Timeout: cfg.Timeout, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return fmt.Errorf("redirect to a %s URL", req.URL.Scheme)
		}
		return nil
	}}
	return &previewer{cfg: cfg, client: client, cache: map[string]previewEntry{}}
}

// PreviewEnabled reports whether URL previews are served.
func (s *Service) PreviewEnabled() bool { return s.preview.cfg.Enabled }

// Preview returns the OpenGraph data of rawURL for userID. Errors: 400
// M_INVALID_PARAM for a URL that is not http(s), 403 M_FORBIDDEN for an
// address previews may not fetch, 502 M_UNKNOWN when the page cannot be
// fetched.
func (s *Service) Preview(ctx context.Context, userID, rawURL string) (map[string]any, error) {
	p := s.preview
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, mxerr.InvalidParam("url must be an http or https URL")
	}
	u.Fragment = ""
	key := u.String()
	p.mu.Lock()
	if e, ok := p.cache[key]; ok && time.Since(e.at) < p.cfg.CacheTTL {
		p.mu.Unlock()
		return e.data, nil
	}
	p.mu.Unlock()

	data, err := s.fetchPreview(ctx, userID, u)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if len(p.cache) >= maxPreviewCache {
		for k, e := range p.cache {
			if time.Since(e.at) >= p.cfg.CacheTTL || len(p.cache) >= maxPreviewCache {
				delete(p.cache, k)
			}
		}
	}
	p.cache[key] = previewEntry{at: time.Now(), data: data}
	p.mu.Unlock()
	return data, nil
}

// get fetches u with the filtered client. The caller closes the body.
func (p *previewer) get(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, mxerr.InvalidParam("bad URL")
	}
	req.Header.Set("User-Agent", p.cfg.UserAgent)
	req.Header.Set("Accept", "text/html, image/*;q=0.9, */*;q=0.5")
	resp, err := p.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrBlockedIP) {
			return nil, mxerr.Forbidden("This URL points to an address that previews may not fetch")
		}
		return nil, mxerr.Unknown("Could not fetch the URL").WithStatus(502)
	}
	if resp.StatusCode/100 != 2 {
		resp.Body.Close()
		return nil, mxerr.Unknown("The URL answered %s", resp.Status).WithStatus(502)
	}
	return resp, nil
}

func (s *Service) fetchPreview(ctx context.Context, userID string, u *url.URL) (map[string]any, error) {
	p := s.preview
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	resp, err := p.get(ctx, u.String())
	if err != nil {
		s.metrics.previewFetch.WithLabelValues(previewResult(err)).Inc()
		return nil, err
	}
	defer resp.Body.Close()
	s.metrics.previewFetch.WithLabelValues("ok").Inc()
	ctype := baseType(resp.Header.Get("Content-Type"))
	og := map[string]any{}
	if strings.HasPrefix(ctype, "image/") {
		if err := s.previewImage(ctx, og, resp, u.String()); err != nil {
			return nil, err
		}
		return og, nil
	}
	if ctype != "text/html" && ctype != "application/xhtml+xml" {
		return og, nil // nothing to say about other content
	}
	tags := parseHTML(io.LimitReader(resp.Body, p.cfg.MaxBytes))
	for k, v := range tags {
		og[k] = v
	}
	if img, ok := tags["og:image"]; ok {
		delete(og, "og:image")
		if iu, err := resp.Request.URL.Parse(img); err == nil && (iu.Scheme == "http" || iu.Scheme == "https") {
			if iresp, err := p.get(ctx, iu.String()); err == nil {
				err = s.previewImage(ctx, og, iresp, iu.String())
				iresp.Body.Close()
				if err != nil {
					s.log.Debug("preview image not stored", "url_host", iu.Host, "err", err)
				}
			}
		}
	}
	return og, nil
}

func previewResult(err error) string {
	if mx, ok := mxerr.As(err); ok && mx.Code == "M_FORBIDDEN" {
		return "blocked"
	}
	return "error"
}

// previewImage stores an image answer as local media and describes it in og.
func (s *Service) previewImage(ctx context.Context, og map[string]any, resp *http.Response, src string) error {
	limit := min(s.preview.cfg.MaxBytes, s.cfg.MaxUploadBytes)
	if resp.ContentLength > limit {
		return errTooLarge(limit)
	}
	m := store.Media{ServerName: s.cfg.ServerName, MediaID: newMediaID()}
	ctype := baseType(resp.Header.Get("Content-Type"))
	if err := s.storeUpload(ctx, &m, Upload{Body: io.LimitReader(resp.Body, limit+1), Length: resp.ContentLength, ContentType: ctype}, false); err != nil {
		return err
	}
	og["og:image"] = "mxc://" + m.ServerName + "/" + m.MediaID
	og["og:image:type"] = ctype
	og["matrix:image:size"] = m.Size
	if f, err := s.blobs.open(m.SHA256); err == nil {
		if cfg, _, err := image.DecodeConfig(f); err == nil {
			og["og:image:width"], og["og:image:height"] = cfg.Width, cfg.Height
		}
		f.Close()
	}
	return nil
}

// parseHTML reads OpenGraph meta tags, the title and the description of
// an HTML page. og:title falls back to <title>, og:description to
// <meta name="description">.
func parseHTML(r io.Reader) map[string]string {
	out := map[string]string{}
	z := html.NewTokenizer(r)
	var title, desc string
	inTitle := false
	for {
		switch z.Next() {
		case html.ErrorToken:
			if out["og:title"] == "" && title != "" {
				out["og:title"] = title
			}
			if out["og:description"] == "" && desc != "" {
				out["og:description"] = desc
			}
			for k, v := range out {
				if v == "" {
					delete(out, k)
				}
			}
			return out
		case html.StartTagToken, html.SelfClosingTagToken:
			t := z.Token()
			switch t.Data {
			case "title":
				inTitle = title == ""
			case "meta":
				var prop, name, content string
				for _, a := range t.Attr {
					switch strings.ToLower(a.Key) {
					case "property":
						prop = strings.ToLower(a.Val)
					case "name":
						name = strings.ToLower(a.Val)
					case "content":
						content = a.Val
					}
				}
				content = clip(strings.TrimSpace(content), 1000)
				switch {
				case strings.HasPrefix(prop, "og:"):
					if _, seen := out[prop]; !seen {
						out[prop] = content
					}
				case strings.HasPrefix(name, "og:"):
					if _, seen := out[name]; !seen {
						out[name] = content
					}
				case name == "description" && desc == "":
					desc = content
				}
			}
		case html.TextToken:
			if inTitle {
				title = clip(strings.TrimSpace(string(z.Text())), 1000)
				inTitle = false
			}
		case html.EndTagToken:
			inTitle = false
		}
	}
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// baseType is a content type without its parameters, in lower case.
func baseType(ct string) string {
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		return mt
	}
	t, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"time"
)

// Remote media (server-server API, "Content Repository"): the
// authenticated GET /_matrix/federation/v1/media/download/{mediaId}, whose
// answer is multipart/mixed (a JSON part, then the content or a Location
// to fetch it from), with a fall back to the deprecated
// /_matrix/media/v3/download/{serverName}/{mediaId}?allow_remote=false
// when the remote answers 404 M_UNRECOGNIZED.

// MediaContent is remote content being read. Close it.
type MediaContent struct {
	Body               io.ReadCloser
	ContentType        string
	ContentDisposition string
	// Length is the announced length, -1 if unknown.
	Length int64
}

// mediaTimeout bounds a media download as a whole.
const mediaTimeout = 5 * time.Minute

// DownloadMedia starts downloading mxc://destination/mediaID. The caller
// reads Body (bounding what it reads) and closes it. Errors are as Do's:
// *RemoteError for an error answer (404 M_NOT_FOUND for unknown media),
// ErrUnreachable (wrapped) when no answer came.
func (c *Client) DownloadMedia(ctx context.Context, destination, mediaID string) (*MediaContent, error) {
	mc, err := c.mediaGet(ctx, destination, v1+"/media/download/"+esc(mediaID), true)
	var re *RemoteError
	if errors.As(err, &re) && fallBack(re) {
		c.log.Debug("remote has no authenticated media endpoint; using the deprecated one", "destination", destination)
		return c.mediaGet(ctx, destination, "/_matrix/media/v3/download/"+esc(destination)+"/"+esc(mediaID)+"?allow_remote=false", false)
	}
	return mc, err
}

// fallBack reports whether an error answer means the server does not
// serve the authenticated endpoint (spec: 404 M_UNRECOGNIZED; older
// servers answer 400 M_UNRECOGNIZED or 405).
func fallBack(re *RemoteError) bool {
	return re.ErrCode == "M_UNRECOGNIZED" || re.Status == http.StatusMethodNotAllowed ||
		(re.Status == http.StatusNotFound && re.ErrCode == "")
}

func (c *Client) mediaGet(ctx context.Context, destination, path string, multipartAnswer bool) (*MediaContent, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, mediaTimeout)
	ok := false
	defer func() {
		if !ok {
			cancel()
		}
	}()
	hc, host, err := c.httpFor(ctx, destination)
	if err != nil {
		return nil, c.failed(parent, destination, "resolve", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+path, nil)
	if err != nil {
		return nil, err
	}
	req.Host = host
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if c.cfg.Key == nil {
		return nil, fmt.Errorf("GET %s: no signing key", pathOnly(path))
	}
	if err := SignRequest(req, nil, c.cfg.ServerName, destination, c.cfg.Key); err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, c.failed(parent, destination, "GET "+pathOnly(path), err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
		re := &RemoteError{}
		if json.Unmarshal(data, re) != nil || re.ErrCode == "" {
			re = &RemoteError{Message: http.StatusText(resp.StatusCode)}
		}
		re.Server, re.Status = destination, resp.StatusCode
		return nil, re
	}
	closer := closeFunc(func() error { cancel(); return resp.Body.Close() })
	if !multipartAnswer {
		ok = true
		return &MediaContent{Body: readCloser{resp.Body, closer}, ContentType: resp.Header.Get("Content-Type"),
			ContentDisposition: resp.Header.Get("Content-Disposition"), Length: resp.ContentLength}, nil
	}
	mc, err := c.readMultipart(parent, resp, closer)
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s of %s: %w", pathOnly(path), destination, err)
	}
	ok = true
	return mc, nil
}

// readMultipart reads the JSON part of a multipart/mixed media answer and
// returns the second part: the content, or what its Location points at.
// ctx is the caller's: closer ends the answer's own, and the Location is
// fetched after that.
func (c *Client) readMultipart(ctx context.Context, resp *http.Response, closer closeFunc) (*MediaContent, error) {
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return nil, fmt.Errorf("answer is %q, not multipart/mixed with a boundary", resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	meta, err := mr.NextPart()
	if err != nil {
		return nil, fmt.Errorf("read metadata part: %w", err)
	}
	if _, err := io.Copy(io.Discard, io.LimitReader(meta, 64<<10)); err != nil {
		return nil, fmt.Errorf("read metadata part: %w", err)
	}
	part, err := mr.NextRawPart()
	if err != nil {
		return nil, fmt.Errorf("read content part: %w", err)
	}
	if loc := part.Header.Get("Location"); loc != "" {
		closer()
		return c.followLocation(ctx, loc)
	}
	return &MediaContent{Body: readCloser{part, closer}, ContentType: part.Header.Get("Content-Type"),
		ContentDisposition: part.Header.Get("Content-Disposition"), Length: partLength(part.Header)}, nil
}

func partLength(h textproto.MIMEHeader) int64 {
	if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil {
		return n
	}
	return -1
}

// followLocation fetches content from the URL a remote redirected to
// (plain HTTPS, unsigned; the spec's "Location" part).
func (c *Client) followLocation(parent context.Context, loc string) (*MediaContent, error) {
	u, err := url.Parse(loc)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("bad Location %q in media answer", loc)
	}
	ctx, cancel := context.WithTimeout(parent, mediaTimeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	resp, err := c.locationClient().Do(req)
	if err != nil {
		cancel()
		return nil, &unreachableError{server: u.Host, err: err}
	}
	if resp.StatusCode/100 != 2 {
		resp.Body.Close()
		cancel()
		return nil, &RemoteError{Server: u.Host, Status: resp.StatusCode, Message: "media Location answered " + resp.Status}
	}
	closer := closeFunc(func() error { cancel(); return resp.Body.Close() })
	return &MediaContent{Body: readCloser{resp.Body, closer}, ContentType: resp.Header.Get("Content-Type"),
		ContentDisposition: resp.Header.Get("Content-Disposition"), Length: resp.ContentLength}, nil
}

// maxLocationRedirects bounds the HTTP redirects followed from a media
// Location.
const maxLocationRedirects = 5

// locationClient is the HTTP client of followLocation: the system's roots,
// no proxy from the environment, every connection (redirects included)
// checked by cfg.LocationControl.
func (c *Client) locationClient() *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.location == nil {
		d := &net.Dialer{Timeout: 10 * time.Second, Control: c.cfg.LocationControl}
		c.location = &http.Client{
			Transport: &http.Transport{DialContext: d.DialContext, TLSHandshakeTimeout: 10 * time.Second,
				MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second},
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= maxLocationRedirects {
					return fmt.Errorf("more than %d redirects", maxLocationRedirects)
				}
				return nil
			},
		}
	}
	return c.location
}

type closeFunc func() error

type readCloser struct {
	io.Reader
	close closeFunc
}

func (r readCloser) Close() error { return r.close() }

package client_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/hstest"
)

// pageServer serves an HTML page with OpenGraph tags and its image, and a
// page that redirects to it.
func pageServer(t *testing.T) *httptest.Server {
	t.Helper()
	img := testPNG(t, 50, 40)
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><html><head><title>Fallback title</title>
<meta property="og:title" content="Polder &amp; friends">
<meta name="description" content="A homeserver in Go">
<meta property="og:image" content="/img.png">
</head><body><p>hello</p></body></html>`))
	})
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<html><head><title>Just a title</title></head></html>`))
	})
	mux.HandleFunc("/img.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(img)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestMediaPreviewURL(t *testing.T) {
	page := pageServer(t)
	opts := hstest.Options{Config: func(c *config.Config) {
		c.URLPreviewEnabled = true
		c.URLPreviewIPAllowlist = "127.0.0.1/32"
	}}
	hstest.Each(t, opts, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw-alice-1")
		og := hstest.MustOK(t, alice.Do(t, "GET", "/_matrix/client/v1/media/preview_url?url="+hstest.Query(page.URL+"/page"), nil))
		if og["og:title"] != "Polder & friends" || og["og:description"] != "A homeserver in Go" {
			t.Errorf("preview = %v, want og:title and og:description from the page", og)
		}
		if og["og:image:width"] != float64(50) || og["og:image:height"] != float64(40) {
			t.Errorf("preview image size = %v x %v, want 50x40", og["og:image:width"], og["og:image:height"])
		}
		mxc, _ := og["og:image"].(string)
		server, id := splitMXC(t, mxc)
		decodeImage(t, alice.Do(t, "GET", "/_matrix/client/v1/media/download/"+server+"/"+id, nil))

		og = hstest.MustOK(t, alice.Do(t, "GET", "/_matrix/client/v1/media/preview_url?url="+hstest.Query(page.URL+"/plain"), nil))
		if og["og:title"] != "Just a title" {
			t.Errorf("preview of a page without OpenGraph = %v, want og:title from <title>", og)
		}
		hstest.MustErr(t, alice.Do(t, "GET", "/_matrix/client/v1/media/preview_url?url="+hstest.Query("ftp://example.org/"), nil), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, alice.Do(t, "GET", "/_matrix/client/v1/media/preview_url", nil), 400, "M_MISSING_PARAM")
		hstest.MustErr(t, hs.Anon().Do(t, "GET", "/_matrix/client/v1/media/preview_url?url=x", nil), 401, "M_MISSING_TOKEN")
	})
}

// TestMediaPreviewBlocked: with the default blocklist, previews of
// loopback and private addresses are refused, also behind a redirect and
// a name that resolves to loopback.
func TestMediaPreviewBlocked(t *testing.T) {
	page := pageServer(t)
	redirect := httptest.NewServer(http.RedirectHandler(page.URL+"/page", http.StatusFound))
	t.Cleanup(redirect.Close)
	port := page.URL[strings.LastIndexByte(page.URL, ':'):]
	opts := hstest.Options{Config: func(c *config.Config) { c.URLPreviewEnabled = true }}
	hstest.Each(t, opts, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw-alice-1")
		for _, u := range []string{
			page.URL + "/page",
			redirect.URL,
			"http://localhost" + port + "/page",
			"http://[::1]" + port + "/page",
			"http://10.1.2.3/",
			"http://169.254.169.254/latest/meta-data/",
		} {
			r := alice.Do(t, "GET", "/_matrix/client/v1/media/preview_url?url="+hstest.Query(u), nil)
			hstest.MustErr(t, r, 403, "M_FORBIDDEN")
		}
	})
	// Previews are off by default.
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw-alice-1")
		hstest.MustErr(t, alice.Do(t, "GET", "/_matrix/client/v1/media/preview_url?url="+hstest.Query(page.URL+"/page"), nil), 404, "M_UNRECOGNIZED")
	})
}

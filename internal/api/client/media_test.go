package client_test

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io/fs"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/hstest"
)

// Media repository tests (media.go, internal/media; docs/media.md).

func testPNG(tb testing.TB, w, h int) []byte {
	tb.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func testJPEG(tb testing.TB, w, h int) []byte {
	tb.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 64, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func testGIF(tb testing.TB, w, h, frames int) []byte {
	tb.Helper()
	g := &gif.GIF{}
	pal := color.Palette{color.Black, color.White, color.RGBA{255, 0, 0, 255}}
	for i := range frames {
		f := image.NewPaletted(image.Rect(0, 0, w, h), pal)
		for x := range w {
			f.SetColorIndex(x, (x+i)%h, uint8(1+i%2))
		}
		g.Image = append(g.Image, f)
		g.Delay = append(g.Delay, 10)
	}
	var buf bytes.Buffer
	if err := gif.EncodeAll(&buf, g); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// upload posts data and returns the mxc URI's server name and media ID.
func upload(tb testing.TB, c *hstest.Client, data []byte, ctype, name string) (string, string) {
	tb.Helper()
	r := c.Send(tb, hstest.Request{Method: "POST", Path: "/_matrix/media/v3/upload?filename=" + hstest.Query(name),
		Body: data, Header: http.Header{"Content-Type": {ctype}}})
	return splitMXC(tb, hstest.Str(tb, hstest.MustOK(tb, r), "content_uri"))
}

func splitMXC(tb testing.TB, uri string) (string, string) {
	tb.Helper()
	rest, ok := strings.CutPrefix(uri, "mxc://")
	server, id, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || server == "" || id == "" {
		tb.Fatalf("content_uri %q is not an mxc URI", uri)
	}
	return server, id
}

func blobCount(tb testing.TB, hs *hstest.Server) int {
	tb.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(hs.Config.DataDir, "media", "blobs"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// metric reads a counter from /metrics (0 when absent).
func metric(tb testing.TB, hs *hstest.Server, name string) float64 {
	tb.Helper()
	r := hs.Anon().Do(tb, "GET", "/metrics", nil)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(r.Body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func mustBody(tb testing.TB, r *hstest.Response, want []byte) {
	tb.Helper()
	if r.Status != 200 {
		tb.Fatalf("%s = %d %s, want 200", r.Call, r.Status, r.Body)
	}
	if !bytes.Equal(r.Body, want) {
		tb.Fatalf("%s: body of %d bytes differs from the %d uploaded", r.Call, len(r.Body), len(want))
	}
}

func decodeImage(tb testing.TB, r *hstest.Response) (image.Config, string) {
	tb.Helper()
	if r.Status != 200 {
		tb.Fatalf("%s = %d %s, want 200", r.Call, r.Status, r.Body)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(r.Body))
	if err != nil {
		tb.Fatalf("%s: not an image: %v", r.Call, err)
	}
	return cfg, format
}

func TestMediaUploadDownload(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw-alice-1")
		img := testPNG(t, 64, 48)
		server, id := upload(t, alice, img, "image/png", "cat.png")
		if server != hs.ServerName() {
			t.Errorf("content_uri server = %s, want %s", server, hs.ServerName())
		}
		path := "/_matrix/client/v1/media/download/" + server + "/" + id
		r := alice.Do(t, "GET", path, nil)
		mustBody(t, r, img)
		for h, want := range map[string]string{
			"Content-Type":                 "image/png",
			"Content-Disposition":          `inline; filename=cat.png`,
			"X-Content-Type-Options":       "nosniff",
			"Cross-Origin-Resource-Policy": "cross-origin",
		} {
			if got := r.Header.Get(h); got != want {
				t.Errorf("%s: %s = %q, want %q", r.Call, h, got, want)
			}
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox;") {
			t.Errorf("Content-Security-Policy = %q, want the spec's sandbox policy", csp)
		}
		// The file name in the path wins.
		r = alice.Do(t, "GET", path+"/other.png", nil)
		if got := r.Header.Get("Content-Disposition"); got != "inline; filename=other.png" {
			t.Errorf("Content-Disposition with a path file name = %q", got)
		}

		// HTML is never inline.
		hs2, hid := upload(t, alice, []byte("<script>alert(1)</script>"), "text/html", "x.html")
		r = alice.Do(t, "GET", "/_matrix/client/v1/media/download/"+hs2+"/"+hid, nil)
		if got := r.Header.Get("Content-Disposition"); !strings.HasPrefix(got, "attachment") {
			t.Errorf("Content-Disposition of text/html = %q, want attachment", got)
		}

		// Authentication, unknown media, the frozen legacy endpoint.
		hstest.MustErr(t, hs.Anon().Do(t, "GET", path, nil), 401, "M_MISSING_TOKEN")
		hstest.MustErr(t, hs.Anon().Do(t, "GET", "/_matrix/media/v3/download/"+server+"/"+id, nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, hs.Anon().Do(t, "GET", "/_matrix/media/v3/thumbnail/"+server+"/"+id+"?width=32&height=32", nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, alice.Do(t, "GET", "/_matrix/client/v1/media/download/"+server+"/nosuchmedia", nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, alice.Do(t, "GET", "/_matrix/client/v1/media/download/"+server+"/bad%21id", nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, hs.Anon().Do(t, "POST", "/_matrix/media/v3/upload", "x"), 401, "M_MISSING_TOKEN")

		// The same bytes twice: two media IDs, one file on disk.
		before := blobCount(t, hs)
		_, id2 := upload(t, alice, img, "image/png", "again.png")
		if id2 == id {
			t.Errorf("second upload got the same media ID %s", id)
		}
		if after := blobCount(t, hs); after != before {
			t.Errorf("blobs on disk after uploading the same bytes again = %d, want %d", after, before)
		}
		mustBody(t, alice.Do(t, "GET", "/_matrix/client/v1/media/download/"+server+"/"+id2, nil), img)

		cfg := hstest.MustOK(t, alice.Do(t, "GET", "/_matrix/client/v1/media/config", nil))
		if got := cfg["m.upload.size"]; got != float64(50<<20) {
			t.Errorf("m.upload.size = %v, want %d", got, 50<<20)
		}
		if n := metric(t, hs, "polder_media_uploads_total"); n != 3 {
			t.Errorf("polder_media_uploads_total = %v, want 3", n)
		}
	})
}

func TestMediaLimits(t *testing.T) {
	opts := hstest.Options{Config: func(c *config.Config) {
		c.MediaMaxUploadBytes = 4096
		c.MediaUserQuotaBytes = 6000
	}}
	hstest.Each(t, opts, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw-alice-1")
		hstest.MustErr(t, alice.Send(t, hstest.Request{Method: "POST", Path: "/_matrix/media/v3/upload",
			Body: bytes.Repeat([]byte("a"), 5000), Header: http.Header{"Content-Type": {"text/plain"}}}), 413, "M_TOO_LARGE")
		// Without a Content-Length (chunked), the limit still holds.
		hstest.MustErr(t, alice.Send(t, hstest.Request{Method: "POST", Path: "/_matrix/media/v3/upload",
			Body: bytes.NewReader(bytes.Repeat([]byte("b"), 5000)), Header: http.Header{"Content-Type": {"text/plain"}}}), 413, "M_TOO_LARGE")
		upload(t, alice, bytes.Repeat([]byte("c"), 3000), "text/plain", "")
		r := hstest.MustErr(t, alice.Send(t, hstest.Request{Method: "POST", Path: "/_matrix/media/v3/upload",
			Body: bytes.Repeat([]byte("d"), 3001), Header: http.Header{"Content-Type": {"text/plain"}}}), 403, "M_USER_LIMIT_EXCEEDED")
		if r["info_uri"] == nil {
			t.Errorf("M_USER_LIMIT_EXCEEDED without info_uri: %v", r)
		}
		// Another user has a quota of their own.
		bob := hs.Register(t, "bob", "pw-bob-1")
		upload(t, bob, bytes.Repeat([]byte("e"), 3001), "text/plain", "")
	})
}

func TestMediaAsyncUpload(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw-alice-1")
		bob := hs.Register(t, "bob", "pw-bob-1")
		created := hstest.MustOK(t, alice.Do(t, "POST", "/_matrix/media/v1/create", nil))
		if _, ok := created["unused_expires_at"].(float64); !ok {
			t.Errorf("create: unused_expires_at = %v, want a timestamp", created["unused_expires_at"])
		}
		server, id := splitMXC(t, hstest.Str(t, created, "content_uri"))
		dl := "/_matrix/client/v1/media/download/" + server + "/" + id
		hstest.MustErr(t, alice.Do(t, "GET", dl+"?timeout_ms=0", nil), 504, "M_NOT_YET_UPLOADED")

		// A download waiting for the content gets it when it comes.
		var wg sync.WaitGroup
		var waited *hstest.Response
		wg.Add(1)
		go func() {
			defer wg.Done()
			waited = bob.Do(t, "GET", dl+"?timeout_ms=60000", nil)
		}()

		put := "/_matrix/media/v3/upload/" + server + "/" + id
		body := []byte("hello async")
		hdr := http.Header{"Content-Type": {"text/plain"}}
		hstest.MustErr(t, bob.Send(t, hstest.Request{Method: "PUT", Path: put, Body: body, Header: hdr}), 403, "M_FORBIDDEN")
		hstest.MustOK(t, alice.Send(t, hstest.Request{Method: "PUT", Path: put, Body: body, Header: hdr}))
		hstest.MustErr(t, alice.Send(t, hstest.Request{Method: "PUT", Path: put, Body: body, Header: hdr}), 409, "M_CANNOT_OVERWRITE_MEDIA")
		hstest.MustErr(t, alice.Send(t, hstest.Request{Method: "PUT", Path: "/_matrix/media/v3/upload/" + server + "/unknownid", Body: body, Header: hdr}), 404, "M_NOT_FOUND")
		wg.Wait()
		mustBody(t, waited, body)
		mustBody(t, alice.Do(t, "GET", dl, nil), body)

		// At most 5 pending IDs per user.
		for i := range 5 {
			if r := alice.Do(t, "POST", "/_matrix/media/v1/create", nil); r.Status != 200 {
				t.Fatalf("create #%d = %d %s", i+1, r.Status, r.Body)
			}
		}
		hstest.MustErr(t, alice.Do(t, "POST", "/_matrix/media/v1/create", nil), 429, "M_LIMIT_EXCEEDED")
		hstest.MustOK(t, bob.Do(t, "POST", "/_matrix/media/v1/create", nil))
	})
}

func TestMediaLegacyBeforeCutover(t *testing.T) {
	opts := hstest.Options{Config: func(c *config.Config) { c.MediaLegacyCutover = "2100-01-01T00:00:00Z" }}
	hstest.Each(t, opts, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw-alice-1")
		img := testPNG(t, 40, 40)
		server, id := upload(t, alice, img, "image/png", "old.png")
		mustBody(t, hs.Anon().Do(t, "GET", "/_matrix/media/v3/download/"+server+"/"+id, nil), img)
		cfg, _ := decodeImage(t, hs.Anon().Do(t, "GET", "/_matrix/media/v3/thumbnail/"+server+"/"+id+"?width=32&height=32&method=crop", nil))
		if cfg.Width != 32 || cfg.Height != 32 {
			t.Errorf("legacy thumbnail is %dx%d, want 32x32", cfg.Width, cfg.Height)
		}
	})
}

func TestMediaThumbnails(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw-alice-1")
		thumb := func(server, id, q string) *hstest.Response {
			return alice.Do(t, "GET", "/_matrix/client/v1/media/thumbnail/"+server+"/"+id+"?"+q, nil)
		}
		for _, tc := range []struct {
			name, ctype, query string
			data               []byte
			w, h               int
			format             string
		}{
			{"png crop", "image/png", "width=32&height=32&method=crop", testPNG(t, 200, 100), 32, 32, "png"},
			{"png crop 96", "image/png", "width=50&height=50&method=crop", testPNG(t, 200, 100), 96, 96, "png"},
			{"png no upscale", "image/png", "width=320&height=240&method=scale", testPNG(t, 200, 100), 200, 100, "png"},
			{"jpeg scale", "image/jpeg", "width=640&height=480&method=scale", testJPEG(t, 1000, 800), 600, 480, "jpeg"},
			{"jpeg scale 800", "image/jpeg", "width=700&height=500", testJPEG(t, 1600, 1200), 800, 600, "jpeg"},
			{"gif static", "image/gif", "width=96&height=96&method=crop", testGIF(t, 120, 120, 3), 96, 96, "png"},
			{"gif animated", "image/gif", "width=96&height=96&method=crop&animated=true", testGIF(t, 120, 120, 3), 96, 96, "gif"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				server, id := upload(t, alice, tc.data, tc.ctype, "")
				r := thumb(server, id, tc.query)
				cfg, format := decodeImage(t, r)
				if cfg.Width != tc.w || cfg.Height != tc.h || format != tc.format {
					t.Errorf("thumbnail %s = %dx%d %s, want %dx%d %s", tc.query, cfg.Width, cfg.Height, format, tc.w, tc.h, tc.format)
				}
				if format == "gif" {
					g, err := gif.DecodeAll(bytes.NewReader(r.Body))
					if err != nil || len(g.Image) != 3 {
						t.Errorf("animated thumbnail: %v, %d frames; want 3 frames", err, len(g.Image))
					}
				}
			})
		}

		// Generated once: the second request is served from the cache.
		server, id := upload(t, alice, testPNG(t, 300, 300), "image/png", "")
		first := thumb(server, id, "width=96&height=96&method=crop")
		before := metric(t, hs, "polder_media_thumbnails_generated_total")
		second := thumb(server, id, "width=90&height=90&method=crop") // the same stored size
		if after := metric(t, hs, "polder_media_thumbnails_generated_total"); after != before {
			t.Errorf("thumbnails generated went from %v to %v for a cached size", before, after)
		}
		if !bytes.Equal(first.Body, second.Body) {
			t.Errorf("the cached thumbnail differs from the first")
		}

		// Not an image; bad parameters.
		tserver, tid := upload(t, alice, []byte("just text"), "text/plain", "")
		hstest.MustErr(t, thumb(tserver, tid, "width=32&height=32"), 404, "M_NOT_FOUND")
		hstest.MustErr(t, thumb(server, id, "width=0&height=32"), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, thumb(server, id, "width=32&height=32&method=stretch"), 400, "M_INVALID_PARAM")
		hstest.MustErr(t, thumb(server, "nosuchmedia", "width=32&height=32"), 404, "M_NOT_FOUND")
		hstest.MustErr(t, hs.Anon().Do(t, "GET", "/_matrix/client/v1/media/thumbnail/"+server+"/"+id+"?width=32&height=32", nil), 401, "M_MISSING_TOKEN")
	})
}

func TestMediaAdmin(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		admin := hs.Admin(t, "admin")
		alice := hs.Register(t, "alice", "pw-alice-1")
		server, id := upload(t, alice, []byte("quarantine me"), "text/plain", "")
		server2, id2 := upload(t, alice, []byte("delete me"), "text/plain", "")
		hstest.MustErr(t, alice.Do(t, "POST", "/_synapse/admin/v1/media/quarantine/"+server+"/"+id, nil), 403, "M_FORBIDDEN")
		hstest.MustOK(t, admin.Do(t, "POST", "/_synapse/admin/v1/media/quarantine/"+server+"/"+id, nil))
		hstest.MustErr(t, alice.Do(t, "GET", "/_matrix/client/v1/media/download/"+server+"/"+id, nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, admin.Do(t, "POST", "/_synapse/admin/v1/media/quarantine/"+server+"/nosuch", nil), 404, "M_NOT_FOUND")

		before := blobCount(t, hs)
		del := hstest.MustOK(t, admin.Do(t, "DELETE", "/_synapse/admin/v1/media/"+server2+"/"+id2, nil))
		if del["total"] != float64(1) {
			t.Errorf("delete media = %v, want total 1", del)
		}
		if after := blobCount(t, hs); after != before-1 {
			t.Errorf("blobs after delete = %d, want %d", after, before-1)
		}
		hstest.MustErr(t, alice.Do(t, "GET", "/_matrix/client/v1/media/download/"+server2+"/"+id2, nil), 404, "M_NOT_FOUND")
		hstest.MustErr(t, admin.Do(t, "DELETE", "/_synapse/admin/v1/media/"+server2+"/"+id2, nil), 404, "M_NOT_FOUND")

		hstest.MustErr(t, admin.Do(t, "POST", "/_synapse/admin/v1/purge_media_cache", nil), 400, "M_MISSING_PARAM")
		p := hstest.MustOK(t, admin.Do(t, "POST", "/_synapse/admin/v1/purge_media_cache?before_ts=9999999999999", nil))
		if p["deleted"] != float64(0) {
			t.Errorf("purge_media_cache with no remote media = %v, want deleted 0", p)
		}
	})
}

// TestMediaScannerUnreachable: with clamd configured but not answering,
// policy refuse fails uploads and policy allow takes them.
func TestMediaScannerUnreachable(t *testing.T) {
	for _, policy := range []string{"refuse", "allow"} {
		t.Run(policy, func(t *testing.T) {
			opts := hstest.Options{Config: func(c *config.Config) {
				c.ClamdAddress = "unix:" + filepath.Join(t.TempDir(), "no-clamd.sock")
				c.ClamdUnreachable = policy
			}}
			hstest.Each(t, opts, func(t *testing.T, hs *hstest.Server) {
				alice := hs.Register(t, "alice", "pw-alice-1")
				r := alice.Send(t, hstest.Request{Method: "POST", Path: "/_matrix/media/v3/upload", Body: "data",
					Header: http.Header{"Content-Type": {"text/plain"}}})
				if policy == "refuse" {
					hstest.MustErr(t, r, 502, "M_UNKNOWN")
				} else {
					hstest.MustOK(t, r)
				}
			})
		})
	}
}

func TestMediaFederation(t *testing.T) {
	f := hstest.NewFederation(t, hstest.Options{})
	hs1, hs2 := f.Servers()[0], f.Servers()[1]
	alice := hs1.Register(t, "alice", "pw-alice-1")
	bob := hs2.Register(t, "bob", "pw-bob-1")
	img := testPNG(t, 120, 90)
	server, id := upload(t, alice, img, "image/png", "remote.png")
	r := bob.Do(t, "GET", "/_matrix/client/v1/media/download/"+server+"/"+id, nil)
	mustBody(t, r, img)
	if got := r.Header.Get("Content-Type"); got != "image/png" {
		t.Errorf("remote media Content-Type = %q, want image/png", got)
	}
	cfg, _ := decodeImage(t, bob.Do(t, "GET", "/_matrix/client/v1/media/thumbnail/"+server+"/"+id+"?width=32&height=32&method=crop", nil))
	if cfg.Width != 32 || cfg.Height != 32 {
		t.Errorf("remote thumbnail = %dx%d, want 32x32", cfg.Width, cfg.Height)
	}
	hstest.MustErr(t, bob.Do(t, "GET", "/_matrix/client/v1/media/download/"+server+"/nosuchmedia", nil), 404, "M_NOT_FOUND")

	// Many at once: fetched once.
	big := testJPEG(t, 400, 300)
	server, id = upload(t, alice, big, "image/jpeg", "")
	before := metric(t, hs2, `polder_media_remote_fetches_total{result="ok"}`)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustBody(t, bob.Do(t, "GET", "/_matrix/client/v1/media/download/"+server+"/"+id, nil), big)
		}()
	}
	wg.Wait()
	if after := metric(t, hs2, `polder_media_remote_fetches_total{result="ok"}`); after != before+1 {
		t.Errorf("remote fetches for 8 concurrent downloads = %v, want 1", after-before)
	}

	// Purging the remote cache forgets both; they are fetched again.
	admin := hs2.Admin(t, "admin")
	p := hstest.MustOK(t, admin.Do(t, "POST", fmt.Sprintf("/_synapse/admin/v1/purge_media_cache?before_ts=%d", time.Now().Add(time.Hour).UnixMilli()), nil))
	if p["deleted"] != float64(2) {
		t.Errorf("purge_media_cache = %v, want deleted 2", p)
	}
	mustBody(t, bob.Do(t, "GET", "/_matrix/client/v1/media/download/"+server+"/"+id, nil), big)
}

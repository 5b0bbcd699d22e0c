package client_test

import (
	"net/http"
	"os"
	"testing"

	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/hstest"
)

// eicar is the EICAR antivirus test file (https://www.eicar.org): harmless,
// and detected as malware by every scanner (tests/clamav/start.sh gives
// clamd a signature for it).
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// TestMediaClamAV runs against a real clamd: POLDER_TEST_CLAMD is its
// address, as tests/clamav/start.sh prints it. Skipped without it, except
// in CI (CI=true), where it must be set.
func TestMediaClamAV(t *testing.T) {
	addr := os.Getenv("POLDER_TEST_CLAMD")
	if addr == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("POLDER_TEST_CLAMD is not set; CI must run clamd (tests/clamav/start.sh)")
		}
		t.Skip("POLDER_TEST_CLAMD is not set: start clamd with tests/clamav/start.sh")
	}
	opts := hstest.Options{Config: func(c *config.Config) { c.ClamdAddress = addr }}
	hstest.Each(t, opts, func(t *testing.T, hs *hstest.Server) {
		alice := hs.Register(t, "alice", "pw-alice-1")
		hdr := http.Header{"Content-Type": {"text/plain"}}

		r := hstest.MustErr(t, alice.Send(t, hstest.Request{Method: "POST", Path: "/_matrix/media/v3/upload?filename=eicar.com",
			Body: eicar, Header: hdr}), 403, "M_FORBIDDEN")
		if r["reason"] != "MCS_MEDIA_NOT_CLEAN" {
			t.Errorf("infected upload: reason = %v, want MCS_MEDIA_NOT_CLEAN", r["reason"])
		}
		// Again (the verdict is remembered), and with a trailing newline.
		hstest.MustErr(t, alice.Send(t, hstest.Request{Method: "POST", Path: "/_matrix/media/v3/upload", Body: eicar, Header: hdr}), 403, "M_FORBIDDEN")
		hstest.MustErr(t, alice.Send(t, hstest.Request{Method: "POST", Path: "/_matrix/media/v3/upload", Body: eicar + "\n", Header: hdr}), 403, "M_FORBIDDEN")

		// An asynchronous upload of it: refused, and the ID never serves it.
		server, id := splitMXC(t, hstest.Str(t, hstest.MustOK(t, alice.Do(t, "POST", "/_matrix/media/v1/create", nil)), "content_uri"))
		hstest.MustErr(t, alice.Send(t, hstest.Request{Method: "PUT", Path: "/_matrix/media/v3/upload/" + server + "/" + id, Body: eicar, Header: hdr}), 403, "M_FORBIDDEN")
		hstest.MustErr(t, alice.Do(t, "GET", "/_matrix/client/v1/media/download/"+server+"/"+id+"?timeout_ms=0", nil), 504, "M_NOT_YET_UPLOADED")
		if n := blobCount(t, hs); n != 0 {
			t.Errorf("blobs on disk after refusing EICAR = %d, want 0", n)
		}

		// A clean image is served.
		img := testPNG(t, 64, 64)
		server, id = upload(t, alice, img, "image/png", "clean.png")
		mustBody(t, alice.Do(t, "GET", "/_matrix/client/v1/media/download/"+server+"/"+id, nil), img)
		if n := metric(t, hs, `polder_media_scans_total{result="clean"}`); n < 1 {
			t.Errorf(`polder_media_scans_total{result="clean"} = %v, want at least 1`, n)
		}
		if n := metric(t, hs, `polder_media_scans_total{result="infected"}`); n < 2 {
			t.Errorf(`polder_media_scans_total{result="infected"} = %v, want at least 2`, n)
		}
	})
}

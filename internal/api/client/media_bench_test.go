package client_test

import (
	"crypto/rand"
	"net/http"
	"os"
	"testing"

	"polder.dev/polder/internal/config"
	"polder.dev/polder/internal/hstest"
	"polder.dev/polder/internal/store/storetest"
)

// BenchmarkMedia10MB: upload and download throughput of a 10 MB file over
// real HTTP on loopback (SQLite; the content goes to disk, hashed, and is
// served with http.ServeContent). Run with POLDER_TEST_CLAMD set to include
// a clamd scan in each upload (every upload is new content: 8 random bytes
// differ).
func BenchmarkMedia10MB(b *testing.B) {
	opts := hstest.Options{}
	if addr := os.Getenv("POLDER_TEST_CLAMD"); addr != "" {
		opts.Config = func(c *config.Config) { c.ClamdAddress = addr }
	}
	hs := hstest.Start(b, storetest.Engines(b)[0], opts)
	alice := hs.Register(b, "alice", "pw-alice-1")
	data := make([]byte, 10<<20)
	rand.Read(data)
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	b.Run("upload", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			rand.Read(data[:8])
			r := alice.Send(b, hstest.Request{Method: "POST", Path: "/_matrix/media/v3/upload", Body: data, Header: hdr})
			if r.Status != 200 {
				b.Fatalf("upload = %d %s", r.Status, r.Body)
			}
		}
	})
	server, id := upload(b, alice, data, "application/octet-stream", "")
	b.Run("download", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			r := alice.Do(b, "GET", "/_matrix/client/v1/media/download/"+server+"/"+id, nil)
			if r.Status != 200 || len(r.Body) != len(data) {
				b.Fatalf("download = %d, %d bytes", r.Status, len(r.Body))
			}
		}
	})
}

package federation_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"polder.dev/polder/internal/federation"
)

// TestMediaLocationControl: a remote's media answer may name any URL in
// its Location part; the client follows it only through connections that
// LocationControl allows (the server refuses inner addresses there).
func TestMediaLocationControl(t *testing.T) {
	k := mustKey(t, "k1")
	rs := newRemoteServer(t, k)
	inner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "inner secret")
	}))
	t.Cleanup(inner.Close)
	rs.setReply(func(w http.ResponseWriter, r *http.Request) {
		const b = "polderboundary"
		w.Header().Set("Content-Type", "multipart/mixed; boundary="+b)
		fmt.Fprintf(w, "--%s\r\nContent-Type: application/json\r\n\r\n{}\r\n--%s\r\nLocation: %s/file\r\n\r\n\r\n--%s--\r\n", b, b, inner.URL, b)
	})
	refuseLoopback := func(network, address string, _ syscall.RawConn) error {
		host, _, _ := net.SplitHostPort(address)
		if ip, err := netip.ParseAddr(host); err != nil || ip.IsLoopback() {
			return errors.New("address is blocked")
		}
		return nil
	}
	for _, tc := range []struct {
		name    string
		control func(network, address string, c syscall.RawConn) error
		allowed bool
	}{{"unchecked", nil, true}, {"loopback refused", refuseLoopback, false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestClient(t, federation.Config{Key: k, RootCAs: rs.roots(), Resolver: fixedResolver(rs.target()), LocationControl: tc.control})
			mc, err := c.DownloadMedia(context.Background(), remoteName, "abc")
			if !tc.allowed {
				if err == nil {
					mc.Body.Close()
					t.Fatal("the Location on loopback was followed")
				}
				if !strings.Contains(err.Error(), "blocked") {
					t.Fatalf("err = %v, want the control's refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer mc.Body.Close()
			if b, _ := io.ReadAll(mc.Body); string(b) != "inner secret" {
				t.Fatalf("content %q", b)
			}
		})
	}
}

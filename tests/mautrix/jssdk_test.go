//go:build goolm

package mautrix_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
)

// jssdkDir is tests/jssdk, where tests/jssdk/run.sh installs matrix-js-sdk.
const jssdkDir = "../jssdk"

// jsPeer is tests/jssdk/peer-e2ee.mjs running in Node: a matrix-js-sdk
// client with Rust crypto, driven through its stdin and stdout.
type jsPeer struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan map[string]json.RawMessage
	// stderr is Node's stderr (the SDK's log with POLDER_TEST_SDK_LOG=1).
	stderr lockedBuffer
	// exited is closed when the process has exited, with its Wait error
	// in exitErr.
	exited  chan struct{}
	exitErr error
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// nodeForJS returns the path of node, or skips the test if the JS peer
// cannot run: POLDER_TEST_SKIP_JS=1 (scripts/test.sh with SKIP_JSSDK=1), no
// node on PATH, or no matrix-js-sdk in tests/jssdk/node_modules.
func nodeForJS(t *testing.T) string {
	t.Helper()
	if os.Getenv("POLDER_TEST_SKIP_JS") == "1" {
		t.Skip("POLDER_TEST_SKIP_JS=1 (SKIP_JSSDK=1 in scripts/test.sh)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH")
	}
	for _, pkg := range []string{"matrix-js-sdk", "@matrix-org/matrix-sdk-crypto-wasm"} {
		if _, err := os.Stat(filepath.Join(jssdkDir, "node_modules", pkg, "package.json")); err != nil {
			t.Skipf("tests/jssdk/node_modules has no %s: run tests/jssdk/run.sh (or npm ci in tests/jssdk) first", pkg)
		}
	}
	return node
}

// startJSPeer starts the Node peer for the session c, which joins roomID.
func startJSPeer(t *testing.T, node string, c *hstest.Client, roomID id.RoomID) *jsPeer {
	t.Helper()
	p := &jsPeer{t: t, lines: make(chan map[string]json.RawMessage, 64), exited: make(chan struct{})}
	p.cmd = exec.Command(node, "peer-e2ee.mjs")
	p.cmd.Dir = jssdkDir
	p.cmd.Env = append(os.Environ(),
		"POLDER_URL="+c.HS.URL(),
		"PEER_USER_ID="+c.UserID,
		"PEER_DEVICE_ID="+c.DeviceID,
		"PEER_ACCESS_TOKEN="+c.AccessToken,
		"PEER_ROOM_ID="+roomID.String(),
	)
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start node peer-e2ee.mjs: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]json.RawMessage{"stray": json.RawMessage(strconvQuote(sc.Text()))}
			}
			p.lines <- m
		}
		close(p.lines)
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		// A peer still running (the test failed before quit) is killed.
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			go func() {
				for range p.lines {
				}
			}()
			select {
			case <-p.exited:
			case <-time.After(10 * time.Second):
			}
		}
		if t.Failed() {
			t.Logf("node peer-e2ee.mjs stderr (POLDER_TEST_SDK_LOG=1 for the SDK's log):\n%s", tail(p.stderr.String(), 60))
		}
	})
	return p
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// command writes one command line to the peer's stdin.
func (p *jsPeer) command(cmd any) {
	p.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("node peer: write %s: %v", b, err)
	}
}

// expect waits for the next stdout line with key, decoding its value into
// v. UTD lines are logged and skipped (the SDK retries when the key comes);
// "error" and "plaintext" lines, an exit, or the timeout fail the test.
func (p *jsPeer) expect(key string, v any, timeout time.Duration) {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-p.lines:
			if !ok {
				<-p.exited
				p.t.Fatalf("node peer exited (%v) while waiting for %q", p.exitErr, key)
			}
			if raw, ok := m[key]; ok {
				if err := json.Unmarshal(raw, v); err != nil {
					p.t.Fatalf("node peer: %s %s: %v", key, raw, err)
				}
				return
			}
			switch {
			case m["error"] != nil:
				p.t.Fatalf("node peer failed: %s", m["error"])
			case m["plaintext"] != nil:
				p.t.Fatalf("node peer got a plaintext m.room.message in the encrypted room: %s", m["plaintext"])
			default:
				p.t.Logf("node peer: %v (waiting for %q)", rawString(m), key)
			}
		case <-deadline:
			p.t.Fatalf("node peer: no %q line within %s", key, timeout)
		}
	}
}

func rawString(m map[string]json.RawMessage) string {
	b, _ := json.Marshal(m)
	return string(b)
}

// quit asks the peer to stop and waits for it to exit 0.
func (p *jsPeer) quit() {
	p.t.Helper()
	p.command(map[string]any{"quit": true})
	_ = p.stdin.Close()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m, ok := <-p.lines:
			if !ok {
				<-p.exited
				if p.exitErr != nil {
					p.t.Errorf("node peer exited with %v", p.exitErr)
				}
				return
			}
			if m["error"] != nil {
				p.t.Errorf("node peer failed: %s", m["error"])
			} else {
				p.t.Logf("node peer: %s (after quit)", rawString(m))
			}
		case <-deadline:
			p.t.Errorf("node peer did not exit within 15s of quit")
			return
		}
	}
}

// TestMegolmGoToJS: a mautrix-go device (Alice) and a matrix-js-sdk device
// with Rust crypto (Carol, in Node) in one encrypted room; each sends a
// message and the other decrypts it. Skipped when Node or
// tests/jssdk/node_modules is missing (tests/jssdk/run.sh installs them).
func TestMegolmGoToJS(t *testing.T) {
	node := nodeForJS(t)
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := newPeer(t, "alice", hs.Register(t, "alice", password))
		carolSession := hs.Register(t, "carol", password)
		carol := id.UserID(carolSession.UserID)
		roomID := alice.createEncryptedRoom(carol)

		js := startJSPeer(t, node, carolSession, roomID)
		var ready struct {
			DeviceID   string `json:"device_id"`
			Curve25519 string `json:"curve25519"`
			Ed25519    string `json:"ed25519"`
		}
		js.expect("ready", &ready, 60*time.Second)
		if ready.DeviceID != carolSession.DeviceID {
			t.Fatalf("node peer is device %s, want %s", ready.DeviceID, carolSession.DeviceID)
		}
		waitFor(t, 15*time.Second, "alice seeing carol's join in /sync", func() bool {
			return alice.membership(roomID, carol) == "join"
		})
		// The Rust SDK uploads its device keys from its own request loop:
		// wait until /keys/query has them, so that Alice's session is
		// shared with the device.
		waitFor(t, 15*time.Second, "carol's device keys in /keys/query", func() bool {
			r := alice.hs.Do(t, "POST", "/_matrix/client/v3/keys/query", map[string]any{
				"device_keys": map[string]any{string(carol): []string{}},
			})
			if r.Status != 200 {
				return false
			}
			var q struct {
				DeviceKeys map[string]map[string]struct {
					Keys map[string]string `json:"keys"`
				} `json:"device_keys"`
			}
			if json.Unmarshal(r.Body, &q) != nil {
				return false
			}
			return q.DeviceKeys[string(carol)][ready.DeviceID].Keys["curve25519:"+ready.DeviceID] == ready.Curve25519
		})

		// Go → JS.
		ev := alice.send(roomID, "hello js, from go")
		var got struct {
			EventID          string `json:"event_id"`
			Sender           string `json:"sender"`
			MsgType          string `json:"msgtype"`
			Body             string `json:"body"`
			SenderCurve25519 string `json:"sender_curve25519"`
		}
		js.expect("received", &got, 30*time.Second)
		if got.EventID != ev.String() || got.Sender != alice.userID().String() || got.Body != "hello js, from go" || got.MsgType != "m.text" {
			t.Fatalf("node peer decrypted %+v; want %s from %s: m.text %q", got, ev, alice.userID(), "hello js, from go")
		}
		if want := alice.mach.OwnIdentity().IdentityKey.String(); got.SenderCurve25519 != want {
			t.Errorf("node peer: the room key came from curve25519 %s, want alice's %s", got.SenderCurve25519, want)
		}

		// JS → Go.
		js.command(map[string]any{"send": "hello go, from js"})
		var sent struct {
			EventID string `json:"event_id"`
		}
		js.expect("sent", &sent, 30*time.Second)
		dec := alice.expectMessage(roomID, carol, id.EventID(sent.EventID), "hello go, from js")
		if src := dec.Mautrix.TrustSource; src == nil || src.DeviceID != id.DeviceID(ready.DeviceID) || src.IdentityKey.String() != ready.Curve25519 {
			t.Errorf("alice: %s decrypted with a room key from %+v, want carol's device %s (curve25519 %s)", sent.EventID, src, ready.DeviceID, ready.Curve25519)
		}

		// Once more each way, on the established sessions.
		ev = alice.send(roomID, "second from go")
		js.expect("received", &got, 30*time.Second)
		if got.EventID != ev.String() || got.Body != "second from go" {
			t.Fatalf("node peer decrypted %+v; want %s %q", got, ev, "second from go")
		}
		js.command(map[string]any{"send": "second from js"})
		js.expect("sent", &sent, 30*time.Second)
		alice.expectMessage(roomID, carol, id.EventID(sent.EventID), "second from js")

		js.quit()
		alice.noPlaintext()
	})
}

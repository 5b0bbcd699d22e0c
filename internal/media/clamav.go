package media

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// ClamAV scans content with a ClamAV daemon (clamd) over its INSTREAM
// command (clamd(8), "INSTREAM"): the content goes in chunks, each
// prefixed with its length as a 4-byte big-endian integer, ended by a
// zero length; clamd answers "stream: OK" or "stream: <signature> FOUND".
// clamd's StreamMaxLength must be at least the largest upload.
type ClamAV struct {
	network, addr string
	timeout       time.Duration
}

// ErrScannerUnavailable wraps failures to get a verdict from the scanner.
var ErrScannerUnavailable = errors.New("antivirus scanner unavailable")

// NewClamAV returns a client of the clamd at address: "unix:/path",
// "tcp:host:port", a path starting with "/" (a unix socket) or host:port.
// timeout bounds one scan (default 2 minutes).
func NewClamAV(address string, timeout time.Duration) (*ClamAV, error) {
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	c := &ClamAV{timeout: timeout}
	switch {
	case strings.HasPrefix(address, "unix:"):
		c.network, c.addr = "unix", strings.TrimPrefix(address, "unix:")
	case strings.HasPrefix(address, "tcp:"):
		c.network, c.addr = "tcp", strings.TrimPrefix(address, "tcp:")
	case strings.HasPrefix(address, "/"):
		c.network, c.addr = "unix", address
	default:
		c.network, c.addr = "tcp", address
	}
	if c.network == "tcp" {
		if _, _, err := net.SplitHostPort(c.addr); err != nil {
			return nil, fmt.Errorf("clamd address %q: want unix:/path or host:port", address)
		}
	}
	return c, nil
}

// Verdict is the result of a scan.
type Verdict struct {
	Clean     bool
	Signature string // what was found, when not clean
}

const clamChunk = 64 << 10

// Scan sends r to clamd and returns its verdict. A failure to reach clamd
// or to understand it wraps ErrScannerUnavailable.
func (c *ClamAV) Scan(ctx context.Context, r io.Reader) (Verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.network, c.addr)
	if err != nil {
		return Verdict{}, fmt.Errorf("%w: %v", ErrScannerUnavailable, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	v, err := c.instream(conn, r)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrScannerUnavailable) {
			return Verdict{}, fmt.Errorf("%w: %v", ErrScannerUnavailable, ctx.Err())
		}
		return Verdict{}, err
	}
	return v, nil
}

func (c *ClamAV) instream(conn net.Conn, r io.Reader) (Verdict, error) {
	w := bufio.NewWriterSize(conn, clamChunk+4)
	if _, err := w.WriteString("zINSTREAM\x00"); err != nil {
		return Verdict{}, fmt.Errorf("%w: %v", ErrScannerUnavailable, err)
	}
	buf := make([]byte, clamChunk)
	var hdr [4]byte
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			binary.BigEndian.PutUint32(hdr[:], uint32(n))
			w.Write(hdr[:])
			if _, err := w.Write(buf[:n]); err != nil {
				// clamd closes the connection when the stream is over its
				// StreamMaxLength; its answer says so.
				return c.reply(conn, err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return Verdict{}, fmt.Errorf("read content to scan: %w", rerr)
		}
	}
	binary.BigEndian.PutUint32(hdr[:], 0)
	w.Write(hdr[:])
	if err := w.Flush(); err != nil {
		return c.reply(conn, err)
	}
	return c.reply(conn, nil)
}

// reply reads clamd's answer: "stream: OK", "stream: Sig FOUND" or
// "... ERROR".
func (c *ClamAV) reply(conn net.Conn, writeErr error) (Verdict, error) {
	data, err := io.ReadAll(io.LimitReader(conn, 4096))
	line := strings.TrimSpace(string(bytes.TrimRight(data, "\x00\n")))
	if line == "" {
		if writeErr == nil {
			writeErr = err
		}
		return Verdict{}, fmt.Errorf("%w: no answer from clamd: %v", ErrScannerUnavailable, writeErr)
	}
	line = strings.TrimPrefix(line, "stream: ")
	switch {
	case line == "OK":
		return Verdict{Clean: true}, nil
	case strings.HasSuffix(line, " FOUND"):
		return Verdict{Signature: strings.TrimSuffix(line, " FOUND")}, nil
	}
	return Verdict{}, fmt.Errorf("%w: clamd answered %q", ErrScannerUnavailable, line)
}

// Ping checks that clamd answers.
func (c *ClamAV) Ping(ctx context.Context) error {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, c.network, c.addr)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrScannerUnavailable, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return fmt.Errorf("%w: %v", ErrScannerUnavailable, err)
	}
	data, _ := io.ReadAll(io.LimitReader(conn, 64))
	if string(bytes.TrimRight(data, "\x00\n")) != "PONG" {
		return fmt.Errorf("%w: clamd answered %q to PING", ErrScannerUnavailable, data)
	}
	return nil
}

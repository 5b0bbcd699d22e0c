// Package bench is the library behind cmd/polder-bench: a load generator
// that drives any Matrix homeserver through the public Client-Server API
// only (plain net/http, keep-alive), so the same run can be pointed at
// Polder, Synapse or Dendrite. It registers its own users, builds each
// scenario untimed, then times the scenario's requests and reports
// throughput, latency percentiles, errors and, given the server's PID, the
// server's CPU time per operation and its resident memory (from /proc).
//
// It imports only the standard library and nothing of Polder: it must not
// know which server it measures. Only cmd/polder-bench and tests import it.
package bench

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Client talks to one homeserver's client API.
type Client struct {
	Base string // e.g. "http://127.0.0.1:8008", no trailing slash
	HTTP *http.Client
	// SharedSecret, if set, registers users through Synapse's shared-secret
	// admin API (/_synapse/admin/v1/register), which Polder serves too;
	// otherwise open registration with m.login.dummy is used.
	SharedSecret string

	txn atomic.Int64
}

// NewHTTPClient returns a keep-alive client with enough idle connections
// for conns concurrent requests to one host.
func NewHTTPClient(conns int) *http.Client {
	if conns < 16 {
		conns = 16
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		MaxConnsPerHost:     0,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr}
}

// APIError is a non-2xx answer.
type APIError struct {
	Status  int
	Errcode string `json:"errcode"`
	Msg     string `json:"error"`
	Body    []byte `json:"-"`
}

func (e *APIError) Error() string {
	if e.Errcode != "" {
		return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Errcode, e.Msg)
	}
	b := e.Body
	if len(b) > 200 {
		b = b[:200]
	}
	return fmt.Sprintf("HTTP %d: %s", e.Status, b)
}

// IsUnrecognized reports whether err is a 404 or M_UNRECOGNIZED answer: the
// server does not serve the endpoint.
func IsUnrecognized(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusMethodNotAllowed || ae.Errcode == "M_UNRECOGNIZED")
}

// Do sends one request with body encoded as JSON (nil: none) and decodes a
// 2xx answer into out (nil: discarded). A non-2xx answer is an *APIError.
func (c *Client) Do(ctx context.Context, method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		var b []byte
		switch v := body.(type) {
		case []byte:
			b = v
		default:
			var err error
			if b, err = json.Marshal(body); err != nil {
				return err
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		ae := &APIError{Status: resp.StatusCode, Body: data}
		_ = json.Unmarshal(data, ae)
		return ae
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// User is a registered, logged-in account.
type User struct {
	ID       string `json:"user_id"`
	Token    string `json:"access_token"`
	DeviceID string `json:"device_id"`
	Password string `json:"-"`
}

// ServerName is the part of the user ID after the first colon.
func (u *User) ServerName() string {
	_, s, _ := strings.Cut(u.ID, ":")
	return s
}

// Register creates the account localpart with password and returns it
// logged in.
func (c *Client) Register(ctx context.Context, localpart, password string) (*User, error) {
	var u User
	if c.SharedSecret != "" {
		var n struct {
			Nonce string `json:"nonce"`
		}
		if err := c.Do(ctx, "GET", "/_synapse/admin/v1/register", "", nil, &n); err != nil {
			return nil, fmt.Errorf("shared-secret nonce: %w", err)
		}
		mac := hmac.New(sha1.New, []byte(c.SharedSecret))
		mac.Write([]byte(n.Nonce + "\x00" + localpart + "\x00" + password + "\x00notadmin"))
		body := map[string]any{"nonce": n.Nonce, "username": localpart, "password": password, "admin": false, "mac": hex.EncodeToString(mac.Sum(nil))}
		if err := c.Do(ctx, "POST", "/_synapse/admin/v1/register", "", body, &u); err != nil {
			return nil, fmt.Errorf("shared-secret register %s: %w", localpart, err)
		}
	} else {
		body := map[string]any{
			"username": localpart, "password": password,
			"auth":                        map[string]any{"type": "m.login.dummy"},
			"initial_device_display_name": "polder-bench",
		}
		err := c.Do(ctx, "POST", "/_matrix/client/v3/register", "", body, &u)
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			// The server wants a UIA session first (client-server API,
			// "User-interactive authentication API").
			var flows struct {
				Session string `json:"session"`
			}
			_ = json.Unmarshal(ae.Body, &flows)
			body["auth"] = map[string]any{"type": "m.login.dummy", "session": flows.Session}
			err = c.Do(ctx, "POST", "/_matrix/client/v3/register", "", body, &u)
		}
		if err != nil {
			return nil, fmt.Errorf("register %s: %w", localpart, err)
		}
	}
	if u.Token == "" {
		return nil, fmt.Errorf("register %s: no access token in the answer", localpart)
	}
	u.Password = password
	return &u, nil
}

// Login logs in with a password and returns a new device's session.
func (c *Client) Login(ctx context.Context, userID, password string) (*User, error) {
	var u User
	body := map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": userID},
		"password":   password,
	}
	if err := c.Do(ctx, "POST", "/_matrix/client/v3/login", "", body, &u); err != nil {
		return nil, fmt.Errorf("login %s: %w", userID, err)
	}
	u.Password = password
	return &u, nil
}

// CreateRoom creates a room and returns its ID. extra is merged into the
// request body (preset, invite, name...).
func (c *Client) CreateRoom(ctx context.Context, u *User, extra map[string]any) (string, error) {
	// A nonce in the create event: in room versions 12+ the room ID is the
	// create event's hash, and two creations by one user in the same
	// millisecond would otherwise collide.
	body := map[string]any{"preset": "public_chat", "creation_content": map[string]any{"dev.polder.bench.nonce": c.txn.Add(1)}}
	for k, v := range extra {
		body[k] = v
	}
	var out struct {
		RoomID string `json:"room_id"`
	}
	if err := c.Do(ctx, "POST", "/_matrix/client/v3/createRoom", u.Token, body, &out); err != nil {
		return "", fmt.Errorf("createRoom: %w", err)
	}
	return out.RoomID, nil
}

// Join joins u to a room; via names servers to join through (federation).
func (c *Client) Join(ctx context.Context, u *User, roomID string, via ...string) error {
	p := "/_matrix/client/v3/join/" + url.PathEscape(roomID)
	if len(via) > 0 {
		q := url.Values{}
		for _, v := range via {
			q.Add("server_name", v)
			q.Add("via", v)
		}
		p += "?" + q.Encode()
	}
	if err := c.Do(ctx, "POST", p, u.Token, map[string]any{}, nil); err != nil {
		return fmt.Errorf("join %s: %w", roomID, err)
	}
	return nil
}

// Send sends one m.text message and returns its event ID.
func (c *Client) Send(ctx context.Context, u *User, roomID, text string) (string, error) {
	txn := strconv.FormatInt(time.Now().UnixNano(), 36) + "." + strconv.FormatInt(c.txn.Add(1), 10)
	p := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/send/m.room.message/" + txn
	body, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": text})
	var out struct {
		EventID string `json:"event_id"`
	}
	if err := c.Do(ctx, "PUT", p, u.Token, body, &out); err != nil {
		return "", err
	}
	if out.EventID == "" {
		return "", errors.New("send: no event_id in the answer")
	}
	return out.EventID, nil
}

// SyncResponse is the part of a /sync answer the scenarios read.
type SyncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events []struct {
					EventID string `json:"event_id"`
				} `json:"events"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

// quietFilter keeps presence out of long-polls: the scenarios measure
// room events, and every user coming online would otherwise wake everyone.
const quietFilter = `{"presence":{"not_types":["*"]},"account_data":{"not_types":["*"]},"room":{"timeline":{"limit":20},"ephemeral":{"not_types":["*"]},"account_data":{"not_types":["*"]}}}`

// Sync runs GET /sync. since empty is an initial sync; timeout is the
// long-poll time (0: answer at once).
func (c *Client) Sync(ctx context.Context, u *User, since string, timeout time.Duration, filter string) (*SyncResponse, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	q.Set("timeout", strconv.FormatInt(timeout.Milliseconds(), 10))
	q.Set("set_presence", "offline")
	if filter != "" {
		q.Set("filter", filter)
	}
	var out SyncResponse
	if err := c.Do(ctx, "GET", "/_matrix/client/v3/sync?"+q.Encode(), u.Token, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

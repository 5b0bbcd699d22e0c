// Package federation is the outbound side of the Server-Server API: server
// discovery (.well-known, SRV, IP literals; discovery.go), X-Matrix request
// signing and the header's parsing for the inbound side (xmatrix.go), typed
// calls to every federation endpoint Polder uses, and the durable
// per-destination queue that sends PDUs and EDUs in transactions with
// backoff (queue.go).
//
// It knows nothing of rooms: PDUs pass through it as raw JSON.
//
// Imported by room, api/federation and server.
package federation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/mxerr"
)

// Config configures the client.
type Config struct {
	ServerName string
	Key        *keys.SigningKey
	// RootCAs, if not nil, are trusted for federation TLS in addition to
	// the system roots (a private federation's CA, or Complement's).
	RootCAs *x509.CertPool
	// Resolver finds where a server name is served. nil uses DNS
	// (.well-known then SRV, server-server API "Resolving server names"):
	// a Discovery that trusts RootCAs for the well-known fetch.
	Resolver Resolver
	// Transport, if not nil, replaces the HTTP transport (tests). It gets
	// requests for https://<destination server name><path>, with Host the
	// server name, and routes them itself: Resolver and RootCAs are then
	// not used.
	Transport http.RoundTripper
	UserAgent string
	// Timeout bounds one request, answer included, unless the call has a
	// longer one of its own (send_join); 0 means 30 seconds. A shorter
	// deadline of the caller's context wins.
	Timeout time.Duration
	// MaxResponseBytes bounds an answer's body; 0 means 100 MiB
	// (send_join answers of large rooms get 500 MiB).
	MaxResponseBytes int64
	// LocationControl checks each connection made to fetch media from the
	// URL a remote's media answer redirects to (its Location part, and
	// further HTTP redirects), after DNS resolution: the server refuses
	// inner addresses there, as for URL previews, since any remote can
	// name any URL. nil checks nothing (tests).
	LocationControl func(network, address string, c syscall.RawConn) error
}

// Target is where to reach a server: the host:port to dial, and the
// Host header and TLS server name to present.
type Target struct {
	Addr       string // host:port to dial
	Host       string // Host header
	ServerName string // TLS SNI and certificate name
}

// Resolver resolves server names to targets.
type Resolver interface {
	Resolve(ctx context.Context, serverName string) (Target, error)
}

// RemoteError is an error answer of a remote server. Never pass it to a
// client as it came (see Relayable).
type RemoteError struct {
	Server  string
	Status  int
	ErrCode string `json:"errcode"`
	Message string `json:"error"`
	// RoomVersion is the room_version of an M_INCOMPATIBLE_ROOM_VERSION
	// answer.
	RoomVersion string `json:"room_version,omitempty"`
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%s answered %d %s: %s", e.Server, e.Status, e.ErrCode, e.Message)
}

// ErrUnreachable wraps errors that mean the server could not be reached or
// did not answer (DNS, connection, TLS, timeout).
var ErrUnreachable = errors.New("server unreachable")

// unreachableError is a failure to reach server; errors.Is finds
// ErrUnreachable in it.
type unreachableError struct {
	server string
	err    error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("%s unreachable: %v", e.server, e.err)
}
func (e *unreachableError) Unwrap() error        { return e.err }
func (e *unreachableError) Is(target error) bool { return target == ErrUnreachable }

// Relayable decides what a client may see of err, an error of a call to
// another server (STYLE.md §3: a remote's errcode is never relayed as is).
// It returns:
//   - for a *RemoteError whose errcode tells the client something true
//     about its request (M_FORBIDDEN, M_NOT_FOUND,
//     M_INCOMPATIBLE_ROOM_VERSION with its room_version,
//     M_UNSUPPORTED_ROOM_VERSION, M_UNABLE_TO_AUTHORISE_JOIN,
//     M_UNABLE_TO_GRANT_JOIN), an *mxerr.Error with that errcode and
//     status and a message naming the server (the remote's message, cut to
//     200 characters and stripped of control characters);
//   - for any other remote answer, 502 M_UNKNOWN naming the server;
//   - for ErrUnreachable, 502 M_UNKNOWN saying the server could not be
//     reached;
//   - for ErrInvalidServerName, 400 M_INVALID_PARAM;
//   - err unchanged otherwise (nil, the caller's context ending, a local
//     failure), for the API edge to treat as it does any error.
func Relayable(err error) error {
	if err == nil {
		return nil
	}
	var re *RemoteError
	if errors.As(err, &re) {
		switch re.ErrCode {
		case "M_FORBIDDEN", "M_NOT_FOUND", "M_INCOMPATIBLE_ROOM_VERSION", "M_UNSUPPORTED_ROOM_VERSION",
			"M_UNABLE_TO_AUTHORISE_JOIN", "M_UNABLE_TO_GRANT_JOIN":
			msg := cleanMessage(re.Message)
			if msg == "" {
				msg = http.StatusText(re.Status)
			}
			e := &mxerr.Error{Code: re.ErrCode, Msg: re.Server + ": " + msg}
			if re.ErrCode == "M_INCOMPATIBLE_ROOM_VERSION" && re.RoomVersion != "" {
				e = e.With("room_version", re.RoomVersion)
			}
			return e
		}
		return mxerr.Unknown("%s answered with an error (HTTP %d)", re.Server, re.Status).WithStatus(http.StatusBadGateway)
	}
	var ue *unreachableError
	if errors.As(err, &ue) {
		return mxerr.Unknown("%s could not be reached", ue.server).WithStatus(http.StatusBadGateway)
	}
	if errors.Is(err, ErrInvalidServerName) {
		return mxerr.InvalidParam("%v", err)
	}
	return err
}

// cleanMessage makes a remote's error message fit to show: no control
// characters, at most 200 characters.
func cleanMessage(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return clip(strings.TrimSpace(s), 200)
}

// Client makes signed requests to other servers. It is safe for
// concurrent use.
type Client struct {
	cfg      Config
	log      *slog.Logger
	resolver Resolver
	http     *http.Client // with cfg.Transport; nil otherwise

	mu         sync.Mutex
	transports map[Target]*http.Client
	location   *http.Client // followLocation's, made on first use
}

const (
	defaultTimeout          = 30 * time.Second
	defaultMaxResponseBytes = 100 << 20
	// sendJoinTimeout and sendJoinMaxBytes are for send_join, whose answer
	// holds a room's whole state and auth chain.
	sendJoinTimeout  = 5 * time.Minute
	sendJoinMaxBytes = 500 << 20
	// maxErrorBytes is how much of an error answer is read.
	maxErrorBytes = 64 << 10
)

// NewClient returns a client.
func NewClient(cfg Config, log *slog.Logger) *Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = defaultMaxResponseBytes
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "Polder"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, log: log, resolver: cfg.Resolver, transports: map[Target]*http.Client{}}
	if cfg.Transport != nil {
		c.http = &http.Client{Transport: cfg.Transport, CheckRedirect: noRedirects}
	} else if c.resolver == nil {
		c.resolver = NewDiscovery(DiscoveryConfig{RootCAs: cfg.RootCAs})
	}
	return c
}

// noRedirects stops redirects: a signature covers one URI, and federation
// endpoints do not redirect.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// ServerName is this server's name, the origin of its requests.
func (c *Client) ServerName() string { return c.cfg.ServerName }

// CloseIdleConnections closes idle connections to every server (at
// shutdown).
func (c *Client) CloseIdleConnections() {
	if c.http != nil {
		c.http.CloseIdleConnections()
	}
	c.mu.Lock()
	for _, hc := range c.transports {
		hc.CloseIdleConnections()
	}
	if c.location != nil {
		c.location.CloseIdleConnections()
	}
	c.mu.Unlock()
	if d, ok := c.resolver.(*Discovery); ok {
		d.CloseIdleConnections()
	}
}

// httpFor returns the HTTP client for destination and the host to put in
// the URL and the Host header. Each target gets a transport of its own,
// which dials its Addr and expects a certificate for its ServerName.
func (c *Client) httpFor(ctx context.Context, destination string) (*http.Client, string, error) {
	if c.http != nil {
		return c.http, destination, nil
	}
	t, err := c.resolver.Resolve(ctx, destination)
	if err != nil {
		return nil, "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	hc, ok := c.transports[t]
	if !ok {
		roots := c.cfg.RootCAs
		tr := &http.Transport{
			DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialTLS(ctx, t.Addr, t.ServerName, roots)
			},
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 0, // the request's context bounds it
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   8,
		}
		hc = &http.Client{Transport: tr, CheckRedirect: noRedirects}
		c.transports[t] = hc
	}
	return hc, t.Host, nil
}

// callOpts are what a typed call changes of Do's defaults.
type callOpts struct {
	timeout  time.Duration
	maxBytes int64
	unsigned bool // key endpoints need no X-Matrix
	raw      *[]byte
}

// Do sends a request signed with X-Matrix to destination and decodes a 2xx
// JSON answer into out (if not nil). path is the request target from
// /_matrix on, already escaped, with its query. body, if not nil, is
// marshalled as JSON (json.RawMessage and []byte pass as they are).
// Errors: *RemoteError for a non-2xx answer, ErrUnreachable (wrapped) when
// no answer came, ErrInvalidServerName (wrapped) for a malformed
// destination, the context's error (wrapped) when ctx ended.
func (c *Client) Do(ctx context.Context, destination, method, path string, body, out any) error {
	return c.do(ctx, destination, method, path, body, out, callOpts{})
}

func (c *Client) do(ctx context.Context, destination, method, path string, body, out any, o callOpts) error {
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("%s %s: path must start with /", method, path)
	}
	var content []byte
	switch b := body.(type) {
	case nil:
	case json.RawMessage:
		content = b
	case []byte:
		content = b
	default:
		var err error
		if content, err = json.Marshal(body); err != nil {
			return fmt.Errorf("%s %s: encode body: %w", method, path, err)
		}
	}
	timeout := max(c.cfg.Timeout, o.timeout)
	maxBytes := max(c.cfg.MaxResponseBytes, o.maxBytes)
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()

	hc, host, err := c.httpFor(ctx, destination)
	if err != nil {
		return c.failed(parent, destination, "resolve", err)
	}
	var rd io.Reader
	if content != nil {
		rd = bytes.NewReader(content)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+host+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Host = host
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if content != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if !o.unsigned {
		if c.cfg.Key == nil {
			return fmt.Errorf("%s %s: no signing key", method, path)
		}
		if err := SignRequest(req, content, c.cfg.ServerName, destination, c.cfg.Key); err != nil {
			return err
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return c.failed(parent, destination, method+" "+path, err)
	}
	defer resp.Body.Close()
	limit := maxBytes
	if resp.StatusCode/100 != 2 {
		limit = maxErrorBytes
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return c.failed(parent, destination, method+" "+path+": read answer", err)
	}
	c.log.Debug("federation request", "destination", destination, "method", method, "path", pathOnly(path),
		"status", resp.StatusCode, "duration", time.Since(start))
	if resp.StatusCode/100 != 2 {
		re := &RemoteError{}
		if json.Unmarshal(data, re) != nil || re.ErrCode == "" {
			re = &RemoteError{Message: http.StatusText(resp.StatusCode)}
		}
		re.Server, re.Status = destination, resp.StatusCode
		return re
	}
	if int64(len(data)) > maxBytes {
		return fmt.Errorf("%s %s of %s: answer is larger than %d bytes", method, pathOnly(path), destination, maxBytes)
	}
	if o.raw != nil {
		*o.raw = data
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s of %s: decode answer: %w", method, pathOnly(path), destination, err)
		}
	}
	return nil
}

// failed wraps a failure to get an answer: the caller's context error as
// it is, a malformed name as it is, anything else as ErrUnreachable.
func (c *Client) failed(parent context.Context, destination, what string, err error) error {
	if parent.Err() != nil {
		return fmt.Errorf("%s %s: %w", what, destination, parent.Err())
	}
	if errors.Is(err, ErrInvalidServerName) {
		return err
	}
	return &unreachableError{server: destination, err: fmt.Errorf("%s: %w", what, err)}
}

// pathOnly drops the query of a path, for logs and errors.
func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

// The paths of the federation API (server-server API; spec
// data/api/server-server/*.yaml).
const (
	v1 = "/_matrix/federation/v1"
	v2 = "/_matrix/federation/v2"
)

func esc(s string) string { return url.PathEscape(s) }

func versionsQuery(versions []id.RoomVersion) string {
	if len(versions) == 0 {
		return ""
	}
	q := url.Values{}
	for _, v := range versions {
		q.Add("ver", string(v))
	}
	return "?" + q.Encode()
}

// MakeJoin sends GET /_matrix/federation/v1/make_join/{roomId}/{userId}
// with the room versions this server supports.
func (c *Client) MakeJoin(ctx context.Context, dest string, roomID id.RoomID, userID id.UserID, versions []id.RoomVersion) (*MakeResponse, error) {
	var out MakeResponse
	err := c.Do(ctx, dest, http.MethodGet, v1+"/make_join/"+esc(string(roomID))+"/"+esc(string(userID))+versionsQuery(versions), nil, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// SendJoin sends PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}
// and returns the room's full state (members included). It may take up to
// 5 minutes and answer up to 500 MiB.
func (c *Client) SendJoin(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID, event json.RawMessage) (*SendJoinResponse, error) {
	var out SendJoinResponse
	err := c.do(ctx, dest, http.MethodPut, v2+"/send_join/"+esc(string(roomID))+"/"+esc(string(eventID)), event, &out,
		callOpts{timeout: sendJoinTimeout, maxBytes: sendJoinMaxBytes})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// MakeLeave sends GET /_matrix/federation/v1/make_leave/{roomId}/{userId}.
func (c *Client) MakeLeave(ctx context.Context, dest string, roomID id.RoomID, userID id.UserID) (*MakeResponse, error) {
	var out MakeResponse
	if err := c.Do(ctx, dest, http.MethodGet, v1+"/make_leave/"+esc(string(roomID))+"/"+esc(string(userID)), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SendLeave sends PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}.
func (c *Client) SendLeave(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID, event json.RawMessage) error {
	return c.Do(ctx, dest, http.MethodPut, v2+"/send_leave/"+esc(string(roomID))+"/"+esc(string(eventID)), event, nil)
}

// MakeKnock sends GET /_matrix/federation/v1/make_knock/{roomId}/{userId}
// with the room versions this server supports.
func (c *Client) MakeKnock(ctx context.Context, dest string, roomID id.RoomID, userID id.UserID, versions []id.RoomVersion) (*MakeResponse, error) {
	var out MakeResponse
	err := c.Do(ctx, dest, http.MethodGet, v1+"/make_knock/"+esc(string(roomID))+"/"+esc(string(userID))+versionsQuery(versions), nil, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// SendKnock sends PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}.
func (c *Client) SendKnock(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID, event json.RawMessage) (*SendKnockResponse, error) {
	var out SendKnockResponse
	if err := c.Do(ctx, dest, http.MethodPut, v1+"/send_knock/"+esc(string(roomID))+"/"+esc(string(eventID)), event, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Invite sends PUT /_matrix/federation/v2/invite and returns the event
// signed by the invitee's server.
func (c *Client) Invite(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID, req InviteRequest) (json.RawMessage, error) {
	var out InviteResponse
	if err := c.Do(ctx, dest, http.MethodPut, v2+"/invite/"+esc(string(roomID))+"/"+esc(string(eventID)), req, &out); err != nil {
		return nil, err
	}
	if len(out.Event) == 0 {
		return nil, fmt.Errorf("invite answer of %s has no event", dest)
	}
	return out.Event, nil
}

// SendTransaction sends PUT /_matrix/federation/v1/send/{txnId}.
func (c *Client) SendTransaction(ctx context.Context, dest, txnID string, txn Transaction) (*TransactionResponse, error) {
	if txn.PDUs == nil {
		txn.PDUs = []json.RawMessage{} // required, even empty
	}
	var out TransactionResponse
	if err := c.Do(ctx, dest, http.MethodPut, v1+"/send/"+esc(txnID), txn, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Event fetches one event (GET /_matrix/federation/v1/event/{eventId}).
func (c *Client) Event(ctx context.Context, dest string, eventID id.EventID) (json.RawMessage, error) {
	var out EventsResponse
	if err := c.Do(ctx, dest, http.MethodGet, v1+"/event/"+esc(string(eventID)), nil, &out); err != nil {
		return nil, err
	}
	if len(out.PDUs) != 1 {
		return nil, fmt.Errorf("event %s from %s: answer holds %d PDUs, want 1", eventID, dest, len(out.PDUs))
	}
	return out.PDUs[0], nil
}

// State sends GET /_matrix/federation/v1/state/{roomId}?event_id=: the
// state before the event, and its auth chain.
func (c *Client) State(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID) (*StateResponse, error) {
	var out StateResponse
	q := url.Values{"event_id": {string(eventID)}}
	if err := c.Do(ctx, dest, http.MethodGet, v1+"/state/"+esc(string(roomID))+"?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StateIDs sends GET /_matrix/federation/v1/state_ids/{roomId}?event_id=.
func (c *Client) StateIDs(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID) (*StateIDsResponse, error) {
	var out StateIDsResponse
	q := url.Values{"event_id": {string(eventID)}}
	if err := c.Do(ctx, dest, http.MethodGet, v1+"/state_ids/"+esc(string(roomID))+"?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TimestampToEvent sends GET
// /_matrix/federation/v1/timestamp_to_event/{roomId}: the event of the
// room closest to ts (ms) before it (backwards) or after it, as dest sees
// it.
func (c *Client) TimestampToEvent(ctx context.Context, dest string, roomID id.RoomID, ts int64, backwards bool) (*TimestampToEventResponse, error) {
	dir := "f"
	if backwards {
		dir = "b"
	}
	var out TimestampToEventResponse
	path := v1 + "/timestamp_to_event/" + esc(string(roomID)) + "?ts=" + strconv.FormatInt(ts, 10) + "&dir=" + dir
	if err := c.Do(ctx, dest, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	if out.EventID == "" {
		return nil, fmt.Errorf("timestamp_to_event from %s: no event_id", dest)
	}
	return &out, nil
}

// EventAuth sends GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}.
func (c *Client) EventAuth(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID) (*EventAuthResponse, error) {
	var out EventAuthResponse
	if err := c.Do(ctx, dest, http.MethodGet, v1+"/event_auth/"+esc(string(roomID))+"/"+esc(string(eventID)), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Backfill sends GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=.
func (c *Client) Backfill(ctx context.Context, dest string, roomID id.RoomID, from []id.EventID, limit int) (*EventsResponse, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	for _, e := range from {
		q.Add("v", string(e))
	}
	var out EventsResponse
	if err := c.Do(ctx, dest, http.MethodGet, v1+"/backfill/"+esc(string(roomID))+"?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetMissingEvents sends POST
// /_matrix/federation/v1/get_missing_events/{roomId}.
func (c *Client) GetMissingEvents(ctx context.Context, dest string, roomID id.RoomID, req MissingEventsRequest) (*MissingEventsResponse, error) {
	if req.EarliestEvents == nil {
		req.EarliestEvents = []id.EventID{} // required, even empty
	}
	var out MissingEventsResponse
	if err := c.Do(ctx, dest, http.MethodPost, v1+"/get_missing_events/"+esc(string(roomID)), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// QueryProfile asks for a user's profile; field "" asks for all of it
// (GET /_matrix/federation/v1/query/profile).
func (c *Client) QueryProfile(ctx context.Context, dest string, userID id.UserID, field string) (*ProfileResponse, error) {
	q := url.Values{"user_id": {string(userID)}}
	if field != "" {
		q.Set("field", field)
	}
	var out ProfileResponse
	if err := c.Do(ctx, dest, http.MethodGet, v1+"/query/profile?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// QueryDirectory resolves a room alias on its server (GET
// /_matrix/federation/v1/query/directory).
func (c *Client) QueryDirectory(ctx context.Context, dest string, alias id.RoomAlias) (*DirectoryResponse, error) {
	q := url.Values{"room_alias": {string(alias)}}
	var out DirectoryResponse
	if err := c.Do(ctx, dest, http.MethodGet, v1+"/query/directory?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PublicRooms returns the remote directory's raw answer (the client API's
// format, relayed to clients). It uses POST
// /_matrix/federation/v1/publicRooms, which carries a filter.
func (c *Client) PublicRooms(ctx context.Context, dest string, req PublicRoomsRequest) (json.RawMessage, error) {
	var out json.RawMessage
	if err := c.Do(ctx, dest, http.MethodPost, v1+"/publicRooms", req, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// UserDevices sends GET /_matrix/federation/v1/user/devices/{userId}.
func (c *Client) UserDevices(ctx context.Context, dest string, userID id.UserID) (*UserDevicesResponse, error) {
	var out UserDevicesResponse
	if err := c.Do(ctx, dest, http.MethodGet, v1+"/user/devices/"+esc(string(userID)), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ServerKeys returns the raw body of GET /_matrix/key/v2/server of server:
// its signed keys, for keys.Cache to check (the request is not signed).
func (c *Client) ServerKeys(ctx context.Context, server string) ([]byte, error) {
	var raw []byte
	if err := c.do(ctx, server, http.MethodGet, "/_matrix/key/v2/server", nil, nil, callOpts{unsigned: true, raw: &raw}); err != nil {
		return nil, err
	}
	if !json.Valid(raw) {
		return nil, fmt.Errorf("keys of %s: answer is not JSON", server)
	}
	return raw, nil
}

// NotaryQuery asks notary for other servers' keys (POST
// /_matrix/key/v2/query): want maps each server to the key IDs wanted
// (none: all its keys). It returns the server_keys entries as they came,
// each signed by its server and by the notary; keys.Cache checks the
// servers' signatures, and TLS authenticates the notary.
func (c *Client) NotaryQuery(ctx context.Context, notary string, want map[string][]id.KeyID) ([][]byte, error) {
	type criteria struct {
		MinimumValidUntilTS int64 `json:"minimum_valid_until_ts,omitempty"`
	}
	req := struct {
		ServerKeys map[string]map[id.KeyID]criteria `json:"server_keys"`
	}{ServerKeys: make(map[string]map[id.KeyID]criteria, len(want))}
	for server, ids := range want {
		m := make(map[id.KeyID]criteria, len(ids))
		for _, k := range ids {
			m[k] = criteria{}
		}
		req.ServerKeys[server] = m
	}
	var out struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	if err := c.do(ctx, notary, http.MethodPost, "/_matrix/key/v2/query", req, &out, callOpts{unsigned: true}); err != nil {
		return nil, err
	}
	res := make([][]byte, len(out.ServerKeys))
	for i, r := range out.ServerKeys {
		res[i] = r
	}
	return res, nil
}

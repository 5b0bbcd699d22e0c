// Package federation is the outbound side of the Server-Server API: server
// discovery (.well-known, SRV, IP literals), X-Matrix request signing and
// the header's parsing for the inbound side, typed calls to every
// federation endpoint Polder uses, and the durable per-destination queue
// that sends PDUs and EDUs in transactions with backoff (queue.go).
//
// It knows nothing of rooms: PDUs pass through it as raw JSON.
//
// Imported by room, api/federation and server.
package federation

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/keys"
)

// Config configures the client.
type Config struct {
	ServerName string
	Key        *keys.SigningKey
	// RootCAs, if not nil, are trusted for federation TLS in addition to
	// the system roots (a private federation's CA, or Complement's).
	RootCAs *x509.CertPool
	// Resolver finds where a server name is served. nil uses DNS
	// (.well-known then SRV, server-server API "Resolving server names").
	Resolver Resolver
	// Transport, if not nil, replaces the HTTP transport (tests).
	Transport http.RoundTripper
	UserAgent string
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
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%s answered %d %s: %s", e.Server, e.Status, e.ErrCode, e.Message)
}

// ErrUnreachable wraps errors that mean the server could not be reached or
// did not answer (DNS, connection, TLS, timeout).
var ErrUnreachable = errors.New("server unreachable")

// Client makes signed requests to other servers. It is safe for
// concurrent use.
type Client struct {
	cfg  Config
	log  *slog.Logger
	http *http.Client
}

// NewClient returns a client.
func NewClient(cfg Config, log *slog.Logger) *Client {
	return &Client{cfg: cfg, log: log, http: &http.Client{}}
}

// ServerName is this server's name, the origin of its requests.
func (c *Client) ServerName() string { return c.cfg.ServerName }

// Do sends a request signed with X-Matrix to destination and decodes a 2xx
// JSON answer into out (if not nil). body, if not nil, is marshalled as
// JSON (json.RawMessage passes as is). Errors: *RemoteError for a non-2xx
// answer, ErrUnreachable (wrapped) when no answer came.
func (c *Client) Do(ctx context.Context, destination, method, path string, body, out any) error {
	return errors.New("federation: Do not implemented")
}

// The typed calls. Each returns what Do returns.

func (c *Client) MakeJoin(ctx context.Context, dest string, roomID id.RoomID, userID id.UserID, versions []id.RoomVersion) (*MakeResponse, error) {
	return nil, errors.New("not implemented")
}

func (c *Client) SendJoin(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID, event json.RawMessage) (*SendJoinResponse, error) {
	return nil, errors.New("not implemented")
}

func (c *Client) MakeLeave(ctx context.Context, dest string, roomID id.RoomID, userID id.UserID) (*MakeResponse, error) {
	return nil, errors.New("not implemented")
}

func (c *Client) SendLeave(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID, event json.RawMessage) error {
	return errors.New("not implemented")
}

func (c *Client) MakeKnock(ctx context.Context, dest string, roomID id.RoomID, userID id.UserID, versions []id.RoomVersion) (*MakeResponse, error) {
	return nil, errors.New("not implemented")
}

func (c *Client) SendKnock(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID, event json.RawMessage) (*SendKnockResponse, error) {
	return nil, errors.New("not implemented")
}

// Invite sends PUT /_matrix/federation/v2/invite and returns the event
// signed by the invitee's server.
func (c *Client) Invite(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID, req InviteRequest) (json.RawMessage, error) {
	return nil, errors.New("not implemented")
}

func (c *Client) SendTransaction(ctx context.Context, dest, txnID string, txn Transaction) (*TransactionResponse, error) {
	return nil, errors.New("not implemented")
}

// Event fetches one event (GET /_matrix/federation/v1/event/{eventId}).
func (c *Client) Event(ctx context.Context, dest string, eventID id.EventID) (json.RawMessage, error) {
	return nil, errors.New("not implemented")
}

func (c *Client) State(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID) (*StateResponse, error) {
	return nil, errors.New("not implemented")
}

func (c *Client) StateIDs(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID) (*StateIDsResponse, error) {
	return nil, errors.New("not implemented")
}

func (c *Client) EventAuth(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID) (*EventAuthResponse, error) {
	return nil, errors.New("not implemented")
}

func (c *Client) Backfill(ctx context.Context, dest string, roomID id.RoomID, from []id.EventID, limit int) (*EventsResponse, error) {
	return nil, errors.New("not implemented")
}

func (c *Client) GetMissingEvents(ctx context.Context, dest string, roomID id.RoomID, req MissingEventsRequest) (*MissingEventsResponse, error) {
	return nil, errors.New("not implemented")
}

// QueryProfile asks for a user's profile; field "" asks for all of it.
func (c *Client) QueryProfile(ctx context.Context, dest string, userID id.UserID, field string) (*ProfileResponse, error) {
	return nil, errors.New("not implemented")
}

func (c *Client) QueryDirectory(ctx context.Context, dest string, alias id.RoomAlias) (*DirectoryResponse, error) {
	return nil, errors.New("not implemented")
}

// PublicRooms returns the remote directory's raw answer (the client API's
// format, relayed to clients).
func (c *Client) PublicRooms(ctx context.Context, dest string, req PublicRoomsRequest) (json.RawMessage, error) {
	return nil, errors.New("not implemented")
}

func (c *Client) UserDevices(ctx context.Context, dest string, userID id.UserID) (*UserDevicesResponse, error) {
	return nil, errors.New("not implemented")
}

// Package e2ee carries what end-to-end encryption needs of the server
// (client-server API, "End-to-End Encryption"; server-server API, "Device
// Management" and "End-to-End Encryption"): device keys, one-time and
// fallback keys, cross-signing keys and signatures, device list changes
// (reported in /sync and sent to other servers), send-to-device messages,
// server-side key backup and dehydrated devices (MSC3814).
//
// The server never reads what it carries: keys and messages are stored as
// the clients sent them and handed out unchanged. It checks only what the
// spec asks of it (the owner of a key, signatures on uploaded keys, sizes).
//
// Files: keys.go (upload, query, claim, changes), keys_crosssign.go
// (cross-signing keys and signatures), keys_json.go (checks of signed key
// objects), devicelists.go (the device list stream: sync's device_lists,
// outbound EDUs), remote.go, remote_query.go and remote_resync.go (users
// of other servers: the device list cache kept by inbound EDUs and
// resyncs, queries and claims), todevice.go (send-to-device), backup.go
// (key backup), dehydrated.go (MSC3814).
//
// Imported by api/client, api/federation and server; it reads and writes
// through store and wakes /sync through notify.
package e2ee

import (
	"context"
	"encoding/json"
	"log/slog"

	"golang.org/x/sync/errgroup"
	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
	"polder.dev/polder/internal/notify"
	"polder.dev/polder/internal/store"
)

// Remote is what e2ee asks of other servers (federation.Client).
type Remote interface {
	UserDevices(ctx context.Context, dest string, userID id.UserID) (*federation.UserDevicesResponse, error)
	UserKeysQuery(ctx context.Context, dest string, req federation.UserKeysQueryRequest) (*federation.UserKeysQueryResponse, error)
	UserKeysClaim(ctx context.Context, dest string, req federation.UserKeysClaimRequest) (*federation.UserKeysClaimResponse, error)
}

var _ Remote = (*federation.Client)(nil)

// Queue sends EDUs to other servers (federation.Queue). EDUs sent with an
// empty coalesce key are durable and delivered in order.
type Queue interface {
	SendEDU(ctx context.Context, destinations []string, edu federation.EDU, coalesceKey string) error
}

var _ Queue = (*federation.Queue)(nil)

// Config configures the service.
type Config struct {
	ServerName string
	// Remote and Queue reach other servers; nil when federation is off
	// (users of other servers then have no keys, and nothing is sent).
	Remote Remote
	Queue  Queue
	// SoleWriter says that no other process writes the database (SQLite):
	// /sync's to-device and key-count reads may then be answered from what
	// this process wrote (positions.go).
	SoleWriter bool
}

// Service is the E2EE service.
type Service struct {
	cfg Config
	db  *store.DB
	n   *notify.Notifier
	log *slog.Logger

	// Per-part state, each declared in its part's file.
	remote remoteState // remote.go
	pos    positions   // positions.go
	joins  joinQueue   // joins.go
}

// New returns the service.
func New(cfg Config, db *store.DB, n *notify.Notifier, log *slog.Logger) *Service {
	s := &Service{cfg: cfg, db: db, n: n, log: log}
	s.remote = newRemoteState()
	s.joins = newJoinQueue()
	return s
}

// Run runs the background work (remote device list resyncs, device lists
// sent on joins) until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.runRemote(gctx) })
	g.Go(func() error { return s.runJoins(gctx) })
	return g.Wait()
}

// isLocal reports whether user belongs to this server.
func (s *Service) isLocal(user id.UserID) bool {
	return user.Homeserver() == s.cfg.ServerName
}

// QueryResponse is the answer to POST /_matrix/client/v3/keys/query.
type QueryResponse struct {
	DeviceKeys      map[id.UserID]map[id.DeviceID]json.RawMessage `json:"device_keys"`
	MasterKeys      map[id.UserID]json.RawMessage                 `json:"master_keys"`
	SelfSigningKeys map[id.UserID]json.RawMessage                 `json:"self_signing_keys"`
	UserSigningKeys map[id.UserID]json.RawMessage                 `json:"user_signing_keys"`
	// Failures maps a server that could not be reached to an error
	// object.
	Failures map[string]json.RawMessage `json:"failures"`
}

// ClaimResponse is the answer to POST /_matrix/client/v3/keys/claim.
type ClaimResponse struct {
	OneTimeKeys map[id.UserID]map[id.DeviceID]map[string]json.RawMessage `json:"one_time_keys"`
	Failures    map[string]json.RawMessage                               `json:"failures"`
}

// DevicesDeleted removes what e2ee keeps of deleted devices of a local
// user (keys, pending to-device messages) and reports the change to the
// user's rooms and their servers. devices nil means every device the user
// had. The user service calls it after the deletion committed.
func (s *Service) DevicesDeleted(ctx context.Context, user id.UserID, devices []id.DeviceID) error {
	if err := s.toDeviceDevicesDeleted(ctx, user, devices); err != nil {
		return err
	}
	return s.keysDevicesDeleted(ctx, user, devices)
}

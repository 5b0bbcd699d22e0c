package e2ee

// STUB (helper B replaces this file): users of other servers.

import (
	"context"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/federation"
)

type remoteState struct{}

func newRemoteState() remoteState { return remoteState{} }

// runRemote runs the resyncs of remote device lists until ctx ends.
func (s *Service) runRemote(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// queryRemote adds to out the keys of the users of other servers in want
// (empty device list: all devices), and to out.Failures the servers that
// could not be asked before ctx ended.
func (s *Service) queryRemote(ctx context.Context, want map[id.UserID][]id.DeviceID, out *QueryResponse) {
}

// claimRemote adds to out one-time keys claimed from other servers for
// the users in want, and to out.Failures the servers that could not be
// asked.
func (s *Service) claimRemote(ctx context.Context, want map[id.UserID]map[id.DeviceID]string, out *ClaimResponse) {
}

// ReceiveDeviceListUpdate applies an m.device_list_update EDU from origin.
func (s *Service) ReceiveDeviceListUpdate(ctx context.Context, origin string, u federation.DeviceListUpdate) error {
	return nil
}

// ReceiveSigningKeyUpdate applies an m.signing_key_update EDU from origin.
func (s *Service) ReceiveSigningKeyUpdate(ctx context.Context, origin string, u federation.SigningKeyUpdate) error {
	return nil
}

//go:build goolm

package mautrix_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
)

// peer is one mautrix-go device: a mautrix.Client whose sync loop feeds an
// OlmMachine, the way crypto/cryptohelper wires it (cryptohelper itself is
// not used: it links mattn/go-sqlite3, which needs cgo, for its managed
// store; here the crypto and state stores are in memory).
//
// Everything E2EE reaches the machine through /sync: device_lists,
// device_one_time_keys_count and to_device events go to
// OlmMachine.ProcessSyncResponse, member events to HandleMemberEvent, and
// m.room.encrypted timeline events are decrypted and put on msgs.
type peer struct {
	t      *testing.T
	name   string
	cli    *mautrix.Client
	mach   *crypto.OlmMachine
	syncer *mautrix.DefaultSyncer
	hs     *hstest.Client // the same session, for raw requests

	msgs chan *event.Event // decrypted room messages, in sync order
	errs chan error        // decryption failures

	// plaintext holds m.room.message events that arrived unencrypted.
	mu        sync.Mutex
	plaintext []*event.Event
	otkCounts []mautrix.OTKCount // device_one_time_keys_count of every sync

	cancel context.CancelFunc
	done   chan error
	tr     *http.Transport
}

// logWriter forwards zerolog output to t.Log until the test ends (a log
// line after that would panic the test binary), and keeps the warnings and
// errors that are not on benignWarnings.
type logWriter struct {
	t    *testing.T
	name string

	mu       sync.Mutex
	closed   bool
	warnings []string
}

// benignWarnings are the messages of mautrix warnings that a working
// exchange logs: the first pass of sharing a room key before one-time keys
// are claimed, and the long-poll /sync cancelled when a peer stops.
var benignWarnings = []string{
	" WRN Didn't find olm session to encrypt group session ",
	" WRN Request canceled ",
}

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return len(p), nil
	}
	w.t.Logf("[%s] %s", w.name, line)
	if strings.Contains(line, " WRN ") || strings.Contains(line, " ERR ") {
		benign := false
		for _, b := range benignWarnings {
			benign = benign || strings.Contains(line, b)
		}
		if !benign {
			w.warnings = append(w.warnings, line)
		}
	}
	return len(p), nil
}

// unexpected returns the warnings and errors mautrix logged that are not
// benign: a duplicate to-device message, a failed key upload or device
// list fetch, an OTK count for someone else, and so on.
func (w *logWriter) unexpected() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.warnings
}

func (w *logWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// logLevel is the level of mautrix's own log, shown with a failing test's
// output: POLDER_TEST_MAUTRIX_LOG=debug (or trace) for more.
func logLevel() zerolog.Level {
	if l, err := zerolog.ParseLevel(os.Getenv("POLDER_TEST_MAUTRIX_LOG")); err == nil && l != zerolog.NoLevel {
		return l
	}
	return zerolog.InfoLevel
}

// newPeer makes a mautrix-go device for the session c, uploads its device
// keys and one-time keys (POST /keys/upload), and starts its sync loop. It
// stops when the test ends.
func newPeer(t *testing.T, name string, c *hstest.Client) *peer {
	t.Helper()
	ctx := context.Background()
	cli, err := mautrix.NewClient(c.HS.URL(), id.UserID(c.UserID), c.AccessToken)
	if err != nil {
		t.Fatalf("%s: NewClient: %v", name, err)
	}
	cli.DeviceID = id.DeviceID(c.DeviceID)
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 10 * time.Second}
	cli.Client = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	lw := &logWriter{t: t, name: name}
	log := zerolog.New(zerolog.ConsoleWriter{Out: lw, NoColor: true, TimeFormat: "15:04:05.000"}).
		Level(logLevel()).With().Timestamp().Logger()
	cli.Log = log
	stateStore := mautrix.NewMemoryStateStore()
	cli.StateStore = stateStore
	cli.Store = mautrix.NewMemorySyncStore()

	mach := crypto.NewOlmMachine(cli, &log, crypto.NewMemoryStore(nil), stateStore.(crypto.StateStore))
	if err := mach.Load(ctx); err != nil {
		t.Fatalf("%s: OlmMachine.Load: %v", name, err)
	}
	p := &peer{
		t: t, name: name, cli: cli, mach: mach, hs: c,
		syncer: cli.Syncer.(*mautrix.DefaultSyncer),
		msgs:   make(chan *event.Event, 64),
		errs:   make(chan error, 64),
		tr:     tr,
	}
	cli.Crypto = p
	if err := mach.ShareKeys(ctx, -1); err != nil {
		t.Fatalf("%s: upload device and one-time keys (ShareKeys): %v", name, err)
	}
	// Track its own user's devices from the start, as Element does on
	// login: mautrix only learns of other users' devices when it shares a
	// session with them, and of its own user's others only from
	// device_lists.changed, which an initial /sync does not have.
	if _, err := mach.FetchKeys(ctx, []id.UserID{cli.UserID}, true); err != nil {
		t.Fatalf("%s: /keys/query for its own user: %v", name, err)
	}

	p.syncer.OnSync(func(ctx context.Context, resp *mautrix.RespSync, since string) bool {
		p.mu.Lock()
		p.otkCounts = append(p.otkCounts, resp.DeviceOTKCount)
		p.mu.Unlock()
		return true
	})
	p.syncer.OnSync(mach.ProcessSyncResponse)
	p.syncer.OnEvent(cli.StateStoreSyncHandler)
	p.syncer.OnEventType(event.StateMember, mach.HandleMemberEvent)
	p.syncer.OnEventType(event.StateHistoryVisibility, mach.HandleHistoryVisibility)
	p.syncer.OnEventType(event.EventEncrypted, p.handleEncrypted)
	p.syncer.OnEventType(event.EventMessage, func(ctx context.Context, evt *event.Event) {
		if evt.Mautrix.EventSource&event.SourceDecrypted != 0 {
			p.msgs <- evt
			return
		}
		p.mu.Lock()
		p.plaintext = append(p.plaintext, evt)
		p.mu.Unlock()
	})

	sctx, cancel := context.WithCancel(ctx)
	p.cancel, p.done = cancel, make(chan error, 1)
	go func() { p.done <- cli.SyncWithContext(sctx) }()
	t.Cleanup(func() {
		p.stop()
		if w := lw.unexpected(); len(w) > 0 {
			t.Errorf("%s: mautrix logged warnings or errors:\n%s", name, strings.Join(w, "\n"))
		}
		lw.close()
	})
	return p
}

// stop ends the sync loop and closes the peer's connections.
func (p *peer) stop() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	select {
	case err := <-p.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			p.t.Errorf("%s: sync loop ended with %v", p.name, err)
		}
	case <-time.After(15 * time.Second):
		p.t.Errorf("%s: sync loop did not stop within 15s", p.name)
	}
	p.tr.CloseIdleConnections()
}

// handleEncrypted decrypts an m.room.encrypted event and dispatches the
// plaintext event (an m.room.message lands on msgs). If the room key has
// not arrived yet (its to-device message may come in a later sync), it
// waits for it.
func (p *peer) handleEncrypted(ctx context.Context, evt *event.Event) {
	dec, err := p.mach.DecryptMegolmEvent(ctx, evt)
	if errors.Is(err, crypto.ErrNoSessionFound) {
		content := evt.Content.AsEncrypted()
		go func() {
			if !p.mach.WaitForSession(context.Background(), evt.RoomID, content.SenderKey, content.SessionID, 20*time.Second) {
				p.errs <- fmt.Errorf("%s: event %s from %s (session %s): the room key never arrived in /sync's to_device", p.name, evt.ID, evt.Sender, content.SessionID)
				return
			}
			dec, err := p.mach.DecryptMegolmEvent(context.Background(), evt)
			if err != nil {
				p.errs <- fmt.Errorf("%s: decrypt %s from %s after its key arrived: %w", p.name, evt.ID, evt.Sender, err)
				return
			}
			dec.Mautrix.EventSource |= event.SourceDecrypted
			p.syncer.Dispatch(context.Background(), dec)
		}()
		return
	}
	if err != nil {
		p.errs <- fmt.Errorf("%s: decrypt %s from %s: %w", p.name, evt.ID, evt.Sender, err)
		return
	}
	dec.Mautrix.EventSource |= event.SourceDecrypted
	p.syncer.Dispatch(ctx, dec)
}

// The mautrix.CryptoHelper methods: with cli.Crypto set, SendMessageEvent
// encrypts in rooms the state store knows to be encrypted.

func (p *peer) Init(context.Context) error { return nil }

// Encrypt encrypts with the room's outbound Megolm session, sharing a new
// one with the joined and invited members' devices first if there is none
// (what cryptohelper.EncryptWithStateKey does): /keys/query for their
// devices, /keys/claim for one-time keys, Olm-encrypted m.room_key
// messages through /sendToDevice.
func (p *peer) Encrypt(ctx context.Context, roomID id.RoomID, evtType event.Type, content any) (*event.EncryptedEventContent, error) {
	enc, err := p.mach.EncryptMegolmEvent(ctx, roomID, evtType, content)
	if err == nil {
		return enc, nil
	}
	if !errors.Is(err, crypto.ErrSessionExpired) && !errors.Is(err, crypto.ErrNoGroupSession) && !errors.Is(err, crypto.ErrSessionNotShared) {
		return nil, err
	}
	users, err := p.cli.StateStore.GetRoomJoinedOrInvitedMembers(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("room members: %w", err)
	}
	if err := p.mach.ShareGroupSession(ctx, roomID, users); err != nil {
		return nil, fmt.Errorf("share group session: %w", err)
	}
	return p.mach.EncryptMegolmEvent(ctx, roomID, evtType, content)
}

func (p *peer) Decrypt(ctx context.Context, evt *event.Event) (*event.Event, error) {
	return p.mach.DecryptMegolmEvent(ctx, evt)
}

func (p *peer) WaitForSession(ctx context.Context, roomID id.RoomID, senderKey id.SenderKey, sessionID id.SessionID, timeout time.Duration) bool {
	return p.mach.WaitForSession(ctx, roomID, senderKey, sessionID, timeout)
}

func (p *peer) RequestSession(context.Context, id.RoomID, id.SenderKey, id.SessionID, id.UserID, id.DeviceID) {
}

var _ mautrix.CryptoHelper = (*peer)(nil)

// userID and deviceID are the peer's.
func (p *peer) userID() id.UserID     { return p.cli.UserID }
func (p *peer) deviceID() id.DeviceID { return p.cli.DeviceID }

// send sends an m.text message, encrypted by the client (SendText goes
// through Encrypt above), and fails the test if the request fails.
func (p *peer) send(roomID id.RoomID, body string) id.EventID {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := p.cli.SendText(ctx, roomID, body)
	if err != nil {
		p.t.Fatalf("%s: send %q: %v", p.name, body, err)
	}
	return resp.EventID
}

// expectMessage waits for the next decrypted message in roomID with the
// given body from sender, failing on a decryption error or a timeout.
func (p *peer) expectMessage(roomID id.RoomID, sender id.UserID, eventID id.EventID, body string) *event.Event {
	p.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case evt := <-p.msgs:
			if evt.RoomID != roomID || evt.ID != eventID {
				continue // an earlier one, or one it sent itself
			}
			if evt.Sender != sender {
				p.t.Fatalf("%s: %s came from %s, want %s", p.name, evt.ID, evt.Sender, sender)
			}
			msg := evt.Content.AsMessage()
			if msg.Body != body || msg.MsgType != event.MsgText {
				p.t.Fatalf("%s: %s decrypted to %s %q, want m.text %q", p.name, evt.ID, msg.MsgType, msg.Body, body)
			}
			return evt
		case err := <-p.errs:
			p.t.Fatalf("%s: %v", p.name, err)
		case <-deadline:
			p.t.Fatalf("%s: no decrypted message %s (%q from %s) within 30s", p.name, eventID, body, sender)
		}
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// membership is what the peer's state store says of user in roomID.
func (p *peer) membership(roomID id.RoomID, user id.UserID) event.Membership {
	m, _ := p.cli.StateStore.TryGetMember(context.Background(), roomID, user)
	if m == nil {
		return ""
	}
	return m.Membership
}

// encrypted says whether the peer knows roomID to be encrypted.
func (p *peer) encrypted(roomID id.RoomID) bool {
	ok, _ := p.cli.StateStore.IsEncrypted(context.Background(), roomID)
	return ok
}

// createEncryptedRoom creates a private room with m.room.encryption in its
// initial state, inviting invitees.
func (p *peer) createEncryptedRoom(invitees ...id.UserID) id.RoomID {
	p.t.Helper()
	resp, err := p.cli.CreateRoom(context.Background(), &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		Invite: invitees,
		InitialState: []*event.Event{{
			Type:     event.StateEncryption,
			StateKey: new(string),
			Content: event.Content{Parsed: &event.EncryptionEventContent{
				Algorithm: id.AlgorithmMegolmV1,
			}},
		}},
	})
	if err != nil {
		p.t.Fatalf("%s: createRoom: %v", p.name, err)
	}
	return resp.RoomID
}

// join waits for the invite to roomID to arrive through sync and joins.
func (p *peer) join(roomID id.RoomID) {
	p.t.Helper()
	waitFor(p.t, 15*time.Second, p.name+"'s invite to "+roomID.String()+" in /sync", func() bool {
		return p.membership(roomID, p.userID()) == event.MembershipInvite
	})
	if _, err := p.cli.JoinRoomByID(context.Background(), roomID); err != nil {
		p.t.Fatalf("%s: join %s: %v", p.name, roomID, err)
	}
	waitFor(p.t, 15*time.Second, p.name+" seeing the encrypted room "+roomID.String()+" in /sync", func() bool {
		return p.membership(roomID, p.userID()) == event.MembershipJoin && p.encrypted(roomID)
	})
}

// lastOTKCount is the device_one_time_keys_count of the latest sync.
func (p *peer) lastOTKCount() (mautrix.OTKCount, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.otkCounts) == 0 {
		return mautrix.OTKCount{}, 0
	}
	return p.otkCounts[len(p.otkCounts)-1], len(p.otkCounts)
}

// noPlaintext fails if an m.room.message arrived unencrypted.
func (p *peer) noPlaintext() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, evt := range p.plaintext {
		p.t.Errorf("%s: %s from %s arrived as a plaintext m.room.message in an encrypted room", p.name, evt.ID, evt.Sender)
	}
}

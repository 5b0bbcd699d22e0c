//go:build goolm

// Package mautrix_test is an end-to-end encryption test with a second,
// independent client implementation: mautrix-go's crypto (its pure-Go Olm,
// the goolm build tag) against a real Polder, and, when tests/jssdk's
// node_modules are installed, against matrix-js-sdk's Rust crypto. See
// README.md.
package mautrix_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/backup"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/hstest"
)

func TestMain(m *testing.M) { os.Exit(hstest.Main(m)) }

const password = "correct horse battery staple"

// TestMegolmGoToGo: two users, each a mautrix-go device, in an encrypted
// room. Each sends encrypted messages and the other decrypts them; keys go
// through /keys/upload, /keys/query and /keys/claim, the Megolm session
// through Olm-encrypted /sendToDevice, and everything the clients learn
// (invites, joins, device list changes, one-time key counts, to-device
// messages) through their /sync loops. Then Bob logs in on a second device;
// Alice learns of it from device_lists.changed and her next message
// reaches it too.
func TestMegolmGoToGo(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		alice := newPeer(t, "alice", hs.Register(t, "alice", password))
		bob := newPeer(t, "bob", hs.Register(t, "bob", password))

		roomID := alice.createEncryptedRoom(bob.userID())
		bob.join(roomID)
		waitFor(t, 15*time.Second, "alice seeing bob's join in /sync", func() bool {
			return alice.membership(roomID, bob.userID()) == "join"
		})

		// Alice → Bob: Alice claims one of Bob's one-time keys and sends him
		// the room key over Olm.
		ev := alice.send(roomID, "hello bob, from alice")
		got := bob.expectMessage(roomID, alice.userID(), ev, "hello bob, from alice")
		if got.Mautrix.ForwardedKeys {
			t.Errorf("bob: the room key of %s was forwarded, want it from alice's own Olm message", ev)
		}
		if src := got.Mautrix.TrustSource; src == nil || src.DeviceID != alice.deviceID() || src.IdentityKey != alice.mach.OwnIdentity().IdentityKey {
			t.Errorf("bob: %s decrypted with a room key from %+v, want alice's device %s", ev, src, alice.deviceID())
		}

		// Bob → Alice: a session of Bob's own, over an Olm session Bob
		// creates with one of Alice's one-time keys.
		ev = bob.send(roomID, "hello alice, from bob")
		alice.expectMessage(roomID, bob.userID(), ev, "hello alice, from bob")

		// More of each, on the same Megolm sessions.
		for _, body := range []string{"second from alice", "third from alice"} {
			ev = alice.send(roomID, body)
			bob.expectMessage(roomID, alice.userID(), ev, body)
		}
		ev = bob.send(roomID, "second from bob")
		alice.expectMessage(roomID, bob.userID(), ev, "second from bob")

		// device_one_time_keys_count in /sync: each had 50 keys uploaded
		// and one claimed, and sees a count above zero.
		for _, p := range []*peer{alice, bob} {
			waitFor(t, 10*time.Second, p.name+"'s one-time key count in /sync", func() bool {
				c, _ := p.lastOTKCount()
				return c.SignedCurve25519 > 0
			})
		}

		// Bob's second device: Alice learns of it through
		// device_lists.changed in her /sync, and her next message is shared
		// with it.
		bob2 := newPeer(t, "bob2", hs.Login(t, "bob", password))
		waitFor(t, 15*time.Second, "alice learning of bob's new device "+bob2.deviceID().String()+" (device_lists.changed)", func() bool {
			devs, _ := alice.mach.CryptoStore.GetDevices(context.Background(), bob.userID())
			_, ok := devs[bob2.deviceID()]
			return ok
		})
		// Bob's first device learns of it too: a user's own device list
		// changes are in its own device_lists.changed.
		waitFor(t, 15*time.Second, "bob learning of his new device "+bob2.deviceID().String()+" (device_lists.changed)", func() bool {
			devs, _ := bob.mach.CryptoStore.GetDevices(context.Background(), bob.userID())
			_, ok := devs[bob2.deviceID()]
			return ok
		})
		waitFor(t, 15*time.Second, "bob2 seeing the encrypted room", func() bool {
			return bob2.encrypted(roomID) && bob2.membership(roomID, alice.userID()) == "join"
		})
		ev = alice.send(roomID, "hello both of bob's devices")
		bob.expectMessage(roomID, alice.userID(), ev, "hello both of bob's devices")
		bob2.expectMessage(roomID, alice.userID(), ev, "hello both of bob's devices")

		// And bob2 → everyone, including bob's first device (its own user).
		ev = bob2.send(roomID, "from bob's second device")
		alice.expectMessage(roomID, bob.userID(), ev, "from bob's second device")
		bob.expectMessage(roomID, bob.userID(), ev, "from bob's second device")

		for _, p := range []*peer{alice, bob, bob2} {
			p.noPlaintext()
		}
	})
}

// TestCrossSigning: Alice bootstraps cross-signing with mautrix-go (SSSS
// key and the three cross-signing keys in account data,
// /keys/device_signing/upload with password UIA, her device signed by her
// self-signing key through /keys/signatures/upload); Bob sees her keys and
// that signature through /keys/query.
func TestCrossSigning(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		ctx := context.Background()
		alice := newPeer(t, "alice", hs.Register(t, "alice", password))
		bob := newPeer(t, "bob", hs.Register(t, "bob", password))

		uia := func(resp *mautrix.RespUserInteractive) any {
			return &mautrix.ReqUIAuthLogin{
				BaseAuthData: mautrix.BaseAuthData{Type: mautrix.AuthTypePassword, Session: resp.Session},
				User:         alice.userID().String(),
				Password:     password,
			}
		}
		_, keys, err := alice.mach.GenerateAndUploadCrossSigningKeys(ctx, uia, "")
		if err != nil {
			t.Fatalf("alice: GenerateAndUploadCrossSigningKeys: %v", err)
		}
		if err := alice.mach.SignOwnDevice(ctx, alice.mach.OwnIdentity()); err != nil {
			t.Fatalf("alice: SignOwnDevice: %v", err)
		}
		if err := alice.mach.SignOwnMasterKey(ctx); err != nil {
			t.Fatalf("alice: SignOwnMasterKey: %v", err)
		}

		if _, err := bob.mach.FetchKeys(ctx, []id.UserID{alice.userID()}, true); err != nil {
			t.Fatalf("bob: FetchKeys(alice): %v", err)
		}
		pub, err := bob.mach.GetCrossSigningPublicKeys(ctx, alice.userID())
		if err != nil || pub == nil {
			t.Fatalf("bob: alice's cross-signing keys: %v, %v", pub, err)
		}
		if pub.MasterKey != keys.MasterKey.PublicKey() || pub.SelfSigningKey != keys.SelfSigningKey.PublicKey() {
			t.Errorf("bob sees alice's master %s, self-signing %s; want %s, %s",
				pub.MasterKey, pub.SelfSigningKey, keys.MasterKey.PublicKey(), keys.SelfSigningKey.PublicKey())
		}
		signed, err := bob.mach.CryptoStore.IsKeySignedBy(ctx, alice.userID(), alice.mach.OwnIdentity().SigningKey, alice.userID(), pub.SelfSigningKey)
		if err != nil || !signed {
			t.Errorf("bob: alice's device key signed by her self-signing key = %v, %v; want true", signed, err)
		}
		// Bob's own view of himself: no cross-signing keys yet.
		if own, _ := bob.mach.GetCrossSigningPublicKeys(ctx, bob.userID()); own != nil && own.MasterKey != "" {
			t.Errorf("bob has cross-signing keys %v without uploading any", own)
		}
	})
}

// TestKeyBackup: Bob backs up the room key of a message he received
// (/room_keys/version, PUT /room_keys/keys, the session encrypted with
// mautrix's m.megolm_backup.v1.curve25519-aes-sha2); a device he logs in
// later, which was never sent that key, restores it from the backup and
// decrypts the message it fetches from the room.
func TestKeyBackup(t *testing.T) {
	hstest.Each(t, hstest.Options{}, func(t *testing.T, hs *hstest.Server) {
		ctx := context.Background()
		alice := newPeer(t, "alice", hs.Register(t, "alice", password))
		bob := newPeer(t, "bob", hs.Register(t, "bob", password))
		roomID := alice.createEncryptedRoom(bob.userID())
		bob.join(roomID)
		waitFor(t, 15*time.Second, "alice seeing bob's join in /sync", func() bool {
			return alice.membership(roomID, bob.userID()) == "join"
		})
		const body = "before bob's new device"
		eventID := alice.send(roomID, body)
		bob.expectMessage(roomID, alice.userID(), eventID, body)
		raw := getEncrypted(t, bob, roomID, eventID)
		sessionID := raw.Content.AsEncrypted().SessionID

		backupKey, err := backup.NewMegolmBackupKey()
		if err != nil {
			t.Fatal(err)
		}
		created, err := bob.cli.CreateKeyBackupVersion(ctx, &mautrix.ReqRoomKeysVersionCreate[backup.MegolmAuthData]{
			Algorithm: id.KeyBackupAlgorithmMegolmBackupV1,
			AuthData:  backup.MegolmAuthData{PublicKey: id.Ed25519(base64.RawStdEncoding.EncodeToString(backupKey.PublicKey().Bytes()))},
		})
		if err != nil {
			t.Fatalf("bob: POST /room_keys/version: %v", err)
		}
		igs, err := bob.mach.CryptoStore.GetGroupSession(ctx, roomID, sessionID)
		if err != nil || igs == nil {
			t.Fatalf("bob: inbound session %s: %v, %v", sessionID, igs, err)
		}
		first := igs.Internal.FirstKnownIndex()
		sessionKey, err := igs.Internal.Export(first)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := backup.EncryptSessionData(backupKey, backup.MegolmSessionData{
			Algorithm:          id.AlgorithmMegolmV1,
			ForwardingKeyChain: []string{},
			SenderClaimedKeys:  backup.SenderClaimedKeys{Ed25519: igs.SigningKey},
			SenderKey:          igs.SenderKey,
			SessionKey:         string(sessionKey),
		})
		if err != nil {
			t.Fatal(err)
		}
		encJSON, err := json.Marshal(enc)
		if err != nil {
			t.Fatal(err)
		}
		put, err := bob.cli.PutKeysInBackup(ctx, created.Version, &mautrix.ReqKeyBackup{
			Rooms: map[id.RoomID]mautrix.ReqRoomKeyBackup{roomID: {Sessions: map[id.SessionID]mautrix.ReqKeyBackupData{
				sessionID: {FirstMessageIndex: int(first), SessionData: encJSON},
			}}},
		})
		if err != nil {
			t.Fatalf("bob: PUT /room_keys/keys: %v", err)
		}
		if put.Count != 1 || put.ETag == "" {
			t.Errorf("PUT /room_keys/keys = count %d, etag %q; want 1 and an etag", put.Count, put.ETag)
		}

		bob3 := newPeer(t, "bob3", hs.Login(t, "bob", password))
		if _, err := bob3.mach.DecryptMegolmEvent(ctx, getEncrypted(t, bob3, roomID, eventID)); !errors.Is(err, crypto.ErrNoSessionFound) {
			t.Fatalf("bob3 before restoring the backup: decrypt %s = %v, want %v", eventID, err, crypto.ErrNoSessionFound)
		}
		version, err := bob3.mach.DownloadAndStoreLatestKeyBackup(ctx, backupKey)
		if err != nil || version != created.Version {
			t.Fatalf("bob3: restore the latest backup = %q, %v; want version %q", version, err, created.Version)
		}
		dec, err := bob3.mach.DecryptMegolmEvent(ctx, getEncrypted(t, bob3, roomID, eventID))
		if err != nil {
			t.Fatalf("bob3: decrypt %s with the key from the backup: %v", eventID, err)
		}
		if msg := dec.Content.AsMessage(); msg.Body != body {
			t.Errorf("bob3: %s decrypted to %q, want %q", eventID, msg.Body, body)
		}
	})
}

// getEncrypted fetches an m.room.encrypted event with GET
// /rooms/{roomId}/event/{eventId}.
func getEncrypted(t *testing.T, p *peer, roomID id.RoomID, eventID id.EventID) *event.Event {
	t.Helper()
	evt, err := p.cli.GetEvent(context.Background(), roomID, eventID)
	if err != nil {
		t.Fatalf("%s: GET /rooms/%s/event/%s: %v", p.name, roomID, eventID, err)
	}
	evt.RoomID = roomID
	if evt.Type.Type != event.EventEncrypted.Type {
		t.Fatalf("%s: %s is a %s, want m.room.encrypted", p.name, eventID, evt.Type.Type)
	}
	if err := evt.Content.ParseRaw(evt.Type); err != nil {
		t.Fatalf("%s: parse %s: %v", p.name, eventID, err)
	}
	return evt
}

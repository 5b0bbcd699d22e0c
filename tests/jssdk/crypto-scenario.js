// The end-to-end-encryption scenario of crypto.test.js (alice and bob on
// one polder) and crypto-federation.test.js (alice on one polder, bob on
// another, federating over TLS): matrix-js-sdk clients with Rust crypto
// (@matrix-org/matrix-sdk-crypto-wasm) chat in a megolm-encrypted room
// and each decrypts the other's messages; alice sets up cross-signing,
// secret storage and key backup; bob sets up cross-signing and the two
// verify each other with emoji (SAS) over to-device messages; alice logs in
// on a new device, unlocks secret storage with her recovery key, restores
// the key backup and reads the earlier messages, and bob's client learns
// of the new device and encrypts for it. Every check is on decrypted
// plaintext.
import "./polyfill.js";
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { DecryptionFailureCode, EventShieldColour } from "matrix-js-sdk/lib/crypto-api/index.js";
import {
  CryptoEvent,
  DEHYDRATION_PREFIX,
  Device,
  assertDecrypts,
  backedUpSessions,
  encryptedRoom,
  newDevice,
  newUser,
  sasVerify,
  sendSecret,
  setUpRecovery,
  waitFor,
  within,
} from "./crypto-helpers.js";
import { withLog } from "./server.js";

/** How long one step of the scenario may take (a 2-core CI machine, two servers). */
const STEP_TIMEOUT_MS = 120_000;

/**
 * Defines the scenario's tests in the current describe block. servers()
 * returns {alice, bob}: the Polder of each user (the same one, or two
 * federating ones), started by the caller's before hook, which must run
 * before this one.
 */
export function e2eeScenario(servers) {
  /** @type {Device} */
  let alice, bob, alice2;
  const devices = () => [alice, bob, alice2].filter(Boolean);
  // A failure carries the end of each server's log.
  const logs = () => {
    const { alice: a, bob: b } = servers();
    return {
      logTail: () => (a === b ? a.logTail() : `${a.logTail(30)}\n${b.logTail(30)}`),
      requestStacks: async () => (a === b ? a.requestStacks() : `${await a.requestStacks(100)}\n${await b.requestStacks(100)}`),
    };
  };
  const it = (name, fn) => test(name, { timeout: STEP_TIMEOUT_MS }, withLog(logs, fn));

  before(async () => {
    alice = await newUser(servers().alice.baseUrl, "alice");
    bob = await newUser(servers().bob.baseUrl, "bob");
  });
  after(() => {
    for (const d of devices()) d.stop();
  });

  let roomId;
  /** Set once alice and bob share the encrypted room: later steps need it. */
  let roomReady = false;
  const needRoom = () => assert.ok(roomReady, "needs the encrypted room of the exchange step");
  /** [eventId, body, sender] of every message sent, in order. */
  const sent = [];
  const send = async (d, body) => {
    const id = await sendSecret(d, roomId, body);
    sent.push([id, body, d]);
    return id;
  };

  it("uploads device keys, and each user's client sees the other's device", async () => {
    for (const [me, other] of [[alice, bob], [bob, alice]]) {
      // The other client uploads its keys from its first sync on: under
      // load that may come after this asks, so ask again until a deadline.
      let devs, dev;
      for (const deadline = Date.now() + 60000; ; ) {
        devs = await me.crypto.getUserDeviceInfo([other.userId], true);
        dev = devs.get(other.userId)?.get(other.deviceId);
        if (dev || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.ok(dev, `${me.label}: getUserDeviceInfo(${other.userId}) lacks ${other.deviceId}: ${JSON.stringify([...(devs.get(other.userId)?.keys() ?? [])])}`);
      assert.equal(dev.getFingerprint(), await other.ed25519(), `${me.label}: ${other.label}'s ed25519 key`);
    }
  });

  it("exchanges megolm-encrypted messages, and each decrypts the other's", async () => {
    roomId = await encryptedRoom(alice, [bob]);
    roomReady = true;
    const m1 = await send(alice, "hello bob, this is secret");
    await assertDecrypts(bob, roomId, m1, "hello bob, this is secret", alice);
    const m2 = await send(bob, "hello alice, so is this");
    await assertDecrypts(alice, roomId, m2, "hello alice, so is this", bob);
    const m3 = await send(alice, "third secret");
    await assertDecrypts(bob, roomId, m3, "third secret", alice);
    // Each also decrypts its own messages as they come back in sync.
    await assertDecrypts(alice, roomId, m3, "third secret", alice);
    await assertDecrypts(bob, roomId, m2, "hello alice, so is this", bob);
  });

  let recoveryKey, backupVersion;
  it("sets up cross-signing, secret storage and key backup (UIA by password)", async () => {
    needRoom();
    recoveryKey = await setUpRecovery(alice, "alice's recovery passphrase");
    assert.match(recoveryKey, /^Es/, "encoded recovery key");
    assert.equal(await alice.crypto.isCrossSigningReady(), true, "isCrossSigningReady");
    assert.equal(await alice.crypto.isSecretStorageReady(), true, "isSecretStorageReady");
    const status = await alice.crypto.getCrossSigningStatus();
    assert.deepEqual(status.privateKeysInSecretStorage, true, `getCrossSigningStatus: ${JSON.stringify(status)}`);
    backupVersion = await alice.crypto.getActiveSessionBackupVersion();
    assert.ok(backupVersion, "getActiveSessionBackupVersion after setting up a backup");

    // The server's view: alice's cross-signing keys, and her device signed
    // by her self-signing key.
    const q = await bob.request("POST", "/keys/query", { device_keys: { [alice.userId]: [] } });
    const master = q.master_keys?.[alice.userId];
    const ssk = q.self_signing_keys?.[alice.userId];
    assert.ok(master && ssk, `bob's /keys/query of alice lacks her cross-signing keys: ${JSON.stringify(q)}`);
    assert.equal(q.user_signing_keys?.[alice.userId], undefined, "another user sees alice's user-signing key");
    const sskId = Object.keys(ssk.keys)[0];
    const devSigs = q.device_keys?.[alice.userId]?.[alice.deviceId]?.signatures?.[alice.userId] ?? {};
    assert.ok(sskId in devSigs, `alice's device keys are not signed by her self-signing key ${sskId}: ${JSON.stringify(devSigs)}`);
    const own = await alice.request("POST", "/keys/query", { device_keys: { [alice.userId]: [] } });
    assert.ok(own.user_signing_keys?.[alice.userId], `alice's own /keys/query lacks her user-signing key: ${JSON.stringify(own)}`);

    // Secret storage: the secrets are in account data, encrypted.
    const def = await alice.request("GET", `/user/${encodeURIComponent(alice.userId)}/account_data/m.secret_storage.default_key`);
    assert.ok(def.key, "m.secret_storage.default_key");
    const backupSecret = await alice.request("GET", `/user/${encodeURIComponent(alice.userId)}/account_data/m.megolm_backup.v1`);
    assert.ok(backupSecret.encrypted?.[def.key]?.ciphertext, `m.megolm_backup.v1 in secret storage: ${JSON.stringify(backupSecret)}`);

    // The backup: its version on the server, and every session of the
    // room's messages uploaded to it by alice's client.
    const info = await alice.request("GET", "/room_keys/version");
    assert.equal(info.version, backupVersion, "GET /room_keys/version: version");
    assert.equal(info.algorithm, "m.megolm_backup.v1.curve25519-aes-sha2", "backup algorithm");
    const trust = await alice.crypto.isKeyBackupTrusted(info);
    assert.equal(trust.trusted, true, `isKeyBackupTrusted: ${JSON.stringify(trust)}`);
    const want = new Set(sent.map(([id]) => alice.client.getRoom(roomId).findEventById(id).getWireContent().session_id));
    await waitFor(
      `the key backup holds the sessions ${[...want]}`,
      async () => {
        const have = (await backedUpSessions(alice, backupVersion))[roomId] ?? [];
        return [...want].every((s) => have.includes(s));
      },
      30_000,
    );
    const after = await alice.request("GET", "/room_keys/version");
    assert.ok(after.count >= want.size, `GET /room_keys/version: count ${after.count}, want at least ${want.size}`);
    assert.ok(after.etag, "GET /room_keys/version: etag");
  });

  it("verifies bob's device with emoji (SAS), and each sees the other verified", async () => {
    needRoom();
    await within(`${bob.label}: bootstrapCrossSigning`, bob.crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: bob.uiaPassword() }));
    const before = await alice.crypto.getDeviceVerificationStatus(bob.userId, bob.deviceId);
    assert.equal(before?.isVerified(), false, `alice's view of bob's device before verifying: ${JSON.stringify(before)}`);

    const emoji = await sasVerify(alice, bob);
    assert.equal(emoji.length, 7, `SAS emoji: ${emoji}`);

    const dev = await alice.crypto.getDeviceVerificationStatus(bob.userId, bob.deviceId);
    assert.equal(dev?.isVerified(), true, `alice: getDeviceVerificationStatus(bob's device): ${JSON.stringify(dev)}`);
    // SAS between two users with cross-signing also verifies the users:
    // each signs the other's master key with their user-signing key and
    // uploads the signature (/keys/signatures/upload); their own server
    // shows it to them on the other's master key in /keys/query.
    for (const [me, other] of [[alice, bob], [bob, alice]]) {
      let last;
      await waitFor(
        `${me.label}'s /keys/query shows ${other.label}'s master key signed by ${me.label}`,
        async () => {
          const q = await me.request("POST", "/keys/query", { device_keys: { [other.userId]: [] } });
          last = q.master_keys?.[other.userId];
          return last?.signatures?.[me.userId];
        },
        20_000,
      ).catch((err) => {
        err.message += `: last master key seen: ${JSON.stringify(last)}`;
        throw err;
      });
    }
    const user = await waitFor("alice sees bob cross-signing verified", async () => {
      const s = await alice.crypto.getUserVerificationStatus(bob.userId);
      return s.isCrossSigningVerified() && s;
    });
    assert.equal(user.isVerified(), true, "alice: getUserVerificationStatus(bob).isVerified()");
    // bob's device is verified through bob's self-signing key now too.
    const viaCrossSigning = await alice.crypto.getDeviceVerificationStatus(bob.userId, bob.deviceId);
    assert.equal(viaCrossSigning.crossSigningVerified, true, `alice: bob's device crossSigningVerified: ${JSON.stringify(viaCrossSigning)}`);

    const mine = await bob.crypto.getDeviceVerificationStatus(alice.userId, alice.deviceId);
    assert.equal(mine?.isVerified(), true, `bob: getDeviceVerificationStatus(alice's device): ${JSON.stringify(mine)}`);
    await waitFor("bob sees alice cross-signing verified", async () => (await bob.crypto.getUserVerificationStatus(alice.userId)).isCrossSigningVerified());

    // Verified or not, the room still works both ways.
    const m = await send(bob, "now that we are verified");
    const ev = await assertDecrypts(alice, roomId, m, "now that we are verified", bob);
    const info = await alice.crypto.getEncryptionInfoForEvent(ev);
    assert.equal(info.shieldColour, EventShieldColour.NONE, `alice's shield on bob's message after verification: ${JSON.stringify(info)}`);
  });

  // A message sent while alice's dehydrated device existed: a new device
  // rehydrating it gets its room key without the key backup.
  let forDehydrated;
  it("keeps a dehydrated device (MSC3814) that bob's client encrypts for", async () => {
    needRoom();
    assert.equal(await alice.crypto.isDehydrationSupported(), true, "isDehydrationSupported");
    // Its key goes into secret storage; the device is signed by alice's
    // self-signing key and uploaded with PUT /dehydrated_device.
    await within("alice: startDehydration", alice.crypto.startDehydration({ createNewKey: true }));
    const dd = await alice.request("GET", "/dehydrated_device", undefined, { prefix: DEHYDRATION_PREFIX });
    assert.ok(dd.device_id && dd.device_data, `GET /dehydrated_device: ${JSON.stringify(dd)}`);
    const devs = await alice.request("GET", "/devices");
    assert.ok(devs.devices.some((d) => d.device_id === dd.device_id), `GET /devices lacks the dehydrated device ${dd.device_id}`);

    // bob's client learns of it from its sync and encrypts for it.
    const known = await waitFor("bob's client knows alice's dehydrated device", async () => {
      const devices = await bob.crypto.getUserDeviceInfo([alice.userId], false);
      return devices.get(alice.userId)?.get(dd.device_id);
    }, 30_000);
    assert.equal(known.dehydrated, true, `bob's view of ${dd.device_id}: dehydrated`);
    const st = await bob.crypto.getDeviceVerificationStatus(alice.userId, dd.device_id);
    assert.equal(st?.signedByOwner, true, `bob: the dehydrated device is signed by alice's self-signing key: ${JSON.stringify(st)}`);
    forDehydrated = await send(bob, "for alice's dehydrated device too");
    await assertDecrypts(alice, roomId, forDehydrated, "for alice's dehydrated device too", bob);
  });

  /**
   * Logs alice in on a new device (the recovery key at hand), checks that
   * it cannot read the first message (its room key was shared before the
   * device existed, and the SDK asks other devices for no keys), and
   * unlocks the cross-signing keys from secret storage: the device signs
   * itself. The private keys are checked against the public ones the
   * server has, so the device first fetches its own user's keys (as
   * Element's "verify this device" does).
   */
  const secondDevice = async (label) => {
    const d = await newDevice(servers().alice.baseUrl, alice.userId, label, { recoveryKey });
    const [firstId] = sent[0];
    const undecryptable = await waitFor(`${label} fails to decrypt the first message`, () => {
      const ev = d.client.getRoom(roomId)?.findEventById(firstId);
      return ev && !ev.isBeingDecrypted() && ev.isDecryptionFailure() && ev;
    });
    const missingKey = [
      DecryptionFailureCode.MEGOLM_UNKNOWN_INBOUND_SESSION_ID,
      DecryptionFailureCode.HISTORICAL_MESSAGE_NO_KEY_BACKUP,
      DecryptionFailureCode.HISTORICAL_MESSAGE_BACKUP_UNCONFIGURED,
      DecryptionFailureCode.HISTORICAL_MESSAGE_WORKING_BACKUP,
    ];
    assert.ok(missingKey.includes(undecryptable.decryptionFailureReason), `${label}'s failure to decrypt ${firstId}: ${undecryptable.decryptionFailureReason}, want a missing room key`);

    assert.equal(await d.crypto.userHasCrossSigningKeys(alice.userId, true), true, `${label}: userHasCrossSigningKeys(alice)`);
    await within(`${label}: bootstrapCrossSigning from secret storage`, d.crypto.bootstrapCrossSigning({}));
    const status = await d.crypto.getCrossSigningStatus();
    assert.equal(status.privateKeysCachedLocally.masterKey, true, `${label}: cross-signing keys from secret storage: ${JSON.stringify(status)}`);
    return d;
  };

  it("rehydrates the dehydrated device on a new device and decrypts what was sent to it", async () => {
    needRoom();
    assert.ok(recoveryKey && forDehydrated, "needs the recovery key and the dehydrated device of the previous tests");
    // A device of its own, stopped at the end: if rehydration goes wrong
    // the SDK may go on asking the server in the background.
    const d = await secondDevice("alice's rehydrating device");
    try {
      // The dehydration key comes from secret storage; the room key of the
      // message sent to the dehydrated device from its to-device messages
      // (GET /dehydrated_device/{id}/events), not the key backup, which
      // this device cannot read.
      const rehydrated = new Promise((resolve, reject) => {
        d.client.once(CryptoEvent.RehydrationCompleted, resolve);
        d.client.once(CryptoEvent.RehydrationError, (msg) => reject(new Error(`rehydration failed: ${msg}`)));
      });
      // Awaited below; an error after a failure (the client stopped) is not
      // the test's.
      rehydrated.catch(() => {});
      let keys = 0;
      d.client.on(CryptoEvent.RehydrationProgress, (roomKeys) => (keys = roomKeys));
      await within(`${d.label}: startDehydration (rehydrate)`, d.crypto.startDehydration({ rehydrate: true }), 15_000);
      await within(`${d.label}: rehydration`, rehydrated);
      assert.ok(keys >= 1, `${d.label} got ${keys} room keys from the dehydrated device's to-device messages, want at least 1`);
      const [, body] = sent.find(([id]) => id === forDehydrated);
      await assertDecrypts(d, roomId, forDehydrated, body, bob);
      assert.equal(d.client.getRoom(roomId).findEventById(sent[0][0]).isDecryptionFailure(), true, `${d.label} decrypted the first message without the key backup`);
    } finally {
      d.stop();
    }
  });

  it("restores the key backup on a new device with the recovery key and decrypts the earlier messages", async () => {
    needRoom();
    assert.ok(recoveryKey, "needs the recovery key of the previous test");
    // Wait for the key backup to hold everything sent so far (bob's last
    // messages reached alice's first device after the backup was made).
    await waitFor("alice's first device has backed up every session", async () => {
      const have = (await backedUpSessions(alice, backupVersion))[roomId] ?? [];
      return sent.every(([id]) => have.includes(alice.client.getRoom(roomId).findEventById(id)?.getWireContent().session_id));
    }, 30_000);
    alice2 = await secondDevice("alice's new device");

    await within("alice2: loadSessionBackupPrivateKeyFromSecretStorage", alice2.crypto.loadSessionBackupPrivateKeyFromSecretStorage());
    const check = await alice2.crypto.checkKeyBackupAndEnable();
    assert.equal(check?.backupInfo?.version, backupVersion, `alice2: checkKeyBackupAndEnable: ${JSON.stringify(check)}`);
    const restored = await within("alice2: restoreKeyBackup", alice2.crypto.restoreKeyBackup());
    const sessions = new Set(sent.map(([id]) => alice.client.getRoom(roomId).findEventById(id).getWireContent().session_id));
    assert.ok(restored.imported >= sessions.size, `restoreKeyBackup: ${JSON.stringify(restored)}, want at least ${sessions.size} imported`);

    await waitFor("alice2 has the room", () => alice2.client.getRoom(roomId));
    for (const [id, body, from] of sent) {
      // The initial sync holds the recent timeline; fetch anything older.
      if (!alice2.client.getRoom(roomId).findEventById(id)) {
        await alice2.client.scrollback(alice2.client.getRoom(roomId), 50);
      }
      await assertDecrypts(alice2, roomId, id, body, from);
    }

    // The new device is cross-signed (its keys signed by alice's
    // self-signing key, uploaded by /keys/signatures/upload): alice's first
    // device trusts it without verifying it itself.
    await waitFor("alice's first device sees her new device cross-signing verified", async () => {
      const s = await alice.crypto.getDeviceVerificationStatus(alice.userId, alice2.deviceId);
      return s?.crossSigningVerified;
    });
  });

  it("bob's client learns of the new device (device_lists.changed), encrypts for it, and trusts it", async () => {
    needRoom();
    assert.ok(alice2, "needs the new device of the previous test");
    // bob's client learns of alice's new device from device_lists.changed
    // in its sync (across servers: from an m.device_list_update EDU) and
    // downloads her keys again; it must not need to be told.
    await waitFor("bob's client knows alice's new device", async () => {
      const devs = await bob.crypto.getUserDeviceInfo([alice.userId], false);
      return devs.get(alice.userId)?.has(alice2.deviceId);
    }, 30_000);
    const m = await send(bob, "do you see this on your new device?");
    await assertDecrypts(alice2, roomId, m, "do you see this on your new device?", bob);
    await assertDecrypts(alice, roomId, m, "do you see this on your new device?", bob);
    const r = await send(alice2, "yes, on my new device");
    await assertDecrypts(bob, roomId, r, "yes, on my new device", alice);
    await assertDecrypts(alice, roomId, r, "yes, on my new device", alice);

    // bob sees the device signed by alice's self-signing key, and, as he
    // verified alice, trusts it.
    await waitFor("bob sees alice's new device signed by its owner", async () => {
      const st = await bob.crypto.getDeviceVerificationStatus(alice.userId, alice2.deviceId);
      return st?.signedByOwner;
    });
    await waitFor("bob sees alice's new device cross-signing verified", async () => {
      const st = await bob.crypto.getDeviceVerificationStatus(alice.userId, alice2.deviceId);
      return st?.crossSigningVerified;
    });
  });
}

// Helpers of the end-to-end-encryption tests (crypto.test.js,
// crypto-federation.test.js): matrix-js-sdk clients with the SDK's Rust
// crypto (@matrix-org/matrix-sdk-crypto-wasm, in memory: no IndexedDB in
// Node), encrypted rooms, waiting for a decrypted event, interactive SAS
// verification between two clients in this process, and a secret-storage
// key cache such as Element keeps while the user's recovery key is entered.
import "./polyfill.js";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import {
  CryptoEvent,
  VerificationPhase,
  VerificationRequestEvent,
  VerifierEvent,
  decodeRecoveryKey,
} from "matrix-js-sdk/lib/crypto-api/index.js";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { PASSWORD, interactiveAuth, localpart, login, passwordAnswer, register } from "./accounts.js";
import { sleep } from "./server.js";

export const MEGOLM = "m.megolm.v1.aes-sha2";

/** Where matrix-js-sdk finds dehydrated devices (MSC3814). */
export const DEHYDRATION_PREFIX = "/_matrix/client/unstable/org.matrix.msc3814.v1";

/** Flags of every polder these tests start. */
export const SERVER_ARGS = [
  "--login-rate-limit-burst=1000",
  "--rate-limit-per-second=0",
  // UIA and login check passwords: keep bcrypt cheap in tests.
  "--password-hash-cost=4",
];

const verbose = Boolean(process.env.POLDER_TEST_SDK_LOG);
// accounts.js silences the SDK's root logger, but the child loggers it
// hands out (MatrixRTCSession per room, the crypto backend) set their own
// level: give them a factory that prints nothing. Children copy the
// root's factory when made, so this has to happen before any client is.
if (!verbose) {
  logger.methodFactory = () => () => {};
  logger.rebuild();
}
const quiet = {
  trace() {}, debug() {}, info() {}, warn() {}, error() {},
  getChild() { return quiet; },
};

/** Polls cond until it returns a truthy value (resolved to), or fails after ms. */
export async function waitFor(what, cond, ms = 20_000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ""}`);
    }
    await sleep(100);
  }
}

/** Rejects with a timeout error naming what if promise takes longer than ms. */
export async function within(what, promise, ms = 30_000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * One device of a user: a MatrixClient with Rust crypto, started and
 * synced. Secret-storage keys go through a cache (secretKeys, keyed by key
 * ID): bootstrapSecretStorage fills it with a key it creates, and a device
 * given a recovery key decodes it into the cache, as Element does when the
 * user types it in.
 */
export class Device {
  /**
   * @param {string} baseUrl
   * @param {{user_id: string, device_id: string, access_token: string}} session
   * @param {string} label  for messages
   */
  constructor(baseUrl, session, label) {
    this.baseUrl = baseUrl;
    this.session = session;
    this.label = label;
    this.userId = session.user_id;
    this.deviceId = session.device_id;
    /** @type {Map<string, Uint8Array>} */
    this.secretKeys = new Map();
    /** A recovery key (encoded, "EsT…") to answer with when the cache has none. */
    this.recoveryKey = null;
    this.client = sdk.createClient({
      baseUrl,
      userId: session.user_id,
      deviceId: session.device_id,
      accessToken: session.access_token,
      logger: verbose ? undefined : quiet,
      cryptoCallbacks: {
        getSecretStorageKey: async ({ keys }) => this.secretStorageKey(keys),
        cacheSecretStorageKey: (keyId, _info, key) => this.secretKeys.set(keyId, key),
      },
    });
  }

  /** What getSecretStorageKey answers: a cached key, else the recovery key decoded. */
  secretStorageKey(keys) {
    for (const id of Object.keys(keys)) {
      if (this.secretKeys.has(id)) return [id, this.secretKeys.get(id)];
    }
    if (this.recoveryKey) {
      const defaultId = Object.keys(keys)[0];
      return [defaultId, decodeRecoveryKey(this.recoveryKey)];
    }
    return null;
  }

  get crypto() {
    return this.client.getCrypto();
  }

  /** Initialises Rust crypto in memory, starts syncing and waits for the first sync. */
  async start() {
    await within(`${this.label}: initRustCrypto`, this.client.initRustCrypto({ useIndexedDB: false }));
    assert.ok(this.crypto, `${this.label}: getCrypto() after initRustCrypto`);
    await this.client.startClient({ initialSyncLimit: 30, lazyLoadMembers: true });
    await waitFor(`${this.label}: first sync`, () => this.client.isInitialSyncComplete());
    // The client uploads its device keys in the background after its first
    // sync: wait until the server has them, so that another client asking
    // for this device right away finds it (under load that upload came
    // late once, and the other client kept the empty list it got).
    await waitFor(`${this.label}: device keys on the server`, async () => {
      const q = await this.request("POST", "/keys/query", { device_keys: { [this.userId]: [this.deviceId] } });
      return Boolean(q.device_keys?.[this.userId]?.[this.deviceId]);
    }, 60_000);
    return this;
  }

  stop() {
    this.client.stopClient();
  }

  /** A raw authenticated request (for reading what the server stored). */
  request(method, path, body, { prefix = "/_matrix/client/v3", query } = {}) {
    return this.client.http.authedRequest(method, path, query, body, { prefix });
  }

  /** The device's ed25519 key, as its own crypto reports it. */
  async ed25519() {
    return (await this.crypto.getOwnDeviceKeys()).ed25519;
  }

  /** The UIA callback for bootstrapCrossSigning, answering with the password. */
  uiaPassword(password = PASSWORD) {
    return async (makeRequest) => {
      await interactiveAuth(this.client, (auth) => makeRequest(auth ?? null), passwordAnswer(this.userId, password));
    };
  }
}

/** Registers a new user (m.login.dummy) and starts a crypto device for it. */
export async function newUser(baseUrl, prefix) {
  const { response } = await register(baseUrl, localpart(prefix), { deviceName: `${prefix} first device` });
  return new Device(baseUrl, response, prefix).start();
}

/** Logs userId in again (a new device) and starts crypto on it. */
export async function newDevice(baseUrl, userId, label, { recoveryKey = null } = {}) {
  const res = await login(baseUrl, userId, { deviceName: label });
  const d = new Device(baseUrl, res, label);
  d.recoveryKey = recoveryKey;
  return d.start();
}

/**
 * alice creates a private room with m.room.encryption (megolm) in its
 * initial state, invites the others, and each joins; resolves once every
 * client sees every member joined and the room encrypted.
 */
export async function encryptedRoom(creator, others, name = "secret room") {
  const { room_id: roomId } = await creator.client.createRoom({
    name,
    preset: "private_chat",
    invite: others.map((o) => o.userId),
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: MEGOLM } }],
  });
  for (const o of others) {
    await waitFor(`${o.label} sees the invite to ${roomId}`, () => o.client.getRoom(roomId)?.getMyMembership() === "invite");
    await o.client.joinRoom(roomId);
  }
  const all = [creator, ...others];
  for (const d of all) {
    await waitFor(`${d.label} sees everyone joined in ${roomId}`, () => {
      const room = d.client.getRoom(roomId);
      return room && all.every((m) => room.getMember(m.userId)?.membership === "join");
    });
    await waitFor(`${d.label}'s crypto knows ${roomId} is encrypted`, () => d.crypto.isEncryptionEnabledInRoom(roomId));
  }
  return roomId;
}

/**
 * Waits until device d has event eventId of roomId in its store and has
 * decrypted it; resolves to the event. Fails with the decryption failure
 * code if decryption failed and stays failed for ms.
 */
export async function decrypted(d, roomId, eventId, ms = 20_000) {
  let ev;
  try {
    return await waitFor(
      `${d.label} decrypts ${eventId}`,
      () => {
        ev = d.client.getRoom(roomId)?.findEventById(eventId);
        if (!ev || ev.isBeingDecrypted() || ev.isDecryptionFailure()) return null;
        return ev.getClearContent() ? ev : null;
      },
      ms,
    );
  } catch (err) {
    if (ev?.isDecryptionFailure()) {
      err.message += ` (decryption failure ${ev.decryptionFailureReason}: ${ev.getContent().body})`;
    } else if (!ev) {
      err.message += " (the event never arrived)";
    }
    throw err;
  }
}

/**
 * Sends a text message from d to roomId and checks that it went out
 * encrypted: the server holds m.room.encrypted with megolm ciphertext
 * that does not contain the plaintext. Resolves to the event ID.
 */
export async function sendSecret(d, roomId, body) {
  const { event_id: eventId } = await within(`${d.label} sends "${body}"`, d.client.sendTextMessage(roomId, body));
  const stored = await d.request("GET", `/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(eventId)}`);
  assert.equal(stored.type, "m.room.encrypted", `the server's copy of ${eventId}: type`);
  assert.equal(stored.content.algorithm, MEGOLM, `the server's copy of ${eventId}: algorithm`);
  assert.equal(typeof stored.content.ciphertext, "string", `the server's copy of ${eventId}: ciphertext`);
  assert.ok(!JSON.stringify(stored).includes(body), `the server's copy of ${eventId} holds the plaintext: ${JSON.stringify(stored)}`);
  return eventId;
}

/** Checks that d decrypted eventId to a text message with this body, sent by sender. */
export async function assertDecrypts(d, roomId, eventId, body, sender) {
  const ev = await decrypted(d, roomId, eventId);
  assert.equal(ev.getWireType(), "m.room.encrypted", `${d.label}: ${eventId}'s wire type`);
  assert.equal(ev.getType(), "m.room.message", `${d.label}: ${eventId}'s decrypted type`);
  assert.deepEqual(
    { msgtype: ev.getClearContent().msgtype, body: ev.getClearContent().body },
    { msgtype: "m.text", body },
    `${d.label}: ${eventId}'s decrypted content`,
  );
  if (sender) {
    assert.equal(ev.getSender(), sender.userId, `${d.label}: ${eventId}'s sender`);
    const info = await d.crypto.getEncryptionInfoForEvent(ev);
    assert.ok(info, `${d.label}: getEncryptionInfoForEvent(${eventId})`);
  }
  return ev;
}

/**
 * Interactive SAS verification of device `other` by device `me`, both in
 * this process: me requests it (to-device), other accepts, me starts
 * m.sas.v1, both compare the emoji (they must match: each side computed
 * them from the ECDH secret on its own) and confirm. Resolves to the emoji
 * shown once both requests are done.
 */
export async function sasVerify(me, other, ms = 60_000) {
  const incoming = new Promise((resolve) => {
    const onRequest = (req) => {
      if (req.otherUserId === me.userId && req.otherDeviceId === me.deviceId) {
        other.client.off(CryptoEvent.VerificationRequestReceived, onRequest);
        resolve(req);
      }
    };
    other.client.on(CryptoEvent.VerificationRequestReceived, onRequest);
  });
  const run = async () => {
    const req = me.userId === other.userId
      ? await me.crypto.requestDeviceVerification(me.userId, other.deviceId)
      : await me.crypto.requestDeviceVerification(other.userId, other.deviceId);
    const theirs = await within(`${other.label} receives the verification request`, incoming, ms);
    await theirs.accept();
    await waitForPhase(req, VerificationPhase.Ready, `${me.label}'s request`);
    const myVerifier = await req.startVerification("m.sas.v1");
    await waitForPhase(theirs, VerificationPhase.Started, `${other.label}'s request`);
    const theirVerifier = theirs.verifier;
    assert.ok(theirVerifier, `${other.label}: the request has no verifier once started`);

    const shown = (v) => new Promise((resolve, reject) => {
      const cbs = v.getShowSasCallbacks();
      if (cbs) return resolve(cbs);
      v.once(VerifierEvent.ShowSas, resolve);
      v.once(VerifierEvent.Cancel, (e) => reject(new Error(`verification cancelled: ${e?.message ?? e?.getContent?.().code}`)));
    });
    const myDone = myVerifier.verify();
    const theirDone = theirVerifier.verify();
    // Surface a cancellation at once rather than through the timeout.
    myDone.catch(() => {});
    theirDone.catch(() => {});
    const [mine, their] = await Promise.all([shown(myVerifier), shown(theirVerifier)]);
    const emoji = (s) => s.sas.emoji?.map(([e, name]) => `${e} ${name}`);
    assert.ok(mine.sas.emoji?.length === 7, `${me.label}: SAS emoji ${JSON.stringify(mine.sas)}`);
    assert.deepEqual(emoji(their), emoji(mine), "both sides must show the same SAS emoji");
    assert.deepEqual(their.sas.decimal, mine.sas.decimal, "both sides must show the same SAS numbers");
    await Promise.all([mine.confirm(), their.confirm()]);
    await Promise.all([myDone, theirDone]);
    await waitForPhase(req, VerificationPhase.Done, `${me.label}'s request`);
    await waitForPhase(theirs, VerificationPhase.Done, `${other.label}'s request`);
    return emoji(mine);
  };
  return within(`SAS verification of ${other.label} by ${me.label}`, run(), ms);
}

function waitForPhase(req, phase, what) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (req.phase === phase) {
        req.off(VerificationRequestEvent.Change, check);
        resolve();
      } else if (req.phase === VerificationPhase.Cancelled && phase !== VerificationPhase.Cancelled) {
        req.off(VerificationRequestEvent.Change, check);
        reject(new Error(`${what} was cancelled (${req.cancellationCode}) while waiting for phase ${VerificationPhase[phase]}`));
      }
    };
    req.on(VerificationRequestEvent.Change, check);
    check();
  });
}

/**
 * Sets up cross-signing (uploading the keys with UIA by password), secret
 * storage with a new recovery key, and a new key backup whose key goes into
 * secret storage, as Element's "set up recovery" does. Resolves to the
 * encoded recovery key (what the user writes down).
 */
export async function setUpRecovery(d, passphrase) {
  await within(`${d.label}: bootstrapCrossSigning`, d.crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: d.uiaPassword() }));
  let recovery;
  await within(
    `${d.label}: bootstrapSecretStorage`,
    d.crypto.bootstrapSecretStorage({
      createSecretStorageKey: async () => (recovery = await d.crypto.createRecoveryKeyFromPassphrase(passphrase)),
      setupNewSecretStorage: true,
      setupNewKeyBackup: true,
    }),
  );
  assert.ok(recovery?.encodedPrivateKey, `${d.label}: bootstrapSecretStorage did not ask for a key`);
  return recovery.encodedPrivateKey;
}

/**
 * The sessions the server holds in key backup version, as
 * {roomId: [sessionId…]} (GET /room_keys/keys?version=).
 */
export async function backedUpSessions(d, version) {
  const res = await d.request("GET", "/room_keys/keys", undefined, { query: { version } });
  return Object.fromEntries(Object.entries(res.rooms ?? {}).map(([room, r]) => [room, Object.keys(r.sessions ?? {})]));
}

export { CryptoEvent, VerificationPhase };

// A matrix-js-sdk peer with Rust crypto for tests/mautrix's Go↔JS E2EE
// test (jssdk_test.go starts it; it is not a node:test file). It logs in
// as an existing session, joins one encrypted room, and then does what the
// Go test tells it on stdin, reporting on stdout, one JSON object a line:
//
//   stdin  {"send": "body"}     send an m.text (encrypted by the SDK)
//          {"quit": true}       stop the client and exit 0
//   stdout {"ready": {...}}     joined, the room known to be encrypted,
//                               the device's own keys (curve25519, ed25519)
//          {"sent": {...}}      event_id and body of a message it sent
//          {"received": {...}}  another's message it decrypted: event_id, sender,
//                               body, sender_curve25519 (of the Olm sender)
//          {"utd": {...}}       a decryption failure (it may be retried
//                               when the key arrives: not fatal by itself)
//          {"plaintext": {...}} an m.room.message that was not encrypted
//          {"error": "..."}     anything that went wrong; exits 1
//
// Environment: POLDER_URL, PEER_USER_ID, PEER_DEVICE_ID, PEER_ACCESS_TOKEN,
// PEER_ROOM_ID; POLDER_TEST_SDK_LOG=1 shows the SDK's log on stderr.
import "./polyfill.js";
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { createInterface } from "node:readline";

const verbose = Boolean(process.env.POLDER_TEST_SDK_LOG);
logger.setLevel(verbose ? "debug" : "silent");
const quiet = {
  trace() {}, debug() {}, info() {}, warn() {}, error() {},
  getChild() { return quiet; },
};

// stdout is the protocol: whatever the SDK prints goes to stderr.
for (const level of ["log", "info", "debug", "warn", "trace"]) {
  console[level] = (...args) => console.error(...args);
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}
function fail(err) {
  out({ error: String(err?.stack ?? err) });
  process.exit(1);
}
process.on("unhandledRejection", fail);
process.on("uncaughtException", fail);

function env(name) {
  const v = process.env[name];
  if (!v) fail(`${name} is not set`);
  return v;
}

const baseUrl = env("POLDER_URL");
const userId = env("PEER_USER_ID");
const deviceId = env("PEER_DEVICE_ID");
const roomId = env("PEER_ROOM_ID");

const client = sdk.createClient({
  baseUrl,
  userId,
  deviceId,
  accessToken: env("PEER_ACCESS_TOKEN"),
  logger: verbose ? undefined : quiet,
});

// In memory: Node has no IndexedDB.
await client.initRustCrypto({ useIndexedDB: false });
const crypto = client.getCrypto();

const seen = new Set();
client.on(sdk.MatrixEventEvent.Decrypted, (ev, err) => {
  if (ev.getRoomId() !== roomId) return;
  if (err || ev.isDecryptionFailure()) {
    out({ utd: { event_id: ev.getId(), sender: ev.getSender(), reason: String(err?.message ?? ev.decryptionFailureReason ?? "") } });
    return;
  }
  // Its own messages come back through sync too: only others'.
  if (ev.getType() !== "m.room.message" || ev.getSender() === userId || seen.has(ev.getId())) return;
  seen.add(ev.getId());
  out({
    received: {
      event_id: ev.getId(),
      sender: ev.getSender(),
      msgtype: ev.getContent().msgtype,
      body: ev.getContent().body,
      sender_curve25519: ev.getSenderKey(),
    },
  });
});
client.on(sdk.RoomEvent.Timeline, (ev) => {
  // Its own messages' local echoes are plaintext until sent: only others'.
  if (ev.getRoomId() === roomId && ev.getSender() !== userId && ev.getType() === "m.room.message" && !ev.isEncrypted()) {
    out({ plaintext: { event_id: ev.getId(), sender: ev.getSender(), body: ev.getContent().body } });
  }
});

const prepared = new Promise((resolve, reject) => {
  client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
    if (state === "PREPARED" || state === "SYNCING") resolve();
    if (state === "ERROR") reject(new Error(`sync error: ${data?.error?.message}`));
  });
});
await client.startClient({ initialSyncLimit: 20 });
await prepared;

await client.joinRoom(roomId);
// Wait until sync has brought the room and its m.room.encryption.
for (let i = 0; ; i++) {
  if (client.getRoom(roomId)?.getMyMembership() === "join" && (await crypto.isEncryptionEnabledInRoom(roomId))) break;
  if (i > 300) fail(`room ${roomId} not joined and encrypted after 15s`);
  await new Promise((r) => setTimeout(r, 50));
}
const keys = await crypto.getOwnDeviceKeys();
out({ ready: { user_id: userId, device_id: deviceId, curve25519: keys.curve25519, ed25519: keys.ed25519 } });

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  if (cmd.send !== undefined) {
    const res = await client.sendTextMessage(roomId, cmd.send);
    out({ sent: { event_id: res.event_id, body: cmd.send } });
  } else if (cmd.quit) {
    break;
  } else {
    fail(`unknown command ${line}`);
  }
}
client.stopClient();
process.exit(0);

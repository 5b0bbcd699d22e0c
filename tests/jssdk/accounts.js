// Account set-up the way a client such as Element does it, through
// matrix-js-sdk's own API: InteractiveAuth drives User-Interactive Auth
// (https://spec.matrix.org/v1.17/client-server-api/#user-interactive-authentication-api),
// loginRequest logs in, and each session gets a MatrixClient of its own.
import "./polyfill.js";
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { waitFor } from "./server.js";

// The SDK logs at info level on its own, and at error level on every
// M_UNKNOWN_TOKEN of a session without a refresh token, which these tests
// provoke on purpose: keep the output to the tests unless asked.
const verbose = Boolean(process.env.POLDER_TEST_SDK_LOG);
logger.setLevel(verbose ? "debug" : "silent");
const quiet = {
  trace() {}, debug() {}, info() {}, warn() {}, error() {},
  getChild() { return quiet; },
};
const clientLogger = verbose ? undefined : quiet;

export const PASSWORD = "correct horse battery staple";

let seq = 0;
/** A fresh, valid localpart: unique per process run and per call. */
export function localpart(prefix) {
  seq++;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${seq}`.toLowerCase();
}

/** An unauthenticated client for baseUrl. */
export function anonClient(baseUrl) {
  return sdk.createClient({ baseUrl, logger: clientLogger });
}

/** A client for an existing session (what an app builds from stored credentials). */
export function sessionClient(baseUrl, { user_id, device_id, access_token, refresh_token }) {
  return sdk.createClient({
    baseUrl,
    userId: user_id,
    deviceId: device_id,
    accessToken: access_token,
    logger: clientLogger,
    ...(refresh_token ? { refreshToken: refresh_token, onTokenRefresh: () => {} } : {}),
  });
}

/**
 * Runs one UIA-protected request with sdk.InteractiveAuth. answers maps a
 * stage type to the auth dict that completes it (the SDK adds the session;
 * it completes m.login.dummy on its own). Resolves to {response, stages},
 * stages being the auth type of every request made, in order (null for a
 * request without auth); rejects with the server's error if a stage fails or
 * no flow can be completed with the answers given.
 */
export async function interactiveAuth(client, doRequest, answers) {
  const stages = [];
  const sessions = new Set();
  let fail;
  const failed = new Promise((_, reject) => (fail = reject));
  const ia = new sdk.InteractiveAuth({
    matrixClient: client,
    doRequest: (auth) => {
      stages.push(auth?.type ?? null);
      if (auth?.session) sessions.add(auth.session);
      if (sessions.size > 1) fail(new Error(`UIA: the SDK sent two sessions: ${[...sessions]}`));
      return doRequest(auth ?? undefined);
    },
    supportedStages: [sdk.AuthType.Dummy, ...Object.keys(answers)],
    requestEmailToken: () => Promise.reject(new Error("no e-mail stage in these tests")),
    stateUpdated: (stage, status) => {
      if (status?.errcode) {
        const err = new sdk.MatrixError({ errcode: status.errcode, error: status.error }, 401);
        fail(Object.assign(err, { message: `UIA stage ${stage} failed: ${status.errcode}: ${status.error}` }));
        return;
      }
      const answer = answers[stage];
      if (!answer) {
        fail(new Error(`UIA: the server asked for stage ${stage}, which this test cannot complete`));
        return;
      }
      // Element's stage components submit from their own event loop turn.
      setImmediate(() => ia.submitAuthDict(answer).catch(fail));
    },
  });
  const response = await Promise.race([ia.attemptAuth(), failed]);
  return { response, stages };
}

/**
 * Registers localpart with the m.login.dummy flow, as a client does: a first
 * POST /register without auth gets the 401 with flows and a session, then
 * InteractiveAuth submits {type: m.login.dummy, session}.
 * Resolves to {response, stages}.
 */
export async function register(baseUrl, username, { password = PASSWORD, deviceName = "jssdk register", body = {} } = {}) {
  const client = anonClient(baseUrl);
  return interactiveAuth(
    client,
    (auth) =>
      client.registerRequest({
        username,
        password,
        initial_device_display_name: deviceName,
        ...body,
        ...(auth ? { auth } : {}),
      }),
    {},
  );
}

/** Logs in with m.login.password and a user identifier. Resolves to the /login response. */
export async function login(baseUrl, user, { password = PASSWORD, deviceName = "jssdk login", body = {} } = {}) {
  const client = anonClient(baseUrl);
  return client.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user },
    password,
    initial_device_display_name: deviceName,
    ...body,
  });
}

/** The UIA answers that prove who userId is with their password. */
export function passwordAnswer(userId, password = PASSWORD) {
  return {
    [sdk.AuthType.Password]: {
      type: sdk.AuthType.Password,
      identifier: { type: "m.id.user", user: userId },
      password,
    },
  };
}

/**
 * Resolves to the MatrixError that promise rejects with; fails if it
 * resolves instead or rejects with something that is not a Matrix error.
 */
export async function matrixError(promise, what) {
  let res;
  try {
    res = await promise;
  } catch (err) {
    if (err instanceof sdk.MatrixError) return err;
    throw new Error(`${what}: rejected with ${err?.name}: ${err?.message}, want a Matrix error`, { cause: err });
  }
  throw new Error(`${what}: succeeded with ${JSON.stringify(res)}, want a Matrix error`);
}

/**
 * Registers a user and starts a syncing client for it with startOptions
 * (startClient's); resolves after the first sync. The client's
 * polderToken is its access token, for raw requests.
 */
export async function syncingUser(baseUrl, prefix, startOptions = {}) {
  const { response } = await register(baseUrl, localpart(prefix));
  const client = sessionClient(baseUrl, response);
  client.polderToken = response.access_token;
  await client.startClient({ initialSyncLimit: 20, ...startOptions });
  await waitFor(`${prefix}: first sync`, () => client.isInitialSyncComplete());
  return client;
}

/**
 * Sends an event in a thread and resolves to its event ID. matrix-js-sdk
 * throws "updatePendingEventStatus called on an event which is not a local
 * echo" from a thread event's send when /sync brings the event back before
 * the PUT's answer (its thread code has already replaced the local echo),
 * though the server stored it. Then the ID is read back from the room's
 * newest events by sender and body.
 */
export async function sendInThread(client, roomId, type, content) {
  try {
    const { event_id } = await client.sendEvent(roomId, type, content);
    return event_id;
  } catch (err) {
    if (!String(err?.message).includes("not a local echo")) throw err;
    const res = await client.createMessagesRequest(roomId, null, 20, "b");
    const ev = res.chunk.find((e) => e.sender === client.getUserId() && e.type === type && e.content?.body === content.body);
    if (!ev) throw new Error(`sendInThread: the send failed in the SDK and the event is not in the room: ${err.message}`);
    return ev.event_id;
  }
}

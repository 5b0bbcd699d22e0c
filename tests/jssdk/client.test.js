// matrix-js-sdk, as a real client, against a running polder: registration
// with User-Interactive Auth, login, whoami, devices, logout, refresh tokens,
// and sessions that survive a restart. Run through run.sh (see README.md).
import "./polyfill.js";
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as sdk from "matrix-js-sdk";
import {
  PASSWORD,
  anonClient,
  interactiveAuth,
  localpart,
  login,
  matrixError,
  passwordAnswer,
  register,
  sessionClient,
} from "./accounts.js";
import { Polder, engines, sleep, withLog } from "./server.js";

// Access tokens issued with a refresh token expire after this long (polder's
// minimum; its default is 5 minutes). The expiry test waits this long, so it
// runs only when POLDER_TEST_SLOW is set.
const REFRESHABLE_LIFETIME_MS = 60_000;
const slow = process.env.POLDER_TEST_SLOW ? false : "waits a minute for a token to expire: set POLDER_TEST_SLOW=1";

for (const engine of engines()) {
  describe(`matrix-js-sdk against polder on ${engine.name}`, { skip: engine.skip }, () => {
    /** @type {Polder} */
    let srv;
    const it = (name, fn) => test(name, withLog(() => srv, fn));
    const itManaged = (name, fn) =>
      test(name, { skip: engine.external && "the server is external: the tests cannot restart it" }, withLog(() => srv, fn));
    const base = () => srv.baseUrl;

    before(async () => {
      srv = new Polder({
        ...engine,
        args: [
          `--refreshable-access-token-lifetime=${REFRESHABLE_LIFETIME_MS}ms`,
          // Every test registers and logs in afresh from 127.0.0.1; the
          // default login limit (1/s, burst 10) would turn the later ones
          // into M_LIMIT_EXCEEDED, which the SDK does not retry.
          "--login-rate-limit-burst=1000",
        ],
      });
      await srv.start();
    });
    after(async () => {
      await srv?.destroy();
    });

    it("reads /versions, /capabilities and the login flows", async () => {
      const client = anonClient(base());
      const versions = await client.getVersions();
      assert.ok(Array.isArray(versions.versions) && versions.versions.length > 0, `getVersions: versions = ${JSON.stringify(versions.versions)}, want a non-empty list`);
      for (const v of versions.versions) assert.match(v, /^(r0\.\d+\.\d+|v1\.\d+)$/, `getVersions: version ${v}`);
      assert.equal(await client.isVersionSupported("v1.1"), true, "isVersionSupported(v1.1)");

      const flows = await client.loginFlows();
      const types = flows.flows.map((f) => f.type);
      assert.ok(types.includes("m.login.password"), `loginFlows: types = ${JSON.stringify(types)}, want m.login.password among them`);

      // /capabilities needs a session.
      const { response: reg } = await register(base(), localpart("caps"));
      const caps = await sessionClient(base(), reg).getCapabilities();
      assert.equal(typeof caps, "object", "getCapabilities: want an object");
      // Room versions are advertised with the default; setPassword works.
      assert.equal(caps["m.room_versions"]?.default, "12", `getCapabilities: m.room_versions = ${JSON.stringify(caps["m.room_versions"])}`);
      assert.notEqual(caps["m.change_password"]?.enabled, false, `getCapabilities: m.change_password = ${JSON.stringify(caps["m.change_password"])}, want it absent or enabled`);
    });

    it("registers through InteractiveAuth with m.login.dummy", async () => {
      const name = localpart("reg");
      const anon = anonClient(base());
      assert.equal(await anon.isUsernameAvailable(name), true, `isUsernameAvailable(${name}) before registering`);

      const { response, stages } = await register(base(), name, { deviceName: "jssdk phone" });
      assert.deepEqual(stages, [null, "m.login.dummy"], "auth types of the /register requests InteractiveAuth made");
      assert.equal(response.user_id, `@${name}:localhost`, "register: user_id");
      assert.ok(response.access_token, "register: want an access_token");
      assert.ok(response.device_id, "register: want a device_id");

      assert.equal(await anon.isUsernameAvailable(name), false, `isUsernameAvailable(${name}) after registering`);

      const me = await sessionClient(base(), response).whoami();
      assert.equal(me.user_id, response.user_id, "whoami with the registration token: user_id");
      assert.equal(me.device_id, response.device_id, "whoami with the registration token: device_id");

      // The same name again fails with M_USER_IN_USE (before or after UIA).
      const err = await matrixError(register(base(), name), `register(${name}) a second time`);
      assert.equal(err.errcode, "M_USER_IN_USE", `register(${name}) a second time: errcode`);
      assert.equal(err.httpStatus, 400, `register(${name}) a second time: HTTP status`);
    });

    it("logs in with m.login.password and calls whoami", async () => {
      const name = localpart("login");
      const { response: reg } = await register(base(), name);

      const res = await login(base(), name, { deviceName: "jssdk laptop" });
      assert.equal(res.user_id, reg.user_id, "loginRequest(localpart): user_id");
      assert.ok(res.access_token && res.device_id, "loginRequest: want access_token and device_id");
      assert.notEqual(res.device_id, reg.device_id, "loginRequest: want a new device");
      assert.notEqual(res.access_token, reg.access_token, "loginRequest: want a new access token");
      assert.equal(res.refresh_token, undefined, "loginRequest without refresh_token: true: want no refresh_token");

      const me = await sessionClient(base(), res).whoami();
      assert.equal(me.user_id, reg.user_id, "whoami: user_id");
      assert.equal(me.device_id, res.device_id, "whoami: device_id");
      assert.ok(!me.is_guest, "whoami: is_guest");

      // The full user ID is accepted as the identifier too.
      const byId = await login(base(), reg.user_id);
      assert.equal(byId.user_id, reg.user_id, "loginRequest(full user ID): user_id");

      // The deprecated helper sends the legacy top-level "user" field.
      const legacy = anonClient(base());
      const lres = await legacy.loginWithPassword(name, PASSWORD);
      assert.equal(lres.user_id, reg.user_id, "loginWithPassword: user_id");
      assert.equal((await legacy.whoami()).user_id, reg.user_id, "whoami on the client loginWithPassword set up");

      const bad = await matrixError(login(base(), name, { password: "wrong" }), "loginRequest with a wrong password");
      assert.equal(bad.errcode, "M_FORBIDDEN", "loginRequest with a wrong password: errcode");
      assert.equal(bad.httpStatus, 403, "loginRequest with a wrong password: HTTP status");
    });

    it("signs in a second device with m.login.token (requestLoginToken)", async () => {
      const name = localpart("logintoken");
      const { response: a } = await register(base(), name);
      const clientA = sessionClient(base(), a);
      const caps = await clientA.getCapabilities();
      if (caps["m.get_login_token"]?.enabled !== true) {
        return; // the server does not offer it; nothing to test
      }
      const flows = (await anonClient(base()).loginFlows()).flows.map((f) => f.type);
      assert.ok(flows.includes("m.login.token"), `loginFlows: ${JSON.stringify(flows)}, want m.login.token with m.get_login_token enabled`);

      // POST /v1/login/get_token may ask for UIA (the spec allows either).
      const { response: tok } = await interactiveAuth(
        clientA,
        (auth) => clientA.requestLoginToken(auth),
        passwordAnswer(a.user_id),
      );
      assert.ok(tok.login_token, `requestLoginToken: got ${JSON.stringify(tok)}, want a login_token`);
      assert.ok(tok.expires_in_ms > 0, `requestLoginToken: expires_in_ms = ${tok.expires_in_ms}`);

      const res = await anonClient(base()).loginRequest({ type: "m.login.token", token: tok.login_token });
      assert.equal(res.user_id, a.user_id, "loginRequest(m.login.token): user_id");
      assert.notEqual(res.device_id, a.device_id, "loginRequest(m.login.token): want a new device");
      assert.equal((await sessionClient(base(), res).whoami()).user_id, a.user_id, "whoami on the device signed in by token");

      // The token is single-use.
      const again = await matrixError(anonClient(base()).loginRequest({ type: "m.login.token", token: tok.login_token }), "loginRequest with a used login token");
      assert.equal(again.errcode, "M_FORBIDDEN", "loginRequest with a used login token: errcode");
    });

    it("lists, renames and deletes devices (UIA with m.login.password)", async () => {
      const name = localpart("devices");
      const { response: a } = await register(base(), name, { deviceName: "device A" });
      const b = await login(base(), name, { deviceName: "device B" });
      const clientA = sessionClient(base(), a);
      const clientB = sessionClient(base(), b);

      const { devices } = await clientB.getDevices();
      const byId = Object.fromEntries(devices.map((d) => [d.device_id, d]));
      assert.deepEqual(Object.keys(byId).sort(), [a.device_id, b.device_id].sort(), "getDevices: device IDs");
      assert.equal(byId[a.device_id].display_name, "device A", "getDevices: display name of A");
      assert.equal(byId[b.device_id].display_name, "device B", "getDevices: display name of B");
      for (const d of devices) {
        assert.equal(typeof d.last_seen_ts, "number", `getDevices: last_seen_ts of ${d.device_id} = ${d.last_seen_ts}`);
      }

      await clientB.setDeviceDetails(a.device_id, { display_name: "renamed A" });
      assert.equal((await clientA.getDevice(a.device_id)).display_name, "renamed A", "getDevice(A) after setDeviceDetails");

      const missing = await matrixError(clientB.getDevice("NOSUCHDEVICE"), "getDevice(NOSUCHDEVICE)");
      assert.equal(missing.errcode, "M_NOT_FOUND", "getDevice(NOSUCHDEVICE): errcode");

      // Deleting A from B: the first request gets the UIA 401, the second
      // proves the password.
      const { stages } = await interactiveAuth(
        clientB,
        (auth) => clientB.deleteDevice(a.device_id, auth),
        passwordAnswer(b.user_id),
      );
      assert.deepEqual(stages, [null, "m.login.password"], "deleteDevice: auth types of the requests");

      const gone = await matrixError(clientA.whoami(), "whoami with the deleted device's token");
      assert.equal(gone.errcode, "M_UNKNOWN_TOKEN", "whoami with the deleted device's token: errcode");
      const after = await clientB.getDevices();
      assert.deepEqual(after.devices.map((d) => d.device_id), [b.device_id], "getDevices after deleteDevice(A)");

      // A wrong password fails the stage and deletes nothing.
      const c = await login(base(), name, { deviceName: "device C" });
      const wrong = await matrixError(
        interactiveAuth(clientB, (auth) => clientB.deleteDevice(c.device_id, auth), passwordAnswer(b.user_id, "wrong")),
        "deleteDevice with a wrong password",
      );
      assert.equal(wrong.errcode, "M_FORBIDDEN", "deleteDevice with a wrong password: errcode");
      assert.equal((await sessionClient(base(), c).whoami()).device_id, c.device_id, "whoami on device C after the failed delete");
    });

    it("logs out: the old token then fails with M_UNKNOWN_TOKEN", async () => {
      const name = localpart("logout");
      const { response: a } = await register(base(), name);
      const b = await login(base(), name);
      const clientA = sessionClient(base(), a);
      const clientB = sessionClient(base(), b);

      assert.deepEqual(await clientA.logout(), {}, "logout: response");

      let loggedOut = null;
      clientA.on(sdk.HttpApiEvent.SessionLoggedOut, (err) => (loggedOut = err));
      const err = await matrixError(clientA.whoami(), "whoami after logout");
      assert.equal(err.errcode, "M_UNKNOWN_TOKEN", "whoami after logout: errcode");
      assert.equal(err.httpStatus, 401, "whoami after logout: HTTP status");
      assert.ok(!err.data.soft_logout, `whoami after logout: soft_logout = ${err.data.soft_logout}, want false or absent`);
      assert.ok(loggedOut, "the SDK emitted Session.logged_out");

      // The other session is untouched, and a logged-out token cannot log out again.
      assert.equal((await clientB.whoami()).device_id, b.device_id, "whoami on the other device");
      const again = await matrixError(clientA.logout(), "logout with a logged-out token");
      assert.equal(again.errcode, "M_UNKNOWN_TOKEN", "logout with a logged-out token: errcode");
      const devices = (await clientB.getDevices()).devices.map((d) => d.device_id);
      assert.deepEqual(devices, [b.device_id], "getDevices after logout: the logged-out device is gone");

      // POST /logout/all ends every session (the SDK has no helper for it: use its HTTP API).
      const c = await login(base(), name);
      await clientB.http.authedRequest(sdk.Method.Post, "/logout/all");
      for (const [label, s] of [["B", b], ["C", c]]) {
        const e = await matrixError(sessionClient(base(), s).whoami(), `whoami on ${label} after /logout/all`);
        assert.equal(e.errcode, "M_UNKNOWN_TOKEN", `whoami on ${label} after /logout/all: errcode`);
      }
      assert.equal((await login(base(), name)).user_id, a.user_id, "login after /logout/all");
    });

    it("refreshes tokens with client.refreshToken (POST /refresh)", async () => {
      const name = localpart("refresh");
      await register(base(), name);
      const res = await login(base(), name, { body: { refresh_token: true } });
      assert.ok(res.refresh_token, "loginRequest with refresh_token: true: want a refresh_token");
      assert.ok(res.expires_in_ms > 0 && res.expires_in_ms <= REFRESHABLE_LIFETIME_MS,
        `loginRequest: expires_in_ms = ${res.expires_in_ms}, want in (0, ${REFRESHABLE_LIFETIME_MS}]`);

      const client = sessionClient(base(), res);
      assert.equal((await client.whoami()).device_id, res.device_id, "whoami with the refreshable token");

      const r1 = await client.refreshToken(res.refresh_token);
      assert.ok(r1.access_token && r1.refresh_token, `refreshToken: got ${JSON.stringify(Object.keys(r1))}, want access_token and refresh_token`);
      assert.notEqual(r1.access_token, res.access_token, "refreshToken: want a new access token");
      assert.notEqual(r1.refresh_token, res.refresh_token, "refreshToken: want a new refresh token");
      assert.ok(r1.expires_in_ms > 0, `refreshToken: expires_in_ms = ${r1.expires_in_ms}`);
      client.setAccessToken(r1.access_token);
      const me = await client.whoami();
      assert.equal(me.device_id, res.device_id, "whoami with the refreshed token: same device");

      // Once the new access token has been used, the old refresh token is
      // revoked (client-server-api "Refreshing access tokens").
      const old = await matrixError(client.refreshToken(res.refresh_token), "refreshToken with the used-up refresh token");
      assert.equal(old.errcode, "M_UNKNOWN_TOKEN", "refreshToken with the used-up refresh token: errcode");

      const bogus = await matrixError(anonClient(base()).refreshToken("not-a-refresh-token"), "refreshToken(bogus)");
      assert.equal(bogus.errcode, "M_UNKNOWN_TOKEN", "refreshToken(bogus): errcode");
    });

    test("refreshable access tokens expire with soft_logout, and refresh after expiry", { skip: slow }, withLog(() => srv, async () => {
      const name = localpart("expiry");
      await register(base(), name);
      const res = await login(base(), name, { body: { refresh_token: true } });
      const client = sessionClient(base(), res);
      assert.equal((await client.whoami()).device_id, res.device_id, "whoami with the refreshable token");

      // The token then fails with M_UNKNOWN_TOKEN and soft_logout: true
      // (client-server-api "Refreshing access tokens"), and the refresh
      // works while the client still sends the expired token.
      await sleep(res.expires_in_ms + 1000);
      const expired = await matrixError(client.whoami(), "whoami with an expired access token");
      assert.equal(expired.errcode, "M_UNKNOWN_TOKEN", "whoami with an expired access token: errcode");
      assert.equal(expired.data.soft_logout, true, "whoami with an expired access token: soft_logout");
      const r = await client.refreshToken(res.refresh_token);
      client.setAccessToken(r.access_token);
      assert.equal((await client.whoami()).device_id, res.device_id, "whoami after refreshing an expired token");
    }));

    it("changes the password (UIA m.login.password), logging out the other devices", async () => {
      const name = localpart("passwd");
      const { response: a } = await register(base(), name);
      const b = await login(base(), name);
      const clientA = sessionClient(base(), a);
      const newPassword = "a new and longer password";

      const { stages } = await interactiveAuth(
        clientA,
        (auth) => clientA.setPassword(auth, newPassword),
        passwordAnswer(a.user_id),
      );
      assert.deepEqual(stages, [null, "m.login.password"], "setPassword: auth types of the requests");
      assert.equal((await clientA.whoami()).device_id, a.device_id, "whoami on the device that changed the password");
      const err = await matrixError(sessionClient(base(), b).whoami(), "whoami on another device after the password change");
      assert.equal(err.errcode, "M_UNKNOWN_TOKEN", "whoami on another device after the password change: errcode");

      const oldpw = await matrixError(login(base(), name), "login with the old password");
      assert.equal(oldpw.errcode, "M_FORBIDDEN", "login with the old password: errcode");
      assert.equal((await login(base(), name, { password: newPassword })).user_id, a.user_id, "login with the new password");
    });

    it("deactivates the account (UIA m.login.password)", async () => {
      const name = localpart("deact");
      const { response: a } = await register(base(), name);
      const clientA = sessionClient(base(), a);

      await interactiveAuth(clientA, (auth) => clientA.deactivateAccount(auth), passwordAnswer(a.user_id));
      const err = await matrixError(clientA.whoami(), "whoami after deactivation");
      assert.equal(err.errcode, "M_UNKNOWN_TOKEN", "whoami after deactivation: errcode");
      const lerr = await matrixError(login(base(), name), "login after deactivation");
      assert.ok(["M_USER_DEACTIVATED", "M_FORBIDDEN"].includes(lerr.errcode), `login after deactivation: errcode = ${lerr.errcode}, want M_USER_DEACTIVATED or M_FORBIDDEN`);
      assert.equal(await anonClient(base()).isUsernameAvailable(name), false, "isUsernameAvailable after deactivation");
    });

    itManaged("keeps accounts, devices and tokens across a restart", async () => {
      const name = localpart("restart");
      const { response: a } = await register(base(), name, { deviceName: "before restart" });
      const b = await login(base(), name, { deviceName: "with refresh", body: { refresh_token: true } });
      const clientA = sessionClient(base(), a);
      await clientA.setDeviceDetails(a.device_id, { display_name: "renamed before restart" });

      const stopped = await srv.stop();
      assert.deepEqual(stopped, { code: 0, signal: null }, "polder after SIGTERM: want exit status 0");
      await srv.start();

      // Same client object, same base URL: the stored session still works.
      const me = await clientA.whoami();
      assert.equal(me.user_id, a.user_id, "whoami after restart: user_id");
      assert.equal(me.device_id, a.device_id, "whoami after restart: device_id");
      const { devices } = await clientA.getDevices();
      const names = Object.fromEntries(devices.map((d) => [d.device_id, d.display_name]));
      assert.deepEqual(names, { [a.device_id]: "renamed before restart", [b.device_id]: "with refresh" }, "getDevices after restart");

      const r = await anonClient(base()).refreshToken(b.refresh_token);
      assert.equal((await sessionClient(base(), { ...b, access_token: r.access_token }).whoami()).device_id, b.device_id,
        "whoami with a token refreshed after the restart");

      assert.equal((await login(base(), name)).user_id, a.user_id, "login after restart");
      assert.equal(await anonClient(base()).isUsernameAvailable(name), false, "isUsernameAvailable after restart");
    });

    itManaged("stops gracefully on SIGTERM (exit status 0)", async () => {
      const stopped = await srv.stop();
      assert.deepEqual(stopped, { code: 0, signal: null }, "polder after SIGTERM");
      const last = srv.log.slice(-5).join("\n");
      assert.match(last, /stopped/, "polder's last log lines: want the \"stopped\" line");
    });
  });
}

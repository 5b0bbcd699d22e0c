// End-to-end encryption with matrix-js-sdk and its Rust crypto
// (@matrix-org/matrix-sdk-crypto-wasm) against one polder: alice and bob
// on the same server go through crypto-scenario.js (encrypted chat,
// cross-signing, secret storage, key backup, SAS verification, a new
// device restoring the backup). Run through run.sh (see README.md).
import "./polyfill.js";
import { after, before, describe } from "node:test";
import { SERVER_ARGS } from "./crypto-helpers.js";
import { e2eeScenario } from "./crypto-scenario.js";
import { Polder, engines } from "./server.js";

for (const engine of engines()) {
  describe(`end-to-end encryption with matrix-js-sdk (Rust crypto) on ${engine.name}`, { skip: engine.skip }, () => {
    /** @type {Polder} */
    let srv;
    before(async () => {
      srv = new Polder({ ...engine, name: `crypto-${engine.name}`, args: SERVER_ARGS });
      await srv.start();
    });
    // The scenario's hooks stop its clients before the server stops.
    e2eeScenario(() => ({ alice: srv, bob: srv }));
    after(async () => {
      await srv?.destroy();
    });
  });
}

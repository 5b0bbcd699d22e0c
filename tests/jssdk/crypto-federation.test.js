// End-to-end encryption across federation, with matrix-js-sdk and its Rust
// crypto: alice on one polder and bob on another go through
// crypto-scenario.js, so device keys, one-time keys, cross-signing keys
// and signatures are fetched over federation (/user/keys/query,
// /user/keys/claim), to-device messages (room keys, SAS verification)
// travel as m.direct_to_device EDUs, and device list changes as
// m.device_list_update / m.signing_key_update EDUs.
//
// The two servers federate over TLS on loopback: each is named
// "localhost:<its TLS port>" (a name with a port is used as it is, with no
// .well-known or SRV lookup) and mints its certificate at startup from a
// throwaway CA (run.sh makes it with tests/synapse/certgen), which both
// trust for outbound federation. On PostgreSQL each server gets a fresh
// database of its own (run.sh makes them). Run through run.sh.
import "./polyfill.js";
import { after, before, describe } from "node:test";
import { SERVER_ARGS } from "./crypto-helpers.js";
import { e2eeScenario } from "./crypto-scenario.js";
import { Polder, engines, freePort } from "./server.js";

const ca = process.env.POLDER_TEST_TLS_CA;
const caKey = process.env.POLDER_TEST_TLS_CA_KEY;
const noCA = !(ca && caKey) && "POLDER_TEST_TLS_CA and POLDER_TEST_TLS_CA_KEY are not set: run through run.sh";

/** The databases of the two servers on an engine, or a reason to skip. */
function databases(engine) {
  if (engine.external) return { skip: "the server is external: this test starts two of its own" };
  if (engine.name !== "postgres") return { a: "", b: "" };
  const a = process.env.POLDER_TEST_PG_URL_FED_A;
  const b = process.env.POLDER_TEST_PG_URL_FED_B;
  return a && b ? { a, b } : { skip: "POLDER_TEST_PG_URL_FED_A and _B are not set: run through run.sh" };
}

for (const engine of engines()) {
  const db = databases(engine);
  const skip = engine.skip || db.skip || noCA;
  describe(`end-to-end encryption across federation (TLS) with matrix-js-sdk on ${engine.name}`, { skip }, () => {
    /** @type {Polder} */
    let hsA, hsB;
    before(async () => {
      // Four distinct ports, chosen up front (a port is free when asked,
      // not reserved).
      const ports = new Set();
      while (ports.size < 4) ports.add(await freePort());
      const [httpA, tlsA, httpB, tlsB] = ports;
      const server = (label, database, httpPort, tlsPort) => {
        const p = new Polder({
          name: `crypto-fed-${label}-${engine.name}`,
          database,
          serverName: `localhost:${tlsPort}`,
          args: [
            ...SERVER_ARGS,
            `--tls-listen=127.0.0.1:${tlsPort}`,
            `--tls-ca-cert=${ca}`,
            `--tls-ca-key=${caKey}`,
          ],
        });
        p.port = httpPort;
        return p;
      };
      hsA = server("a", db.a, httpA, tlsA);
      hsB = server("b", db.b, httpB, tlsB);
      await Promise.all([hsA.start(), hsB.start()]);
    });
    e2eeScenario(() => ({ alice: hsA, bob: hsB }));
    after(async () => {
      await Promise.all([hsA?.destroy(), hsB?.destroy()]);
    });
  });
}

// Runs a real polder process for the tests: start on a free loopback port,
// wait for /versions, stop with SIGTERM (and report the exit status), restart
// on the same data dir and database, and keep its log for failure messages.
//
// Environment (set by run.sh):
//   POLDER_BIN             the polder binary (required unless POLDER_TEST_BASE_URL)
//   POLDER_TEST_PG_URL     a fresh, empty PostgreSQL database: also run on it
//   POLDER_TEST_BASE_URL   test an already running server instead (no restarts)
//   POLDER_TEST_KEEP=1     keep the temporary data dirs
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const LOG_LINES_KEPT = 2000;
const READY_TIMEOUT_MS = 30_000;
// polder's default --shutdown-timeout is 10s; allow a little more.
const STOP_TIMEOUT_MS = 15_000;

/**
 * The engines to run the suite on: always SQLite, PostgreSQL when
 * POLDER_TEST_PG_URL is set (skipped otherwise, with the reason), or only
 * "external" when POLDER_TEST_BASE_URL names a running server.
 */
export function engines() {
  if (process.env.POLDER_TEST_BASE_URL) {
    return [{ name: "external", external: process.env.POLDER_TEST_BASE_URL }];
  }
  if (!process.env.POLDER_BIN) {
    throw new Error("POLDER_BIN is not set: run the tests through run.sh");
  }
  const pg = process.env.POLDER_TEST_PG_URL;
  return [
    { name: "sqlite", database: "" },
    pg
      ? { name: "postgres", database: pg }
      : { name: "postgres", skip: "POLDER_TEST_POSTGRES is not set" },
  ];
}

/** A free TCP port on 127.0.0.1 (free when asked; polder binds it next). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** One polder server: a data dir, a database, a port, and a process. */
export class Polder {
  /**
   * @param {object} opts
   * @param {string} opts.name      label used in log lines
   * @param {string} [opts.database] "" for SQLite in the data dir, or a postgres:// URL
   * @param {string} [opts.external] base URL of a server started elsewhere
   * @param {string[]} [opts.args]  extra flags for `polder serve`
   * @param {string} [opts.serverName] the server name (default "localhost")
   */
  constructor({ name, database = "", external = "", args = [], serverName = "localhost" }) {
    this.name = name;
    this.serverName = serverName;
    this.database = database;
    this.external = external;
    this.args = args;
    this.log = [];
    this.proc = null;
    this.starts = 0;
    this.dataDir = external ? "" : mkdtempSync(join(tmpdir(), `polder-jssdk-${name}-`));
    this.port = 0;
    this.baseUrl = external;
  }

  /** Whether the tests control the process (and so may restart it). */
  get managed() {
    return !this.external;
  }

  /** Starts polder (on the same port as before, if it ran already) and waits for /versions. */
  async start() {
    if (!this.managed) return;
    if (this.proc) throw new Error(`${this.name}: start: already running`);
    if (!this.port) this.port = await freePort();
    this.baseUrl = `http://127.0.0.1:${this.port}`;
    this.starts++;
    const args = [
      "serve",
      "--data-dir", this.dataDir,
      "--listen", `127.0.0.1:${this.port}`,
      "--server-name", this.serverName,
      "--enable-registration",
      ...(this.database ? ["--database", this.database] : []),
      ...this.args,
    ];
    // Only the flags configure the server: drop POLDER_* variables of ours
    // (and any the caller's shell had) from its environment.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("POLDER_")),
    );
    this.note(`start #${this.starts}: ${process.env.POLDER_BIN} ${args.join(" ").replace(/postgres:\/\/\S+/, "postgres://…")}`);
    const proc = spawn(process.env.POLDER_BIN, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    this.proc = proc;
    proc.exited = new Promise((resolve) => {
      proc.on("exit", (code, signal) => resolve({ code, signal }));
      proc.on("error", (err) => resolve({ code: null, signal: null, err }));
    });
    for (const stream of [proc.stdout, proc.stderr]) {
      let partial = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk) => {
        const lines = (partial + chunk).split("\n");
        partial = lines.pop();
        for (const l of lines) this.note(l);
      });
      stream.on("end", () => partial && this.note(partial));
    }
    await this.waitReady(proc);
  }

  async waitReady(proc) {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let lastErr;
    let exited = null;
    proc.exited.then((r) => (exited = r));
    while (Date.now() < deadline) {
      if (exited) {
        this.proc = null;
        throw new Error(`${this.name}: polder exited before serving (${describeExit(exited)})\n${this.logTail()}`);
      }
      try {
        const res = await fetch(`${this.baseUrl}/_matrix/client/versions`, { signal: AbortSignal.timeout(2000) });
        if (res.ok) return;
        lastErr = `status ${res.status}`;
      } catch (e) {
        lastErr = e.cause?.code ?? e.message;
      }
      await sleep(50);
    }
    throw new Error(`${this.name}: /versions not ready after ${READY_TIMEOUT_MS} ms (last: ${lastErr})\n${this.logTail()}`);
  }

  /**
   * Sends SIGTERM and waits for the process to end. Resolves to
   * {code, signal}; a graceful shutdown is {code: 0, signal: null}. After
   * STOP_TIMEOUT_MS it kills the process and rejects.
   */
  async stop() {
    if (!this.proc) return { code: 0, signal: null };
    const proc = this.proc;
    this.note(`stop: sending SIGTERM to pid ${proc.pid}`);
    proc.kill("SIGTERM");
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), STOP_TIMEOUT_MS);
    });
    const result = await Promise.race([proc.exited, timeout]);
    clearTimeout(timer);
    this.proc = null;
    if (!result) {
      proc.kill("SIGKILL");
      await proc.exited;
      throw new Error(`${this.name}: polder still running ${STOP_TIMEOUT_MS} ms after SIGTERM (killed)\n${this.logTail()}`);
    }
    this.note(`stop: ${describeExit(result)}`);
    return result;
  }

  /** Stops polder if it is still running (SIGKILL) and removes its data dir. */
  async destroy() {
    if (this.proc) {
      this.proc.kill("SIGKILL");
      await this.proc.exited;
      this.proc = null;
    }
    if (this.dataDir && !process.env.POLDER_TEST_KEEP) {
      rmSync(this.dataDir, { recursive: true, force: true });
    }
  }

  note(line) {
    if (this.dumping) {
      if (line === "--- end of goroutine dump ---") {
        this.dumping = false;
        this.dumped?.();
      } else {
        this.dump.push(line);
      }
      return;
    }
    if (line === "--- goroutine dump (SIGUSR1) ---") {
      this.dumping = true;
      this.dump = [];
      return;
    }
    this.log.push(line);
    if (this.log.length > LOG_LINES_KEPT) this.log.splice(0, this.log.length - LOG_LINES_KEPT);
  }

  /**
   * The stacks of the requests the server is serving now (a SIGUSR1
   * goroutine dump, cut to the goroutines of HTTP requests), framed for an
   * error message: after a time-out they show where a request hangs.
   */
  async requestStacks(maxLines = 200) {
    if (!this.managed || !this.proc || this.proc.exitCode !== null) return "";
    const done = new Promise((resolve) => (this.dumped = resolve));
    this.proc.kill("SIGUSR1");
    await Promise.race([done, sleep(5000)]);
    this.dumped = null;
    const goroutines = (this.dump ?? []).join("\n").split("\n\n");
    const serving = goroutines.filter((g) => g.includes("net/http.(*conn).serve") && g.includes("polder.dev/polder/internal/api"));
    const lines = serving.join("\n\n").split("\n").slice(0, maxLines);
    return [`--- ${serving.length} requests in flight in polder (${this.name}), of ${goroutines.length} goroutines ---`, ...lines, "--- end of stacks ---"].join("\n");
  }

  /** The last n lines of the server's output, framed for an error message. */
  logTail(n = 40) {
    if (!this.managed) return `(server at ${this.baseUrl} is external: no log)`;
    const lines = this.log.slice(-n);
    return [`--- last ${lines.length} lines of polder (${this.name}, data dir ${this.dataDir}) ---`, ...lines, "--- end of polder log ---"].join("\n");
  }
}

/**
 * Wraps a test body so that a failure carries the server's log tail and,
 * for Matrix errors, the errcode and HTTP status the server sent.
 */
export function withLog(getServer, fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (err) {
      const srv = getServer();
      const extra = [];
      if (err && typeof err === "object" && "errcode" in err) {
        extra.push(`Matrix error: HTTP ${err.httpStatus} ${err.errcode}: ${JSON.stringify(err.data)}`);
      }
      if (srv) extra.push(srv.logTail());
      if (srv && /timed out/.test(String(err?.message ?? err))) extra.push(await srv.requestStacks());
      if (err instanceof Error) {
        // The reporters print the stack, which holds the message as it was
        // when the error was made.
        const more = `\n${extra.join("\n")}`;
        const stack = err.stack ?? "";
        const at = stack.indexOf(err.message);
        err.stack = at >= 0 ? stack.slice(0, at + err.message.length) + more + stack.slice(at + err.message.length) : stack + more;
        err.message += more;
        throw err;
      }
      throw new Error(`${String(err)}\n${extra.join("\n")}`);
    }
  };
}

function describeExit({ code, signal, err }) {
  if (err) return `could not run: ${err.message}`;
  return signal ? `killed by ${signal}` : `exit status ${code}`;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls cond until it returns a truthy value, or fails after ms. */
export async function waitFor(what, cond, ms = 60_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

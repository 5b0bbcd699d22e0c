#!/usr/bin/env bash
# Real-client tests: matrix-js-sdk (from npm) against the polder binary.
#
#   tests/jssdk/run.sh                       SQLite only
#   POLDER_TEST_POSTGRES=postgres://… tests/jssdk/run.sh
#                                            SQLite, then PostgreSQL: a fresh
#                                            database is created (and dropped)
#                                            on that server for the run
#
# Builds polder into a temp dir, installs the pinned npm packages (npm ci),
# and runs `node --test`: the tests start polder on a free loopback port with
# a fresh data dir, restart it on the same data dir, and stop it with SIGTERM,
# checking that it exits 0. Exits non-zero if anything failed. For the
# federation test (crypto-federation.test.js) it also makes a throwaway CA
# (tests/synapse/certgen) and, on PostgreSQL, two more fresh databases.
# Other variables: POLDER_TEST_BASE_URL (test a running server instead, no
# restarts), POLDER_TEST_KEEP=1 (keep data dirs), POLDER_TEST_SDK_LOG=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export GOTOOLCHAIN=auto
log() { echo "jssdk/run.sh: $*" >&2; }

for tool in go node npm; do
  command -v "$tool" >/dev/null || { log "$tool not found on PATH"; exit 1; }
done
nodemajor=$(node -p 'process.versions.node.split(".")[0]')
if [ "$nodemajor" -lt 20 ]; then
  log "Node $(node --version) is too old: matrix-js-sdk needs Node 20 (with polyfill.js) or later"
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/polder-jssdk.XXXXXX")
pgdb=""
cleanup() {
  if [ -n "$pgdb" ]; then
    # The database of the single-server tests, and the two of the
    # federation test (crypto-federation.test.js).
    for db in "$pgdb" "${pgdb}_fed_a" "${pgdb}_fed_b"; do
      psql "$POLDER_TEST_POSTGRES" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
        log "could not drop database $db"
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${POLDER_TEST_BASE_URL:-}" ]; then
  log "building polder"
  (cd "$root" && go build -o "$work/polder" ./cmd/polder)
  export POLDER_BIN="$work/polder"
  # A throwaway CA from which the two servers of crypto-federation.test.js
  # mint their certificates (tls_ca_cert, tls_ca_key) and which both trust.
  mkdir -p "$work/tls"
  (cd "$root" && go run ./tests/synapse/certgen "$work/tls" unused)
  export POLDER_TEST_TLS_CA="$work/tls/ca.crt" POLDER_TEST_TLS_CA_KEY="$work/tls/ca.key"
fi

log "installing matrix-js-sdk (npm)"
cd "$here"
npmflags=(--no-audit --no-fund --loglevel=error)
if [ -f package-lock.json ]; then
  npm ci "${npmflags[@]}" >&2
else
  npm install "${npmflags[@]}" >&2
fi

if [ -n "${POLDER_TEST_POSTGRES:-}" ] && [ -z "${POLDER_TEST_BASE_URL:-}" ]; then
  command -v psql >/dev/null || { log "POLDER_TEST_POSTGRES is set but psql is not on PATH"; exit 1; }
  pgdb="polder_jssdk_$(date +%s)_$$"
  # The same server and credentials, another database: replace the URL's path.
  POLDER_TEST_PG_URL=$(node -e '
    const u = new URL(process.argv[1]);
    if (!/^postgres(ql)?:$/.test(u.protocol)) { console.error("POLDER_TEST_POSTGRES must be a postgres:// URL"); process.exit(1); }
    u.pathname = "/" + process.argv[2];
    console.log(u.href);' "$POLDER_TEST_POSTGRES" "$pgdb")
  log "creating PostgreSQL database $pgdb"
  psql "$POLDER_TEST_POSTGRES" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $pgdb" >&2
  export POLDER_TEST_PG_URL
  # Two more for the two federating servers of crypto-federation.test.js.
  for side in a b; do
    psql "$POLDER_TEST_POSTGRES" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE ${pgdb}_fed_$side" >&2
    url=$(node -e 'const u = new URL(process.argv[1]); u.pathname = "/" + process.argv[2]; console.log(u.href);' "$POLDER_TEST_PG_URL" "${pgdb}_fed_$side")
    export "POLDER_TEST_PG_URL_FED_${side^^}=$url"
  done
fi

log "running the tests"
# Node's summary (tests, pass, fail, duration_ms) ends the output; the exit
# status is node's: non-zero if any test failed.
status=0
# matrix-js-sdk leaves a timer of up to 110 s behind for each request with a
# local timeout (sync, the crypto backend's requests) even after
# stopClient, which keeps a test file's process alive that long after its
# tests are done: --test-force-exit ends it (Node >= 20.14).
exitflag=()
if node --help | grep -q -- --test-force-exit; then exitflag=(--test-force-exit); fi
# JSSDK_TESTS (default: all of them) names the test files to run.
read -r -a files <<<"${JSSDK_TESTS:-client.test.js rooms.test.js slidingsync.test.js push.test.js crypto.test.js crypto-federation.test.js}"
node --test --test-concurrency=1 --test-reporter=spec --test-timeout=180000 "${exitflag[@]}" "${files[@]}" || status=$?
exit "$status"

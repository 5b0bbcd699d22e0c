#!/usr/bin/env bash
# Interoperability test: Polder federating with Synapse, both on loopback.
#
#   tests/synapse/run.sh
#
# Installs Synapse from PyPI into a cached venv (pinned: SYNAPSE_VERSION
# below, its dependencies by constraints.txt), makes a throwaway CA and a
# certificate for each server (certgen/), starts Synapse (SQLite) and the
# polder binary, each with a client port (plain HTTP) and a federation port
# (TLS, trusting the CA), and runs the Go test program (interop_test.go,
# build tag "synapse") against them. Server names carry their port
# ("localhost:<port>"), so each server reaches the other at that port
# directly, with no .well-known or SRV lookups. Exits non-zero if anything
# failed, after printing the end of both servers' logs.
#
# Variables:
#   POLDER_SYNAPSE_VENV   the venv (default: $XDG_CACHE_HOME or ~/.cache,
#                         polder/synapse-<version>-<constraints hash>);
#                         reused if it has the right Synapse
#   SYNAPSE_CONSTRAINTS   pip constraints file (default constraints.txt;
#                         empty: none, to try a newer Synapse)
#   PYTHON                Python 3.10 or later for the venv (default python3)
#   POLDER_BIN            a polder binary to test (default: built here)
#   INTEROP_WAIT          how long the test waits for each thing to arrive
#                         (Go duration, default 30s)
#   INTEROP_RUN           go test -run pattern (default: all)
#   POLDER_SYNAPSE_KEEP=1 keep the work directory (configs, databases, logs)
#   INTEROP_SELFTEST=1    test the harness: a second Synapse in Polder's
#                         place (the scenario must pass)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export GOTOOLCHAIN=auto
log() { echo "synapse/run.sh: $*" >&2; }

SYNAPSE_VERSION=1.163.2
python=${PYTHON:-python3}
constraints=${SYNAPSE_CONSTRAINTS-$here/constraints.txt}

for tool in go "$python"; do
  command -v "$tool" >/dev/null || { log "$tool not found on PATH"; exit 1; }
done

# --- Synapse, installed once per version and constraints ------------------
tag=$SYNAPSE_VERSION
if [ -n "$constraints" ]; then
  tag="$tag-$(cksum <"$constraints" | cut -d' ' -f1)"
fi
venv=${POLDER_SYNAPSE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/polder/synapse-$tag}
# The marker file is written last, so an interrupted install is redone.
if [ -f "$venv/polder-complete" ] &&
  "$venv/bin/python" -c "import sys, synapse; sys.exit(synapse.__version__ != '$SYNAPSE_VERSION')" 2>/dev/null; then
  log "Synapse $SYNAPSE_VERSION: venv $venv"
else
  log "installing Synapse $SYNAPSE_VERSION from PyPI into $venv"
  start=$(date +%s)
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  pipargs=(--disable-pip-version-check --quiet --prefer-binary)
  if [ -n "$constraints" ]; then pipargs+=(-c "$constraints"); fi
  "$venv/bin/python" -m pip install "${pipargs[@]}" "matrix-synapse==$SYNAPSE_VERSION"
  echo "matrix-synapse==$SYNAPSE_VERSION" >"$venv/polder-complete"
  log "installed in $(($(date +%s) - start))s"
fi
py="$venv/bin/python"

# --- work directory, ports, certificates ----------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/polder-synapse.XXXXXX")
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "${POLDER_SYNAPSE_KEEP:-}" = 1 ]; then
    log "work directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# Four free loopback ports, chosen together so that they differ.
read -r syn_http syn_fed pol_http pol_fed < <("$py" -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
synapse_name="localhost:$syn_fed"
polder_name="localhost:$pol_fed"
secret="interop-$RANDOM$RANDOM"

mkdir -p "$work/tls" "$work/synapse" "$work/polder"
(cd "$root" && go run ./tests/synapse/certgen "$work/tls" synapse polder)

# --- Synapse --------------------------------------------------------------
# start_synapse DIR NAME HTTP_PORT FED_PORT CERT: configure and start one
# Synapse in DIR with the certificate CERT (a certgen name).
start_synapse() {
  local dir=$1 name=$2 http=$3 fed=$4 cert=$5 f
  cp "$work/tls/$cert.crt" "$dir/tls.crt"
  cp "$work/tls/$cert.key" "$dir/tls.key"
  for f in homeserver.yaml log.yaml; do
    sed -e "s|@DIR@|$dir|g" -e "s|@SERVER_NAME@|$name|g" \
      -e "s|@HTTP_PORT@|$http|g" -e "s|@FED_PORT@|$fed|g" \
      -e "s|@CA@|$work/tls/ca.crt|g" -e "s|@SECRET@|$secret|g" "$here/$f.in" >"$dir/$f"
  done
  "$py" -m synapse.app.homeserver -c "$dir/homeserver.yaml" --generate-keys >"$dir/stdout.log" 2>&1 || {
    cat "$dir/stdout.log" >&2
    log "Synapse could not generate its keys"
    exit 1
  }
  log "starting Synapse $name (client API http://127.0.0.1:$http)"
  (cd "$dir" && exec "$py" -m synapse.app.homeserver -c homeserver.yaml >>stdout.log 2>&1) &
  pids+=($!)
}
start_synapse "$work/synapse" "$synapse_name" "$syn_http" "$syn_fed" synapse

# --- Polder ---------------------------------------------------------------
if [ "${INTEROP_SELFTEST:-}" = 1 ]; then
  # The harness's own test: a second Synapse where Polder would be.
  log "INTEROP_SELFTEST=1: a second Synapse takes Polder's place"
  start_synapse "$work/polder" "$polder_name" "$pol_http" "$pol_fed" polder
else
  if [ -z "${POLDER_BIN:-}" ]; then
    log "building polder"
    (cd "$root" && go build -o "$work/polder/polder" ./cmd/polder)
    POLDER_BIN="$work/polder/polder"
  fi
  # The TLS settings are given in the environment; a polder without them
  # would ignore them, so say so rather than fail later without a reason.
  settings=$("$POLDER_BIN" serve -h 2>&1 || true)
  for s in tls-listen tls-cert tls-key federation-trusted-ca; do
    case $settings in
    *"-$s "*) ;;
    *) log "WARNING: polder has no --$s setting; it cannot federate over TLS" ;;
    esac
  done
  log "starting Polder $polder_name (client API http://127.0.0.1:$pol_http)"
  (
    cd "$work/polder"
    export POLDER_SERVER_NAME="$polder_name" POLDER_DATA_DIR="$work/polder/data" \
      POLDER_LISTEN="127.0.0.1:$pol_http" POLDER_TLS_LISTEN="127.0.0.1:$pol_fed" \
      POLDER_TLS_CERT="$work/tls/polder.crt" POLDER_TLS_KEY="$work/tls/polder.key" \
      POLDER_FEDERATION_TRUSTED_CA="$work/tls/ca.crt" \
      POLDER_REGISTRATION_SHARED_SECRET="$secret" POLDER_ENABLE_REGISTRATION=true \
      POLDER_RATE_LIMIT_PER_SECOND=0 POLDER_LOGIN_RATE_LIMIT_PER_SECOND=0 \
      POLDER_PASSWORD_HASH_COST=4 POLDER_LOG_LEVEL=debug
    exec "$POLDER_BIN" serve >polder.log 2>&1
  ) &
  pids+=($!)
fi

# wait_http URL NAME PID: wait until URL answers 200 (CA-trusting for https).
wait_http() {
  local url=$1 name=$2 pid=$3
  for _ in $(seq 600); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited while starting"
      return 1
    fi
    if "$py" - "$url" "$work/tls/ca.crt" <<'EOF' 2>/dev/null; then
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
urllib.request.urlopen(sys.argv[1], timeout=2, context=ctx).read()
EOF
      return 0
    fi
    sleep 0.2
  done
  log "$name did not answer $url within two minutes"
  return 1
}

fail() {
  for f in "$work"/{synapse,polder}/{stdout,homeserver,polder}.log; do
    [ -s "$f" ] || continue
    printf '\n----- last 150 lines of %s\n' "${f#"$work"/}" >&2
    tail -n 150 "$f" >&2
  done
  log "FAILED: $*"
  exit 1
}

start=$(date +%s)
wait_http "http://127.0.0.1:$syn_http/health" Synapse "${pids[0]}" || fail "Synapse did not start"
log "Synapse is up after $(($(date +%s) - start))s"
wait_http "http://127.0.0.1:$pol_http/_matrix/client/versions" Polder "${pids[1]}" || fail "Polder did not start"
# The TLS listener is checked by the test program, which says what is wrong.

log "running the test program"
status=0
(
  cd "$root"
  export INTEROP_CA="$work/tls/ca.crt" \
    INTEROP_SYNAPSE_URL="http://127.0.0.1:$syn_http" INTEROP_SYNAPSE_NAME="$synapse_name" \
    INTEROP_POLDER_URL="http://127.0.0.1:$pol_http" INTEROP_POLDER_NAME="$polder_name" \
    INTEROP_SECRET="$secret"
  if [ "${INTEROP_SELFTEST:-}" = 1 ]; then export INTEROP_POLDER_LABEL="Synapse 2"; fi
  go test -count=1 -tags synapse -timeout 15m -v -run "${INTEROP_RUN:-.}" ./tests/synapse
) || status=$?
if [ "$status" != 0 ]; then
  fail "the interoperability test failed (POLDER_SYNAPSE_KEEP=1 keeps configs, databases and logs)"
fi
log "passed"

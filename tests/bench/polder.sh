#!/usr/bin/env bash
# Starts one Polder for benchmarking: embedded SQLite in a fresh directory,
# plain HTTP on loopback, open registration, a registration shared secret,
# no rate limits, bcrypt cost 4 (so that register-login measures the
# server, not bcrypt), federation off, logs at warn.
#
#   tests/bench/polder.sh DIR PORT [extra polder serve flags...]
#
# Prints the PID on stdout once the server answers; the server runs in
# the background with its log in DIR/polder.log. POLDER_BIN names the
# binary (default: bin/polder-bench-server, built here).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export GOTOOLCHAIN=auto
dir=$1 port=$2
shift 2
if [ -z "${POLDER_BIN:-}" ]; then
  (cd "$root" && go build -buildvcs=false -o "$root/bin/polder-bench-server" ./cmd/polder)
  POLDER_BIN="$root/bin/polder-bench-server"
fi
mkdir -p "$dir"
POLDER_SERVER_NAME=${POLDER_SERVER_NAME:-localhost} POLDER_DATA_DIR="$dir/data" \
  POLDER_LISTEN="127.0.0.1:$port" POLDER_ENABLE_REGISTRATION=true \
  POLDER_REGISTRATION_SHARED_SECRET=${BENCH_SECRET:-bench-secret} \
  POLDER_RATE_LIMIT_PER_SECOND=0 POLDER_LOGIN_RATE_LIMIT_PER_SECOND=0 \
  POLDER_PASSWORD_HASH_COST=4 POLDER_LOG_LEVEL=${POLDER_LOG_LEVEL:-warn} \
  POLDER_FEDERATION_ENABLED=${POLDER_FEDERATION_ENABLED:-false} \
  nohup "$POLDER_BIN" serve "$@" >>"$dir/polder.log" 2>&1 </dev/null &
pid=$!
for _ in $(seq 300); do
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 30 "$dir/polder.log" >&2
    echo "polder.sh: polder exited while starting" >&2
    exit 1
  fi
  if curl -fsS "http://127.0.0.1:$port/_matrix/client/versions" >/dev/null 2>&1; then
    echo "$pid"
    exit 0
  fi
  sleep 0.1
done
echo "polder.sh: polder did not answer within 30 s" >&2
kill "$pid"
exit 1

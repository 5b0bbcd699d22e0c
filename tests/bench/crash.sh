#!/usr/bin/env bash
# No acknowledged message lost on SIGKILL: starts Polder (tests/bench/polder.sh),
# runs polder-bench's crash scenario (4 senders, SIGKILL after --crash-after),
# restarts Polder on the same data and reads every acknowledged event back.
#
#   tests/bench/crash.sh [ROUNDS (default 3)] [extra polder-bench flags]
#
# POLDER_BIN, BENCH_BIN: prebuilt binaries (default: built here).
# Exits non-zero if an acknowledged event is missing after a restart.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export GOTOOLCHAIN=auto
rounds=${1:-3}
shift || true
work=$(mktemp -d "${TMPDIR:-/tmp}/polder-crash.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
# POLDER_BIN and BENCH_BIN name prebuilt binaries; otherwise they are built.
if [ -z "${POLDER_BIN:-}" ]; then
  (cd "$root" && go build -buildvcs=false -o "$work/polder" ./cmd/polder)
  POLDER_BIN=$work/polder
fi
export POLDER_BIN
bench=${BENCH_BIN:-$work/polder-bench}
[ -n "${BENCH_BIN:-}" ] || (cd "$root" && go build -buildvcs=false -o "$bench" ./cmd/polder-bench)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
status=0
for r in $(seq "$rounds"); do
  pid=$("$root/tests/bench/polder.sh" "$work/hs" "$port")
  # A random moment: 0.5 to 3 s of sending.
  after=$((500 + RANDOM % 2500))ms
  "$bench" --url "http://127.0.0.1:$port" --scenario crash --pid "$pid" --allow-kill \
    --crash-file "$work/acked.json" --crash-after "$after" "$@" || status=1
  wait "$pid" 2>/dev/null || true
  pid=$("$root/tests/bench/polder.sh" "$work/hs" "$port")
  echo "round $r (SIGKILL after $after):"
  "$bench" verify-crash --url "http://127.0.0.1:$port" --crash-file "$work/acked.json" || status=1
  kill "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  pid=
done
exit $status

#!/usr/bin/env bash
# Runs polder-bench against Polder and Synapse (SQLite each, loopback,
# started fresh here one after the other with the same flags) and prints
# the ratios. Optionally federation-join between two Polders over TLS.
#
#   tests/bench/compare.sh [polder-bench flags...]
#   e.g. tests/bench/compare.sh --scenario send-seq,send-concurrent --messages 1000
#
# Variables:
#   SERVERS      which servers, in order (default "polder synapse"); the
#                first is the base of the ratios
#   OUT          directory for NAME.json, logs and data (default: a new
#                temporary directory, kept)
#   FEDERATION=1 also run federation-join between two Polders over TLS
#                (a throwaway CA from tests/synapse/certgen); FED_FLAGS are
#                extra polder-bench flags for that run
#   POLDER_BIN, BENCH_BIN  prebuilt binaries (default: built here)
#   STRICT=1     exit non-zero if a run failed or had errors (skips are
#                fine): the CI smoke run, tests/bench/smoke.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export GOTOOLCHAIN=auto
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/polder-bench.XXXXXX")}
mkdir -p "$out"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
# POLDER_BIN and BENCH_BIN name prebuilt binaries; otherwise they are built.
if [ -z "${POLDER_BIN:-}" ]; then
  (cd "$root" && go build -buildvcs=false -o "$out/polder" ./cmd/polder)
  POLDER_BIN=$out/polder
fi
export POLDER_BIN
bench=${BENCH_BIN:-$out/polder-bench}
[ -n "${BENCH_BIN:-}" ] || (cd "$root" && go build -buildvcs=false -o "$bench" ./cmd/polder-bench)
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
stop() { kill "$1" 2>/dev/null || true; while kill -0 "$1" 2>/dev/null; do sleep 0.2; done; }

status=0
names=()
for s in ${SERVERS:-polder synapse}; do
  port=$(freeport)
  rm -rf "${out:?}/$s"
  pid=$("$root/tests/bench/$s.sh" "$out/$s" "$port")
  pids+=("$pid")
  sleep 2 # settle before the idle memory figure
  echo "== $s (pid $pid, http://127.0.0.1:$port)" >&2
  if ! "$bench" --url "http://127.0.0.1:$port" --pid "$pid" --shared-secret bench-secret --json "$@" >"$out/$s.json"; then
    echo "== $s: polder-bench failed or had errors (see $out/$s.json)" >&2
    [ "${STRICT:-}" != 1 ] || status=1
  fi
  stop "$pid"
  names+=("$s")
done
echo "reports in $out"
for s in "${names[@]:1}"; do
  echo "== ratios ${names[0]} : $s (throughput ${names[0]}/$s; p50, p99 and CPU per op $s/${names[0]})"
  "$bench" compare "$out/${names[0]}.json" "$out/$s.json" "${names[0]}" "$s"
done

if [ "${FEDERATION:-}" = 1 ]; then
  mkdir -p "$out/tls"
  (cd "$root" && go run ./tests/synapse/certgen "$out/tls" unused >/dev/null)
  ports=()
  fpids=()
  for n in a b; do
    http=$(freeport) fed=$(freeport)
    rm -rf "${out:?}/fed-$n"
    pid=$(POLDER_SERVER_NAME="localhost:$fed" POLDER_FEDERATION_ENABLED=true POLDER_TLS_LISTEN="127.0.0.1:$fed" \
      POLDER_TLS_CA_CERT="$out/tls/ca.crt" POLDER_TLS_CA_KEY="$out/tls/ca.key" \
      "$root/tests/bench/polder.sh" "$out/fed-$n" "$http")
    pids+=("$pid") fpids+=("$pid") ports+=("$http")
  done
  echo "== federation-join: Polder (pid ${fpids[0]}) joins rooms of Polder (pid ${fpids[1]})" >&2
  "$bench" --url "http://127.0.0.1:${ports[0]}" --remote-url "http://127.0.0.1:${ports[1]}" \
    --pid "${fpids[0]}" --shared-secret bench-secret --scenario federation-join ${FED_FLAGS:-} | tee "$out/federation.txt"
  for p in "${fpids[@]}"; do stop "$p"; done
fi
exit "$status"

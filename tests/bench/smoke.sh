#!/usr/bin/env bash
# The CI smoke run of polder-bench against Polder processes started here
# (scripts/test.sh runs it): every scenario at its --quick size against
# one Polder on SQLite, federation-join between two Polders over TLS, and
# one SIGKILL round of the crash scenario. It fails if a scenario fails or
# has errors, or if an acknowledged message is lost. A minute or so.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export GOTOOLCHAIN=auto
work=$(mktemp -d "${TMPDIR:-/tmp}/polder-bench-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$root" && go build -buildvcs=false -o "$work/polder" ./cmd/polder && go build -buildvcs=false -o "$work/polder-bench" ./cmd/polder-bench)
export POLDER_BIN=$work/polder BENCH_BIN=$work/polder-bench
OUT=$work/compare SERVERS=polder STRICT=1 FEDERATION=1 FED_FLAGS=--quick "$root/tests/bench/compare.sh" --quick
# The report's figures, one line a series (the JSON itself is in $work).
python3 - "$work/compare/polder.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    for s in r.get("series") or [{"name": "skipped: " + r.get("skipped", "")}]:
        print(f'{r["scenario"]:>22} {s.get("name", ""):<16} ops {s.get("ops", 0):>5} errors {s.get("errors", 0)} median {s.get("median_ms", 0):.2f} ms')
PY
"$root/tests/bench/crash.sh" 1
echo "polder-bench smoke run passed"

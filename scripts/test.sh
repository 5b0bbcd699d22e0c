#!/usr/bin/env bash
# Runs every test of Polder on a fresh machine: go vet, the Go tests on
# SQLite and PostgreSQL (started here, installed if missing), short fuzz
# runs, and the matrix-js-sdk end-to-end test against a real server.
#   FUZZTIME (default 10s): how long each fuzz target runs.
#   SKIP_JSSDK=1 skips the Node tests; SKIP_FUZZ=1 skips fuzzing;
#   SKIP_BENCH=1 skips the polder-bench smoke run.
#   POLDER_SYNAPSE_TEST=0 skips the Synapse interoperability test (on by default).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

step() { printf '\n=== %s\n' "$*"; }

if [ -z "${POLDER_TEST_POSTGRES:-}" ]; then
  step "starting PostgreSQL"
  POLDER_TEST_POSTGRES=$(scripts/postgres.sh)
  export POLDER_TEST_POSTGRES
fi
echo "PostgreSQL for tests: $POLDER_TEST_POSTGRES"

# A ClamAV daemon with only an EICAR signature (tests/clamav/start.sh;
# installs clamav-daemon if missing) for the media antivirus test.
if [ -z "${POLDER_TEST_CLAMD:-}" ]; then
  step "starting clamd"
  POLDER_TEST_CLAMD=$(tests/clamav/start.sh)
  export POLDER_TEST_CLAMD
fi
echo "clamd for tests: $POLDER_TEST_CLAMD"

step "go vet"
go vet ./...

step "go test (SQLite and PostgreSQL)"
go test -count=1 -timeout 20m ./...

if [ "${SKIP_BENCH:-}" != 1 ]; then
  # polder-bench's smoke run against Polder processes started here
  # (every scenario at its --quick size, federation-join, one SIGKILL).
  step "polder-bench smoke run"
  tests/bench/smoke.sh
fi

if [ "${SKIP_FUZZ:-}" != 1 ]; then
  step "fuzzing (${FUZZTIME:-10s} per target)"
  # Every Fuzz function in the module, run on its own for a short time.
  grep -rl --include='*_test.go' '^func Fuzz' internal | while read -r f; do
    pkg="./$(dirname "$f")"
    for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
      echo "--- $fn ($pkg)"
      go test -run='^$' -fuzz="^${fn}\$" -fuzztime="${FUZZTIME:-10s}" "$pkg"
    done
  done
fi

if [ "${SKIP_JSSDK:-}" != 1 ] && [ -x tests/jssdk/run.sh ]; then
  step "matrix-js-sdk end-to-end"
  tests/jssdk/run.sh
fi

# E2EE with mautrix-go's crypto (tests/mautrix, pure-Go Olm: the goolm tag)
# and matrix-js-sdk's Rust crypto in Node, whose node_modules the step above
# installs; with SKIP_JSSDK=1 only the Go part runs.
step "E2EE with mautrix-go and matrix-js-sdk"
go vet -tags goolm ./tests/mautrix/
if [ "${SKIP_JSSDK:-}" = 1 ]; then
  POLDER_TEST_SKIP_JS=1 go test -tags goolm -count=1 -timeout 10m ./tests/mautrix/
else
  go test -tags goolm -count=1 -timeout 10m ./tests/mautrix/
fi

# Synapse interoperability (tests/synapse/run.sh): Synapse from PyPI in a
# cached venv (about 40 s to install the first time) federating with polder
# on loopback. POLDER_SYNAPSE_TEST=0 skips it.
if [ "${POLDER_SYNAPSE_TEST:-1}" = 1 ]; then
  step "Synapse interoperability"
  tests/synapse/run.sh
fi
step "all tests passed"

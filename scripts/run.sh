#!/usr/bin/env bash
# Builds Polder and runs it on its embedded default (SQLite in ./polder-data,
# plain HTTP on 127.0.0.1:8008). Extra arguments are passed to `polder serve`,
# e.g. scripts/run.sh --enable-registration --server-name example.org
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto
mkdir -p bin
go build -buildvcs=false -o bin/polder ./cmd/polder
exec bin/polder serve "$@"

#!/bin/sh
# Runs the SQLite driver correctness checks and benchmarks, and summarises
# the benchmarks with benchstat. Results go to results/.
#
#   ./run.sh                       # BENCHTIME=2s COUNT=3
#   BENCHTIME=200x COUNT=1 ./run.sh  # a quick smoke run
set -eu
cd "$(dirname "$0")"
export GOTOOLCHAIN=auto CGO_ENABLED=1
BENCHTIME=${BENCHTIME:-2s}
COUNT=${COUNT:-3}
PKGS="./modernc ./ncruces ./mattn"
BENCHSTAT=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
mkdir -p results

go test ./sqlitebench
# -p 1: one test binary at a time, so the drivers never share the CPUs.
go test -p 1 -count 1 -v -run 'TestDriver' $PKGS >results/correctness.txt 2>&1 ||
	{ cat results/correctness.txt; exit 1; }
grep -E '^(ok|FAIL)|correctness.go' results/correctness.txt

# Rounds interleave the drivers (modernc, ncruces, mattn, modernc, …) so
# that a burst of load from other processes on a shared machine hits every
# driver alike instead of all three samples of one.
: >results/bench.txt
for round in $(seq "$COUNT"); do
	for pkg in $PKGS; do
		go test -run '^$' -bench . -benchmem -benchtime "$BENCHTIME" -count 1 -timeout 30m "$pkg" |
			tee -a results/bench.txt
	done
done
go run "$BENCHSTAT" -col driver -ignore pkg,sqlite results/bench.txt | tee results/benchstat.txt

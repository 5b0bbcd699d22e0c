#!/bin/bash
# Builds the smoke program of each driver from a cold build cache (with the
# standard library already compiled, so the time is the driver's own), and
# reports build time, binary size, linkage and whether the binary runs.
# mattn is built dynamically and as a fully static binary.
set -u
cd "$(dirname "$0")"
export GOTOOLCHAIN=auto
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p results
log=results/static.txt
: >"$log"

# build NAME CGO PKG [go build flags...]
build() {
	local name=$1 cgo=$2 pkg=$3
	shift 3
	local cache=$out/cache-$name
	# Warm a new cache with the standard library and the harness.
	CGO_ENABLED=$cgo GOCACHE=$cache go build "$@" -o "$out/warm" ./baseline || return
	local start end
	start=$(date +%s.%N)
	if ! CGO_ENABLED=$cgo GOCACHE=$cache go build "$@" -o "$out/$name" "$pkg" 2>"$out/$name.err"; then
		end=$(date +%s.%N)
		printf '%-24s BUILD FAILED after %.1fs: %s\n' "$name" "$(echo "$end - $start" | bc)" "$(head -c 400 "$out/$name.err" | tr '\n' ' ')" | tee -a "$log"
		return
	fi
	end=$(date +%s.%N)
	local warn size link run
	warn=$(grep -c 'warning' "$out/$name.err")
	size=$(stat -c %s "$out/$name")
	link=$(file -b "$out/$name" | grep -oE 'statically linked|dynamically linked|static-pie linked' | head -1)
	run=$("$out/$name" 2>&1 | head -1)
	printf '%-24s %6.1fs  %5.1f MiB  %-18s linker warnings: %s  run: %s\n' "$name" \
		"$(echo "$end - $start" | bc)" "$(echo "scale=1; $size / 1048576" | bc)" "$link" "$warn" "$run" | tee -a "$log"
	if [ "$warn" -gt 0 ]; then
		grep 'warning' "$out/$name.err" | sed 's/^/    /' | tee -a "$log"
	fi
}

echo "go: $(go version); gcc: $(gcc --version | head -1); $(date -u +%F)" | tee -a "$log"
build baseline 0 ./baseline
build modernc 0 ./modernc
build ncruces 0 ./ncruces
build mattn-dynamic 1 ./mattn
build mattn-static 1 ./mattn -ldflags '-linkmode external -extldflags -static'
build mattn-static-tags 1 ./mattn -tags 'sqlite_omit_load_extension,netgo,osusergo' -ldflags '-linkmode external -extldflags -static'

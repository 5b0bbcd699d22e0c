#!/usr/bin/env bash
# Runs Complement (Matrix's black-box homeserver test suite) against the
# Polder image, by hand. It needs a Docker engine, so it is not part of
# scripts/test.sh: CI has no Docker. See docs/federation.md, "Container
# image and Complement".
#
#   scripts/complement.sh [go test flags]   e.g. -run 'TestLogin|TestOutboundFederationProfile'
#
#   COMPLEMENT_DIR      a Complement checkout to use; default: the module
#                       github.com/matrix-org/complement@$COMPLEMENT_VERSION
#                       from the Go module proxy, copied to bin/complement
#   COMPLEMENT_VERSION  default main
#   COMPLEMENT_BASE_IMAGE  default polder:latest
#   SKIP_IMAGE=1        do not rebuild the image first (make image)
#   TIMEOUT             go test -timeout, default 1h
# The output is also written to bin/complement.log.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export GOTOOLCHAIN=auto

docker info >/dev/null 2>&1 || { echo "complement.sh: no Docker engine answers (docker info failed)" >&2; exit 1; }
if [ "${SKIP_IMAGE:-}" != 1 ]; then
  make image
fi
export COMPLEMENT_BASE_IMAGE="${COMPLEMENT_BASE_IMAGE:-polder:latest}"

dir="${COMPLEMENT_DIR:-}"
if [ -z "$dir" ]; then
  version="${COMPLEMENT_VERSION:-main}"
  # Downloaded outside Polder's module so that go.mod and go.sum stay as they are.
  src=$(cd "$(mktemp -d)" && { go mod download -json "github.com/matrix-org/complement@$version" || true; } |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  if [ -z "$src" ]; then
    echo "complement.sh: cannot download github.com/matrix-org/complement@$version; set COMPLEMENT_DIR to a checkout" >&2
    exit 1
  fi
  dir="$root/bin/complement"
  rm -rf "$dir"
  mkdir -p "$root/bin"
  cp -r "$src" "$dir"
  chmod -R u+w "$dir" # the module cache is read-only
fi

echo "Complement in $dir against $COMPLEMENT_BASE_IMAGE"
cd "$dir"
set -o pipefail
go test -v -count=1 -p 1 -timeout "${TIMEOUT:-1h}" ./tests/... "$@" 2>&1 | tee "$root/bin/complement.log"

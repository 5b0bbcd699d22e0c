#!/usr/bin/env bash
# Builds the container image (default polder:latest) from bin/polder, which
# `make build` makes; `make image` runs both. No base image is pulled: the
# image is FROM scratch and everything in it comes from here.
#   scripts/image.sh [TAG]
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-polder:latest}"
[ -x bin/polder ] || { echo "bin/polder is missing: run make build" >&2; exit 1; }
if file bin/polder 2>/dev/null | grep -q 'dynamically linked'; then
  echo "bin/polder is dynamically linked; build it with CGO_ENABLED=0 (make build)" >&2
  exit 1
fi

ctx=bin/image
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp" "$ctx/rootfs/data"
chmod 1777 "$ctx/rootfs/tmp"
chmod 0700 "$ctx/rootfs/data"
cp bin/polder "$ctx/rootfs/polder"
# The build host's CA bundle, so that federation with servers on the public
# internet can verify their certificates.
bundle=""
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
  if [ -f "$f" ]; then bundle="$f"; break; fi
done
if [ -n "$bundle" ]; then
  cp "$bundle" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
else
  echo "warning: no CA bundle on this host; the image will trust only CAs given in its settings" >&2
fi

docker build -t "$tag" -f Dockerfile "$ctx"
echo "built $tag"

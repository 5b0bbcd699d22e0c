#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for the tests and prints its DSN on stdout.
# Installs PostgreSQL from Debian's packages when it is missing. Idempotent:
# a cluster already running on the port is reused.
#   POLDER_PG_PORT (default 55432), POLDER_PG_DIR (default /tmp/polder-pg)
set -euo pipefail
port=${POLDER_PG_PORT:-55432}
dir=${POLDER_PG_DIR:-/tmp/polder-pg}
log() { echo "postgres.sh: $*" >&2; }

bindir=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && bindir=$d; done
if [ -z "$bindir" ]; then
  log "PostgreSQL not found: installing it from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && bindir=$d; done
fi
[ -n "$bindir" ] || { log "no pg_ctl after install"; exit 1; }

# PostgreSQL refuses to run as root: run it as the postgres user.
run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir "$dir" postgres
fi

dsn="postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable"
if run "$bindir/pg_isready -q -h 127.0.0.1 -p $port" 2>/dev/null; then
  echo "$dsn"; exit 0
fi
if [ ! -f "$dir/PG_VERSION" ]; then
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  run "$bindir/initdb -D $dir -U postgres --auth=trust -E UTF8 --no-sync" >&2
fi
# fsync off: a test database need not survive a power loss.
run "$bindir/pg_ctl -D $dir -l $dir/log -w -t 60 -o '-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300' start" >&2
echo "$dsn"

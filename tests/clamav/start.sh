#!/usr/bin/env bash
# Starts a throwaway ClamAV daemon (clamd) for the media antivirus tests
# and prints its address (host:port) on stdout, for POLDER_TEST_CLAMD.
#
# Installs Debian's clamav-daemon when clamd is missing. ClamAV's own
# signature databases cannot be downloaded here, so the database directory
# holds only a signature file this script writes: the EICAR test file, as
# an MD5 (.hdb) and a hex body (.ndb) signature. Idempotent: a clamd
# already answering on the port is reused.
#   POLDER_CLAMD_PORT (default 53310), POLDER_CLAMD_DIR (default /tmp/polder-clamd)
set -euo pipefail
port=${POLDER_CLAMD_PORT:-53310}
dir=${POLDER_CLAMD_DIR:-/tmp/polder-clamd}
log() { echo "clamav/start.sh: $*" >&2; }

ping_clamd() {
  local r=""
  { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  printf 'zPING\0' >&3
  IFS= read -r -t 5 -d '' r <&3 || true
  exec 3<&- 3>&-
  [ "$r" = "PONG" ]
}

if ping_clamd; then echo "127.0.0.1:$port"; exit 0; fi

clamd=$(command -v clamd || true)
[ -z "$clamd" ] && [ -x /usr/sbin/clamd ] && clamd=/usr/sbin/clamd
if [ -z "$clamd" ]; then
  log "clamd not found: installing clamav-daemon from Debian's packages"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq clamav-daemon >&2
  # The package starts its own clamd and freshclam, which need the network
  # databases; stop them (not needed, and they may not even start).
  $sudo systemctl stop clamav-daemon clamav-freshclam >/dev/null 2>&1 || true
  clamd=$(command -v clamd || echo /usr/sbin/clamd)
fi
[ -x "$clamd" ] || { log "no clamd after install"; exit 1; }

rm -rf "$dir"
mkdir -p "$dir/db"
# The EICAR test file (https://www.eicar.org), as its MD5 and size, and as
# a body signature so that it matches with a trailing newline too.
eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
md5=$(printf '%s' "$eicar" | md5sum | cut -d' ' -f1)
hex=$(printf '%s' "$eicar" | od -An -tx1 | tr -d ' \n')
printf '%s:%d:Polder.Test.EICAR\n' "$md5" "${#eicar}" >"$dir/db/polder.hdb"
printf 'Polder.Test.EICAR.Body:0:*:%s\n' "$hex" >"$dir/db/polder.ndb"

cat >"$dir/clamd.conf" <<CONF
Foreground yes
TCPSocket $port
TCPAddr 127.0.0.1
LocalSocket $dir/clamd.sock
DatabaseDirectory $dir/db
PidFile $dir/clamd.pid
LogFile $dir/clamd.log
LogVerbose no
StreamMaxLength 100M
MaxThreads 4
Bytecode no
CONF
if [ "$(id -u)" = 0 ]; then
  # As root clamd would switch to the clamav user, which must be able to
  # read the database and write the log.
  echo "User root" >>"$dir/clamd.conf"
fi

nohup "$clamd" --config-file="$dir/clamd.conf" >"$dir/stdout.log" 2>&1 &
echo $! >"$dir/clamd.launch.pid"
for _ in $(seq 1 120); do
  if ping_clamd; then echo "127.0.0.1:$port"; exit 0; fi
  if ! kill -0 "$(cat "$dir/clamd.launch.pid")" 2>/dev/null; then
    log "clamd exited:"; cat "$dir/stdout.log" "$dir/clamd.log" >&2 2>/dev/null || true; exit 1
  fi
  sleep 0.5
done
log "clamd did not answer within 60s"; cat "$dir/clamd.log" >&2 2>/dev/null || true
exit 1

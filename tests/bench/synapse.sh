#!/usr/bin/env bash
# Starts one Synapse for benchmarking with polder-bench: SQLite in DIR,
# plain HTTP client API on 127.0.0.1:PORT, open registration, the shared
# secret $BENCH_SECRET (default bench-secret), no federation listener,
# rate limits out of reach, bcrypt rounds 4 (as tests/bench/polder.sh gives
# Polder), logging at WARNING.
#
#   tests/bench/synapse.sh DIR PORT
#
# Prints Synapse's PID on stdout once it answers. Synapse comes from the
# venv tests/synapse/run.sh installs (same version, same constraints);
# if it is missing, it is installed the same way.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=$1 port=$2
SYNAPSE_VERSION=$(sed -n 's/^SYNAPSE_VERSION=//p' "$root/tests/synapse/run.sh")
constraints=$root/tests/synapse/constraints.txt
tag="$SYNAPSE_VERSION-$(cksum <"$constraints" | cut -d' ' -f1)"
venv=${POLDER_SYNAPSE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/polder/synapse-$tag}
if ! [ -f "$venv/polder-complete" ]; then
  echo "synapse.sh: installing Synapse $SYNAPSE_VERSION into $venv" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet --prefer-binary \
    -c "$constraints" "matrix-synapse==$SYNAPSE_VERSION" >&2
  echo "matrix-synapse==$SYNAPSE_VERSION" >"$venv/polder-complete"
fi
py=$venv/bin/python
secret=${BENCH_SECRET:-bench-secret}
mkdir -p "$dir"
cat >"$dir/log.yaml" <<YAML
version: 1
formatters:
  precise: {format: '%(asctime)s %(levelname)s %(name)s: %(message)s'}
handlers:
  file: {class: logging.FileHandler, formatter: precise, filename: "$dir/homeserver.log"}
root: {level: WARNING, handlers: [file]}
disable_existing_loggers: false
YAML
limit='{per_second: 100000, burst_count: 100000}'
cat >"$dir/homeserver.yaml" <<YAML
server_name: "localhost:$port"
pid_file: "$dir/homeserver.pid"
signing_key_path: "$dir/signing.key"
media_store_path: "$dir/media"
log_config: "$dir/log.yaml"
report_stats: false
macaroon_secret_key: "$secret-macaroon"
form_secret: "$secret-form"
registration_shared_secret: "$secret"
enable_registration: true
enable_registration_without_verification: true
bcrypt_rounds: 4
database: {name: sqlite3, args: {database: "$dir/homeserver.db"}}
listeners:
  - {port: $port, bind_addresses: ["127.0.0.1"], type: http, tls: false, x_forwarded: false, resources: [{names: [client], compress: false}]}
trusted_key_servers: []
suppress_key_server_warning: true
url_preview_enabled: false
rc_message: $limit
rc_registration: $limit
rc_login: {address: $limit, account: $limit, failed_attempts: $limit}
rc_joins: {local: $limit, remote: $limit}
rc_joins_per_room: $limit
rc_invites: {per_room: $limit, per_user: $limit, per_issuer: $limit}
rc_presence: {per_user: $limit}
rc_room_creation: $limit
rc_key_requests: $limit
rc_profile: $limit
YAML
"$py" -m synapse.app.homeserver -c "$dir/homeserver.yaml" --generate-keys >"$dir/stdout.log" 2>&1
(cd "$dir" && exec nohup "$py" -m synapse.app.homeserver -c homeserver.yaml >>stdout.log 2>&1 </dev/null) &
pid=$!
for _ in $(seq 600); do
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 30 "$dir/stdout.log" "$dir/homeserver.log" >&2 || true
    echo "synapse.sh: Synapse exited while starting" >&2
    exit 1
  fi
  if curl -fsS "http://127.0.0.1:$port/_matrix/client/versions" >/dev/null 2>&1; then
    echo "$pid"
    exit 0
  fi
  sleep 0.2
done
echo "synapse.sh: Synapse did not answer within 2 minutes" >&2
kill "$pid"
exit 1

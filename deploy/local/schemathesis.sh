#!/usr/bin/env bash
# Property-based testing of the HTTP API with schemathesis (from PyPI,
# pinned, in a virtualenv under the git-ignored .tools/schemathesis):
# `run` starts a real `ticketing serve` (local payment provider) on a fresh
# database and fresh topics, signs a user up, and runs schemathesis against
# the OpenAPI document the server serves, signed in as that user. Checks: no
# 5xx for any generated request, and every response conforms to the
# document (status code, content type, headers, body schema). Called by
# `make test`.
#
# Usage: deploy/local/schemathesis.sh ensure|run
# Environment: DATABASE_URL (a role that may CREATE DATABASE; the fresh
# database is made beside it), KAFKA_BROKERS, CARGO, CARGO_TARGET_DIR,
# SCHEMATHESIS_MAX_EXAMPLES (default 25), SCHEMATHESIS_STATEFUL_EXAMPLES (the
# buying chain's longer stateful run, default 100), SCHEMATHESIS_SEED (default 1).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
version="4.32.5"
venv="$root/.tools/schemathesis"
st="$venv/bin/schemathesis"

log() { echo "[schemathesis] $*"; }
die() {
  echo "[schemathesis] ERROR: $*" >&2
  exit 1
}

ensure() {
  if [[ "$(cat "$venv/.version" 2>/dev/null)" == "$version" && -x "$st" ]]; then
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || die "python3 is required"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    command -v apt-get >/dev/null 2>&1 || die "python3's venv module is missing and apt-get is not available"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    log "installing Debian's python3-venv"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3-venv >/dev/null ||
      die "apt-get install python3-venv failed"
  fi
  log "installing schemathesis==$version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version" ||
    die "pip install schemathesis==$version failed"
  echo "$version" >"$venv/.version"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Signs a fresh user up at $1 and prints its session token.
sign_up() {
  python3 - "$1" <<'PY'
import json, sys, urllib.request, uuid
body = json.dumps({"email": f"schemathesis-{uuid.uuid4().hex}@example.com", "password": "password"})
request = urllib.request.Request(sys.argv[1] + "/api/users/signup", body.encode(), {"Content-Type": "application/json"})
with urllib.request.urlopen(request) as response:
    cookie = response.headers["Set-Cookie"]
print(cookie.split(";", 1)[0].split("=", 1)[1])
PY
}

# The requests recorded in the HAR files given, in all.
count_requests() {
  python3 - "$@" <<'PY'
import json, sys
print(sum(len(json.load(open(path))["log"]["entries"]) for path in sys.argv[1:]))
PY
}

run() {
  ensure
  local cargo="${CARGO:-cargo}" target="${CARGO_TARGET_DIR:-$root/target}"
  : "${DATABASE_URL:?DATABASE_URL (a role that may CREATE DATABASE) is required}"
  (cd "$root" && "$cargo" build --quiet --bin ticketing)
  local bin="$target/debug/ticketing"

  local suffix port base workdir
  suffix="$(date +%s)_$$"
  db="ticketing_schemathesis_$suffix"
  port="$(free_port)"
  base="http://127.0.0.1:$port"
  workdir="$root/.run/schemathesis"
  mkdir -p "$workdir"
  rm -f "$workdir"/*.har

  psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "CREATE DATABASE $db" >/dev/null ||
    die "cannot create database $db through DATABASE_URL"
  # Globals: the EXIT trap runs after this function returned.
  server=""
  cleanup() {
    if [ -n "$server" ]; then
      kill "$server" 2>/dev/null || true
      wait "$server" 2>/dev/null || true
    fi
    psql -X -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  }
  trap cleanup EXIT

  log "starting ticketing serve on $base (database $db, log $workdir/server.log)"
  # The sign-in/sign-up budgets and the live-order cap are raised so the
  # generated requests reach the handlers instead of a 429 or the cap's 400
  # (those limits have their own tests).
  DATABASE_URL="${DATABASE_URL%/*}/$db" PORT="$port" PAYMENT_PROVIDER=local \
    TICKETS_TOPIC="schemathesis-$suffix.tickets.v1" ORDERS_TOPIC="schemathesis-$suffix.orders.v1" \
    PAYMENTS_TOPIC="schemathesis-$suffix.payments.v1" PROJECTION_GROUP_ID="schemathesis-$suffix" \
    AUTH_ADDRESS_PER_MINUTE=100000 AUTH_ADDRESS_BURST=100000 \
    AUTH_EMAIL_PER_MINUTE=100000 AUTH_EMAIL_BURST=100000 MAX_LIVE_ORDERS_PER_USER=100000 \
    RUST_LOG="${SCHEMATHESIS_SERVER_LOG:-warn}" \
    "$bin" serve >"$workdir/server.log" 2>&1 &
  server=$!
  local ready=""
  for _ in $(seq 1 600); do
    kill -0 "$server" 2>/dev/null || die "ticketing serve exited; see $workdir/server.log"
    if "$bin" probe "$base/readyz" >/dev/null 2>&1; then
      ready=1
      break
    fi
    sleep 0.1
  done
  [ -n "$ready" ] || die "ticketing serve did not become ready within 60 s"

  local token
  token="$(sign_up "$base")" || die "cannot sign a user up"

  local checks="not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"
  local common=(
    --url "$base"
    --checks "$checks"
    --seed "${SCHEMATHESIS_SEED:-1}"
    --no-color
    --generation-database none
  )
  # Signed in as the user throughout; sign-out (which revokes the session)
  # runs last, on its own. /readyz is left out: its 503 (not ready) is a
  # documented answer, not a server error.
  log "running schemathesis $version against $base/api/openapi.json"
  export SCHEMATHESIS_HOOKS="$root/deploy/local/schemathesis_hooks.py"
  # Its cache (.schemathesis/) lands in the working directory: keep it in
  # the git-ignored run folder.
  cd "$workdir"
  "$st" run "$base/api/openapi.json" "${common[@]}" \
    --header "Authorization: Bearer $token" \
    --exclude-path /readyz --exclude-path /api/users/signout \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" \
    --report har --report-har-path "$workdir/signed-in.har"
  # The buying chain again, statefully only and longer: at the default
  # length links seldom get as far as an order, so its show, history,
  # cancellation and payment would only ever see unknown ids.
  "$st" run "$base/api/openapi.json" "${common[@]}" \
    --header "Authorization: Bearer $token" \
    --include-path-regex '^/api/(tickets|orders|payments)' --phases stateful \
    --max-examples "${SCHEMATHESIS_STATEFUL_EXAMPLES:-100}" \
    --report har --report-har-path "$workdir/buying.har"
  "$st" run "$base/api/openapi.json" "${common[@]}" \
    --header "Authorization: Bearer $token" \
    --include-path /api/users/signout --phases examples,coverage,fuzzing \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" \
    --report har --report-har-path "$workdir/signout.har"
  log "$(count_requests "$workdir"/*.har) requests sent, no failure"
}

case "${1:-}" in
  ensure) ensure ;;
  run) run ;;
  *) die "usage: $0 ensure|run" ;;
esac

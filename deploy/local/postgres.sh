#!/usr/bin/env bash
# Local PostgreSQL for `make run` and `make test`.
#
# Usage: deploy/local/postgres.sh ensure|stop|status
#
# ensure: if a server answers (pg_isready) at DATABASE_URL's host:port, use it.
#         Otherwise (loopback hosts only) install PostgreSQL from Debian's
#         packages if needed, create a cluster on that port if none exists,
#         start it, and record that we started it (.run/postgres.started).
#         Then create the project's databases if missing: `ticketing` and the
#         database named in DATABASE_URL.
# stop:   stop the cluster only if this script started it.
#
# LOCAL DEVELOPMENT ONLY: when this script sets a cluster up, it adds
# `trust` rules to pg_hba.conf for the `postgres` role (and DATABASE_URL's
# role) on 127.0.0.1 and ::1, so any local process can connect as those
# roles without a password. Never use that on a shared or production host.
#
# Environment:
#   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/ticketing
#   PG_READY_TIMEOUT_SECONDS  how long to wait for a started server (30)
set -euo pipefail
# shellcheck source=deploy/local/debian.sh
source "$(dirname "${BASH_SOURCE[0]}")/debian.sh"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
RUN_DIR="$ROOT/.run"
MARKER="$RUN_DIR/postgres.started"
HBA_TAG="# added by ticketing deploy/local/postgres.sh (local dev only)"
READY_TIMEOUT_SECONDS="${PG_READY_TIMEOUT_SECONDS:-30}"
# Databases always created (besides the one named in DATABASE_URL).
PROJECT_DATABASES=(ticketing)

log() { echo "[stack] postgres: $*"; }
die() {
  echo "[stack] postgres: ERROR: $*" >&2
  exit 1
}

# Splits DATABASE_URL into PG_SCHEME, PG_AUTHORITY, PG_USER, PG_HOST,
# PG_PORT, PG_DB and PG_QUERY (the latter with its leading '?', or empty).
parse_url() {
  local url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ticketing}"
  [[ "$url" =~ ^(postgres|postgresql)://([^/?]*)(/([^?]*))?(\?.*)?$ ]] ||
    die "cannot parse DATABASE_URL (expected postgres://user@host:port/db)"
  PG_SCHEME="${BASH_REMATCH[1]}"
  PG_AUTHORITY="${BASH_REMATCH[2]}"
  PG_DB="${BASH_REMATCH[4]}"
  PG_QUERY="${BASH_REMATCH[5]}"
  local hostport="$PG_AUTHORITY" userinfo=""
  if [[ "$PG_AUTHORITY" == *@* ]]; then
    userinfo="${PG_AUTHORITY%@*}"
    hostport="${PG_AUTHORITY##*@}"
  fi
  PG_USER="${userinfo%%:*}"
  if [[ "$hostport" =~ ^\[([^]]+)\](:([0-9]+))?$ ]]; then
    PG_HOST="${BASH_REMATCH[1]}"
    PG_PORT="${BASH_REMATCH[3]:-5432}"
  elif [[ "$hostport" =~ ^([^:]*)(:([0-9]+))?$ ]]; then
    PG_HOST="${BASH_REMATCH[1]:-127.0.0.1}"
    PG_PORT="${BASH_REMATCH[3]:-5432}"
  else
    die "cannot parse host:port '$hostport' in DATABASE_URL"
  fi
}

is_loopback() {
  case "$1" in
    127.* | localhost | ::1) return 0 ;;
    *) return 1 ;;
  esac
}

answers() {
  command -v pg_isready >/dev/null 2>&1 || return 1
  pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 3 >/dev/null 2>&1
}

apt_install() {
  debian_install "$@" || die "installing $* failed"
}

# Prints "version name" of the cluster configured on $PG_PORT, if any.
cluster_on_port() {
  command -v pg_lsclusters >/dev/null 2>&1 || return 1
  pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; found = 1; exit } END { exit !found }'
}

newest_installed_version() {
  # shellcheck disable=SC2012 # directory names are plain version numbers
  ls -1 /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1
}

hba_file() {
  local ver="$1" name="$2" f
  f="$(pg_conftool "$ver" "$name" show -s hba_file 2>/dev/null || true)"
  [[ -n "$f" ]] || f="/etc/postgresql/$ver/$name/pg_hba.conf"
  echo "$f"
}

# Local development only: trust loopback connections for the dev roles.
ensure_hba_trust() {
  local ver="$1" name="$2" f
  f="$(hba_file "$ver" "$name")"
  [[ -f "$f" ]] || die "pg_hba.conf not found for cluster $ver/$name ($f)"
  if grep -qF "$HBA_TAG" "$f"; then
    return 0
  fi
  local roles="postgres"
  [[ -n "$PG_USER" && "$PG_USER" != "postgres" ]] && roles="postgres,$PG_USER"
  log "allowing $roles on 127.0.0.1 and ::1 with trust auth in $f (local dev only)"
  local tmp
  tmp="$(mktemp)"
  {
    echo "$HBA_TAG"
    echo "host    all    $roles    127.0.0.1/32    trust"
    echo "host    all    $roles    ::1/128         trust"
    echo "# end of lines added by ticketing deploy/local/postgres.sh"
    cat "$f"
  } >"$tmp"
  cat "$tmp" >"$f" # keep the file's owner and mode
  rm -f "$tmp"
}

cluster_running() {
  pg_ctlcluster --skip-systemctl-redirect "$1" "$2" status >/dev/null 2>&1
}

wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
  until answers; do
    ((SECONDS < deadline)) || die "PostgreSQL did not answer on $PG_HOST:$PG_PORT within ${READY_TIMEOUT_SECONDS}s"
    sleep 0.5
  done
}

# As the postgres OS user, over the local socket (peer auth), create
# DATABASE_URL's role if it is missing.
ensure_role() {
  local ver="$1" name="$2"
  [[ -n "$PG_USER" && "$PG_USER" != "postgres" ]] || return 0
  local sockport
  sockport="$(pg_lsclusters -h | awk -v v="$ver" -v n="$name" '$1 == v && $2 == n { print $3 }')"
  printf '%s\n' \
    "SELECT format('CREATE ROLE %I LOGIN SUPERUSER', :'role')" \
    "WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \\gexec" |
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$sockport" -d postgres -v role="$PG_USER" ||
    die "could not create role $PG_USER"
}

start_local_cluster() {
  is_loopback "$PG_HOST" ||
    die "no PostgreSQL answers at $PG_HOST:$PG_PORT (DATABASE_URL), and a non-loopback host is not set up here"

  local cluster ver name
  if ! cluster="$(cluster_on_port)"; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ -z "$(newest_installed_version)" ]]; then
      apt_install postgresql
    fi
    if ! cluster="$(cluster_on_port)"; then
      ver="$(newest_installed_version)"
      [[ -n "$ver" ]] || die "PostgreSQL server binaries not found after install"
      name="main"
      [[ -d "/etc/postgresql/$ver/main" ]] && name="ticketing"
      log "creating cluster $ver/$name on port $PG_PORT"
      pg_createcluster -p "$PG_PORT" "$ver" "$name" >/dev/null || die "pg_createcluster $ver $name failed"
      cluster="$ver $name"
    fi
  fi
  read -r ver name <<<"$cluster"
  mkdir -p "$RUN_DIR"

  ensure_hba_trust "$ver" "$name"
  if cluster_running "$ver" "$name"; then
    # e.g. started by the package's postinst right after we installed it
    log "reloading cluster $ver/$name"
    pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload || die "reload of cluster $ver/$name failed"
  else
    log "starting cluster $ver/$name on port $PG_PORT"
    pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start || die "pg_ctlcluster $ver $name start failed"
  fi
  echo "$ver $name" >"$MARKER"
  wait_ready
  ensure_role "$ver" "$name"
  log "cluster $ver/$name up on $PG_HOST:$PG_PORT (started by this script; 'stop' stops it)"
}

# psql connection string to the maintenance database `postgres`, keeping
# DATABASE_URL's credentials and query parameters.
admin_url() {
  echo "$PG_SCHEME://$PG_AUTHORITY/postgres$PG_QUERY"
}

ensure_databases() {
  if ! command -v psql >/dev/null 2>&1; then
    apt_install postgresql-client
  fi
  local dbs=("${PROJECT_DATABASES[@]}") db
  if [[ -n "$PG_DB" ]]; then
    local seen=0
    for db in "${dbs[@]}"; do [[ "$db" == "$PG_DB" ]] && seen=1; done
    ((seen)) || dbs+=("$PG_DB")
  fi
  for db in "${dbs[@]}"; do
    local exists
    exists="$(printf '%s\n' "SELECT 1 FROM pg_database WHERE datname = :'db';" |
      psql -X -q -t -A -v ON_ERROR_STOP=1 -v db="$db" "$(admin_url)")" ||
      die "could not query databases as ${PG_USER:-$(id -un)} at $PG_HOST:$PG_PORT"
    if [[ "$exists" == "1" ]]; then
      log "database $db exists"
    else
      printf '%s\n' 'CREATE DATABASE :"db";' |
        psql -X -q -v ON_ERROR_STOP=1 -v db="$db" "$(admin_url)" ||
        die "could not create database $db"
      log "database $db created"
    fi
  done
}

cmd_ensure() {
  parse_url
  if answers; then
    log "PostgreSQL answers on $PG_HOST:$PG_PORT"
  else
    log "no PostgreSQL answers on $PG_HOST:$PG_PORT; setting one up"
    start_local_cluster
  fi
  ensure_databases
}

cmd_stop() {
  if [[ ! -f "$MARKER" ]]; then
    log "not started by this script; leaving PostgreSQL alone"
    return 0
  fi
  local ver name
  read -r ver name <"$MARKER"
  if cluster_running "$ver" "$name"; then
    log "stopping cluster $ver/$name (started by this script)"
    pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" stop || die "pg_ctlcluster $ver $name stop failed"
  else
    log "cluster $ver/$name already stopped"
  fi
  rm -f "$MARKER"
}

cmd_status() {
  parse_url
  local who="not started by this script"
  [[ -f "$MARKER" ]] && who="cluster $(cat "$MARKER") started by this script"
  if answers; then
    log "$PG_HOST:$PG_PORT answering ($who)"
  else
    log "$PG_HOST:$PG_PORT NOT answering ($who)"
    return 1
  fi
}

case "${1:-}" in
  ensure) cmd_ensure ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 ensure|stop|status" >&2
    exit 2
    ;;
esac

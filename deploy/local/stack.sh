#!/usr/bin/env bash
# The local stack for `make run` and `make test`: PostgreSQL + a Kafka
# protocol broker (Tansu). Works from any directory; state lives in .run/
# and downloaded tools in .tools/ at the repository root (both git-ignored).
#
# Usage: deploy/local/stack.sh up|down|status
#   up      ensure PostgreSQL answers (installing/starting it if needed) and
#           the project's databases exist; install and start Tansu unless a
#           broker already answers. Running it again is a no-op.
#   down    stop Tansu and PostgreSQL, but only what `up` started.
#   status  report both; exits non-zero if either does not answer.
#
# Environment: DATABASE_URL, KAFKA_BROKERS (see postgres.sh and broker.sh).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "[stack] $*"; }

case "${1:-}" in
  up)
    log "bringing the local stack up"
    bash "$SCRIPT_DIR/postgres.sh" ensure
    bash "$SCRIPT_DIR/broker.sh" start
    log "stack is up (DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ticketing}, KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:9092})"
    ;;
  down)
    log "taking the local stack down"
    rc=0
    bash "$SCRIPT_DIR/broker.sh" stop || rc=1
    bash "$SCRIPT_DIR/postgres.sh" stop || rc=1
    if ((rc == 0)); then log "stack is down"; else log "stack down finished with errors"; fi
    exit "$rc"
    ;;
  status)
    rc=0
    bash "$SCRIPT_DIR/postgres.sh" status || rc=1
    bash "$SCRIPT_DIR/broker.sh" status || rc=1
    if ((rc == 0)); then log "stack is up"; else log "stack is NOT fully up"; fi
    exit "$rc"
    ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac

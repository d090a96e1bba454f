#!/usr/bin/env bash
# Prometheus and promtool for `make test` (the scrape test and the alert
# rules check) and for looking at a local run's metrics.
#
# Usage: deploy/local/prometheus.sh ensure|status
#
# ensure: if `prometheus` and `promtool` are on PATH, do nothing; otherwise
#         install Debian's `prometheus` package (which ships both). Its
#         service is not started: the tests run their own Prometheus on a
#         free port with their own configuration.
set -euo pipefail
# shellcheck source=deploy/local/debian.sh
source "$(dirname "${BASH_SOURCE[0]}")/debian.sh"

log() { echo "[stack] prometheus: $*"; }
die() {
  echo "[stack] prometheus: ERROR: $*" >&2
  exit 1
}

installed() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

ensure() {
  if installed; then
    return 0
  fi
  # policy-rc.d-less containers: the package's service may fail to start;
  # that is fine, only the binaries are used.
  debian_install prometheus || installed ||
    die "prometheus is missing and could not be installed; install Prometheus (prometheus and promtool on PATH)"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  # Debian starts the packaged service where it can; the tests do not use it.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    "${sudo[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  installed || die "prometheus installed but not on PATH"
  log "installed $(prometheus --version 2>&1 | head -n 1)"
}

case "${1:-}" in
  ensure) ensure ;;
  status)
    if installed; then
      log "$(prometheus --version 2>&1 | head -n 1)"
    else
      log "not installed"
    fi
    ;;
  *)
    echo "usage: $0 ensure|status" >&2
    exit 2
    ;;
esac

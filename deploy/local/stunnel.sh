#!/usr/bin/env bash
# stunnel, for the test that puts a TLS terminator in front of a Tansu broker
# (which has no TLS listener of its own) and runs relay -> projection over
# TLS (projections/tests/tls.rs). The test generates its certificates with
# the openssl CLI, checked here too.
#
# Usage: deploy/local/stunnel.sh ensure
set -euo pipefail
# shellcheck source=deploy/local/debian.sh
source "$(dirname "${BASH_SOURCE[0]}")/debian.sh"

log() { echo "[stack] stunnel: $*"; }
die() {
  echo "[stack] stunnel: ERROR: $*" >&2
  exit 1
}

ensure() {
  local missing=()
  command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 || missing+=(stunnel4)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  [ "${#missing[@]}" -eq 0 ] && return 0
  debian_install "${missing[@]}" || die "${missing[*]} missing and could not be installed"
}

case "${1:-}" in
  ensure) ensure ;;
  *) die "usage: $0 ensure" ;;
esac

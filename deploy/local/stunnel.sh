#!/usr/bin/env bash
# stunnel, for the test that puts a TLS terminator in front of a Tansu broker
# (which has no TLS listener of its own) and runs relay -> projection over
# TLS (projections/tests/tls.rs). The test generates its certificates with
# the openssl CLI, checked here too.
#
# Usage: deploy/local/stunnel.sh ensure
set -euo pipefail

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
  command -v apt-get >/dev/null 2>&1 || die "${missing[*]} missing and apt-get is not available"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  log "installing Debian's ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
}

case "${1:-}" in
  ensure) ensure ;;
  *) die "usage: $0 ensure" ;;
esac

#!/usr/bin/env bash
# iptables, for the tests that make a host vanish without a FIN or an RST
# (relay failover: the leader's packets dropped on the loopback interface).
# Those tests need root, as iptables does.
#
# Usage: deploy/local/netfault.sh ensure
set -euo pipefail
# shellcheck source=deploy/local/debian.sh
source "$(dirname "${BASH_SOURCE[0]}")/debian.sh"

log() { echo "[stack] netfault: $*"; }
die() {
  echo "[stack] netfault: ERROR: $*" >&2
  exit 1
}

ensure() {
  [ "$(id -u)" -eq 0 ] || die "the network-fault tests drop packets with iptables and need root"
  command -v iptables >/dev/null 2>&1 || debian_install iptables || die "iptables is missing and could not be installed"
  iptables -w -L INPUT -n >/dev/null || die "iptables cannot read the INPUT chain here"
}

case "${1:-}" in
  ensure) ensure ;;
  *) die "usage: $0 ensure" ;;
esac

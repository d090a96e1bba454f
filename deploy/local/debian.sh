# Sourced by the scripts that install what the tests need from Debian's
# packages, so that one place knows how: `debian_install pkg...` updates the
# package lists and installs the packages (without recommends), through sudo
# when not root. Returns non-zero, with apt-get's reason on stderr, if it
# cannot; the caller says what was missing.

debian_install() {
  command -v apt-get >/dev/null 2>&1 || { echo "apt-get is not available to install $*" >&2; return 1; }
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "installing $* needs root (or sudo)" >&2; return 1; }
    sudo=(sudo)
  fi
  echo "[stack] installing Debian's $*"
  "${sudo[@]}" apt-get update -qq || return 1
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" </dev/null >/dev/null
}

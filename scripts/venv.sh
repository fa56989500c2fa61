# Sourced by scripts/up.sh and tests/run.sh: make `.venv` and install himalia into it.
# Usage: install_himalia [EXTRAS]   (e.g. install_himalia test)
# The `stack` extra (users' data-science packages, docs/user-environment.md) is always installed.

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

install_himalia() {
  local extras="${1:-}"
  command -v npm >/dev/null || apt_install nodejs npm
  # As root, servers run as per-user Unix accounts, which must be able to run the interpreter:
  # build the environment from the system Python rather than one inside a private home.
  local py="${PYTHON:-python3}"
  if [ "$(id -u)" = 0 ] && [ -x /usr/bin/python3 ]; then py=/usr/bin/python3; fi
  if [ -x .venv/bin/python ] && [ "$(id -u)" = 0 ]; then
    case "$(readlink -f .venv/bin/python)" in /root/*|/home/*) rm -rf .venv ;; esac
  fi
  if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; "$py" -m venv .venv; }
  fi
  local spec=".[stack${extras:+,$extras}]"
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip 2>&1 | { grep -v "^WARNING: Location" || true; }
  .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec" 2>&1 | { grep -v "^WARNING: Location" || true; }
  .venv/bin/python -c "import himalia.hub, himalia.magics, himalia.kernels, himalia.extension, himalia.sdk"
}

#!/usr/bin/env bash
# Install everything the test suite needs, then run it: `bash tests/run.sh [pytest args]`.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Browser tests drive Debian's Chromium; never a downloaded browser.
command -v chromium >/dev/null || apt_install chromium
command -v npm >/dev/null || apt_install nodejs npm

# As root, servers run as per-user Unix accounts, which must be able to run the interpreter:
# build the environment from the system Python rather than one inside a private home.
PY="${PYTHON:-python3}"
if [ "$(id -u)" = 0 ] && [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; fi
if [ -x .venv/bin/python ] && [ "$(id -u)" = 0 ]; then
  case "$(readlink -f .venv/bin/python)" in /root/*|/home/*) rm -rf .venv ;; esac
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; "$PY" -m venv .venv; }
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -U pip 2>&1 | { grep -v "^WARNING: Location" || true; }
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | { grep -v "^WARNING: Location" || true; }
.venv/bin/python -c "import himalia.hub, himalia.magics, himalia.kernels, himalia.extension, himalia.sdk"

exec .venv/bin/python -m pytest "$@"

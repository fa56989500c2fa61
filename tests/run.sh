#!/usr/bin/env bash
# Install everything the test suite needs, then run it: `bash tests/run.sh [pytest args]`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

# Browser tests drive Debian's Chromium; never a downloaded browser.
command -v chromium >/dev/null || apt_install chromium
install_himalia test

exec .venv/bin/python -m pytest "$@"

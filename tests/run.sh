#!/usr/bin/env bash
# Install everything the test suite needs, then run it: `bash tests/run.sh [pytest args]`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

# Browser tests drive Debian's Chromium; never a downloaded browser.
command -v chromium >/dev/null || apt_install chromium
install_himalia test

# As root the suite runs servers as per-user Unix accounts, which must reach this checkout
# (the editable install imports from it): let them pass through, not list, the folders above.
if [ "$(id -u)" = 0 ]; then
  dir="$PWD"
  while [ "$dir" != "/" ]; do
    case "$(stat -c %A "$dir")" in
      *x|*t) ;;
      *) chmod o+x "$dir"; echo "tests/run.sh: let other accounts pass through $dir (chmod o+x)" ;;
    esac
    dir="$(dirname "$dir")"
  done
fi

exec .venv/bin/python -m pytest "$@"

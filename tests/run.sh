#!/usr/bin/env bash
# Install everything the test suite needs, then run it: `bash tests/run.sh [pytest args]`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

# As root the suite runs servers and the platform's services as other Unix accounts, which
# must reach this checkout (the editable install imports from it). Let them pass through, not
# list, a private folder above it; never open up a home folder such as /root.
if [ "$(id -u)" = 0 ]; then
  homes="$(getent passwd | cut -d: -f6 | sort -u)"
  dir="$PWD"
  while [ "$dir" != "/" ]; do
    case "$(stat -c %A "$dir")" in
      *x|*t) ;;
      *)
        if printf '%s\n' "$homes" | grep -qxF "$dir" || [ "$(dirname "$dir")" = /home ]; then
          echo "tests/run.sh: $dir is a private home folder and the tests' per-user accounts must reach" \
               "this checkout inside it: clone the repository outside home folders (e.g. under /srv or /opt)" >&2
          exit 1
        fi
        chmod o+x "$dir"
        echo "tests/run.sh: let other accounts pass through $dir (chmod o+x)"
        ;;
    esac
    dir="$(dirname "$dir")"
  done
fi

# Browser tests drive Debian's Chromium; never a downloaded browser.
command -v chromium >/dev/null || apt_install chromium
# The Docker backend's tests start a Docker engine of their own and build images on a Debian
# base made with debootstrap (no registry is needed).
command -v dockerd >/dev/null || apt_install docker.io
command -v debootstrap >/dev/null || apt_install debootstrap
install_himalia test

# Test modules run two at a time (each module shares one started platform, so a module stays
# on one worker): much of their time is spent waiting on servers, not computing.
exec .venv/bin/python -m pytest -n "${HIMALIA_TEST_WORKERS:-2}" --dist loadfile "$@"

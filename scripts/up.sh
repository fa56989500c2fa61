#!/usr/bin/env bash
# Install himalia into .venv and run the platform: `bash scripts/up.sh [himalia up options]`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
install_himalia
exec .venv/bin/himalia up "$@"

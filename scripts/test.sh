#!/usr/bin/env bash
# Quick start 2: set up and run the whole test suite (both backends).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"

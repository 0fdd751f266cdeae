#!/usr/bin/env bash
# Quick start 2: set up and run the whole test suite (both backends).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# lint first (pyproject.toml [tool.ruff]): one quote style, sorted imports, pyflakes, 120 columns
.venv/bin/ruff check .
# the whole suite (no arguments, as CI runs it) also checks the Paddle-only install in its own venv, .venv-paddle
if [ "$#" -eq 0 ]; then
    bash scripts/test_paddle_only.sh
fi
# everything is installed now: a test that skips for a missing package fails instead (tests/conftest.py)
TWINVQA_ALL_INSTALLED=1 exec .venv/bin/python -m pytest "$@"

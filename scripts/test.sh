#!/usr/bin/env bash
# Quick start 2: set up and run the whole test suite (both backends).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# lint first (pyproject.toml [tool.ruff]): one quote style, sorted imports, pyflakes, 120 columns
.venv/bin/ruff check .
# everything is installed now: a test that skips for a missing package fails instead (tests/conftest.py)
TWINVQA_ALL_INSTALLED=1 exec .venv/bin/python -m pytest "$@"

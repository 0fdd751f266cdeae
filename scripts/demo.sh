#!/usr/bin/env bash
# Quick start 1: set up, generate the built-in demo data, train TRAR on it (Paddle backend), validate every epoch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python run.py --RUN=train --MODEL=trar --DATASET=demo --backend="${BACKEND:-paddle}" --SEED=0 "$@"

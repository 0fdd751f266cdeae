#!/usr/bin/env bash
# Quick start 1: set up, generate the built-in demo data, train TRAR on it (Paddle backend), validate every epoch.
# The run is named demo_<backend>, so the two backends' demos keep their own checkpoints, logs and results; running
# the demo again replaces that backend's previous demo run (OVERWRITE; any other run name is refused when taken).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
backend=${BACKEND:-paddle}
exec .venv/bin/python run.py --RUN=train --MODEL=trar --DATASET=demo --backend="$backend" --SEED=0 \
    --VERSION="demo_$backend" --SET OVERWRITE=True "$@"

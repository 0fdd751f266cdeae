#!/usr/bin/env bash
# The Paddle-only install as AI Studio users make it: .venv-paddle from requirements-paddle.txt (no torch), then the
# checks of tests/paddle_only in it (train, val, export, predict, convert). Idempotent: the venv is reused while
# requirements-paddle.txt, requirements-libs.txt and the pytest pin of requirements-dev.txt are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
venv=.venv-paddle
pytest_pin=$(grep -E '^pytest==' requirements-dev.txt)     # for the check only; users install requirements-paddle.txt
if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
fi
stamp=$venv/.twinvqa-requirements
want=$( (cat requirements-paddle.txt requirements-libs.txt; echo "$pytest_pin") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet -r requirements-paddle.txt "$pytest_pin"
    echo "$want" > "$stamp"
fi
if "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "$venv has torch installed: the Paddle-only check needs an install without it" >&2
    exit 1
fi
echo "Paddle-only check ($("$venv/bin/python" --version), $venv, no torch): tests/paddle_only"
TWINVQA_PADDLE_ONLY=1 exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/paddle_only

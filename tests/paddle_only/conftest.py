"""tests/paddle_only runs only in a Paddle-only install: scripts/test_paddle_only.sh builds .venv-paddle from
requirements-paddle.txt (no torch) and runs these tests there with TWINVQA_PADDLE_ONLY=1. Elsewhere (the main .venv,
which has torch) they are not collected: what they check is that nothing on the user's path needs torch."""
import os


def pytest_ignore_collect(collection_path, config):
    return os.environ.get("TWINVQA_PADDLE_ONLY") != "1"

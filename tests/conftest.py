import importlib.util
import os

import pytest

# One thread per framework: the suite shares 2 cores, and oversubscribed threads make tiny models 10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

BACKEND_NAMES = ["torch", "paddle"]


def _installed(name):
    module = "paddle" if name == "paddle" else "torch"
    return importlib.util.find_spec(module) is not None


def pytest_configure(config):
    config.addinivalue_line("markers", "parity: needs both frameworks in one process")
    config.addinivalue_line("markers", "slow: end-to-end runs (seconds to a minute)")


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    """A Backend for each framework; skipped with a reason when the framework is missing (CI installs both)."""
    name = request.param
    if not _installed(name):
        if os.environ.get("CI"):
            pytest.fail(f"backend {name} is not installed, but CI must run every backend")
        pytest.skip(f"{name} is not installed")
    from backends import get_backend
    return get_backend(name)


@pytest.fixture
def both_backends():
    for name in BACKEND_NAMES:
        if not _installed(name):
            if os.environ.get("CI"):
                pytest.fail(f"parity tests need {name}, which is not installed")
            pytest.skip(f"{name} is not installed")
    from backends import get_backend
    return get_backend("torch"), get_backend("paddle")

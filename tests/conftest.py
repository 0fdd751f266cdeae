import importlib.util
import os

import pytest

# One thread per framework: the suite shares 2 cores, and oversubscribed threads make tiny models 10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

BACKEND_NAMES = ["torch", "paddle"]


def _installed(name):
    module = "paddle" if name == "paddle" else "torch"
    return importlib.util.find_spec(module) is not None


def _everything_installed():
    """CI, and scripts/test.sh (which installs both backends and every extra first), run every test."""
    return bool(os.environ.get("CI") or os.environ.get("TWINVQA_ALL_INSTALLED"))


# Where everything is installed, a skip would hide a test: it fails instead, except the skips that depend on the
# kind of machine (a GPU present, not Linux). Module-level importorskip calls included.
MACHINE_SKIPS = ("a GPU is present", "a CUDA device is present", "not Linux", "Linux only")
# The reason the device runs (tests/gpu, marker `gpu`) give on a machine without a GPU: a machine skip for those tests
# only, so that no other test's "no GPU" passes for one.
NO_GPU = "no GPU on this machine"


def _hidden_by_a_skip(report, gpu_test=False):
    if not _everything_installed() or not report.skipped or hasattr(report, "wasxfail"):
        return None
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    kinds = MACHINE_SKIPS + ((NO_GPU,) if gpu_test else ())
    return None if any(kind in reason for kind in kinds) else reason


def _fail_under_ci(report, gpu_test=False):
    reason = _hidden_by_a_skip(report, gpu_test)
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = f"skipped where every backend and extra is installed (CI, scripts/test.sh): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_under_ci(outcome.get_result(), item.get_closest_marker("gpu") is not None)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_under_ci(outcome.get_result())


def pytest_configure(config):
    config.addinivalue_line("markers", "parity: needs both frameworks in one process")
    config.addinivalue_line("markers", "slow: end-to-end runs (seconds to a minute)")
    config.addinivalue_line("markers", f"gpu: runs on a GPU (tests/gpu); skipped with '{NO_GPU}' where there is none")


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    """A Backend for each framework; skipped with a reason when the framework is missing (CI installs both)."""
    name = request.param
    if not _installed(name):
        if _everything_installed():
            pytest.fail(f"backend {name} is not installed, but CI and scripts/test.sh run every backend")
        pytest.skip(f"{name} is not installed")
    from backends import get_backend
    return get_backend(name)


@pytest.fixture
def both_backends():
    for name in BACKEND_NAMES:
        if not _installed(name):
            if _everything_installed():
                pytest.fail(f"parity tests need {name}, which is not installed")
            pytest.skip(f"{name} is not installed")
    from backends import get_backend
    return get_backend("torch"), get_backend("paddle")

"""Device runs (marker `gpu`): a train step measured on the GPU, and run.py end to end there with the checkpoint
evaluated on the CPU (tests/gpu/smoke.py). On a machine without a GPU they skip with a machine-kind reason;
`pytest -m "not gpu"` leaves them out, `pytest -m gpu tests/gpu` runs only them.

Everything CUDA runs in child processes: this one holds no CUDA context (a GPU in exclusive-process mode would refuse
the runs it starts)."""
import math
import subprocess
import sys

import pytest

from bench.__main__ import run_child
from tests.conftest import BACKEND_NAMES, NO_GPU
from tests.gpu import smoke

pytestmark = pytest.mark.gpu
GPU = "0"


def _gpu_listed():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.startswith("GPU ") for line in out.splitlines())


def _require_gpu(name):
    """Skip on a machine without a GPU (a machine skip); a backend that is missing or cannot see the GPU skips with
    its reason, which fails where everything is installed (tests/conftest.py)."""
    if not _gpu_listed():
        pytest.skip(f"{NO_GPU} (nvidia-smi lists none)")
    proc = subprocess.run([sys.executable, "-m", "tests.gpu.device_probe", name, GPU], capture_output=True, text=True,
                          timeout=600, cwd=smoke.REPO)
    answer = proc.stdout.strip()
    if answer != "yes":
        reason = (proc.stderr.strip().splitlines() or [f"device_probe printed {answer!r}"])[-1]
        pytest.skip(f"{name} cannot run on GPU {GPU} here: {reason}")


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "amp"])
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_train_step_measured_on_the_gpu(name, amp):
    _require_gpu(name)
    spec = {"kind": "train", "backend": name, "model": "mcan", "size": "demo", "steps": 2, "warmup": 1, "gpu": GPU,
            "amp": amp}
    result = run_child("bench.train_step", spec, threads=1, timeout=600)
    assert "error" not in result, result["error"]
    assert result["device"] != "cpu" and result["device"].endswith(f":{GPU}")
    assert result["gpu_peak_mib"] > 0 and math.isfinite(result["loss"])
    assert result["amp"] is amp and bool(result.get("loss_scale")) is amp


@pytest.mark.parametrize("model,amp", [("trar", False), ("mmnasnet_small", True)], ids=["trar-fp32", "mmnasnet-amp"])
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_run_on_the_gpu_agrees_with_the_cpu_evaluation(name, model, amp, tmp_path):
    _require_gpu(name)
    row = smoke.smoke(name, gpu=GPU, amp=amp, model=model, workdir=str(tmp_path), timeout=600)
    assert row["device"] == f"gpu:{GPU}" and row["amp"] is amp
    assert row["device_val_accuracy"] is not None and row["cpu_val_accuracy"] is not None
    assert row["answers_agree"] >= smoke.MIN_AGREE

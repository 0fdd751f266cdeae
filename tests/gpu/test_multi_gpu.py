"""Data-parallel training on 2 GPUs over NCCL (marker `gpu`): the GPU variant of tests/test_distributed.py.

2 processes (--GPU=0,1 under torchrun / paddle.distributed.launch --devices 0,1) train 2 demo epochs; rank 0 alone
logs, both ranks end with the same parameters (the checksums gathered from every rank), and the epoch losses agree
with 1 process on GPU 0 with GRAD_ACCU_STEPS=2 to float rounding (cuDNN / cuBLAS kernels and the CUDA dropout are not
the CPU's bit-identical path). Skipped on a machine with fewer than 2 GPUs.
"""
import os
import re
import subprocess
import sys

import pytest

from core.data.demo import generate
from tests.conftest import BACKEND_NAMES, NO_GPU
from tests.gpu import smoke
from tests.test_distributed import TINY

pytestmark = pytest.mark.gpu


def _gpus_listed():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def _require_two_gpus(name):
    if _gpus_listed() < 2:
        pytest.skip(f"{NO_GPU} (2 GPUs needed; nvidia-smi lists {_gpus_listed()})")
    for gpu in ("0", "1"):
        proc = subprocess.run([sys.executable, "-m", "tests.gpu.device_probe", name, gpu], capture_output=True,
                              text=True, timeout=600, cwd=smoke.REPO)
        if proc.stdout.strip() != "yes":
            pytest.skip(f"{name} cannot run on GPU {gpu} here: {(proc.stderr.strip().splitlines() or [''])[-1]}")


def _run(cmd, tmp_path, version):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    log = (tmp_path / "results" / "log" / f"log_run_{version}.txt").read_text()
    return text, [float(x) for x in re.findall(r"^Epoch: \d+, Loss: (\S+),", log, re.M)]


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_two_gpus_train_as_one_with_accumulation(name, tmp_path):
    _require_two_gpus(name)
    script = os.path.join(smoke.REPO, "run.py")
    generate(str(tmp_path / "demo"), seed=0, n_train_images=24, n_val_images=8, n_test_images=6, questions_per_image=4)
    flags = ["--RUN=train", "--MODEL=trar", "--DATASET=demo", f"--backend={name}",
             f"--DATA_ROOT={tmp_path / 'demo'}", "--SET", f"RESULTS_ROOT={tmp_path / 'results'}",
             "--SET", f"CKPTS_ROOT={tmp_path / 'ckpts'}", *TINY, "--MAX_EPOCH=2"]
    _, one = _run([sys.executable, script, *flags, "--GPU=0", "--ACCU=2", "--VERSION=one"], tmp_path, "one")
    if name == "torch":
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    else:
        launcher = [sys.executable, "-m", "paddle.distributed.launch", "--devices", "0,1", "--log_dir",
                    str(tmp_path / "launch")]
    text, two = _run([*launcher, script, *flags, "--GPU=0,1", "--VERSION=two"], tmp_path, "two")
    sums = re.findall(r"Parameter checksums by rank \(sha256\): ([0-9a-f ]+)", text)
    assert len(sums) == 1 and len(set(sums[0].split())) == 1 and len(sums[0].split()) == 2, text[-2000:]
    assert len(one) == len(two) == 2
    assert all(abs(a - b) <= 1e-3 * abs(a) for a, b in zip(one, two)), (one, two)

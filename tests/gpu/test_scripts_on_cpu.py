"""The GPU check scripts (tests/gpu/gpu_check.sh, tests/gpu/smoke.py) on a machine without a GPU: no `gpu` marker,
so they run in the normal suite. What they check on a GPU is in tests/gpu/test_on_gpu.py."""
import json
import os
import subprocess
import sys

import pytest

from tests.gpu import smoke


def test_gpu_check_script_without_cuda(tmp_path):
    """tests/gpu/gpu_check.sh on this CPU machine, with a stub nvidia-smi: it names the installed backends that see no
    CUDA device and stops (exit 2); told to measure torch anyway, it runs the bench invocations, the smoke runs and the
    report, lists the failures with their reason and exits 1. The GPU measurement itself needs a GPU."""
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: this checks the script's behaviour without one")
    stub = tmp_path / "bin" / "nvidia-smi"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\necho 'Stub GPU, 1.0, 1 MiB'\n")
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}", "PYTHON": sys.executable,
           "BENCH_ARGS": "--models mcan --sizes demo --steps 1 --warmup 0 --threads 1"}
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_check.sh")
    results = tmp_path / "results"

    nothing = subprocess.run(["bash", script, str(results)], env=env, capture_output=True, text=True, timeout=300)
    assert nothing.returncode == 2, nothing.stderr
    assert "torch is installed but sees no CUDA device" in nothing.stderr
    (log,) = results.iterdir()                                                # only the log, which says why
    assert log.name.endswith("-gpu-check.log") and "torch is installed but sees no CUDA device" in log.read_text()

    forced = subprocess.run(["bash", script, str(results)], env={**env, "BACKENDS": "torch"}, capture_output=True,
                            text=True, timeout=300)
    assert forced.returncode == 1, forced.stderr
    (md,) = results.glob("*-gpu.md")
    text = md.read_text()
    for kind, device in (("train", "gpu:0"), ("train", "gpu:0 amp"), ("eval", "gpu:0")):   # the eval run last
        assert f"- {kind} torch mcan demo ({device}): exit 1: RuntimeError: --gpu 0: torch sees no CUDA device" in text
    written = sorted(p.name.split("-", 3)[3] for p in results.glob("*.json"))      # after the date
    assert written == ["gpu-amp.json", "gpu-eval.json", "gpu.json"]
    refused = "ERROR exit 1: RuntimeError: --gpu 0: torch sees no CUDA device here"
    assert forced.stderr.count(refused) == 3                                   # train, train --amp, eval
    (log,) = results.glob("*-gpu-check.log")                                  # both runs' output, appended
    assert log.read_text().count(refused) == 3
    assert forced.stdout.strip().splitlines()[-1] in log.read_text()
    (smoke_rows,) = results.glob("*-gpu-smoke.jsonl")                          # fp32 and AMP, refused before training
    rows = [json.loads(line) for line in smoke_rows.read_text().splitlines()]
    assert [(r["model"], r["amp"], r["ok"]) for r in rows] == [("trar", False, False), ("mmnasnet_small", True, False)]
    assert all(r["error"].startswith("--gpu 0: torch sees no CUDA device here") for r in rows)


def test_gpu_smoke_on_the_cpu_answers_alike_after_reloading(tmp_path):
    """tests.gpu.smoke with no GPU: run.py trains a demo epoch and validates, then evaluates the saved checkpoint in a
    new process; on one device the two must give the same answer to every question."""
    row = smoke.smoke("torch", gpu="", model="mcan_small", epochs=2, workdir=str(tmp_path))
    assert row["device"] == "cpu" and row["questions"] == 1250                  # the demo's val split
    assert row["distinct_answers"] > 1          # a model past answering 'yes' to everything: agreement says more
    assert row["answers_agree"] == 1.0 and row["device_val_accuracy"] == row["cpu_val_accuracy"]
    assert list(tmp_path.iterdir()) == []                                     # its temporary folder is gone


def test_no_gpu_counts_as_a_machine_skip_for_gpu_tests_only(monkeypatch):
    """Where everything is installed a skip fails the test (tests/conftest.py); the `gpu` tests' "no GPU" reason is the
    machine's, but only for them, and their other reasons (a backend that cannot see the GPU) still fail."""
    from types import SimpleNamespace

    from tests import conftest
    monkeypatch.setenv("TWINVQA_ALL_INSTALLED", "1")

    def skipped(reason):
        return SimpleNamespace(skipped=True, longrepr=("test_x.py", 1, f"Skipped: {reason}"))

    no_gpu = skipped(f"{conftest.NO_GPU} (nvidia-smi lists none)")
    assert conftest._hidden_by_a_skip(no_gpu, gpu_test=True) is None
    assert conftest._hidden_by_a_skip(no_gpu, gpu_test=False) is not None
    assert conftest._hidden_by_a_skip(skipped("torch cannot run on GPU 0 here: a CPU build"), gpu_test=True) is not None
    assert conftest._hidden_by_a_skip(skipped("a GPU is present"), gpu_test=False) is None     # as before

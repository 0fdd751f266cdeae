"""The AI Studio path on a Paddle-only install (no torch): train one tiny demo epoch, val, export, predict, and
convert a .pkl both ways, each as a user runs it (run.py, python -m deploy, python -m convert)."""
import glob
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from formats.restricted_pickle import read_pdparams

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = "--RUN=train --MODEL=trar --DATASET=demo --backend=paddle --MAX_EPOCH=1 --VERSION=paddle_only".split()
# the export's program and weights: Paddle's names, or the names of TwinVQA exports before them
PROGRAM_NAMES = (("inference.json", "inference.pdiparams"), ("model.json", "model.pdiparams"))


def _python(args, cwd):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"})
    tail = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{tail}"
    return proc.stdout


def _accuracy(output):
    lines = [line for line in output.splitlines() if line.startswith("Overall Accuracy is:")]
    assert lines, f"no accuracy line in:\n{output[-2000:]}"
    return float(lines[-1].split(":")[1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of TRAR on a small demo set, in a folder of its own: (work dir, run.py's output)."""
    work = tmp_path_factory.mktemp("aistudio")
    _python(["-m", "core.data.demo", "--out", "data/demo", "--train-images", "40", "--val-images", "12",
             "--test-images", "6", "--questions-per-image", "5"], work)
    out = _python([os.path.join(REPO, "run.py"), *RUN], work)
    return work, out


def test_torch_is_not_importable_here():
    assert importlib.util.find_spec("torch") is None, "this check needs an install without torch"
    assert "torch" not in sys.modules


def test_train_one_epoch_writes_the_paddle_checkpoint_and_validates(trained):
    work, out = trained
    for name in ("epoch1.pdparams", "epoch1.pdopt"):
        assert (work / "ckpts" / "ckpt_paddle_only" / name).is_file(), name
    assert 0.0 <= _accuracy(out) <= 100.0
    assert (work / "results" / "log" / "log_run_paddle_only.txt").is_file()


def test_val_of_the_checkpoint_repeats_the_training_runs_accuracy(trained):
    work, out = trained
    val = _python([os.path.join(REPO, "run.py"), "--RUN=val", "--MODEL=trar", "--DATASET=demo", "--backend=paddle",
                   "--CKPT_V=paddle_only", "--CKPT_E=1"], work)
    assert _accuracy(val) == _accuracy(out)


def test_export_and_predict(trained):
    work, _ = trained
    _python([os.path.join(REPO, "run.py"), "--RUN=export", "--backend=paddle", "--MODEL=trar", "--DATASET=demo",
             "--CKPT_V=paddle_only", "--CKPT_E=1"], work)
    folder = work / "results" / "export" / "paddle_only_epoch1"
    assert any(all((folder / name).is_file() for name in pair) for pair in PROGRAM_NAMES), sorted(os.listdir(folder))
    features = sorted(glob.glob(str(work / "data" / "demo" / "vqa" / "feats" / "val2014" / "*.npy")))[0]
    out = _python(["-m", "deploy", "predict", "--model", str(folder), "--question", "What color is the circle?",
                   "--features", features, "--topk", "3"], work)
    ranked = [line.split() for line in out.splitlines() if line.strip()[:2] in ("1.", "2.", "3.")]
    assert len(ranked) == 3 and all(0.0 <= float(row[-1]) <= 1.0 for row in ranked), out


def test_a_pkl_written_without_torch_converts_back_to_the_same_paddle_checkpoint(trained):
    work, _ = trained
    pdparams = str(work / "ckpts" / "ckpt_paddle_only" / "epoch1.pdparams")
    pkl, back = str(work / "epoch1.pkl"), str(work / "back" / "epoch1.pdparams")
    args = ["--MODEL", "trar", "--DATASET", "demo"]
    _python(["-m", "convert", "paddle2torch", pdparams, pkl, *args], work)      # formats.torch_zip: no torch here
    with open(pkl, "rb") as f:
        assert f.read(4) == b"PK\x03\x04"                                           # torch.save's zip format
    _python(["-m", "convert", "torch2paddle", pkl, back, *args], work)
    want, got = read_pdparams(pdparams), read_pdparams(back)
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    val = _python([os.path.join(REPO, "run.py"), "--RUN=val", "--MODEL=trar", "--DATASET=demo", "--backend=paddle",
                   f"--CKPT_PATH={pkl}"], work)                                     # run.py reads the .pkl directly
    assert _accuracy(val) == _accuracy(trained[1])

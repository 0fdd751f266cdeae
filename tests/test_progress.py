"""Watching a training run (core/progress.py, issue 28): the LOG_EVERY step lines, --VERB=False hiding only the
per-step output, the figures redrawn after every epoch (a killed run keeps them), the routing weights gathered in the
validation pass, a resumed run continuing its run's log across frameworks, and the val/test entries' headers."""
import itertools
import logging
import os

import numpy as np
import pytest

import run
from core import plots, progress, scalars
from core.config import load_config
from core.data import build_dataset
from core.data.demo import generate
from core.engine import evaluate, routing_weights
from core.runlog import RunLog, read_history
from formats.restricted_pickle import read_pdparams, read_torch_checkpoint
from tests.test_scalars import install_stand_ins

TINY = ["--SET", "LAYER=1", "--SET", "HIDDEN_SIZE=32", "--SET", "FF_SIZE=64", "--SET", "FLAT_MLP_SIZE=32",
        "--SET", "FLAT_OUT_SIZE=64", "--SET", "WORD_EMBED_SIZE=16", "--BS=16", "--NW=0", "--VERB=False"]
TINY_KEYS = {"LAYER": 1, "HIDDEN_SIZE": 32, "FF_SIZE": 64, "FLAT_MLP_SIZE": 32, "FLAT_OUT_SIZE": 64,
             "WORD_EMBED_SIZE": 16, "BATCH_SIZE": 16, "NUM_WORKERS": 0, "VERBOSE": False}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate(str(root), seed=0, n_train_images=16, n_val_images=4, n_test_images=4, questions_per_image=4)
    return root                                                   # 64 training questions: 4 steps of 16


def _run(tmp_path, demo_root, backend_name, *flags, tiny=TINY):
    return run.main(["--MODEL", "trar", "--DATASET", "demo", f"--backend={backend_name}", "--DATA_ROOT",
                     str(demo_root), "--SET", f"RESULTS_ROOT={tmp_path / 'results'}", "--SET",
                     f"CKPTS_ROOT={tmp_path / 'ckpts'}", *tiny, *flags])


def _log(tmp_path, version):
    return tmp_path / "results" / "log" / f"log_run_{version}.txt"


class _Scalars:
    def __init__(self):
        self.written = []

    def scalar(self, tag, value, step):
        self.written.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        pass


def _watch(tmp_path, monkeypatch, **overrides):
    cfg = load_config("trar", "demo", {"VERSION": "v", "MAX_EPOCH": 2, "BATCH_SIZE": 16, "LOG_EVERY": 2,
                                       "RESULTS_ROOT": str(tmp_path / "results"), **overrides})
    clock = itertools.count(100.0, 0.5)                          # every reading half a second later
    monkeypatch.setattr(progress, "_clock", lambda: next(clock))
    run_log = RunLog(str(tmp_path / "results" / "log" / "log_run_v.txt"))
    run_log.start(cfg, backend="torch")
    return progress.TrainWatch(cfg, "torch", run_log, scalars=_Scalars()), run_log


@pytest.mark.parametrize("verbose", [False, True])
def test_a_line_every_log_every_steps_in_the_log_and_with_verb_on_the_console(tmp_path, monkeypatch, caplog,
                                                                               verbose):
    watch, run_log = _watch(tmp_path, monkeypatch, VERBOSE=verbose)
    caplog.set_level(logging.INFO, logger="core.progress")
    caplog.clear()
    for _ in watch.epoch(range(6), 0, 6):                         # epoch 1 of 2, 6 steps; the clock starts at 100.0
        watch.step(16.0 * 3, 1e-3)                                 # summed loss of 16 samples: 3.0 per sample
    # steps 2, 4, 6 at t = 101, 102, 103: 32 samples a second, 0.5 s a step, 6 steps an epoch
    lines = ["[Epoch 1/2][Step 2/6] Loss: 3.0000, Lr: 1.00e-03, 32 samples/s, ETA 0:00:02 (epoch), 0:00:05 (run)",
             "[Epoch 1/2][Step 4/6] Loss: 3.0000, Lr: 1.00e-03, 32 samples/s, ETA 0:00:01 (epoch), 0:00:04 (run)",
             "[Epoch 1/2][Step 6/6] Loss: 3.0000, Lr: 1.00e-03, 32 samples/s, ETA 0:00:00 (epoch), 0:00:03 (run)"]
    text = open(run_log.path).read()
    assert [line for line in text.splitlines() if line.startswith("[Epoch")] == lines
    assert caplog.messages == (lines if verbose else [])
    assert watch.scalars.written[:3] == [("train/loss", 3.0, 2), ("train/lr", 1e-3, 2),
                                         ("train/samples_per_s", 32.0, 2)]
    assert [step for tag, _, step in watch.scalars.written if tag == "train/loss"] == [2, 4, 6]


def test_log_every_zero_writes_no_step_line(tmp_path, monkeypatch):
    watch, run_log = _watch(tmp_path, monkeypatch, LOG_EVERY=0)
    for _ in watch.epoch(range(4), 0, 4):
        watch.step(1.0, 1e-3)
    assert "[Epoch" not in open(run_log.path).read() and watch.scalars.written == []


def test_every_epoch_redraws_the_curves_and_the_routing_plot(tmp_path, monkeypatch):
    watch, run_log = _watch(tmp_path, monkeypatch)
    titles = []
    monkeypatch.setattr(plots, "routing_weights", lambda w, orders, path, title: titles.append((np.copy(w), title)))
    for epoch in (1, 2):
        for _ in watch.epoch(range(2), epoch - 1, 2):
            watch.step(16.0, 1e-3)
        run_log.epoch_end(epoch, 1.0 / epoch, 1e-3, 1, 0.5)
        watch.routing.add([np.array([[0.25, 0.75, 0.0], [0.75, 0.25, 0.0]]) * epoch / 2])
        watch.epoch_end(epoch, 1.0 / epoch, val=30.0 + epoch)
        curves = tmp_path / "results" / "log" / "log_run_v_curves.png"
        assert curves.read_bytes()[:4] == b"\x89PNG"
        assert [h["epoch"] for h in read_history(run_log.path)] == list(range(1, epoch + 1))
    # each epoch's plot has that epoch's validation alone: the mean over its samples, then a fresh mean
    assert [t for _, t in titles] == ["Span preferred per decoder layer, epoch 1 (torch)",
                                      "Span preferred per decoder layer, epoch 2 (torch)"]
    np.testing.assert_allclose(titles[0][0], [[0.25, 0.25, 0.0]])
    np.testing.assert_allclose(titles[1][0], [[0.5, 0.5, 0.0]])
    assert ("epoch/val_accuracy", 32.0, 2) in watch.scalars.written and ("epoch/loss", 0.5, 2) in watch.scalars.written


def test_the_routing_mean_of_the_validation_pass_is_the_separate_pass_s(backend, tmp_path, demo_root):
    """The routing plot's weights come from the validation's own forwards: the same numbers as
    core.engine.routing_weights' extra pass over the data, and the validation's scores are unchanged."""
    cfg = load_config("trar", "demo", {**TINY_KEYS, "DATA_ROOT": str(demo_root), "BACKEND": backend.name,
                                       "RESULTS_ROOT": str(tmp_path / "results"), "VERSION": "r"}).copy(RUN_MODE="val")
    val_set = build_dataset(cfg, "val")
    backend.seed(0)
    net = backend.build_model(cfg, **val_set.facts())
    gathered = progress.RoutingMean()
    with_routing = evaluate(cfg, backend, net, val_set, "val", "r", routing=gathered)
    without = evaluate(cfg, backend, net, val_set, "val", "r")
    np.testing.assert_array_equal(gathered.mean(), routing_weights(cfg, backend, net, val_set))
    assert gathered.count == len(val_set) and with_routing["overall"] == without["overall"]


def _weights(path):
    if path.endswith(".pkl"):
        return read_torch_checkpoint(path)["state_dict"]
    return {k: v for k, v in read_pdparams(path).items() if isinstance(v, np.ndarray)}


def test_watching_changes_no_number_and_verb_false_hides_only_the_step_lines(backend, tmp_path, demo_root, capsys):
    quiet = _run(tmp_path / "a", demo_root, backend.name, "--RUN=train", "--VERSION=a", "--MAX_EPOCH=1",
                 "--SET", "LOG_EVERY=0")
    out = capsys.readouterr().out
    assert "[Epoch 1/1][Step" not in out and "Epoch 1: loss" in out and "Overall Accuracy is: " in out
    watched = _run(tmp_path / "b", demo_root, backend.name, "--RUN=train", "--VERSION=a", "--MAX_EPOCH=1",
                   "--SET", "LOG_EVERY=1", tiny=[a for a in TINY if a != "--VERB=False"])
    out = capsys.readouterr().out
    assert "[Epoch 1/1][Step 4/4] Loss: " in out and "Epoch 1: loss" in out
    assert (quiet["loss"], quiet["val"]) == (watched["loss"], watched["val"])
    a, b = _weights(quiet["checkpoint"]), _weights(watched["checkpoint"])
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    _run(tmp_path / "c", demo_root, backend.name, "--RUN=train", "--VERSION=a", "--MAX_EPOCH=1",
         "--SET", "LOG_EVERY=1")                                   # --VERB=False: the step lines in the log only
    assert "[Epoch 1/1][Step" not in capsys.readouterr().out
    assert "[Epoch 1/1][Step 4/4] Loss: " in _log(tmp_path / "c", "a").read_text()


def test_a_killed_run_keeps_the_figures_of_its_last_epoch(backend, tmp_path, demo_root, monkeypatch):
    titles = []
    real_routing = plots.routing_weights
    monkeypatch.setattr(plots, "routing_weights",
                        lambda w, orders, path, title: (titles.append(title), real_routing(w, orders, path, title)))
    real_epoch = progress.TrainWatch.epoch

    def killed_in_epoch_2(self, loader, epoch, steps):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(self, loader, epoch, steps)

    monkeypatch.setattr(progress.TrainWatch, "epoch", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, demo_root, backend.name, "--RUN=train", "--VERSION=k", "--MAX_EPOCH=3")
    folder = tmp_path / "results" / "log"
    assert (folder / "log_run_k_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (folder / "log_run_k_routing.png").read_bytes()[:4] == b"\x89PNG"
    assert titles == [f"Span preferred per decoder layer, epoch 1 ({backend.name})"]


def test_resume_continues_the_run_s_log_across_frameworks(both_backends, tmp_path, demo_root, monkeypatch, capsys):
    """--RESUME --CKPT_V=demo_torch without --VERSION continues demo_torch: its folder, its log (marked with the
    backend of each run) and its curves; a val and a test run then add entries with a header."""
    torch_be, paddle_be = both_backends
    titles = []
    real_curves = plots.training_curves
    monkeypatch.setattr(plots, "training_curves",
                        lambda history, path, title: (titles.append(title), real_curves(history, path, title)))
    _run(tmp_path, demo_root, torch_be.name, "--RUN=train", "--VERSION=demo_torch", "--MAX_EPOCH=1")
    capsys.readouterr()
    _run(tmp_path, demo_root, paddle_be.name, "--RUN=train", "--RESUME", "--CKPT_V=demo_torch", "--CKPT_E=1",
         "--MAX_EPOCH=2")
    out = capsys.readouterr().out
    log = _log(tmp_path, "demo_torch")
    assert f"the log to {log}" in out and str(tmp_path / "ckpts" / "ckpt_demo_torch") in out
    # best / latest beside the epoch files (core/ckpt_policy.py): epoch 1 stays best (a tie keeps the earlier epoch),
    # latest moves to the paddle epoch
    assert sorted(os.listdir(tmp_path / "ckpts" / "ckpt_demo_torch")) == [
        "best.json", "best.pkl", "epoch1.pkl", "epoch2.pdopt", "epoch2.pdparams", "latest.pdopt", "latest.pdparams"]
    assert sorted(os.listdir(tmp_path / "results" / "log")) == ["log_run_demo_torch.txt",
                                                               "log_run_demo_torch_curves.png",
                                                               "log_run_demo_torch_routing.png"]
    history = read_history(str(log))
    assert [(h["epoch"], h["backend"]) for h in history] == [(1, "torch"), (2, "paddle")]
    assert titles == ["trar / demo (torch)", "trar / demo (torch 1, paddle 2)"]
    text = log.read_text()
    assert "Training on the paddle backend from epoch 2, resumed from " \
           f"{tmp_path / 'ckpts' / 'ckpt_demo_torch' / 'epoch1.pkl'}\n" in text

    _run(tmp_path, demo_root, torch_be.name, "--RUN=val", "--CKPT_V=demo_torch", "--CKPT_E=2")
    _run(tmp_path, demo_root, torch_be.name, "--RUN=test", "--CKPT_V=demo_torch", "--CKPT_E=2")
    entries = log.read_text()[len(text):].splitlines()
    checkpoint = tmp_path / "ckpts" / "ckpt_demo_torch" / "epoch2.pdparams"
    assert entries[0] == "=" * 37 and entries[1].startswith("nowTime: 20")
    assert entries[2] == f"Evaluation (val) of {checkpoint} (epoch 2) on the torch backend"
    assert entries[3].startswith("Overall Accuracy is: ")
    test_header = entries.index(f"Evaluation (test) of {checkpoint} (epoch 2) on the torch backend")
    assert entries[test_header - 2] == "=" * 37
    assert entries[test_header + 1].startswith("Wrote the test answers to ")
    assert read_history(str(log)) == history                        # the entries add no epoch and change none


def test_a_training_run_writes_its_scalars_to_each_installed_package(tmp_path, demo_root, monkeypatch):
    """The run's wiring, with the stand-ins of tests/test_scalars.py for VisualDL and TensorBoard."""
    fake_packages = install_stand_ins(monkeypatch)
    monkeypatch.setattr(scalars, "installed", lambda package: True)
    out = _run(tmp_path, demo_root, "torch", "--RUN=train", "--VERSION=s", "--MAX_EPOCH=2", "--SET", "LOG_EVERY=2")
    for package in ("visualdl", "tensorboard"):
        calls = [(method, args, kwargs) for who, method, args, kwargs in fake_packages if who == package]
        assert calls[0][1] == (str(tmp_path / "results" / "scalars" / "s" / package),)
        assert calls[-1][0] == "close"
    logged = [kwargs for who, method, args, kwargs in fake_packages if who == "visualdl" and method == "add_scalar"]
    assert [(k["tag"], k["step"]) for k in logged if k["tag"].startswith("epoch/")] == [
        ("epoch/loss", 1), ("epoch/val_accuracy", 1), ("epoch/loss", 2), ("epoch/val_accuracy", 2)]
    assert [k["step"] for k in logged if k["tag"] == "train/loss"] == [2, 4, 6, 8]      # 4 steps an epoch
    assert logged[-2] == {"tag": "epoch/loss", "value": out["loss"], "step": 2}
    assert logged[-1] == {"tag": "epoch/val_accuracy", "value": out["val"], "step": 2}

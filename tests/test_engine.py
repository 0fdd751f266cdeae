"""End to end through run.py on generated demo data: train -> resume -> val -> test, for every backend and model
kind."""
import importlib
import json
import os
import shutil

import numpy as np
import pytest

import run
from core import checkpoints
from core.config import load_config
from core.data.demo import generate
from formats.restricted_pickle import read_pdparams, read_torch_checkpoint

TINY = ["--SET", "LAYER=1", "--SET", "HIDDEN_SIZE=32", "--SET", "FF_SIZE=64", "--SET", "FLAT_MLP_SIZE=32",
        "--SET", "FLAT_OUT_SIZE=64", "--SET", "WORD_EMBED_SIZE=16", "--BS=16", "--NW=0", "--VERB=False"]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate(str(root), seed=0, n_train_images=24, n_val_images=8, n_test_images=6, questions_per_image=4)
    return root


def _run(tmp_path, demo_root, backend, *flags, model="trar", dataset="demo", tiny=TINY):
    argv = ["--MODEL", model, "--DATASET", dataset, f"--backend={backend.name}", "--DATA_ROOT", str(demo_root),
            "--SET", f"RESULTS_ROOT={tmp_path / 'results'}", "--SET", f"CKPTS_ROOT={tmp_path / 'ckpts'}",
            *tiny, *flags]
    return run.main(argv)


def _weights(path):
    if path.endswith(".pkl"):
        return read_torch_checkpoint(path)["state_dict"]
    return {k: v for k, v in read_pdparams(path).items() if isinstance(v, np.ndarray)}


@pytest.mark.slow
def test_train_resume_val_test(backend, tmp_path, demo_root):
    ext = backend.checkpoint_ext
    full = _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=full", "--MAX_EPOCH=2", "--SEED=3")
    assert full["epoch"] == 2 and 0.0 <= full["val"] <= 100.0

    _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=part", "--MAX_EPOCH=1", "--SEED=3")
    resumed = _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=resumed", "--MAX_EPOCH=2", "--SEED=3",
                   "--RESUME=True", "--CKPT_V=part", "--CKPT_E=1")
    assert resumed["epoch"] == 2
    # The epoch's batches come from (SEED, epoch) and the framework RNG is reseeded per epoch, so on the CPU a
    # resumed run repeats the uninterrupted one exactly.
    a = _weights(str(tmp_path / "ckpts" / "ckpt_full" / f"epoch2{ext}"))
    b = _weights(str(tmp_path / "ckpts" / "ckpt_resumed" / f"epoch2{ext}"))
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)

    val = _run(tmp_path, demo_root, backend, "--RUN=val", "--CKPT_V=full", "--CKPT_E=2", "--SEED=3")
    assert val["overall"] == pytest.approx(full["val"], abs=1e-9)
    assert set(val["per_type"]) <= {"yes/no", "number", "other"}
    log = (tmp_path / "results" / "log" / "log_run_full.txt").read_text()
    assert "Overall Accuracy is:" in log and "Epoch: 2," in log
    assert (tmp_path / "results" / "log" / "log_run_full_curves.png").stat().st_size > 0
    assert (tmp_path / "results" / "log" / "log_run_full_routing.png").stat().st_size > 0

    test = _run(tmp_path, demo_root, backend, "--RUN=test", "--CKPT_V=full", "--CKPT_E=2", "--SEED=3")
    with open(test["result_file"]) as f:
        results = json.load(f)
    with open(demo_root / "vqa" / "raw" / "v2_OpenEnded_mscoco_test2015_questions.json") as f:
        questions = json.load(f)["questions"]
    assert [r["question_id"] for r in results] == [q["question_id"] for q in questions]
    assert all(isinstance(r["answer"], str) and r["answer"] for r in results)


@pytest.mark.slow
def test_a_run_of_one_framework_is_validated_and_resumed_by_the_other(both_backends, tmp_path, demo_root):
    """--CKPT_V/--CKPT_E find the other framework's epoch file when the backend's own is missing (README: resume
    "in the same or the other framework"), for val and for a resumed run."""
    torch_be, paddle_be = both_backends
    trained = _run(tmp_path, demo_root, torch_be, "--RUN=train", "--VERSION=t", "--MAX_EPOCH=1", "--SEED=3")
    assert sorted(os.listdir(tmp_path / "ckpts" / "ckpt_t")) == ["best.json", "best.pkl", "epoch1.pkl", "latest.pkl"]
    val = _run(tmp_path, demo_root, paddle_be, "--RUN=val", "--CKPT_V=t", "--CKPT_E=1", "--SEED=3")
    assert val["overall"] == pytest.approx(trained["val"], abs=0.5)    # same weights, another framework's arithmetic
    resumed = _run(tmp_path, demo_root, paddle_be, "--RUN=train", "--VERSION=p", "--MAX_EPOCH=2", "--SEED=3",
                   "--RESUME=True", "--CKPT_V=t", "--CKPT_E=1")
    assert resumed["epoch"] == 2 and (tmp_path / "ckpts" / "ckpt_p" / "epoch2.pdparams").is_file()


@pytest.mark.slow
def test_a_rewind_in_the_other_framework_replaces_the_epoch_before_validating(both_backends, tmp_path, demo_root,
                                                                               monkeypatch):
    """torch trains epochs 1-2; paddle resumes that run from epoch 1 and saves epoch 2: torch's epoch2.pkl goes right
    after the save, before validation (here made to fail), so a later load of epoch 2 by torch gets paddle's file."""
    from core import engine
    torch_be, paddle_be = both_backends
    _run(tmp_path, demo_root, torch_be, "--RUN=train", "--VERSION=r", "--MAX_EPOCH=2", "--SEED=3")
    folder = tmp_path / "ckpts" / "ckpt_r"
    assert (folder / "epoch2.pkl").is_file()

    def validation_fails(*args, **kwargs):
        raise RuntimeError("validation failed")
    monkeypatch.setattr(engine, "evaluate", validation_fails)
    with pytest.raises(RuntimeError, match="validation failed"):
        _run(tmp_path, demo_root, paddle_be, "--RUN=train", "--MAX_EPOCH=2", "--SEED=3", "--RESUME=True",
             "--CKPT_V=r", "--CKPT_E=1")
    assert sorted(n for n in os.listdir(folder) if n.startswith("epoch")) == [
        "epoch1.pkl", "epoch2.pdopt", "epoch2.pdparams"]
    run_cfg = load_config("trar", "demo", {"CKPTS_ROOT": str(tmp_path / "ckpts"), "CKPT_VERSION": "r",
                                           "CKPT_EPOCH": 2}, run_mode="val")
    assert checkpoints.resume_path(run_cfg, torch_be.checkpoint_ext) == str(folder / "epoch2.pdparams")


def test_hard_routing_temperature_per_epoch_and_at_evaluation(backend, tmp_path, demo_root, monkeypatch):
    """Hard routing: each epoch starts at its Gumbel temperature (policy 0: linear from TAU_MAX to TAU_MIN, here
    10, 5.5, 1 over 3 epochs), a resumed run at its epoch's, and evaluation at the checkpoint's last epoch's."""
    net_class = importlib.import_module(f"backends.{backend.name}.models.trar").Net
    taus, real_set_tau = [], net_class.set_tau
    monkeypatch.setattr(net_class, "set_tau", lambda self, tau: (taus.append(tau), real_set_tau(self, tau))[1])
    hard = ["--SET", "ROUTING=hard", "--SET", "TAU_POLICY=0", "--SET", "TAU_MAX=10", "--SET", "TAU_MIN=1",
            "--MAX_EPOCH=3", "--SEED=3"]
    _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=h", *hard)
    assert taus == pytest.approx([10.0, 5.5, 1.0])
    del taus[:]
    _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=h2", "--RESUME=True", "--CKPT_V=h", "--CKPT_E=2",
         *hard)
    assert taus == pytest.approx([1.0])
    del taus[:]
    _run(tmp_path, demo_root, backend, "--RUN=val", "--CKPT_V=h", "--CKPT_E=2", *hard)
    assert taus == pytest.approx([5.5])     # the original would evaluate at TAU_MAX, 10


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mcan_small", "mmnasnet_small"])
def test_other_models_train_resume_validate_and_test(backend, tmp_path, demo_root, model):
    extra = ["--SET", "REL_HBASE=8", "--SET", "REL_SIZE=8"] if model.startswith("mmnas") else []
    out = _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=m", "--MAX_EPOCH=1", *extra, model=model)
    assert out["epoch"] == 1 and np.isfinite(out["loss"]) and 0.0 <= out["val"] <= 100.0
    assert os.path.exists(out["checkpoint"])
    resumed = _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=m2", "--MAX_EPOCH=2", "--RESUME=True",
                   "--CKPT_V=m", "--CKPT_E=1", *extra, model=model)
    assert resumed["epoch"] == 2 and np.isfinite(resumed["loss"])
    test = _run(tmp_path, demo_root, backend, "--RUN=test", "--CKPT_V=m2", "--CKPT_E=2", *extra, model=model)
    with open(test["result_file"]) as f:
        assert len(json.load(f)) == test["questions"] > 0


def test_loader_workers_unset_are_sized_to_the_machine(backend, tmp_path, demo_root, monkeypatch, capsys):
    """Without --NW the engine asks core.data.workers (threads on every core: no worker process); with --NW the
    number is passed on."""
    seen, make_loader = [], type(backend).make_loader

    def recording(self, dataset, batches, num_workers=0, pin_memory=False):
        seen.append(num_workers)
        return make_loader(self, dataset, batches, 0, pin_memory)                  # never fork in this test

    monkeypatch.setattr(type(backend), "make_loader", recording)
    cores = os.cpu_count() or 1
    monkeypatch.setenv("OMP_NUM_THREADS", str(cores))
    unset = [a for a in TINY if a not in ("--NW=0", "--VERB=False")]
    _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=w", "--MAX_EPOCH=1", tiny=unset)
    assert seen and set(seen) == {0}                                                # train and val loaders
    assert f"DataLoader workers: 0 of {cores} cores (NUM_WORKERS unset" in capsys.readouterr().out
    seen.clear()
    _run(tmp_path, demo_root, backend, "--RUN=val", "--CKPT_V=w", "--CKPT_E=1", "--NW=1")
    assert seen == [1]


def test_verb_false_hides_the_per_step_output_only(backend, tmp_path, demo_root, capsys):
    """--VERB=False (in TINY) hides the progress bar; the epoch summary, the accuracy and the files written are
    shown either way (issue 28, as openvqa's VERBOSE)."""
    _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=q", "--MAX_EPOCH=1")
    out, err = capsys.readouterr()
    assert "Training trar on demo" in out and "Epoch 1: loss " in out and "Overall Accuracy is: " in out
    assert "epoch 1/1" not in out + err                                              # no progress bar
    verbose = [a for a in TINY if a != "--VERB=False"]
    _run(tmp_path, demo_root, backend, "--RUN=val", "--CKPT_V=q", "--CKPT_E=1", tiny=verbose)
    out, err = capsys.readouterr()
    assert "Overall Accuracy is: " in out and "Wrote the val answers to " in out
    assert "val: " in err                                                            # the bar, on stderr


def test_feature_store_run_repeats_the_per_file_run(backend, tmp_path):
    """--FEAT_STORE reads the same arrays from a memory-mapped store: a run without the per-image files trains the
    same weights and scores the same as one reading them."""
    from core.config import load_config
    from core.data import features
    from core.data.feature_store import build_store
    root = tmp_path / "data"
    generate(str(root), seed=0, n_train_images=12, n_val_images=4, n_test_images=2, questions_per_image=3)
    files = _run(tmp_path / "files", root, backend, "--RUN=train", "--VERSION=f", "--MAX_EPOCH=1", "--SEED=2")
    feats = root / "vqa" / "feats"
    dim = load_config("trar", "demo").FEAT_SIZE["vqa"]["FRCN_FEAT_SIZE"][1]
    build_store(features.index_features([str(p) for p in sorted(feats.iterdir())], features.GRID_EXT),
                str(tmp_path / "store"), "grid", dim)
    shutil.rmtree(feats)                                                          # only the store is left
    stored = _run(tmp_path / "store_run", root, backend, "--RUN=train", "--VERSION=f", "--MAX_EPOCH=1", "--SEED=2",
                  "--FEAT_STORE", str(tmp_path / "store"))
    assert stored["val"] == files["val"] and stored["loss"] == files["loss"]
    a, b = _weights(files["checkpoint"]), _weights(stored["checkpoint"])
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with pytest.raises(SystemExit) as info:
        _run(tmp_path / "bad", root, backend, "--RUN=train", "--FEAT_STORE", str(feats))
    assert "FEAT_STORE" in str(info.value) and "core.data.feature_store" in str(info.value)


def test_missing_checkpoint_is_a_clear_exit(backend, tmp_path, demo_root):
    with pytest.raises(SystemExit) as info:
        _run(tmp_path, demo_root, backend, "--RUN=val", "--CKPT_V=nope", "--CKPT_E=3")
    assert "nope" in str(info.value)


@pytest.mark.slow
def test_clevr_format_demo_trains_validates_and_tests(backend, tmp_path, demo_root):
    out = _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=c", "--MAX_EPOCH=1", dataset="demo_clevr")
    assert out["epoch"] == 1 and 0.0 <= out["val"] <= 100.0
    test = _run(tmp_path, demo_root, backend, "--RUN=test", "--CKPT_V=c", "--CKPT_E=1", dataset="demo_clevr")
    answers = open(test["result_file"]).read().split("\n")
    with open(demo_root / "clevr" / "raw" / "questions" / "CLEVR_test_questions.json") as f:
        assert len([a for a in answers if a]) == len(json.load(f)["questions"])

"""best / latest checkpoints and CKPT_KEEP_LAST (core/ckpt_policy.py), and --CKPT_E=best / latest."""
import json
import os
import types

import pytest

from core import checkpoints, ckpt_policy
from core.config import ConfigError, load_config
from tests.test_engine import _run, demo_root  # noqa: F401  (the demo data fixture)


def _save_epoch(folder, epoch, exts):
    for ext in exts:
        (folder / f"epoch{epoch}{ext}").write_bytes(f"epoch {epoch} {ext}".encode())


@pytest.mark.parametrize("exts", [(".pkl",), (".pdparams", ".pdopt")])
def test_latest_best_and_keep_last_on_files(tmp_path, exts):
    cfg = types.SimpleNamespace(CKPT_KEEP_LAST=2)
    scores = {1: 10.0, 2: 30.0, 3: 20.0, 4: 30.0, 5: None}   # 4 ties 2: the earlier stays best; 5 is not validated
    for epoch, score in scores.items():
        _save_epoch(tmp_path, epoch, exts)
        done = ckpt_policy.epoch_saved(cfg, str(tmp_path / f"epoch{epoch}{exts[0]}"), epoch, score)
        assert done["best"] == (epoch in (1, 2))
        assert done["removed"] == ([epoch - 2] if epoch > 2 else [])
    assert checkpoints.saved_epochs(str(tmp_path)) == {4: sorted(exts), 5: sorted(exts)}
    for ext in exts:
        assert (tmp_path / f"latest{ext}").read_bytes() == f"epoch 5 {ext}".encode()
        assert (tmp_path / f"best{ext}").read_bytes() == f"epoch 2 {ext}".encode()   # its epoch file is gone
    assert json.loads((tmp_path / "best.json").read_text()) == {"epoch": 2, "score": 30.0, "metric": "overall"}
    # the trainer replaces an epoch file by a rename: a link made before keeps its content
    (tmp_path / "new").write_bytes(b"other")
    os.replace(tmp_path / "new", tmp_path / f"epoch5{exts[0]}")
    assert (tmp_path / f"latest{exts[0]}").read_bytes() == f"epoch 5 {exts[0]}".encode()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]                    # no temp file left


@pytest.mark.parametrize("stale, new", [((".pkl",), (".pdparams", ".pdopt")), ((".pdparams", ".pdopt"), (".pkl",))])
def test_an_epoch_saved_again_in_the_other_format_replaces_the_earlier_runs_files(tmp_path, stale, new, caplog):
    """A run resumed from epoch 1 by the other backend saves epoch 2 again: the abandoned run's epoch-2 files go, so
    neither latest nor a load that prefers the stale format finds them; other epochs are left alone."""
    cfg = types.SimpleNamespace(CKPT_KEEP_LAST=None)
    folder = tmp_path / "ckpt_v"
    folder.mkdir()
    for epoch in (1, 2, 3):
        _save_epoch(folder, epoch, stale)
    ckpt_policy.epoch_saved(cfg, str(folder / f"epoch3{stale[0]}"), 3)
    (folder / "epoch2.old").write_bytes(b"not a checkpoint file of either backend")   # kept: no backend writes it
    _save_epoch(folder, 2, new)
    with caplog.at_level("WARNING", logger="core.ckpt_policy"):
        done = ckpt_policy.epoch_saved(cfg, str(folder / f"epoch2{new[0]}"), 2)
    assert done["replaced"] == [f"epoch2{ext}" for ext in stale]             # the weights file first
    assert "an earlier run's checkpoint of epoch 2" in caplog.text
    assert checkpoints.saved_epochs(str(folder))[2] == sorted(new + (".old",))
    assert checkpoints.saved_epochs(str(folder))[1] == sorted(stale)
    latest = sorted(n for n in os.listdir(folder) if n.startswith("latest"))
    assert latest == sorted(f"latest{e}" for e in new + (".old",))          # latest links every file of its epoch
    # a val run of the abandoned run's backend, which prefers its own format, gets the new run's epoch 2
    run = types.SimpleNamespace(CKPT_PATH=None, CKPTS_ROOT=str(tmp_path), CKPT_VERSION="v", CKPT_EPOCH=2)
    assert checkpoints.resume_path(run, stale[0]) == str(folder / f"epoch2{new[0]}")


def test_keep_all_by_default_and_an_alias_loses_a_file_its_epoch_lacks(tmp_path):
    cfg = types.SimpleNamespace(CKPT_KEEP_LAST=None)
    _save_epoch(tmp_path, 1, (".pdparams", ".pdopt"))
    ckpt_policy.epoch_saved(cfg, str(tmp_path / "epoch1.pdparams"), 1)
    _save_epoch(tmp_path, 2, (".pdparams",))                                   # weights only
    ckpt_policy.epoch_saved(cfg, str(tmp_path / "epoch2.pdparams"), 2)
    assert sorted(os.listdir(tmp_path)) == ["epoch1.pdopt", "epoch1.pdparams", "epoch2.pdparams", "latest.pdparams"]
    with pytest.raises(FileNotFoundError, match=r"epoch3 has no weights file"):
        ckpt_policy.point(str(tmp_path), "latest", 3)


def test_ckpt_epoch_takes_best_and_latest_and_nothing_else(tmp_path):
    def cfg(epoch, **more):
        return load_config("trar", "demo", run_mode="val", overrides=dict(
            CKPT_VERSION="v", CKPT_EPOCH=epoch, CKPTS_ROOT=str(tmp_path), RESULTS_ROOT=str(tmp_path / "r"), **more))
    folder = tmp_path / "ckpt_v"
    folder.mkdir()
    (folder / "epoch3.pkl").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"no checkpoint .*best\.pdparams; epochs saved there: 3 \(\.pkl\); "
                                                r"best is kept .* when they validate"):
        checkpoints.resume_path(cfg("best"), ".pdparams")
    (folder / "best.pkl").write_bytes(b"x")
    assert checkpoints.resume_path(cfg("best"), ".pdparams") == str(folder / "best.pkl")
    assert checkpoints.test_result_path(cfg("latest")).endswith("result_run_v_latest.json")
    with pytest.raises(ConfigError, match=r"CKPT_EPOCH: expected an epoch number or one of best, latest, got 'last'"):
        cfg("last")
    with pytest.raises(ConfigError, match=r"CKPT_KEEP_LAST: must be >= 1, got 0"):
        cfg(3, CKPT_KEEP_LAST=0)


@pytest.mark.slow
def test_a_run_keeps_best_and_latest_and_loads_them(backend, tmp_path, demo_root):  # noqa: F811
    ext = backend.checkpoint_ext
    exts = sorted([ext] + ([".pdopt"] if ext == ".pdparams" else []))
    out = _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=k", "--MAX_EPOCH=3", "--SEED=3",
               "--SET", "CKPT_KEEP_LAST=1")
    folder = tmp_path / "ckpts" / "ckpt_k"
    assert checkpoints.saved_epochs(str(folder)) == {3: exts}
    best = json.loads((folder / "best.json").read_text())
    log = (tmp_path / "results" / "log" / "log_run_k.txt").read_text()
    logged = [float(line.split()[-1]) for line in log.splitlines() if line.startswith("Overall Accuracy is:")]
    assert len(logged) == 3 and best["score"] == pytest.approx(max(logged), abs=0.006)   # the log rounds to 0.01
    val = _run(tmp_path, demo_root, backend, "--RUN=val", "--CKPT_V=k", "--CKPT_E=best", "--SEED=3")
    assert val["overall"] == pytest.approx(best["score"], abs=1e-9)
    latest = _run(tmp_path, demo_root, backend, "--RUN=val", "--CKPT_V=k", "--CKPT_E=latest", "--SEED=3")
    assert latest["overall"] == pytest.approx(out["val"], abs=1e-9)
    resumed = _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=k", "--MAX_EPOCH=4", "--SEED=3",
                   "--RESUME=True", "--CKPT_V=k", "--CKPT_E=latest", "--SET", "CKPT_KEEP_LAST=1")
    assert resumed["epoch"] == 4 and checkpoints.saved_epochs(str(folder)) == {4: exts}
    assert sorted(n for n in os.listdir(folder) if not n.startswith(".")) == sorted(
        [f"{stem}{e}" for stem in ("epoch4", "best", "latest") for e in exts] + ["best.json"])

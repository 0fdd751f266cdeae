"""A training run's folder (ckpts/ckpt_<VERSION>, results/log/log_run_<VERSION>.txt): another run's is refused, a run
owns its folder under a lock, the folders are checked before the first epoch, resuming needs optimizer state, and
stale temp files of killed saves are cleaned (issue 26: data lost)."""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import run
from core import checkpoints
from core.config import load_config
from core.data.demo import generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--SET", "LAYER=1", "--SET", "HIDDEN_SIZE=32", "--SET", "FF_SIZE=64", "--SET", "FLAT_MLP_SIZE=32",
        "--SET", "FLAT_OUT_SIZE=64", "--SET", "WORD_EMBED_SIZE=16", "--BS=16", "--NW=0", "--VERB=False"]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate(str(root), seed=0, n_train_images=16, n_val_images=4, n_test_images=4, questions_per_image=4)
    return root


def _argv(tmp_path, demo_root, backend_name, *flags, model="trar"):
    return ["--MODEL", model, "--DATASET", "demo", f"--backend={backend_name}", "--DATA_ROOT", str(demo_root),
            "--SET", f"RESULTS_ROOT={tmp_path / 'results'}", "--SET", f"CKPTS_ROOT={tmp_path / 'ckpts'}",
            *TINY, *flags]


def _run(tmp_path, demo_root, backend, *flags, model="trar"):
    return run.main(_argv(tmp_path, demo_root, backend.name, *flags, model=model))


def _refused(tmp_path, demo_root, backend, *flags, model="trar"):
    with pytest.raises(SystemExit) as exc:
        _run(tmp_path, demo_root, backend, *flags, model=model)
    message = str(exc.value.code)
    assert "\n" not in message
    return message


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder)) if not name.startswith(".")}


def test_a_new_run_refuses_an_existing_run_folder(backend, tmp_path, demo_root):
    _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=a", "--MAX_EPOCH=1")
    folder, log = tmp_path / "ckpts" / "ckpt_a", tmp_path / "results" / "log" / "log_run_a.txt"
    before, log_before = _snapshot(folder), log.read_bytes()
    message = _refused(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=a", "--MAX_EPOCH=1")
    assert str(folder) in message and "--RESUME=True" in message and "OVERWRITE=True" in message
    assert _snapshot(folder) == before and log.read_bytes() == log_before
    # the same --SEED without --VERSION names the same run, even for another model
    _run(tmp_path, demo_root, backend, "--RUN=train", "--SEED=7", "--MAX_EPOCH=1")
    seven = _snapshot(tmp_path / "ckpts" / "ckpt_7")
    message = _refused(tmp_path, demo_root, backend, "--RUN=train", "--SEED=7", "--MAX_EPOCH=1", model="mcan_small")
    assert "ckpt_7" in message and _snapshot(tmp_path / "ckpts" / "ckpt_7") == seven
    # resuming continues it; OVERWRITE replaces it
    out = _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=a", "--MAX_EPOCH=2", "--RESUME=True",
               "--CKPT_V=a", "--CKPT_E=1")
    assert out["epoch"] == 2
    assert log.read_bytes().startswith(log_before)
    _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=a", "--MAX_EPOCH=1", "--SET", "OVERWRITE=True")
    exts = [backend.checkpoint_ext] + ([".pdopt"] if backend.name == "paddle" else [])
    # the lock file goes with the run; OVERWRITE removed the first run's epoch2, best and latest
    kept = [f"{stem}{ext}" for stem in ("epoch1", "best", "latest") for ext in exts]
    assert sorted(os.listdir(folder)) == sorted(kept + ["best.json"])


def test_a_log_alone_marks_a_run(backend, tmp_path, demo_root):
    log = tmp_path / "results" / "log" / "log_run_b.txt"
    log.parent.mkdir(parents=True)
    log.write_text("a run that was killed before its first epoch\n")
    message = _refused(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=b", "--MAX_EPOCH=1")
    assert str(log) in message
    assert log.read_text() == "a run that was killed before its first epoch\n"


def test_resuming_into_another_runs_folder_is_refused(backend, tmp_path, demo_root):
    _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=c", "--MAX_EPOCH=1")
    _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=d", "--MAX_EPOCH=1")
    message = _refused(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=d", "--MAX_EPOCH=2", "--RESUME=True",
                       "--CKPT_V=c", "--CKPT_E=1")
    assert "ckpt_d" in message


HOLDER = textwrap.dedent("""
    import sys
    from core import runfolder
    from core.config import load_config
    cfg = load_config('trar', 'demo', {'CKPTS_ROOT': sys.argv[1], 'RESULTS_ROOT': sys.argv[2], 'VERSION': 'x'})
    with runfolder.claim(cfg):
        print('claimed', flush=True)
        sys.stdin.readline()
""")


def _holder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "ckpts"), str(tmp_path / "results")],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "claimed"
    return proc


def test_a_run_folder_is_locked_while_a_run_owns_it(backend, tmp_path, demo_root):
    """Two processes: the second run of one name is refused, naming the lock and the owner's pid; a killed owner's
    lock goes with it (the OS drops flocks)."""
    owner = _holder(tmp_path)
    try:
        message = _refused(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=x", "--MAX_EPOCH=1")
        assert os.path.join("ckpt_x", ".run.lock") in message and f"pid {owner.pid}" in message
        assert not (tmp_path / "results" / "log" / "log_run_x.txt").exists()
    finally:
        owner.kill()
        owner.wait()
    out = _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=x", "--MAX_EPOCH=1")
    assert out["epoch"] == 1


def test_the_lock_is_released_when_the_run_ends(tmp_path):
    from core import runfolder
    cfg = load_config("trar", "demo", {"CKPTS_ROOT": str(tmp_path / "ckpts"),
                                       "RESULTS_ROOT": str(tmp_path / "results"), "VERSION": "y"})
    with runfolder.claim(cfg):
        with pytest.raises(runfolder.RunFolderError, match=r"in use by another run \(pid \d+ holds"):
            with runfolder.claim(cfg):
                pass
    with pytest.raises(RuntimeError):
        with runfolder.claim(cfg):
            raise RuntimeError("a crash")
    with runfolder.claim(cfg):
        pass


@pytest.mark.parametrize("which", ["CKPTS_ROOT", "RESULTS_ROOT", "ckpt folder", "log folder"])
def test_folders_that_are_files_fail_before_training(backend, tmp_path, demo_root, which):
    path = {"CKPTS_ROOT": tmp_path / "ckpts", "RESULTS_ROOT": tmp_path / "results",
            "ckpt folder": tmp_path / "ckpts" / "ckpt_f", "log folder": tmp_path / "results" / "log"}[which]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("a file")
    start = time.time()
    message = _refused(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=f", "--MAX_EPOCH=1")
    assert str(path) in message and "not a folder" in message
    assert path.read_text() == "a file"
    assert time.time() - start < 30


def _drop_optimizer_state(backend, folder, epoch):
    path = os.path.join(folder, f"epoch{epoch}{backend.checkpoint_ext}")
    if backend.name == "paddle":
        os.remove(path[:-len(".pdparams")] + ".pdopt")
    else:
        import torch
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        torch.save(state, path)                       # a weights-only file: a bare state dict
    return path


def test_resuming_without_optimizer_state_is_refused_or_says_so(backend, tmp_path, demo_root):
    _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=w", "--MAX_EPOCH=1")
    path = _drop_optimizer_state(backend, str(tmp_path / "ckpts" / "ckpt_w"), 1)
    resume = ["--RUN=train", "--VERSION=w2", "--MAX_EPOCH=2", "--RESUME=True", "--CKPT_V=w", "--CKPT_E=1"]
    message = _refused(tmp_path, demo_root, backend, *resume)
    assert path in message and "optimizer state" in message and "RESUME_WEIGHTS_ONLY=True" in message
    assert not checkpoints.saved_epochs(str(tmp_path / "ckpts" / "ckpt_w2"))
    with pytest.warns(RuntimeWarning, match="RESUME_WEIGHTS_ONLY: .* fresh optimizer.* epoch 1"):
        out = _run(tmp_path, demo_root, backend, *resume, "--SET", "RESUME_WEIGHTS_ONLY=True")
    assert out["epoch"] == 2                          # continued after epoch 1 (the file's name), not from 0


def test_a_checkpoint_without_lr_base_gets_the_decayed_rate():
    from core.engine import resume_point
    cfg = load_config("trar", "demo", {"LR_BASE": 1e-3, "LR_DECAY_LIST": [1, 2, 5], "LR_DECAY_R": 0.5})
    meta = {"epoch": 3, "lr_base": None, "optimizer": {"state": {}}}
    assert resume_point(cfg, "x.pkl", meta) == (3, 1e-3 * 0.5 * 0.5)     # decayed at the start of epochs 1 and 2
    assert resume_point(cfg, "x.pkl", dict(meta, lr_base=7e-4)) == (3, 7e-4)
    assert resume_point(cfg, "x.pkl", dict(meta, epoch=1)) == (1, 1e-3)


# ------------------------------------------------------------------------------------------ stale temp files
WRITER = textwrap.dedent("""
    import sys
    from core.checkpoints import atomic_write
    with atomic_write(sys.argv[1]) as f:
        f.write(b'x' * 100000)
        f.flush()
        print('writing', flush=True)
        sys.stdin.readline()
""")


def _temps(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith(".epoch1.pkl.") and ".tmp" in n)


def _writer(path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def test_a_killed_saves_temp_file_is_cleaned_by_the_next_save_but_not_a_live_writers(tmp_path):
    killed = _writer(tmp_path / "epoch1.pkl")
    killed.kill()
    killed.wait()
    stale = _temps(tmp_path)
    assert len(stale) == 1 and os.path.getsize(tmp_path / stale[0]) == 100000
    live = _writer(tmp_path / "epoch1.pkl")          # the next save removes the killed one's temp file
    try:
        assert len(_temps(tmp_path)) == 1 and _temps(tmp_path) != stale
        with checkpoints.atomic_write(str(tmp_path / "epoch2.pkl")) as f:
            f.write(b"new")
        assert len(_temps(tmp_path)) == 1 and _temps(tmp_path) != stale    # the live writer's is kept
        live.stdin.write("\n")
        live.stdin.flush()
        assert live.wait(timeout=60) == 0
    finally:
        live.kill()
    assert _temps(tmp_path) == [] and os.path.getsize(tmp_path / "epoch1.pkl") == 100000
    (tmp_path / ".notes.txt.tmp").write_text("not of our naming pattern")
    checkpoints.atomic_save(str(tmp_path / "epoch3.pkl"), lambda p: open(p, "wb").close())
    assert (tmp_path / ".notes.txt.tmp").exists()


def test_a_resumed_run_keeps_its_run_s_name_unless_given_one(tmp_path):
    """--RESUME --CKPT_V=x continues run x (its folder, log and figures); --VERSION still names another run; a
    --CKPT_PATH file in a run folder of CKPTS_ROOT continues that run, one from elsewhere starts a new one."""
    roots = {"RESULTS_ROOT": str(tmp_path / "results"), "CKPTS_ROOT": str(tmp_path / "ckpts")}
    resumed = load_config("trar", "demo", {**roots, "RESUME": True, "CKPT_VERSION": "demo_torch", "CKPT_EPOCH": 1})
    assert resumed.VERSION == "demo_torch"
    with_seed = load_config("trar", "demo", {**roots, "RESUME": True, "CKPT_VERSION": "x", "CKPT_EPOCH": 1, "SEED": 4})
    assert with_seed.VERSION == "x"
    named = load_config("trar", "demo", {**roots, "RESUME": True, "CKPT_VERSION": "x", "CKPT_EPOCH": 1,
                                         "VERSION": "y"})
    assert (named.VERSION, named.CKPT_VERSION) == ("y", "x")
    (tmp_path / "ckpts" / "ckpt_run7").mkdir(parents=True)
    inside = tmp_path / "ckpts" / "ckpt_run7" / "epoch2.pkl"
    outside = tmp_path / "epoch2.pkl"
    for path in (inside, outside):
        path.write_bytes(b"")
    assert load_config("trar", "demo", {**roots, "RESUME": True, "CKPT_PATH": str(inside)}).VERSION == "run7"
    elsewhere = load_config("trar", "demo", {**roots, "RESUME": True, "CKPT_PATH": str(outside)}).VERSION
    assert elsewhere.startswith("trar_demo_")                       # a new run, named by the time
    assert load_config("trar", "demo", {**roots, "CKPT_VERSION": "x", "CKPT_EPOCH": 1},
                       run_mode="val").VERSION.startswith("trar_demo_")   # val and test runs are not renamed


def test_resuming_a_run_from_an_earlier_epoch_says_which_epochs_it_rewrites(tmp_path, caplog):
    from core import runfolder
    cfg = load_config("trar", "demo", {"RESULTS_ROOT": str(tmp_path / "results"), "CKPTS_ROOT": str(tmp_path / "ckpts"),
                                       "RESUME": True, "CKPT_VERSION": "r", "CKPT_EPOCH": 1})
    folder = tmp_path / "ckpts" / "ckpt_r"
    folder.mkdir(parents=True)
    for name in ("epoch1.pkl", "epoch2.pkl", "epoch3.pkl", "epoch3.pdparams"):
        (folder / name).write_bytes(b"")
    with runfolder.claim(cfg, str(folder / "epoch1.pkl")):
        pass
    assert [m for m in caplog.messages if m.startswith("RESUME:")] == [
        f"RESUME: {folder} continues from epoch1.pkl; this run rewrites its later epochs epoch2 (.pkl), epoch3 "
        "(.pdparams .pkl) (saving one removes the other framework's files of it)"]
    caplog.clear()
    with runfolder.claim(cfg, str(folder / "epoch3.pkl")):                  # from the last epoch: nothing rewritten
        pass
    assert not [m for m in caplog.messages if m.startswith("RESUME:")]


def test_resuming_best_or_latest_of_an_earlier_epoch_says_which_epochs_it_rewrites(tmp_path, caplog):
    """best / latest name no epoch: the epoch file each is a hard link to does (best.json's epoch for a best whose
    link is gone)."""
    from core import runfolder
    cfg = load_config("trar", "demo", {"RESULTS_ROOT": str(tmp_path / "results"), "CKPTS_ROOT": str(tmp_path / "ckpts"),
                                       "RESUME": True, "CKPT_VERSION": "r", "CKPT_EPOCH": "best"})
    folder = tmp_path / "ckpts" / "ckpt_r"
    folder.mkdir(parents=True)
    for epoch in (1, 2, 3):
        (folder / f"epoch{epoch}.pkl").write_bytes(f"epoch {epoch}".encode())
    os.link(folder / "epoch1.pkl", folder / "best.pkl")
    os.link(folder / "epoch3.pkl", folder / "latest.pkl")

    def rewind_warnings(name):
        caplog.clear()
        with runfolder.claim(cfg, str(folder / name)):
            pass
        return [m for m in caplog.messages if m.startswith("RESUME:")]
    assert rewind_warnings("best.pkl") == [
        f"RESUME: {folder} continues from best.pkl; this run rewrites its later epochs epoch2 (.pkl), epoch3 (.pkl) "
        "(saving one removes the other framework's files of it)"]
    assert rewind_warnings("latest.pkl") == []                                 # the last epoch: nothing rewritten
    os.remove(folder / "best.pkl")                                              # a copy, not a link: best.json says
    (folder / "best.pkl").write_bytes(b"epoch 2")
    (folder / "best.json").write_text(json.dumps({"epoch": 2, "score": 1.0, "metric": "overall"}))
    assert len(rewind_warnings("best.pkl")) == 1 and "epochs epoch3 (.pkl) " in caplog.messages[-1]

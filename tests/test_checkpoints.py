import os

import pytest

from core import checkpoints as ck
from core.config import ConfigError, load_config


class Boom(Exception):
    pass


def test_atomic_write_replaces_the_file(tmp_path):
    path = tmp_path / "sub" / "out.bin"
    with ck.atomic_write(str(path)) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(path.parent) == ["out.bin"]
    with ck.atomic_write(str(path), "w") as f:
        f.write("text é")
    assert path.read_text(encoding="utf-8") == "text é"


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(Boom):
        with ck.atomic_write(str(path), "w") as f:
            f.write("half")
            raise Boom
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_atomic_writes_give_the_mode_of_a_plain_open(tmp_path):
    """New files get what open() gives under the umask (not mkstemp's 0600); a replaced file keeps its own mode."""
    from core.data.paths import atomic_write_bytes
    old_umask = os.umask(0o027)
    try:
        (tmp_path / "plain").write_bytes(b"x")
        expected = os.stat(tmp_path / "plain").st_mode & 0o777
        with ck.atomic_write(str(tmp_path / "a.json"), "w") as f:
            f.write("{}")
        ck.atomic_save(str(tmp_path / "b.bin"), lambda tmp: open(tmp, "wb").close())
        atomic_write_bytes(str(tmp_path / "c.bin"), b"c")
    finally:
        os.umask(old_umask)
    assert expected == 0o640
    for name in ("a.json", "b.bin", "c.bin"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == expected, name
    os.chmod(tmp_path / "a.json", 0o600)
    with ck.atomic_write(str(tmp_path / "a.json"), "w") as f:
        f.write('{"new": 1}')
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == 0o600


def test_atomic_write_rejects_read_modes(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with ck.atomic_write(str(tmp_path / "x"), "rb"):
            pass


def test_atomic_save_gives_a_temp_path_with_the_extension(tmp_path):
    path = tmp_path / "epoch3.pdparams"
    seen = []

    def writer(tmp):
        seen.append(tmp)
        with open(tmp, "wb") as f:
            f.write(b"weights")

    ck.atomic_save(str(path), writer)
    assert path.read_bytes() == b"weights"
    assert seen[0] != str(path) and seen[0].endswith(".pdparams")
    assert os.path.dirname(seen[0]) == str(tmp_path)
    assert os.listdir(tmp_path) == ["epoch3.pdparams"]


def test_atomic_save_failure_keeps_old_file(tmp_path):
    path = tmp_path / "epoch3.pkl"
    path.write_bytes(b"old")

    def writer(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise Boom

    with pytest.raises(Boom):
        ck.atomic_save(str(path), writer)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["epoch3.pkl"]


def test_atomic_save_writer_that_writes_elsewhere(tmp_path):
    def writer(tmp):
        os.remove(tmp)

    with pytest.raises(FileNotFoundError, match="writer"):
        ck.atomic_save(str(tmp_path / "a.pkl"), writer)
    assert os.listdir(tmp_path) == []


def _cfg(tmp_path, run_mode="train", **overrides):
    roots = {"RESULTS_ROOT": str(tmp_path / "results"), "CKPTS_ROOT": str(tmp_path / "ckpts"), "VERSION": "v1"}
    return load_config("trar", "demo", {**roots, **overrides}, run_mode=run_mode)


def test_training_names(tmp_path):
    cfg = _cfg(tmp_path)
    path = ck.ckpt_path(cfg, 3, ".pkl")
    assert path == str(tmp_path / "ckpts" / "ckpt_v1" / "epoch3.pkl")
    assert os.path.isdir(os.path.dirname(path))
    assert ck.ckpt_path(cfg, 1, ".pdparams", version="other").endswith(os.path.join("ckpt_other", "epoch1.pdparams"))
    assert ck.log_path(cfg) == str(tmp_path / "results" / "log" / "log_run_v1.txt")
    assert ck.val_result_path(cfg) == str(tmp_path / "results" / "cache" / "result_run_v1.json")
    assert os.path.isdir(tmp_path / "results" / "log") and os.path.isdir(tmp_path / "results" / "cache")
    with pytest.raises(ValueError, match="extension"):
        ck.ckpt_path(cfg, 1, "pkl")


def test_eval_names_follow_the_checkpoint(tmp_path):
    cfg = _cfg(tmp_path, "test", CKPT_VERSION="old", CKPT_EPOCH=2)
    assert ck.log_path(cfg) == str(tmp_path / "results" / "log" / "log_run_old.txt")
    assert ck.log_path(cfg, "given").endswith("log_run_given.txt")
    assert ck.val_result_path(cfg) == str(tmp_path / "results" / "cache" / "result_run_old.json")
    assert ck.test_result_path(cfg) == str(tmp_path / "results" / "result_test" / "result_run_old_epoch2.json")
    assert ck.test_result_path(cfg, ".txt").endswith("result_run_old_epoch2.txt")
    assert ck.pred_path(cfg) == str(tmp_path / "results" / "pred" / "result_run_old_epoch2.pkl")


def test_names_with_ckpt_path(tmp_path):
    ckpt = tmp_path / "downloads" / "epoch13.pkl"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    cfg = _cfg(tmp_path, "test", CKPT_PATH=str(ckpt))
    assert ck.test_result_path(cfg) == str(tmp_path / "results" / "result_test" / "result_run_epoch13.json")
    assert ck.pred_path(cfg) == str(tmp_path / "results" / "pred" / "result_run_epoch13.pkl")
    assert ck.resume_path(cfg, ".pdparams") == str(ckpt)
    ckpt.unlink()
    with pytest.raises(FileNotFoundError, match="^CKPT_PATH"):
        ck.resume_path(cfg, ".pkl")


def test_a_checkpoint_in_a_run_folder_gets_the_run_name_either_way(tmp_path):
    """ckpts/ckpt_1/epoch13.pkl named by --CKPT_PATH and by --CKPT_V=1 --CKPT_E=13: the same test file name."""
    ckpt = tmp_path / "ckpts" / "ckpt_1" / "epoch13.pkl"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    by_path = _cfg(tmp_path, "test", CKPT_PATH=str(ckpt))
    by_name = _cfg(tmp_path, "test", CKPT_VERSION="1", CKPT_EPOCH=13)
    assert by_path.CKPT_VERSION == "1_epoch13"
    assert ck.test_result_path(by_path) == ck.test_result_path(by_name) == str(
        tmp_path / "results" / "result_test" / "result_run_1_epoch13.json")
    assert ck.resume_path(by_path, ".pdparams") == ck.resume_path(by_name, ".pdparams") == str(ckpt)


def test_resume_path_lists_saved_epochs(tmp_path):
    folder = tmp_path / "ckpts" / "ckpt_old"
    folder.mkdir(parents=True)
    for name in ("epoch1.pkl", "epoch2.pkl", "epoch2.pdparams", "epoch2.pdopt", "notes.txt"):
        (folder / name).write_bytes(b"")
    cfg = _cfg(tmp_path, "val", CKPT_VERSION="old", CKPT_EPOCH=2)
    assert ck.resume_path(cfg, ".pkl") == str(folder / "epoch2.pkl")
    cfg = _cfg(tmp_path, "val", CKPT_VERSION="old", CKPT_EPOCH=5)
    with pytest.raises(FileNotFoundError) as info:
        ck.resume_path(cfg, ".pkl")
    message = str(info.value)
    assert message.startswith("CKPT_EPOCH") and "epoch5.pkl" in message
    assert "1 (.pkl), 2 (.pdopt .pdparams .pkl)" in message and "convert" not in message


def test_resume_path_takes_the_other_frameworks_file_when_its_own_is_missing(tmp_path):
    folder = tmp_path / "ckpts" / "ckpt_old"
    folder.mkdir(parents=True)
    (folder / "epoch4.pkl").write_bytes(b"")
    cfg = _cfg(tmp_path, "val", CKPT_VERSION="old", CKPT_EPOCH=4)
    assert ck.resume_path(cfg, ".pdparams") == str(folder / "epoch4.pkl")     # every backend reads both formats
    (folder / "epoch4.pdparams").write_bytes(b"")
    assert ck.resume_path(cfg, ".pdparams") == str(folder / "epoch4.pdparams")  # its own first
    assert ck.resume_path(cfg, ".pkl") == str(folder / "epoch4.pkl")
    (folder / "epoch3.pdopt").write_bytes(b"")                                 # optimizer state, no weights
    with pytest.raises(FileNotFoundError, match=r"epoch3 has no weights file \(\.pkl or \.pdparams\)$"):
        ck.resume_path(_cfg(tmp_path, "val", CKPT_VERSION="old", CKPT_EPOCH=3), ".pkl")


def test_ckpt_path_that_is_a_folder_says_so(tmp_path):
    pattern = r"^CKPT_PATH: .* is a folder; expected a file in it, e\.g\. .*epoch<N>\.pkl$"
    with pytest.raises(ConfigError, match=pattern):
        _cfg(tmp_path, "val", CKPT_PATH=str(tmp_path))


def test_ckpt_epoch_without_a_run_name_is_a_config_error(tmp_path):
    roots = {"RESULTS_ROOT": str(tmp_path / "results"), "CKPTS_ROOT": str(tmp_path / "ckpts")}
    with pytest.raises(ConfigError, match="^CKPT_VERSION: --CKPT_E 12 needs --CKPT_V NAME"):
        load_config("trar", "demo", {**roots, "CKPT_EPOCH": 12}, run_mode="val")
    with pytest.raises(ConfigError, match="^CKPT_VERSION: --CKPT_E 3 needs --CKPT_V NAME"):
        load_config("trar", "demo", {**roots, "CKPT_EPOCH": 3, "RESUME": True})
    for named in ({"SEED": 0}, {"VERSION": "a"}, {"CKPT_VERSION": "a"}):             # any of them names the run
        assert load_config("trar", "demo", {**roots, "CKPT_EPOCH": 12, **named}, run_mode="val").CKPT_EPOCH == 12


def test_a_checkpoint_that_a_run_would_not_read_is_a_config_error(tmp_path):
    """Training reads a checkpoint only to resume, and --CKPT_E picks a file of a --CKPT_V run: a checkpoint given
    where it would be ignored is refused instead of training from scratch or loading another file."""
    roots = {"RESULTS_ROOT": str(tmp_path / "results"), "CKPTS_ROOT": str(tmp_path / "ckpts")}
    ckpt = tmp_path / "epoch2.pkl"
    ckpt.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"^RESUME: training reads --CKPT_V/--CKPT_E only to resume; add "
                                          r"--RESUME=True"):
        load_config("trar", "demo", {**roots, "CKPT_VERSION": "a", "CKPT_EPOCH": 2})
    with pytest.raises(ConfigError, match=r"^RESUME: training reads --CKPT_PATH only to resume"):
        load_config("trar", "demo", {**roots, "CKPT_PATH": str(ckpt)})
    with pytest.raises(ConfigError, match=r"^CKPT_EPOCH: --CKPT_E picks an epoch file .* give one or the other$"):
        load_config("trar", "demo", {**roots, "CKPT_PATH": str(ckpt), "CKPT_EPOCH": 2}, run_mode="val")
    with pytest.raises(ConfigError, match=r"^CKPT_EPOCH: --CKPT_E 0 names no checkpoint; epochs are numbered from 1"):
        load_config("trar", "demo", {**roots, "CKPT_VERSION": "a", "CKPT_EPOCH": 0}, run_mode="val")
    with pytest.raises(ConfigError, match=r"^RESUME: only training resumes; a val run loads its checkpoint"):
        load_config("trar", "demo", {**roots, "CKPT_PATH": str(ckpt), "RESUME": True}, run_mode="val")
    resumed = load_config("trar", "demo", {**roots, "CKPT_PATH": str(ckpt), "RESUME": True})
    named = load_config("trar", "demo", {**roots, "CKPT_PATH": str(ckpt), "CKPT_VERSION": "mine"}, run_mode="val")
    assert resumed.CKPT_PATH == str(ckpt) and named.CKPT_VERSION == "mine"      # --CKPT_V may name a CKPT_PATH run


def test_resume_path_lists_runs_when_the_folder_is_missing(tmp_path):
    (tmp_path / "ckpts" / "ckpt_a").mkdir(parents=True)
    (tmp_path / "ckpts" / "ckpt_b").mkdir()
    cfg = _cfg(tmp_path, "val", CKPT_VERSION="c", CKPT_EPOCH=1)
    with pytest.raises(FileNotFoundError, match="^CKPT_VERSION.*runs in .*: a, b$"):
        ck.resume_path(cfg, ".pkl")

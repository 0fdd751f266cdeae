"""Bad inputs and failing disks (issue 26): each gives one line naming the file, the entry, the key or the flag.

The command lines (run.py, python -m deploy) catch the project's errors in one place and exit non-zero with that
line; a hostile pickle is refused there as in python -m convert, and runs nothing.
"""
import errno
import json
import os
import pickle
import re
import shutil
import types
import zipfile

import numpy as np
import pytest

import run
from core import checkpoints
from core.config import ConfigError, load_config
from core.data import build_dataset, paths, subsets
from core.data.demo import generate
from core.data.glove import pretrained_embedding

SMALL = dict(n_train_images=6, n_val_images=4, n_test_images=3, questions_per_image=3)
TINY = ["--SET", "LAYER=1", "--SET", "HIDDEN_SIZE=32", "--SET", "FF_SIZE=64", "--SET", "FLAT_MLP_SIZE=32",
        "--SET", "FLAT_OUT_SIZE=64", "--SET", "WORD_EMBED_SIZE=16", "--BS=16", "--NW=0", "--VERB=False"]
VQA_Q = "v2_OpenEnded_mscoco_val2014_questions.json"
VQA_A = "v2_mscoco_val2014_annotations.json"
TRAIN_A = "v2_mscoco_train2014_annotations.json"
CLEVR_Q = "CLEVR_val_questions.json"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input_demo")
    generate(str(root), seed=3, **SMALL)
    return str(root)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(paths, "_WARNED", set())


def _copy(demo_root, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(demo_root, dst)
    return str(dst)


def make_cfg(data_root, results_root, fmt="vqa", **kw):
    base = dict(DATASET=fmt, DATA_FORMAT=fmt, RUN_MODE="train", SPLIT={"train": "train", "val": "val", "test": "test"},
                FEAT_TYPE="grid", FEAT_SIZE={"vqa": {"FRCN_FEAT_SIZE": (36, 48), "BBOX_FEAT_SIZE": (8, 5)},
                                             "clevr": {"GRID_FEAT_SIZE": (36, 48)}},
                USE_BBOX_FEAT=False, BBOX_NORMALIZE=False, USE_GLOVE=False, GLOVE_PATH=None,
                GLOVE_SPACY_MODEL="no_such_spacy_model", WORD_EMBED_SIZE=300, DATA_ROOT=str(data_root),
                RESULTS_ROOT=str(results_root), SUBSET=None, SUBSET_IIDS=None, SUBSET_ANS_TYPES=None,
                SKIP_MISSING_FEATS=False, LOSS_FUNC="ce" if fmt == "clevr" else "bce")
    base.update(kw)
    return types.SimpleNamespace(**base)


def _one_line(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message, message
    return message


def _raw_path(root, name):
    if name.startswith("CLEVR"):
        return os.path.join(root, "clevr", "raw", "questions", name)
    return os.path.join(root, "vqa", "raw", name)


def _edit(root, name, change):
    """Rewrite one json file of the data under ``root`` through ``change(data)``; returns its path."""
    path = _raw_path(root, name)
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


# ---- missing or mistyped json fields ----------------------------------------------------------------------------

def _drop(key, index=1, where="questions"):
    return lambda data: data[where][index].pop(key)


def _set(key, value, index=1, where="questions"):
    return lambda data: data[where][index].__setitem__(key, value)


def _set_item(index, value, where="questions"):
    return lambda data: data[where].__setitem__(index, value)


@pytest.mark.parametrize("name, change, field", [
    (VQA_Q, _drop("question_id"), "question_id"),
    (VQA_Q, _drop("image_id"), "image_id"),
    (VQA_Q, _drop("question"), "question"),
    (VQA_Q, _set("question", None), "question"),
    (VQA_Q, _set("image_id", "abc"), "image_id"),
    (VQA_Q, _set("question_id", "seven"), "question_id"),
    (VQA_A, _drop("answers", where="annotations"), "answers"),
    (VQA_A, _drop("question_id", where="annotations"), "question_id"),
    (VQA_A, _set("image_id", "abc", where="annotations"), "image_id"),
    (VQA_A, _set("answers", "yes", where="annotations"), "answers"),
    (VQA_A, _drop("answer_type", where="annotations"), "answer_type"),
])
def test_vqa_json_fields_name_the_file_the_entry_and_the_field(demo_root, tmp_path, name, change, field):
    root = _copy(demo_root, tmp_path)
    path = _edit(root, name, change)
    with pytest.raises(ValueError) as info:
        build_dataset(make_cfg(root, tmp_path), "val")
    message = _one_line(info)
    assert message.startswith(path) and f"'{field}'" in message
    kind = "question" if name == VQA_Q else "annotation"
    assert re.search(rf"{kind} 1\b", message), message


def test_a_training_annotation_without_answers_names_its_file(demo_root, tmp_path):
    root = _copy(demo_root, tmp_path)
    path = _edit(root, TRAIN_A, _drop("answers", index=2, where="annotations"))
    with pytest.raises(ValueError) as info:
        build_dataset(make_cfg(root, tmp_path), "train")
    assert _one_line(info).startswith(path) and "annotation 2" in str(info.value) and "'answers'" in str(info.value)


def test_a_question_entry_that_is_not_an_object(demo_root, tmp_path):
    root = _copy(demo_root, tmp_path)
    path = _edit(root, VQA_Q, _set_item(0, "what colour?"))
    with pytest.raises(ValueError) as info:
        build_dataset(make_cfg(root, tmp_path), "test")
    assert _one_line(info).startswith(path) and "question 0" in str(info.value)


@pytest.mark.parametrize("change, field", [
    (_drop("image_index"), "image_index"),
    (_set("image_index", "abc"), "image_index"),
    (_drop("question"), "question"),
    (_set("question", None), "question"),
])
def test_clevr_json_fields_name_the_file_the_entry_and_the_field(tmp_path, change, field):
    root = str(tmp_path / "clevr_data")
    generate(root, seed=4, **SMALL)
    path = _edit(root, CLEVR_Q, change)
    with pytest.raises(ValueError) as info:
        build_dataset(make_cfg(root, tmp_path, fmt="clevr"), "val")
    message = _one_line(info)
    assert message.startswith(path) and f"'{field}'" in message and re.search(r"question 1\b", message)


def test_a_val_question_without_annotation_names_the_annotation_file(demo_root, tmp_path):
    root = _copy(demo_root, tmp_path)
    qid = []
    path = _edit(root, VQA_A, lambda data: qid.append(data["annotations"].pop(1)["question_id"]))
    with pytest.raises(ValueError) as info:
        build_dataset(make_cfg(root, tmp_path), "val")
    message = _one_line(info)
    assert message.startswith(path) and str(qid[0]) in message and VQA_Q in message


# ---- text files that are not UTF-8 --------------------------------------------------------------------------------

LATIN1 = "caf\xe9".encode("latin-1")     # the byte 0xe9 at offset 3


def test_non_utf8_config(tmp_path):
    path = tmp_path / "extra.yml"
    path.write_bytes(b"# " + LATIN1 + b"\nLR_BASE: 0.0001\n")
    with pytest.raises(ConfigError) as info:
        load_config("trar", "vqa", {"CONFIG": str(path)})
    message = _one_line(info)
    assert str(path) in message and "byte 5" in message and "UTF-8" in message


def test_non_utf8_question_file(demo_root, tmp_path):
    root = _copy(demo_root, tmp_path)
    path = _raw_path(root, VQA_Q)
    data = open(path, "rb").read()
    at = data.index(b"?")
    open(path, "wb").write(data[:at] + b"\xe9" + data[at + 1:])
    with pytest.raises(ValueError) as info:
        build_dataset(make_cfg(root, tmp_path), "val")
    message = _one_line(info)
    assert message.startswith(path) and f"byte {at}" in message and "UTF-8" in message


def test_non_utf8_subset_file(demo_root, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"# " + LATIN1 + b"\n1\n")
    with pytest.raises(ValueError) as info:
        build_dataset(make_cfg(demo_root, tmp_path, SUBSET_IIDS=str(ids)), "train")
    message = _one_line(info)
    assert str(ids) in message and "byte 5" in message and "SUBSET_IIDS" in message


# ---- unclear errors -----------------------------------------------------------------------------------------------

def test_glove_npy_holding_a_pickle_names_the_file(tmp_path):
    path = tmp_path / "vecs.npy"
    np.save(path, np.array([{"what": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "vecs.json").write_text('["what"]')
    cfg = types.SimpleNamespace(USE_GLOVE=True, GLOVE_PATH=str(path), GLOVE_SPACY_MODEL=None, WORD_EMBED_SIZE=3,
                                RESULTS_ROOT=str(tmp_path / "results"))
    with pytest.raises(ValueError) as info:
        pretrained_embedding(cfg, {"PAD": 0, "UNK": 1, "what": 2}, "k")
    message = _one_line(info)
    assert str(path) in message and "GLOVE_PATH" in message and "pickle" in message


@pytest.mark.parametrize("arrays, what", [
    (dict(x=np.array([object()], dtype=object), bbox=np.zeros((3, 4)), image_h=1, image_w=1), "'x'"),
    (dict(x=np.zeros((48, 3), np.float32), bbox=np.zeros((3, 4)), image_h="tall", image_w=1), "image_h"),
])
def test_bad_region_npz_fields_name_the_file(demo_root, tmp_path, arrays, what):
    root = _copy(demo_root, tmp_path)
    with open(_raw_path(root, VQA_Q)) as f:
        iid = json.load(f)["questions"][0]["image_id"]
    npz = os.path.join(root, "vqa", "feats", "val2014", f"COCO_val2014_{iid:012d}.jpg.npz")
    np.savez(npz, **arrays)
    with pytest.raises(ValueError) as info:
        build_dataset(make_cfg(root, tmp_path, FEAT_TYPE="region"), "val")
    assert _one_line(info).startswith(npz)


def test_clevr_npz_with_an_object_array_names_the_file(tmp_path):
    from core.data.features import load_clevr_grid
    path = str(tmp_path / "1.npz")
    np.savez(path, x=np.array([object()], dtype=object))
    with pytest.raises(ValueError) as info:
        load_clevr_grid(path, (36, 48))
    assert _one_line(info).startswith(path)


def test_an_empty_split_is_not_blamed_on_filters_never_set():
    with pytest.raises(ValueError) as info:
        subsets.select([], {}, ["feats"], label="val (val): ", source="q.json")
    message = _one_line(info)
    assert "q.json" in message and "no questions" in message and "SUBSET" not in message


def test_the_filter_that_emptied_a_split_is_named():
    samples = [{"qid": 1, "iid": 5, "ans_type": "yes/no"}]
    with pytest.raises(ValueError) as info:
        subsets.select(samples, {5: "5.npy"}, ["feats"], ans_types={"number"})
    message = _one_line(info)
    assert "SUBSET_ANS_TYPES" in message and "SUBSET_IIDS" not in message and "SKIP_MISSING" not in message
    with pytest.raises(ValueError) as info:
        subsets.select(samples, {}, ["feats"], skip_missing=True)
    message = _one_line(info)
    assert "SKIP_MISSING_FEATS" in message and "SUBSET_ANS_TYPES" not in message and "feats" in message


@pytest.mark.parametrize("key, source", [("SUB_BATCH_SIZE", "BATCH_SIZE"), ("EVAL_BATCH_SIZE", "BATCH_SIZE"),
                                         ("SPLIT", "TRAIN_SPLIT"), ("N_GPU", "GPU"), ("DATA_FORMAT", "DATASET")])
def test_a_derived_key_says_it_is_derived_and_from_what(key, source):
    with pytest.raises(ConfigError) as info:
        load_config("trar", "vqa", {key: 8})
    message = _one_line(info)
    assert message.startswith(f"{key}:") and "derived" in message and source in message
    assert "did you mean" not in message and "unknown key" not in message


# ---- failing disks and paths that are files -----------------------------------------------------------------------

def test_disk_full_names_the_file(tmp_path, monkeypatch):
    target = tmp_path / "out.json"

    class Full:
        def __init__(self, f):
            self.f = f

        def __getattr__(self, name):
            return getattr(self.f, name)

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as info:
        with checkpoints.atomic_write(str(target), "w") as f:
            Full(f).write("{}")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert not target.exists() and os.listdir(tmp_path) == []

    def full_writer(tmp):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as info:
        checkpoints.atomic_save(str(target), full_writer)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)


def test_read_only_folder_names_the_target_not_a_temp_file(tmp_path, monkeypatch):
    """A folder where no file can be created (mkstemp refused, as in a read-only folder, which root could write)."""
    def refused(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.path.join(dir, prefix + "x1" + suffix))

    monkeypatch.setattr(checkpoints.tempfile, "mkstemp", refused)
    target = str(tmp_path / "a.json")
    with pytest.raises(PermissionError) as info:
        with checkpoints.atomic_write(target, "w") as f:
            f.write("{}")
    assert info.value.filename == target
    with pytest.raises(PermissionError) as info:
        checkpoints.atomic_save(target, lambda tmp: None)
    assert info.value.filename == target


def test_one_line_of_an_os_error():
    from core.errors import error_line, one_line
    line = error_line(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/ckpts/epoch1.pkl"))
    assert line == "error: /ckpts/epoch1.pkl: No space left on device"
    assert error_line(ConfigError("LAYER: expected an integer")) == "config error: LAYER: expected an integer"
    assert error_line(ValueError("a  b\n\n  c")) == "error: a b\n  c"      # further lines stay hints, indented
    assert one_line(ValueError("a  b\n\n  c")) == "a b c"


# ---- the command lines: one line, non-zero exit -------------------------------------------------------------------

class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _hostile(tmp_path, ext):
    """A checkpoint whose pickle asks for os.system (a torch zip for .pkl, a plain pickle for .pdparams)."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state_dict": {"w": _RunsCommand(f"touch {marker}")}, "epoch": 1}, protocol=2)
    path = tmp_path / f"evil{ext}"
    if ext == ".pkl":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("archive/data.pkl", payload)
            zf.writestr("archive/byteorder", "little")
            zf.writestr("archive/version", "3\n")
    else:
        path.write_bytes(payload)
    return str(path), marker


def _exit_line(call, *args):
    with pytest.raises(SystemExit) as info:
        call(*args)
    assert isinstance(info.value.code, str), info.value.code      # sys.exit(message): status 1, the message on stderr
    assert "\n" not in info.value.code and "Traceback" not in info.value.code
    return info.value.code


def _argv(tmp_path, demo_root, backend, *flags):
    return ["--MODEL", "trar", "--DATASET", "demo", f"--backend={backend}", "--DATA_ROOT", str(demo_root),
            "--SET", f"RESULTS_ROOT={tmp_path / 'results'}", "--SET", f"CKPTS_ROOT={tmp_path / 'ckpts'}", *TINY,
            *flags]


@pytest.fixture(scope="module")
def run_demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("run_demo")
    generate(str(root), seed=0, n_train_images=24, n_val_images=8, n_test_images=6, questions_per_image=4)
    return root


@pytest.mark.parametrize("flags", [["--RUN=val"], ["--RUN=test"], ["--RUN=train", "--RESUME=True", "--VERSION=r"],
                                   ["--RUN=export"]])
@pytest.mark.parametrize("ext", [".pkl", ".pdparams"])
def test_run_py_refuses_a_hostile_pickle_in_one_line(tmp_path, run_demo_root, flags, ext):
    path, marker = _hostile(tmp_path, ext)
    line = _exit_line(run.main, _argv(tmp_path, run_demo_root, "torch", "--CKPT_PATH", path, *flags))
    assert line.startswith("error: ") and path in line and re.search(r"refused global (posix|os)\.system", line)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["export", "onnx"])
def test_deploy_refuses_a_hostile_pickle_in_one_line(tmp_path, run_demo_root, command):
    from deploy.__main__ import main
    path, marker = _hostile(tmp_path, ".pkl")
    argv = [command, "--out", str(tmp_path / "out")] + _argv(tmp_path, run_demo_root, "torch", "--CKPT_PATH", path)
    line = _exit_line(main, argv)
    assert line.startswith("error: ") and path in line and re.search(r"refused global (posix|os)\.system", line)
    assert not marker.exists()


def test_run_py_a_results_path_that_is_a_file(tmp_path, run_demo_root):
    (tmp_path / "results").write_text("not a folder")
    path, _ = _hostile(tmp_path, ".pkl")
    line = _exit_line(run.main, _argv(tmp_path, run_demo_root, "torch", "--RUN=train", "--MAX_EPOCH=1",
                                      "--VERSION=f"))
    # the run-folder check (core/runfolder.py) finds it before any data is read, naming the key and the file
    assert line.startswith(f"error: RESULTS_ROOT: {tmp_path / 'results'} is not a folder") and "\n" not in line


def test_run_py_non_utf8_config(tmp_path, run_demo_root):
    extra = tmp_path / "extra.yml"
    extra.write_bytes(b"# " + LATIN1 + b"\n")
    line = _exit_line(run.main, _argv(tmp_path, run_demo_root, "torch", "--RUN=train", "--CONFIG", str(extra)))
    assert line.startswith("config error: ") and str(extra) in line and "byte 5" in line


@pytest.mark.parametrize("fmt, key", [("vqa", "image_id"), ("clevr", "image_index")])
def test_deploy_question_file_with_a_mistyped_image_id(tmp_path, fmt, key):
    from deploy.bundle import BundleError
    from deploy.predict import read_questions
    other = "question_id" if fmt == "vqa" else "question_index"
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"questions": [{other: 1, key: 3, "question": "what?"},
                                              {other: 2, key: "abc", "question": "what?"}]}))
    with pytest.raises(BundleError) as info:
        read_questions(str(path), fmt)
    message = _one_line(info)
    assert message.startswith(str(path)) and "question 1" in message and f"'{key}'" in message


def test_an_unreadable_feature_folder_is_one_line_naming_it(demo_root, tmp_path, monkeypatch):
    from core.data import features
    from core.errors import error_line

    def refused(folder):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), folder)

    monkeypatch.setattr(features.os, "scandir", refused)
    with pytest.raises(PermissionError) as info:
        build_dataset(make_cfg(demo_root, tmp_path), "val")
    folder = os.path.join(demo_root, "vqa", "feats", "val2014")
    assert error_line(info.value) == f"error: {folder}: Permission denied"


@pytest.mark.parametrize("fmt", ["vqa", "clevr"])
def test_a_data_root_that_is_a_file_says_so(tmp_path, fmt):
    data_file = tmp_path / "data_file"
    data_file.write_text("not a folder")
    with pytest.raises(FileNotFoundError) as info:
        build_dataset(make_cfg(data_file, tmp_path, fmt=fmt), "train")
    assert _one_line(info).startswith(f"{data_file}: a file where a folder is needed (looking for the train questions")


def test_run_py_a_data_root_or_checkpoint_folder_that_is_a_file(tmp_path, run_demo_root):
    data_file = tmp_path / "data_file"
    data_file.write_text("not a folder")
    line = _exit_line(run.main, _argv(tmp_path, run_demo_root, "torch", "--RUN=train", "--MAX_EPOCH=1",
                                      "--VERSION=d", "--DATA_ROOT", str(data_file)))
    assert line.startswith(f"error: {data_file}: a file where a folder is needed (")
    (tmp_path / "ckpts").write_text("not a folder")
    line = _exit_line(run.main, _argv(tmp_path, run_demo_root, "torch", "--RUN=train", "--MAX_EPOCH=1",
                                      "--VERSION=c"))
    assert line.startswith(f"error: CKPTS_ROOT: {tmp_path / 'ckpts'} is not a folder") and "\n" not in line


def test_run_py_disk_full_while_saving_a_checkpoint(tmp_path, run_demo_root, monkeypatch):
    fsync = os.fsync

    def full_for_checkpoints(fd):   # the checkpoint's temp file (.epoch1.pkl.<random>.tmp.pkl) finds the disk full
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".pkl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(checkpoints.os, "fsync", full_for_checkpoints)
    line = _exit_line(run.main, _argv(tmp_path, run_demo_root, "torch", "--RUN=train", "--MAX_EPOCH=1",
                                      "--VERSION=full"))
    ckpt = tmp_path / "ckpts" / "ckpt_full" / "epoch1.pkl"
    assert line == f"error: {ckpt}: No space left on device"
    assert os.listdir(ckpt.parent) == []                                   # the temp file went with the error


def test_records_checked_in_full_where_the_quick_pass_doubts():
    from core.data.records import VQA_ANNOTATION, VQA_QUESTION, check_records
    good = [{"question_id": i, "image_id": i, "question": "what?"} for i in range(50)]
    good[7]["image_id"] = "42"                        # int() reads it, as openvqa does: accepted
    assert check_records("q.json", good, VQA_QUESTION, "question") is good
    anns = [{"question_id": i, "image_id": i, "answers": [{"answer": "yes"}] * 3} for i in range(50)]
    anns[3]["answers"] = []                           # training tolerates an annotation without answers
    anns[40]["answers"][1] = {"answer": 3}
    with pytest.raises(ValueError, match=r"^a\.json: annotation 40 \(question_id 40\): 'answers' must be a list"):
        check_records("a.json", anns, VQA_ANNOTATION, "annotation")
    good[49]["question_id"] = True                    # a bool is no id
    with pytest.raises(ValueError, match=r"^q\.json: question 49: 'question_id' must be an integer, got True"):
        check_records("q.json", good, VQA_QUESTION, "question")


def test_deploy_non_utf8_question_file(tmp_path):
    from deploy.bundle import BundleError
    from deploy.predict import read_questions
    path = tmp_path / "q.json"
    path.write_bytes(b'{"questions": [{"question_id": 1, "image_id": 3, "question": "' + LATIN1 + b'?"}]}')
    with pytest.raises(BundleError) as info:
        read_questions(str(path), "vqa")
    message = _one_line(info)
    assert message.startswith(str(path)) and "byte 65" in message and "UTF-8" in message


def test_a_clevr_training_question_without_answer_names_its_file(tmp_path):
    root = str(tmp_path / "clevr_data")
    generate(root, seed=4, **SMALL)
    path = _edit(root, "CLEVR_train_questions.json", _drop("answer", index=2))
    with pytest.raises(ValueError) as info:
        build_dataset(make_cfg(root, tmp_path, fmt="clevr"), "train")
    assert _one_line(info).startswith(f"{path}: question 2 has no known 'answer'")

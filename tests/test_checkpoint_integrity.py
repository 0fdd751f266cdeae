"""Checkpoint checksums (formats/integrity.py): a damaged torch zip, a damaged .pdparams or .pdopt, and a .pdparams /
.pdopt pair mixed from two saves are refused by every reader, with one line naming the file; files written before
the checksums still load. And the data hashes a checkpoint carries (core/data/fingerprints.py)."""
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from core.data import fingerprints
from formats import integrity, layout, restricted_pickle
from formats.restricted_pickle import CheckpointReadError
from tests.model_configs import ANSWER_SIZE, TOKEN_SIZE, make_batch, tiny_cfg

torch = pytest.importorskip("torch")
paddle = pytest.importorskip("paddle")


@pytest.fixture(scope="module")
def backends():
    from backends import get_backend
    torch_be, paddle_be = get_backend("torch"), get_backend("paddle")
    torch_be.set_device("")
    paddle_be.set_device("")
    return torch_be, paddle_be


def _cfg():
    return tiny_cfg("trar", "vqa", DROPOUT_R=0.0)


def _saved(be, cfg, path, seed=0, data_hashes=None):
    """A checkpoint of a fresh net written by ``be``'s trainer; returns the net."""
    be.seed(seed)
    net = be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
    trainer = be.make_trainer(net, cfg)
    if data_hashes is None:
        trainer.save(str(path), 3, 1e-4)
    else:
        trainer.save(str(path), 3, 1e-4, data_hashes=data_hashes)
    return net


def _flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x10]))


def _member_data_offset(path, member):
    """Where the bytes of a stored zip member start (after its local header)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def test_a_torch_zip_with_one_changed_byte_is_refused_by_every_reader(backends, tmp_path):
    torch_be, paddle_be = backends
    cfg = _cfg()
    path = tmp_path / "epoch3.pkl"
    _saved(torch_be, cfg, path)
    with zipfile.ZipFile(path) as zf:
        member = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size).filename
    _flip_byte(path, _member_data_offset(path, member) + 17)
    # torch.load(weights_only=True) itself does not notice: the reason for the check
    torch.load(str(path), map_location="cpu", weights_only=True)
    for be in backends:
        net = be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
        with pytest.raises(CheckpointReadError, match="CRC-32") as info:
            be.load_checkpoint(net, str(path))
        assert str(path) in str(info.value) and member in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CheckpointReadError, match=member):
        restricted_pickle.read_torch_checkpoint(str(path))


def _pdparams_array_offset(path):
    """An offset inside the bytes of the largest array of a .pdparams (not the pickle's structure)."""
    state = restricted_pickle.read_pdparams(str(path))
    key = max((k for k, v in state.items() if isinstance(v, np.ndarray)), key=lambda k: state[k].nbytes)
    raw = open(path, "rb").read()
    offset = raw.find(np.ascontiguousarray(state[key]).tobytes())
    assert offset > 0
    return offset + state[key].nbytes // 2


def test_a_damaged_pdparams_is_refused_by_both_backends(backends, tmp_path):
    torch_be, paddle_be = backends
    cfg = _cfg()
    path = tmp_path / "epoch3.pdparams"
    _saved(paddle_be, cfg, path)
    _flip_byte(path, _pdparams_array_offset(path))
    for be in backends:
        net = be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
        with pytest.raises(CheckpointReadError, match="does not match") as info:
            be.load_checkpoint(net, str(path))
        assert str(path) in str(info.value) and str(tmp_path / "epoch3.pdopt") in str(info.value)


def test_a_pair_mixed_from_two_saves_is_refused(backends, tmp_path):
    """A reused name and a kill between the two renames: the new .pdopt (renamed first) beside the old .pdparams."""
    torch_be, paddle_be = backends
    cfg = _cfg()
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    _saved(paddle_be, cfg, old / "epoch3.pdparams", seed=0)
    _saved(paddle_be, cfg, new / "epoch3.pdparams", seed=1)
    os.replace(new / "epoch3.pdopt", old / "epoch3.pdopt")
    for be in backends:
        net = be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
        with pytest.raises(CheckpointReadError, match="different saves"):
            be.load_checkpoint(net, str(old / "epoch3.pdparams"))


def _rewrite_pdopt(path, change):
    saved = restricted_pickle.read_pdparams(str(path))
    change(saved)
    with open(path, "wb") as f:
        pickle.dump(saved, f, protocol=4)


def test_a_changed_pdopt_is_refused(backends, tmp_path):
    torch_be, paddle_be = backends
    cfg = _cfg()
    _saved(paddle_be, cfg, tmp_path / "epoch3.pdparams")
    _rewrite_pdopt(tmp_path / "epoch3.pdopt", lambda saved: saved.update(epoch=7))
    for be in backends:
        with pytest.raises(CheckpointReadError, match="damaged optimizer file"):
            be.load_checkpoint(be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE), str(tmp_path / "epoch3.pdparams"))


def test_a_pair_written_before_the_checksums_loads(backends, tmp_path):
    torch_be, paddle_be = backends
    cfg = _cfg()
    source = _saved(paddle_be, cfg, tmp_path / "epoch3.pdparams")
    _rewrite_pdopt(tmp_path / "epoch3.pdopt", lambda saved: [saved.pop(k) for k in
                                                             (integrity.PDPARAMS_SHA256, integrity.PDOPT_SHA256)])
    batch = make_batch(cfg)
    expected = paddle_be.predict(source, batch)
    for be in backends:
        net = be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
        assert be.load_checkpoint(net, str(tmp_path / "epoch3.pdparams"))["epoch"] == 3
        assert np.abs(be.predict(net, batch) - expected).max() < 1e-5


def test_the_pdparams_stays_a_plain_state_dict_for_paddle_load(backends, tmp_path):
    """Paddle's own loader and a port's strict set_state_dict see only the net's keys (the checksums live in the
    .pdopt)."""
    _, paddle_be = backends
    cfg = _cfg()
    net = _saved(paddle_be, cfg, tmp_path / "epoch3.pdparams")
    loaded = paddle.load(str(tmp_path / "epoch3.pdparams"))
    own = net.state_dict()
    assert set(own) <= set(loaded)
    assert all(k in own or layout.lstm_canonical_name(k) in own for k in loaded)   # the LSTM aliases aside
    assert integrity.PDPARAMS_SHA256 in paddle.load(str(tmp_path / "epoch3.pdopt"))


# ---- data hashes -------------------------------------------------------------------------------------------------

HASHES = fingerprints.hashes({"PAD": 0, "UNK": 1, "what": 2}, ["yes", "no"])


@pytest.mark.parametrize("writer", ["torch", "paddle"])
def test_both_frameworks_files_carry_the_data_hashes_to_both_readers(backends, tmp_path, writer):
    torch_be, paddle_be = backends
    be_w = torch_be if writer == "torch" else paddle_be
    path = tmp_path / f"epoch3{be_w.checkpoint_ext}"
    _saved(be_w, _cfg(), path, data_hashes=HASHES)
    for be in backends:
        meta = be.load_checkpoint(be.build_model(_cfg(), TOKEN_SIZE, ANSWER_SIZE), str(path))
        assert {k: meta[k] for k in HASHES} == HASHES


def test_the_torch_container_keeps_the_openvqa_keys(backends, tmp_path):
    torch_be, _ = backends
    _saved(torch_be, _cfg(), tmp_path / "e.pkl", data_hashes=HASHES)
    container = torch.load(str(tmp_path / "e.pkl"), weights_only=True)
    assert set(container) == {"state_dict", "optimizer", "lr_base", "epoch", *HASHES}


class _Data:
    def __init__(self, words, answers):
        self.token_to_ix = {w: i for i, w in enumerate(words)}
        self.ix_to_ans = dict(enumerate(answers))


def test_load_for_eval_refuses_another_vocabulary_or_answer_order(backends, tmp_path):
    from core.engine import load_for_eval
    torch_be, _ = backends
    cfg = _cfg()
    words = ["PAD", "UNK", "CLS"] + [f"w{i}" for i in range(TOKEN_SIZE - 3)]
    answers = [f"a{i}" for i in range(ANSWER_SIZE)]
    trained_on = _Data(words, answers)
    path = str(tmp_path / "e.pkl")
    _saved(torch_be, cfg, path, data_hashes=fingerprints.of_dataset(trained_on))
    net = torch_be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
    assert load_for_eval(cfg, torch_be, net, path, _Data(words, answers))["epoch"] == 3
    reordered = words[:3] + words[3:][::-1]
    with pytest.raises(fingerprints.DataMismatch, match="vocab_sha256") as info:
        load_for_eval(cfg, torch_be, net, path, _Data(reordered, answers))
    assert path in str(info.value)
    with pytest.raises(fingerprints.DataMismatch, match="answers_sha256"):
        load_for_eval(cfg, torch_be, net, path, _Data(words, answers[::-1]))


def test_a_checkpoint_without_hashes_loads_with_any_data(backends, tmp_path):
    from core.engine import load_for_eval
    torch_be, _ = backends
    cfg = _cfg()
    path = str(tmp_path / "released.pkl")
    _saved(torch_be, cfg, path)
    words = [f"w{i}" for i in range(TOKEN_SIZE)]
    net = torch_be.build_model(cfg, TOKEN_SIZE, ANSWER_SIZE)
    assert load_for_eval(cfg, torch_be, net, path, _Data(words, list("abcdefg")))["epoch"] == 3


# ---- the converter ---------------------------------------------------------------------------------------------

def test_a_converted_pair_is_tied_and_keeps_the_data_hashes(backends, tmp_path):
    from convert.checkpoints import convert_file
    from tests.test_convert import config_file
    torch_be, paddle_be = backends
    config = config_file(tmp_path, "trar", "vqa")
    src = str(tmp_path / "src.pkl")
    _saved(torch_be, _cfg(), src, data_hashes=HASHES)
    convert_file("torch2paddle", src, str(tmp_path / "p.pdparams"), "trar", "vqa", config=config)
    saved = restricted_pickle.read_pdparams(str(tmp_path / "p.pdopt"))
    assert {k: saved[k] for k in HASHES} == HASHES
    assert saved[integrity.PDPARAMS_SHA256] == integrity.file_sha256(str(tmp_path / "p.pdparams"))
    convert_file("paddle2torch", str(tmp_path / "p.pdparams"), str(tmp_path / "back.pkl"), "trar", "vqa",
                 config=config)
    container = restricted_pickle.read_torch_checkpoint(str(tmp_path / "back.pkl"))
    assert {k: container[k] for k in HASHES} == HASHES
    _flip_byte(tmp_path / "p.pdparams", _pdparams_array_offset(tmp_path / "p.pdparams"))
    with pytest.raises(CheckpointReadError, match="does not match"):
        convert_file("paddle2torch", str(tmp_path / "p.pdparams"), str(tmp_path / "again.pkl"), "trar", "vqa",
                     config=config)
    for be in backends:
        with pytest.raises(CheckpointReadError, match="does not match"):
            be.load_checkpoint(be.build_model(_cfg(), TOKEN_SIZE, ANSWER_SIZE), str(tmp_path / "p.pdparams"))


# ---- end to end: data regenerated with another word order --------------------------------------------------------

@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from core.data.demo import generate
    root = tmp_path_factory.mktemp("demo")
    generate(str(root), seed=0, n_train_images=12, n_val_images=4, n_test_images=3, questions_per_image=3)
    return root


def _reordered_copy(demo_root, tmp_path):
    """The demo data with the training questions in reverse order: the same words, another vocabulary order."""
    import json
    import shutil
    root = tmp_path / "reordered"
    shutil.copytree(demo_root, root)
    path = root / "vqa" / "raw" / "v2_OpenEnded_mscoco_train2014_questions.json"
    data = json.loads(path.read_text())
    data["questions"].reverse()
    path.write_text(json.dumps(data))
    return root


@pytest.mark.slow
def test_val_resume_and_export_refuse_a_checkpoint_of_another_vocabulary(backend, tmp_path, demo_root):
    """Before: the val accuracy of such data fell from 44.48 to 20.05 without a word."""
    from tests.test_engine import _run
    _run(tmp_path, demo_root, backend, "--RUN=train", "--VERSION=v", "--MAX_EPOCH=1", "--EVAL_EE=False")
    path = str(tmp_path / "ckpts" / "ckpt_v" / f"epoch1{backend.checkpoint_ext}")
    assert _run(tmp_path, demo_root, backend, "--RUN=val", "--CKPT_V=v", "--CKPT_E=1")["overall"] >= 0
    other = _reordered_copy(demo_root, tmp_path)
    for flags in (["--RUN=val"], ["--RUN=test"], ["--RUN=train", "--RESUME=True", "--MAX_EPOCH=2", "--VERSION=w"],
                  ["--RUN=export"] if backend.name == "paddle" else []):
        if not flags:
            continue
        with pytest.raises(SystemExit) as info:
            _run(tmp_path, other, backend, *flags, "--CKPT_V=v", "--CKPT_E=1")
        message = str(info.value)
        assert path in message and "vocab_sha256" in message and "\n" not in message, flags

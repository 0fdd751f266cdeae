import json
import os
import shutil
import types

import numpy as np
import pytest

from core.data import build_dataset, paths
from core.data.demo import generate

SMALL = dict(n_train_images=5, n_val_images=4, n_test_images=3, questions_per_image=3)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clevr_demo")
    generate(str(root), seed=4, **SMALL)
    return str(root)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(paths, "_WARNED", set())


def make_cfg(data_root, results_root, **kw):
    base = dict(DATASET="clevr", DATA_FORMAT="clevr", SPLIT={"train": "train", "val": "val", "test": "test"},
                FEAT_SIZE={"clevr": {"GRID_FEAT_SIZE": (36, 48)}}, USE_GLOVE=False, GLOVE_PATH=None,
                GLOVE_SPACY_MODEL="no_such_spacy_model", WORD_EMBED_SIZE=300, DATA_ROOT=str(data_root),
                RESULTS_ROOT=str(results_root), SUBSET=None, SUBSET_IIDS=None, SUBSET_ANS_TYPES=None,
                SKIP_MISSING_FEATS=False, LOSS_FUNC="ce")
    base.update(kw)
    return types.SimpleNamespace(**base)


def _questions(root, split):
    with open(os.path.join(root, "clevr", "raw", "questions", f"CLEVR_{split}_questions.json")) as f:
        return json.load(f)["questions"]


def _words(question):
    return question.lower().replace("?", "").split()


def test_train_samples(demo_root, tmp_path):
    ds = build_dataset(make_cfg(demo_root, tmp_path), "train")
    train, val, test = (_questions(demo_root, s) for s in ("train", "val", "test"))
    answers = []
    for q in train + val:
        if q["answer"] not in answers:
            answers.append(q["answer"])
    assert ds.ix_to_ans == dict(enumerate(answers)) and ds.ans_size == len(answers)
    longest = max(len(_words(q["question"])) for q in train + val + test)
    assert ds.max_token == longest
    assert len(ds) == 15 and ds.qids == list(range(15))
    for i in (0, 14):
        s = ds[i]
        q = train[i]
        x = np.load(os.path.join(demo_root, "clevr", "feats", "train", f"{q['image_index']}.npz"))["x"]
        np.testing.assert_array_equal(s["grid_feat"], x)
        assert s["grid_feat"].dtype == np.float32
        assert s["frcn_feat"].shape == (1,) and s["bbox_feat"].shape == (1,)
        assert s["ques_ix"].shape == (longest,) and s["ques_ix"].dtype == np.int64
        words = _words(q["question"])
        assert s["ques_ix"].tolist() == [ds.token_to_ix[w] for w in words] + [0] * (longest - len(words))
        assert s["ans"].dtype == np.int64 and s["ans"].tolist() == [answers.index(q["answer"])]


def test_eval_samples_and_paths(demo_root, tmp_path):
    val = build_dataset(make_cfg(demo_root, tmp_path), "val")
    s = val[0]
    assert s["ans"].shape == (1,) and not s["ans"].any()
    assert val.annotations_path == val.questions_path and val.questions_path.endswith("CLEVR_val_questions.json")
    assert val.questions[0] == _questions(demo_root, "val")[0]
    test = build_dataset(make_cfg(demo_root, tmp_path), "test")
    assert test.annotations_path is None and len(test) == 9


def test_train_plus_val_reads_each_split_s_own_images(demo_root, tmp_path):
    ds = build_dataset(make_cfg(demo_root, tmp_path, SPLIT={"train": "train+val"}), "train")
    train, val = _questions(demo_root, "train"), _questions(demo_root, "val")
    assert len(ds) == len(train) + len(val)
    first_val = len(train)
    index = val[0]["image_index"]
    x = np.load(os.path.join(demo_root, "clevr", "feats", "val", f"{index}.npz"))["x"]
    np.testing.assert_array_equal(ds[first_val]["grid_feat"], x)
    other = np.load(os.path.join(demo_root, "clevr", "feats", "train", f"{index}.npz"))["x"]
    assert not np.array_equal(x, other)


def test_clevr_split_and_option_errors(demo_root, tmp_path):
    with pytest.raises(ValueError, match="CLEVR has no vg split"):
        build_dataset(make_cfg(demo_root, tmp_path, SPLIT={"train": "train+val+vg"}), "train")
    with pytest.raises(ValueError, match="SUBSET_ANS_TYPES"):
        build_dataset(make_cfg(demo_root, tmp_path, SUBSET_ANS_TYPES=["number"]), "train")
    with pytest.raises(ValueError, match="LOSS_FUNC"):
        build_dataset(make_cfg(demo_root, tmp_path, LOSS_FUNC="bce"), "train")


def test_missing_and_bad_features(demo_root, tmp_path):
    root = str(tmp_path / "data")
    shutil.copytree(demo_root, root)
    os.remove(os.path.join(root, "clevr", "feats", "val", "2.npz"))
    with pytest.raises(FileNotFoundError, match="image 2 "):
        build_dataset(make_cfg(root, tmp_path), "val")
    ds = build_dataset(make_cfg(root, tmp_path, SKIP_MISSING_FEATS=True, SUBSET=4), "val")
    assert len(ds) == 4 and all(ds.questions[q]["image_index"] != 2 for q in ds.qids)
    bad = os.path.join(root, "clevr", "feats", "val", "0.npz")
    np.savez(bad, x=np.zeros((196, 1024), np.float32))
    with pytest.raises(ValueError, match=r"0\.npz.*\(36, 48\)"):
        build_dataset(make_cfg(root, tmp_path, SKIP_MISSING_FEATS=True), "val")


def test_only_needed_files(demo_root, tmp_path, caplog):
    root = str(tmp_path / "data")
    shutil.copytree(demo_root, root)
    os.remove(os.path.join(root, "clevr", "raw", "questions", "CLEVR_test_questions.json"))
    ds = build_dataset(make_cfg(root, tmp_path), "val")
    assert len(ds) == 12
    assert any("CLEVR_test_questions.json" in r.getMessage() for r in caplog.records)
    with pytest.raises(FileNotFoundError, match="CLEVR_test_questions.json"):
        build_dataset(make_cfg(root, tmp_path), "test")

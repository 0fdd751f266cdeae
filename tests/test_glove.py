import logging
import os
import types

import numpy as np
import pytest

from core.data import glove, paths
from core.data.glove import cached_vocabulary, pretrained_embedding

VOCAB = {"PAD": 0, "UNK": 1, "CLS": 2, "what": 3, "color": 4, "zebra": 5}
GLOVE_TXT = """PAD 1 0 0
what 0.5 0.25 -1
. . . 9 9 9
color 2 3 4
UNK 0 1 0
what 7 7 7
"""


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(paths, "_WARNED", set())


def make_cfg(tmp_path, **kw):
    base = dict(USE_GLOVE=True, GLOVE_PATH=None, GLOVE_SPACY_MODEL="no_such_spacy_model_xyz", WORD_EMBED_SIZE=3,
                RESULTS_ROOT=str(tmp_path / "results"))
    base.update(kw)
    return types.SimpleNamespace(**base)


def _txt(tmp_path, text=GLOVE_TXT, name="glove.txt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_rows_from_a_glove_text_file(tmp_path):
    emb = pretrained_embedding(make_cfg(tmp_path, GLOVE_PATH=_txt(tmp_path)), VOCAB, "k1")
    expected = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0],  # PAD, UNK from their literal strings; no CLS line
                         [0.5, 0.25, -1],                   # the first 'what' line wins
                         [2, 3, 4], [0, 0, 0]], np.float32)  # zebra: no vector
    assert emb.dtype == np.float32
    np.testing.assert_array_equal(emb, expected)


def test_header_line_and_words_with_spaces(tmp_path):
    path = _txt(tmp_path, "4 3\n" + GLOVE_TXT, "with_header.vec")
    vocab = dict(VOCAB, **{". . .": 6})
    emb = pretrained_embedding(make_cfg(tmp_path, GLOVE_PATH=path), vocab, "k2")
    np.testing.assert_array_equal(emb[6], [9, 9, 9])


@pytest.mark.parametrize("bad_line,message", [
    ("color 2 3\n", r"glove\.txt, line 4: 2 values after 'color', expected 3"),
    ("color 2 3x 4\n", r"glove\.txt, line 4 \('color'\): could not convert string to float: '3x'"),
])
def test_a_damaged_line_is_named_with_its_line_number(tmp_path, bad_line, message):
    lines = GLOVE_TXT.splitlines(keepends=True)
    lines[3] = bad_line                                                    # the 'color' line
    with pytest.raises(ValueError, match=message):
        pretrained_embedding(make_cfg(tmp_path, GLOVE_PATH=_txt(tmp_path, "".join(lines))), VOCAB, "k5")


def test_coverage_is_reported_and_a_low_one_warned(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="core.data.glove"):              # run.py shows INFO on stdout
        pretrained_embedding(make_cfg(tmp_path, GLOVE_PATH=_txt(tmp_path)), VOCAB, "k6")
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "4 of 6 vocabulary words have one; the other 2 start at zero" in caplog.text   # PAD UNK what color
    caplog.clear()
    sparse = _txt(tmp_path, "zebra 1 1 1\n", "sparse.txt")
    with caplog.at_level(logging.WARNING):
        pretrained_embedding(make_cfg(tmp_path, GLOVE_PATH=sparse), VOCAB, "k6")
    assert "has vectors for only 1 of 6 vocabulary words" in caplog.text


def test_a_vector_file_edited_in_place_is_read_again(tmp_path):
    path = _txt(tmp_path)
    first = pretrained_embedding(make_cfg(tmp_path, GLOVE_PATH=path), VOCAB, "k7")
    with open(path, "r+") as f:                                            # same size, another value
        text = f.read().replace("what 0.5 0.25 -1", "what 0.7 0.25 -1")
        f.seek(0)
        f.write(text)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10 ** 9))
    again = pretrained_embedding(make_cfg(tmp_path, GLOVE_PATH=path), VOCAB, "k7")
    assert first[3][0] == np.float32(0.5) and again[3][0] == np.float32(0.7)


def test_glove_settings_without_use_glove_are_warned(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert pretrained_embedding(make_cfg(tmp_path, USE_GLOVE=False, GLOVE_PATH="x.txt",
                                             GLOVE_SPACY_MODEL=None), VOCAB, "k8") is None
    assert "GLOVE_PATH is set but USE_GLOVE is False" in caplog.text


def test_dimension_mismatch_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="WORD_EMBED_SIZE=300"):
        pretrained_embedding(make_cfg(tmp_path, GLOVE_PATH=_txt(tmp_path), WORD_EMBED_SIZE=300), VOCAB, "k3")
    with pytest.raises(FileNotFoundError, match="GLOVE_PATH"):
        pretrained_embedding(make_cfg(tmp_path, GLOVE_PATH=str(tmp_path / "missing.txt")), VOCAB, "k3")


def test_aligned_npy_with_its_vocabulary(tmp_path):
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "vecs.npy", matrix)
    (tmp_path / "vecs.json").write_text('["UNK", "color", "PAD", "what"]')
    emb = pretrained_embedding(make_cfg(tmp_path, GLOVE_PATH=str(tmp_path / "vecs.npy")), VOCAB, "k4")
    np.testing.assert_array_equal(emb, [matrix[2], matrix[0], [0, 0, 0], matrix[3], matrix[1], [0, 0, 0]])
    (tmp_path / "vecs.json").write_text('{"what": 1}')
    emb = pretrained_embedding(make_cfg(tmp_path, GLOVE_PATH=str(tmp_path / "vecs.npy"),
                                        RESULTS_ROOT=str(tmp_path / "r2")), VOCAB, "k4")
    assert np.array_equal(emb[3], matrix[1]) and not np.delete(emb, 3, axis=0).any()
    np.save(tmp_path / "lonely.npy", matrix)
    with pytest.raises(FileNotFoundError, match="lonely.json"):
        pretrained_embedding(make_cfg(tmp_path, GLOVE_PATH=str(tmp_path / "lonely.npy")), VOCAB, "k4")


def test_random_fallback_warns_once_and_is_deterministic(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        a = pretrained_embedding(make_cfg(tmp_path), VOCAB, "k5")
        b = pretrained_embedding(make_cfg(tmp_path, RESULTS_ROOT=str(tmp_path / "other")), VOCAB, "k5")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "GLOVE_PATH" in warnings[0] and "no_such_spacy_model_xyz" in warnings[0] and "random" in warnings[0]
    assert a.shape == (6, 3) and a.dtype == np.float32 and a.std() > 0.3
    np.testing.assert_array_equal(a, b)


def test_use_glove_off_gives_none(tmp_path):
    assert pretrained_embedding(make_cfg(tmp_path, USE_GLOVE=False), VOCAB, "k6") is None


def test_embedding_cache_is_reused_and_usable_as_glove_path(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path, GLOVE_PATH=_txt(tmp_path))
    first = pretrained_embedding(cfg, VOCAB, "k7")
    cached = [f for f in os.listdir(tmp_path / "results" / "cache") if f.startswith("emb_")]
    assert sorted(os.path.splitext(f)[1] for f in cached) == [".json", ".npy"]
    monkeypatch.setattr(glove, "_from_txt", lambda *a: pytest.fail("rebuilt instead of reading the cache"))
    np.testing.assert_array_equal(pretrained_embedding(cfg, VOCAB, "k7"), first)
    # the cached matrix + its vocabulary json work as an aligned GLOVE_PATH
    npy = str(tmp_path / "results" / "cache" / next(f for f in cached if f.endswith(".npy")))
    again = pretrained_embedding(make_cfg(tmp_path, GLOVE_PATH=npy, RESULTS_ROOT=str(tmp_path / "r3")), VOCAB, "k7")
    np.testing.assert_array_equal(again, first)


def test_vocabulary_cache_keyed_by_question_files(tmp_path):
    q1, q2 = tmp_path / "a.json", tmp_path / "b.json"
    q1.write_text("{}")
    q2.write_text("{} ")
    calls = []

    def build():
        calls.append(1)
        return {"token_to_ix": {"PAD": 0}}

    r1, k1 = cached_vocabulary(str(tmp_path), "vqa", [str(q1)], build)
    r2, k2 = cached_vocabulary(str(tmp_path), "vqa", [str(q1)], build)
    assert len(calls) == 1 and r1 == r2 and k1 == k2
    _, k3 = cached_vocabulary(str(tmp_path), "vqa", [str(q1), str(q2)], build)
    q1.write_text("{}   ")  # same path, new size: rebuilt
    _, k4 = cached_vocabulary(str(tmp_path), "vqa", [str(q1)], build)
    assert len(calls) == 3 and len({k1, k3, k4}) == 3


def test_dataset_uses_glove_file_and_cache(tmp_path):
    from core.data import build_dataset
    from core.data.demo import generate
    generate(str(tmp_path / "data"), seed=2, n_train_images=3, n_val_images=2, n_test_images=2, questions_per_image=2)
    cfg = types.SimpleNamespace(
        DATASET="demo", DATA_FORMAT="vqa", SPLIT={"train": "train", "val": "val", "test": "test"}, FEAT_TYPE="grid",
        FEAT_SIZE={"vqa": {"FRCN_FEAT_SIZE": (36, 48), "BBOX_FEAT_SIZE": (8, 5)}}, USE_GLOVE=True,
        GLOVE_PATH=_txt(tmp_path, "what 1 2 3\nhow 4 5 6\nis 7 8 9\n"), GLOVE_SPACY_MODEL=None, WORD_EMBED_SIZE=3,
        DATA_ROOT=str(tmp_path / "data"), RESULTS_ROOT=str(tmp_path / "results"), LOSS_FUNC="bce")
    train = build_dataset(cfg, "train")
    val = build_dataset(cfg, "val")
    assert train.pretrained_emb.shape == (train.token_size, 3)
    assert val.token_to_ix == train.token_to_ix
    np.testing.assert_array_equal(train.pretrained_emb, val.pretrained_emb)
    # row 3 is the first word of the first train question; demo questions start with What / How / Is
    first_word = [w for w, i in train.token_to_ix.items() if i == 3][0]
    expected = {"what": [1, 2, 3], "how": [4, 5, 6], "is": [7, 8, 9]}[first_word]
    np.testing.assert_array_equal(train.pretrained_emb[3], expected)
    assert not train.pretrained_emb[0].any()  # no 'PAD' line in this file


def test_spacy_model_rows_are_doc_vectors(tmp_path, monkeypatch):
    """spaCy is optional: a stand-in module checks the lazy import and the row = nlp.make_doc(word).vector rule."""
    import importlib.machinery
    import sys

    vectors = {"PAD": [1, 1, 1], "what": [0, 2, 0]}

    class Doc:
        def __init__(self, text):
            self.vector = np.array(vectors.get(text, [0, 0, 0]), np.float32)

    fake_spacy = types.ModuleType("spacy")
    fake_spacy.__spec__ = importlib.machinery.ModuleSpec("spacy", None)
    fake_spacy.load = lambda name: types.SimpleNamespace(make_doc=Doc)
    fake_model = types.ModuleType("fake_vectors_model")
    fake_model.__spec__ = importlib.machinery.ModuleSpec("fake_vectors_model", None)
    monkeypatch.setitem(sys.modules, "spacy", fake_spacy)
    monkeypatch.setitem(sys.modules, "fake_vectors_model", fake_model)
    emb = pretrained_embedding(make_cfg(tmp_path, GLOVE_SPACY_MODEL="fake_vectors_model"), VOCAB, "k8")
    np.testing.assert_array_equal(emb, [[1, 1, 1], [0, 0, 0], [0, 0, 0], [0, 2, 0], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="WORD_EMBED_SIZE is 5"):
        pretrained_embedding(make_cfg(tmp_path, GLOVE_SPACY_MODEL="fake_vectors_model", WORD_EMBED_SIZE=5), VOCAB, "k8")

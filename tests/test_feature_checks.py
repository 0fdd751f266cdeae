"""Feature files are checked when read (core/data/features.py): NaN, infinite or overflowing values, a grid of another
cell count, integer / complex / bool dtypes are refused naming the file, in every reader (dataset, feature store
builder, deploy's predictor) and so in train, val, test and predict; float16 and float32 files load as before."""
import glob
import os
import shutil

import numpy as np
import pytest

from core.data import build_dataset, features, paths
from core.data.demo import generate
from tests.test_vqa_data import SMALL, make_cfg


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("feat_demo")
    generate(str(root), seed=3, **SMALL)
    return str(root)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(paths, "_WARNED", set())


def _grid(tmp_path, array, name="9.npy"):
    path = str(tmp_path / name)
    np.save(path, array)
    return path


def _region(tmp_path, x=None, bbox=None, image_h=480, image_w=640, name="9.npz"):
    x = np.ones((6, 3), np.float32) if x is None else x
    bbox = np.array([[0, 0, 10, 10]] * x.shape[1], np.float32) if bbox is None else bbox
    path = str(tmp_path / name)
    np.savez(path, x=x, bbox=bbox, image_h=image_h, image_w=image_w)
    return path


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_float16_and_float32_grids_load(tmp_path, dtype):
    array = np.arange(4 * 6, dtype=np.float32).reshape(4, 6).astype(dtype)
    got = features.load_grid(_grid(tmp_path, array), 4, 6)
    assert got.dtype == np.float32 and np.array_equal(got, array.astype(np.float32))


@pytest.mark.parametrize("value, dtype, what", [(np.nan, np.float32, "NaN or infinite"),
                                                (np.inf, np.float16, "NaN or infinite"),
                                                (-np.inf, np.float32, "NaN or infinite"),
                                                (3e38, np.float32, "beyond"),
                                                (1e300, np.float64, "beyond")])
def test_non_finite_or_overflowing_grid_values_are_refused(tmp_path, value, dtype, what):
    array = np.ones((4, 6), dtype)
    array[2, 3] = value
    path = _grid(tmp_path, array)
    with pytest.raises(ValueError, match=what) as info:
        features.load_grid(path, 4, 6)
    assert str(info.value).startswith(path) and "has 1 of 24 values" in str(info.value)


@pytest.mark.parametrize("cells", [3, 5])
def test_a_grid_of_another_cell_count_is_refused_not_padded_or_cut(tmp_path, cells):
    path = _grid(tmp_path, np.ones((cells, 6), np.float16))
    with pytest.raises(ValueError) as info:
        features.load_grid(path, 4, 6)
    message = str(info.value)
    assert message.startswith(path) and f"({cells}, 6)" in message and "expected (4, 6)" in message


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.complex64, np.bool_])
def test_integer_complex_and_bool_grids_are_refused(tmp_path, dtype):
    path = _grid(tmp_path, np.ones((4, 6), dtype))
    with pytest.raises(ValueError, match=f"dtype {np.dtype(dtype)}") as info:
        features.load_grid(path, 4, 6)
    assert str(info.value).startswith(path)


def test_region_features_are_checked(tmp_path):
    assert features.load_region(_region(tmp_path), (5, 6), 5, True, True)[0].shape == (5, 6)
    bad_x = np.ones((6, 3), np.float32)
    bad_x[0, 0] = np.nan
    cases = [(dict(x=bad_x), "'x' has 1 of 18 values NaN"),
             (dict(x=np.ones((6, 3), np.int64)), "'x' has dtype int64"),
             (dict(bbox=np.array([[0, 0, np.inf, 10]] * 3, np.float32)), "'bbox' has 3 of 12 values NaN or infinite"),
             (dict(bbox=np.ones((3, 4), np.complex64)), "'bbox' has dtype complex64"),
             (dict(image_w=0), "'image_w' must be positive")]
    for i, (kwargs, expected) in enumerate(cases):
        path = _region(tmp_path, name=f"{i}.npz", **kwargs)
        with pytest.raises(ValueError, match=expected) as info:
            features.load_region(path, (5, 6), 5, True, True)
        assert str(info.value).startswith(path)
    assert features.load_region(_region(tmp_path, bbox=np.ones((3, 4), np.int32), name="int.npz"),
                                (5, 6), 5, False, True)[1].dtype == np.float32      # integer pixel boxes are fine


def test_clevr_features_are_checked(tmp_path):
    x = np.ones((4, 6), np.float32)
    x[1, 1] = np.inf
    path = str(tmp_path / "1.npz")
    np.savez(path, x=x)
    with pytest.raises(ValueError, match="infinite"):
        features.load_clevr_grid(path, (4, 6))
    np.savez(path, x=np.ones((4, 6), np.int16))
    with pytest.raises(ValueError, match="dtype int16"):
        features.load_clevr_grid(path, (4, 6))


def _poison(root, split, index, value):
    """Put ``value`` into one cell of the ``index``-th feature file of ``split`` (sorted); returns its path."""
    path = sorted(glob.glob(os.path.join(root, "vqa", "feats", split, "*.npy")))[index]
    array = np.load(path)
    array[0, 0] = value
    np.save(path, array)
    return path


def test_val_and_test_refuse_a_nan_feature_file_naming_it(demo_root, tmp_path):
    """Before: a NaN feature gave NaN logits, whose argmax is answer 0 ('net'), without a word."""
    root = str(tmp_path / "data")
    shutil.copytree(demo_root, root)
    for split, mode in (("val2014", "val"), ("test2015", "test")):
        for index in (0, -1):
            path = _poison(root, split, index, np.nan)
            cfg = make_cfg(root, tmp_path / "results", RUN_MODE=mode)
            with pytest.raises(ValueError, match="NaN") as info:
                ds = build_dataset(cfg, mode)
                for i in range(len(ds)):
                    ds[i]
            assert str(info.value).startswith(path)
            np.save(path, np.nan_to_num(np.load(path)))


def test_training_refuses_an_overflowing_feature_file_naming_it(demo_root, tmp_path):
    """Before: a FloatingPointError 'loss became nan ... lower LR_BASE' traceback, blaming the learning rate."""
    import run
    root = str(tmp_path / "data")
    shutil.copytree(demo_root, root)
    path = _poison(root, "train2014", -1, np.float16(np.inf))
    argv = ["--RUN=train", "--MODEL=trar", "--DATASET=demo", "--backend=torch", "--DATA_ROOT", root,
            "--SET", f"RESULTS_ROOT={tmp_path / 'results'}", "--SET", f"CKPTS_ROOT={tmp_path / 'ckpts'}",
            "--SET", "LAYER=1", "--SET", "HIDDEN_SIZE=32", "--SET", "FF_SIZE=64", "--SET", "FLAT_MLP_SIZE=32",
            "--SET", "FLAT_OUT_SIZE=64", "--SET", "WORD_EMBED_SIZE=16", "--BS=4", "--NW=0", "--VERB=False",
            "--MAX_EPOCH=1", "--EVAL_EE=False"]
    pytest.importorskip("torch")
    with pytest.raises(SystemExit) as info:
        run.main(argv)
    assert path in str(info.value) and "NaN or infinite" in str(info.value)

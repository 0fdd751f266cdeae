"""The feature store (core.data.feature_store): built from per-image files, read back as identical samples."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

from bench.data_loading import dataset_config, make_feature_data
from core.data import build_dataset, features
from core.data.feature_store import FeatureStore, build_store, file_layout
from core.data.feature_store import main as store_main


def _npz(path, **arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def _region_files(folder, rng, bbox_dtype=np.float32):
    """Three region files with 3, 7 and 5 boxes, pixel boxes, image sizes stored as 0-d and 1-element arrays."""
    index = {}
    for iid, n in ((11, 3), (4, 7), (250, 5)):
        xy = rng.uniform(0, 50, (n, 2))
        bbox = np.concatenate([xy, xy + rng.uniform(1, 30, (n, 2))], 1).astype(bbox_dtype)
        path = folder / f"COCO_train2014_{iid:012d}.jpg.npz"
        _npz(path, x=rng.standard_normal((6, n)).astype(np.float32), bbox=bbox,
             image_h=np.array(97 + iid), image_w=np.array([131]))
        index[iid] = str(path)
    return index


@pytest.mark.parametrize("normalize,use_bbox_feat,bbox_dtype", [(True, True, np.float32), (False, False, np.float32),
                                                                (True, False, np.float64)])
def test_store_region_equals_per_file_loader(tmp_path, normalize, use_bbox_feat, bbox_dtype):
    index = _region_files(tmp_path, np.random.default_rng(0), bbox_dtype)
    summary = build_store(index, str(tmp_path / "store"), "region", 6)
    assert summary["images"] == 3 and summary["max_rows"] == 7
    store = FeatureStore(str(tmp_path / "store"))
    for iid, path in index.items():
        for rows in (4, 8):                                                   # truncating and padding
            want = features.load_region(path, (rows, 6), rows, use_bbox_feat, normalize)
            got = store.region(iid, (rows, 6), rows, use_bbox_feat, normalize)
            assert len(got) == len(want) == 2                                  # features and boxes
            for w, g in zip(want, got, strict=True):
                assert g.dtype == w.dtype and g.shape == w.shape and np.array_equal(g, w)
                assert type(g) is np.ndarray                                 # a copy, not a view of the map


def test_store_grid_equals_per_file_loader(tmp_path):
    rng = np.random.default_rng(1)
    index = {}
    for iid, cells in ((3, 9), (8, 4)):
        path = tmp_path / f"{iid}.npy"
        np.save(path, rng.standard_normal((cells, 5)).astype(np.float16))
        index[iid] = str(path)
    build_store(index, str(tmp_path / "s"), "grid", 5)
    store = FeatureStore(str(tmp_path / "s"))
    for iid, path in index.items():
        cells = {3: 9, 8: 4}[iid]                   # a grid is read at its own cell count, never padded or cut
        want, got = features.load_grid(path, cells, 5), store.grid(iid, cells)
        assert got.dtype == np.float32 and np.array_equal(got, want)
    for reader in (lambda: features.load_grid(index[8], 9, 5), lambda: store.grid(8, 9)):
        with pytest.raises(ValueError, match="expected"):
            reader()
    assert 8 in store and 5 not in store and len(store) == 2


def test_store_refuses_mixed_dtypes_and_existing_output(tmp_path):
    np.save(tmp_path / "1.npy", np.zeros((4, 5), np.float16))
    np.save(tmp_path / "2.npy", np.zeros((4, 5), np.float32))
    index = features.index_features([str(tmp_path)], ".npy")
    with pytest.raises(ValueError, match=r"2\.npy: dtype float32.* differs"):
        build_store(index, str(tmp_path / "s"), "grid", 5)
    assert not os.path.exists(tmp_path / "s")                                 # nothing half-written left
    with pytest.raises(ValueError, match=r"expected shape \(cells, 7\)"):
        build_store({1: str(tmp_path / "1.npy")}, str(tmp_path / "s"), "grid", 7)
    build_store({1: str(tmp_path / "1.npy")}, str(tmp_path / "s"), "grid", 5)
    with pytest.raises(ValueError, match="exists; pass --force"):
        build_store({1: str(tmp_path / "1.npy")}, str(tmp_path / "s"), "grid", 5)
    build_store({1: str(tmp_path / "1.npy")}, str(tmp_path / "s"), "grid", 5, force=True)
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".s.")]
    assert leftovers == []


@pytest.mark.parametrize("kind", ["grid", "region"])
def test_store_cli_takes_the_feature_width_from_the_files(tmp_path, capsys, kind):
    """Without --dim the width is the first file's (the demo's grids are 48 wide, not 2048); a given --dim is
    checked."""
    folder = tmp_path / "feats"
    folder.mkdir()
    for iid in (4, 9):
        if kind == "grid":
            np.save(folder / f"COCO_val2014_{iid:012d}.npy", np.ones((6, 48), np.float32))
        else:
            np.savez(folder / f"COCO_val2014_{iid:012d}.npz", x=np.ones((48, 3), np.float32),
                     bbox=np.ones((3, 4), np.float32), image_h=10, image_w=10)
    store_main(["--feats", str(folder), "--kind", kind, "--out", str(tmp_path / "store")])
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["images"] == 2
    assert FeatureStore(str(tmp_path / "store")).dim == 48
    with pytest.raises(SystemExit):
        store_main(["--feats", str(folder), "--kind", kind, "--dim", "2048", "--out", str(tmp_path / "other")])
    assert "(--dim)" in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_store_cli_an_output_folder_under_a_file_is_one_line(tmp_path, capsys):
    folder = tmp_path / "feats"
    folder.mkdir()
    np.save(folder / "COCO_val2014_000000000004.npy", np.ones((6, 48), np.float32))
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(SystemExit) as info:
        store_main(["--feats", str(folder), "--kind", "grid", "--out", str(tmp_path / "taken" / "store")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith(f"error: {tmp_path / 'taken'}: a file where a folder is needed")
    assert len(err.splitlines()) == 1, err


def test_store_rejects_a_folder_that_is_not_a_store(tmp_path):
    with pytest.raises(ValueError, match="not a feature store"):
        FeatureStore(str(tmp_path))


def test_store_pickles_without_copying_the_maps(tmp_path):
    import pickle
    index = _region_files(tmp_path, np.random.default_rng(2))
    build_store(index, str(tmp_path / "s"), "region", 6)
    store = FeatureStore(str(tmp_path / "s"))
    data = pickle.dumps(store)
    assert len(data) < 4000                                                   # the maps are reopened, not copied
    again = pickle.loads(data)
    assert np.array_equal(again.region(4, (7, 6), 7, False, True)[0], store.region(4, (7, 6), 7, False, True)[0])


@pytest.mark.parametrize("source", ["grid", "region"])
def test_dataset_with_store_gives_identical_samples(tmp_path, source):
    root = str(tmp_path / "data")
    sizes = {"grid_size": (16, 8), "region_size": (12, 8)}
    make_feature_data(root, 4, **sizes)
    per_file = build_dataset(dataset_config(root, source, **sizes), "train")
    stored = build_dataset(dataset_config(root, source, **sizes), "train")
    dim = (sizes["grid_size"] if source == "grid" else sizes["region_size"])[1]
    build_store(stored.feat_index, str(tmp_path / "store"), source, dim)
    stored.use_feature_store(str(tmp_path / "store"))
    assert len(per_file) == len(stored) == 20
    for i in range(len(per_file)):
        a, b = per_file[i], stored[i]
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), (i, key)
    if source == "region":                                                    # real boxes vary: some rows padded
        assert any(not per_file[i]["frcn_feat"][-1].any() for i in range(len(per_file)))


def test_dataset_refuses_a_store_that_misses_images_or_kind(tmp_path):
    root = str(tmp_path / "data")
    sizes = {"grid_size": (16, 8), "region_size": (12, 8)}
    make_feature_data(root, 3, **sizes)
    ds = build_dataset(dataset_config(root, "grid", **sizes), "train")
    some = dict(list(ds.feat_index.items())[:1])
    build_store(some, str(tmp_path / "small"), "grid", 8)
    with pytest.raises(ValueError, match="lacks 2 images"):
        ds.use_feature_store(str(tmp_path / "small"))
    build_store(ds.feat_index, str(tmp_path / "wide"), "grid", 8)
    region = build_dataset(dataset_config(root, "region", **sizes), "train")
    with pytest.raises(ValueError, match="holds grid features"):
        region.use_feature_store(str(tmp_path / "wide"))


def test_region_header_reader_matches_np_load(tmp_path):
    index = _region_files(tmp_path, np.random.default_rng(3), np.float64)
    rows, dtype, bbox_dtype = file_layout(index[4], "region", 6)
    assert (rows, dtype, bbox_dtype) == (7, np.dtype(np.float32), np.dtype(np.float64))
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("y.npy", b"")
    with pytest.raises(ValueError, match="bad.npz: cannot read a region feature file"):
        file_layout(str(bad), "region", 6)

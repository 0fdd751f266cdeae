"""Image-classification data: the originals' transforms in numpy, ImageNet-style folders, CIFAR python-format
archives (read by an arrays-only unpickler), the decoded-image cache and the generated demo images."""
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from core import config, registry
from core.data import GeneratedDataError, build_dataset, cifar, demo_images, image_cache, images
from core.data.imagefolder import ImageFolderDataset


class Cfg:
    def __init__(self, root, size=8, seed=0, cache=None, split="train", dataset="tiny"):
        self.DATA_ROOT, self.IMG_SIZE, self.SEED, self.IMAGE_CACHE = str(root), size, seed, cache
        self.SPLIT = {"train": split, "val": "val", "test": "test"}
        self.DATASET, self.VERBOSE = dataset, False


def _png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


# ---- transforms --------------------------------------------------------------------------------------------------

def test_to_input_is_totensor_then_normalize_hand_worked():
    rgb = np.array([[[0, 255, 51], [102, 204, 153]]], np.uint8)          # (1, 2, 3): one row, two pixels
    x = images.to_input(rgb)
    assert x.shape == (3, 1, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0, 0], np.float32([-1.0, 1.0, 51 / 255 * 2 - 1]))
    np.testing.assert_allclose(x[:, 0, 1], [102 / 255 * 2 - 1, 204 / 255 * 2 - 1, 153 / 255 * 2 - 1], atol=1e-7)
    flipped = images.to_input(rgb, flip=True)
    np.testing.assert_array_equal(flipped[:, 0, 0], x[:, 0, 1])
    np.testing.assert_array_equal(flipped[:, 0, 1], x[:, 0, 0])


def test_resize_is_pillow_bilinear_without_crop():
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)             # 6 wide, 4 high: the aspect changes
    out = images.resize_rgb(rgb, 5)
    want = np.asarray(Image.fromarray(rgb).resize((5, 5), Image.BILINEAR))
    np.testing.assert_array_equal(out, want)
    assert images.resize_rgb(rgb[:2, :2], 2).tobytes() == rgb[:2, :2].tobytes()   # no resize at the size


def test_flip_depends_on_seed_epoch_and_index_only():
    draws = [images.flip_of(0, 0, i) for i in range(200)]
    assert 60 < sum(draws) < 140
    assert draws == [images.flip_of(0, 0, i) for i in range(200)]
    assert draws != [images.flip_of(0, 1, i) for i in range(200)]
    assert draws != [images.flip_of(1, 0, i) for i in range(200)]


# ---- ImageFolder -------------------------------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, counts in (("train", {"dog": 2, "cat": 3, "Zebra": 1}), ("val", {"cat": 1, "dog": 1})):
        for name, n in counts.items():
            for i in range(n):
                _png(tmp_path / split / name / f"{i}.png", rng.integers(0, 256, (6, 10, 3)))
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    _png(tmp_path / "train" / "dog" / "sub" / "deep.PNG", rng.integers(0, 256, (5, 5, 3)))
    _png(tmp_path / "test" / "a.png", rng.integers(0, 256, (4, 4, 3)))
    _png(tmp_path / "test" / "b.jpg", rng.integers(0, 256, (4, 4, 3)))
    return tmp_path


def test_imagefolder_follows_torchvision_class_order_and_walk(folder):
    ds = ImageFolderDataset(Cfg(folder), "train")
    assert ds.class_names == ["Zebra", "cat", "dog"]          # sorted folder names (upper case first, as sorted())
    assert ds.facts() == {"num_classes": 3}
    assert ds.image_ids == ["train/Zebra/0.png", "train/cat/0.png", "train/cat/1.png", "train/cat/2.png",
                            "train/dog/0.png", "train/dog/1.png", "train/dog/sub/deep.PNG"]
    np.testing.assert_array_equal(ds.labels, [0, 1, 1, 1, 2, 2, 2])
    val = ImageFolderDataset(Cfg(folder), "val")
    assert val.image_ids == ["val/cat/0.png", "val/dog/0.png"] and list(val.labels) == [1, 2]
    assert val.class_names == ds.class_names
    both = ImageFolderDataset(Cfg(folder, split="train+val"), "train")
    assert len(both) == 9 and both.image_ids[-1] == "val/dog/0.png"


def test_imagefolder_samples_and_flip(folder):
    cfg = Cfg(folder, size=8)
    train, val = ImageFolderDataset(cfg, "train"), ImageFolderDataset(cfg, "val")
    path = folder / "train" / "cat" / "1.png"
    plain = images.to_input(images.resize_rgb(np.asarray(Image.open(path).convert("RGB")), 8))
    sample = train[2]
    assert sample["image"].shape == (3, 8, 8) and sample["image"].dtype == np.float32
    assert sample["label"] == 1 and sample["label"].dtype == np.int64
    expect = plain[:, :, ::-1] if images.flip_of(0, 0, 2) else plain
    np.testing.assert_array_equal(sample["image"], expect)
    flips = [images.flip_of(0, e, 2) for e in range(8)]
    assert len(set(flips)) == 2
    for epoch, flip in enumerate(flips):
        train.set_epoch(epoch)
        np.testing.assert_array_equal(train[2]["image"], plain[:, :, ::-1] if flip else plain)
    val.set_epoch(3)
    for i in range(len(val)):          # evaluation never flips
        path = folder / val.image_ids[i]
        np.testing.assert_array_equal(val[i]["image"],
                                      images.to_input(images.resize_rgb(np.asarray(Image.open(path)), 8)))


def test_imagefolder_test_split_has_no_labels(folder):
    test = ImageFolderDataset(Cfg(folder), "test")
    assert test.labels is None and test.image_ids == ["test/a.png", "test/b.jpg"]
    assert [int(test[i]["label"]) for i in range(2)] == [-1, -1]


def test_imagefolder_errors_name_the_folder(folder, tmp_path):
    _png(folder / "val" / "horse" / "0.png", np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match=r"val.horse: class folder not in"):
        ImageFolderDataset(Cfg(folder), "val")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ImageFolderDataset(Cfg(tmp_path / "nothing"), "train")
    (folder / "train" / "cat" / "2.png").write_bytes(b"not a png")
    ds = ImageFolderDataset(Cfg(folder), "train")
    with pytest.raises(ValueError, match=r"2.png: cannot decode the image"):
        ds[3]


# ---- the cache ---------------------------------------------------------------------------------------------------

def test_cache_gives_the_decoded_arrays_and_is_rebuilt_for_other_images(folder, tmp_path):
    cache_root = tmp_path / "cache"
    plain = ImageFolderDataset(Cfg(folder, size=8), "train")
    cached = ImageFolderDataset(Cfg(folder, size=8, cache=str(cache_root)), "train")
    path = image_cache.cache_dir(str(cache_root), "tiny", "train", 8)
    assert cached.cache is not None and os.path.isfile(os.path.join(path, "meta.json"))
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(plain)):
            np.testing.assert_array_equal(cached[i]["image"], plain[i]["image"])
    clone = pickle.loads(pickle.dumps(cached))                    # a DataLoader worker reopens the map
    np.testing.assert_array_equal(clone[1]["image"], cached[1]["image"])
    stamp = os.path.getmtime(os.path.join(path, "images.npy"))
    ImageFolderDataset(Cfg(folder, size=8, cache=str(cache_root)), "train")
    assert os.path.getmtime(os.path.join(path, "images.npy")) == stamp            # reused as it is
    _png(folder / "train" / "cat" / "9.png", np.zeros((4, 4, 3)))
    again = ImageFolderDataset(Cfg(folder, size=8, cache=str(cache_root)), "train")
    assert len(again.cache) == 8 == len(again)                                      # rebuilt for the new list


# ---- CIFAR -------------------------------------------------------------------------------------------------------

def _cifar_batch(path, n, seed, label_key):
    rng = np.random.default_rng(seed)
    data = {b"batch_label": b"tiny", b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            label_key: [int(v) for v in rng.integers(0, 3, n)], b"filenames": [b"f%d.png" % i for i in range(n)]}
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    return data


@pytest.fixture
def cifar10(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane", b"bird", b"cat"], b"num_vis": 3072}, f, protocol=2)
    batches = [_cifar_batch(root / f"data_batch_{i}", 2, i, b"labels") for i in range(1, 6)]
    test = _cifar_batch(root / "test_batch", 3, 9, b"labels")
    return root, batches, test


def test_cifar10_reads_the_python_format(cifar10):
    root, batches, test = cifar10
    train = cifar.CIFARDataset(Cfg(root, size=32), "train")
    assert train.class_names == ["airplane", "bird", "cat"] and len(train) == 10
    assert train.image_ids[:3] == ["data_batch_1/0", "data_batch_1/1", "data_batch_2/0"]
    assert list(train.labels) == [v for b in batches for v in b[b"labels"]]
    pixels = batches[1][b"data"][1].reshape(3, 32, 32).transpose(1, 2, 0)             # channel-planar rows
    sample = train[3]
    expect = images.to_input(pixels, images.flip_of(0, 0, 3))
    np.testing.assert_array_equal(sample["image"], expect)
    val = cifar.CIFARDataset(Cfg(root, size=16), "val")
    assert list(val.labels) == test[b"labels"] and val[0]["image"].shape == (3, 16, 16)
    assert cifar.CIFARDataset(Cfg(root), "test").labels is None


def test_cifar100_layout(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    with open(root / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [b"apple", b"bear", b"cup"], b"coarse_label_names": [b"x"]}, f, protocol=2)
    data = _cifar_batch(root / "train", 4, 1, b"fine_labels")
    _cifar_batch(root / "test", 2, 2, b"fine_labels")
    ds = cifar.CIFARDataset(Cfg(root, size=32), "train")
    assert ds.class_names == ["apple", "bear", "cup"] and list(ds.labels) == data[b"fine_labels"]


def test_cifar_reader_refuses_code_and_names_the_file(cifar10, tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(ValueError, match=r"evil: not a CIFAR python-format batch \(refused global"):
        cifar.read_batch(str(path))
    with pytest.raises(FileNotFoundError, match="neither CIFAR-10"):
        cifar.CIFARDataset(Cfg(tmp_path / "empty"), "train")


# ---- the generated demo images and the registry ------------------------------------------------------------------

def test_demo_images_are_deterministic_and_in_the_imagefolder_layout(tmp_path):
    a = demo_images.generate(str(tmp_path / "a"), train_per_class=2, val_per_class=1, test_images=3)
    demo_images.generate(str(tmp_path / "b"), train_per_class=2, val_per_class=1, test_images=3)
    files = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "a") for d, _, fs in os.walk(tmp_path / "a")
                   for f in fs)
    assert len(files) == 10 * 2 + 10 + 3 + 1
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert sorted(os.listdir(tmp_path / "a" / "train")) == sorted(demo_images.CLASS_NAMES)
    colours = [c for _, c in demo_images.CLASSES]
    shapes = [s for s, _ in demo_images.CLASSES]
    assert len(set(demo_images.CLASSES)) == 10
    assert all(colours.count(c) == 2 for c in colours) and all(shapes.count(s) == 2 for s in shapes)
    assert Image.open(tmp_path / "a" / "val" / a["classes"][0] / "00000.png").size == (32, 32)


def test_demo_images_ensure_data_never_overwrites(tmp_path):
    root = tmp_path / "demo"
    summary = demo_images.ensure_data(str(root))
    assert len(os.listdir(root / "train")) == 10 and summary["test_images"] == 50
    assert demo_images.ensure_data(str(root))["seed"] == 0                            # used as it is
    other = tmp_path / "mine"
    other.mkdir()
    (other / "x.txt").write_text("keep")
    with pytest.raises(GeneratedDataError, match="holds no demo images"):
        demo_images.ensure_data(str(other))
    assert (other / "x.txt").read_text() == "keep"


def test_registry_knows_the_image_formats_and_datasets():
    assert {registry.DATASETS[n].data_format for n in ("imagenet", "demo_images")} == {"imagefolder"}
    assert {registry.DATASETS[n].data_format for n in ("cifar10", "cifar100")} == {"cifar"}
    assert all(registry.DATASETS[n].task == "classification" for n in ("imagenet", "cifar10", "cifar100",
                                                                       "demo_images"))
    assert registry.DATASETS["demo_images"].generated and registry.generated_dataset("imagefolder") == "demo_images"
    assert registry.load(registry.FORMATS["imagefolder"].loader) is ImageFolderDataset
    assert registry.load(registry.FORMATS["cifar"].loader) is cifar.CIFARDataset
    assert config.DEFAULTS["IMG_SIZE"] == 224 and config.DEFAULTS["IMAGE_CACHE"] is None


def test_build_dataset_picks_the_format_class(folder):
    cfg = Cfg(folder)
    cfg.DATA_FORMAT = "imagefolder"
    assert isinstance(build_dataset(cfg, "val"), ImageFolderDataset)

"""Feature-loading throughput at the real feature sizes, from per-image files and from the memory-mapped store.

    python -m bench.data_loading '{"images": 300, "backends": ["torch", "paddle"]}'

prints one line ``BENCH_RESULT {json}``. The data are the demo data (core.data.demo: real VQA-v2 file layout, questions
and annotations) whose feature files are rewritten at the default sizes: grid .npy (64, 2048) float16 (TRAR's 8x8
grids) and region .npz 'x' (2048, n) float32 with n = 10..100 boxes plus pixel boxes (openvqa's bottom-up features).
Each reader is measured twice: over an epoch of files just written, read from the page cache (decoding and copying),
and from the disk: the first read of each image right after its files were dropped from the page cache
(bench/page_cache.py), as when the features do not fit in memory.
"""
import io
import os
import tempfile
import time

import numpy as np

from bench import page_cache
from bench.train_step import child_main
from core import registry
from core.data import demo, features
from core.data.feature_store import build_store
from core.data.paths import atomic_write_bytes
from core.data.sampler import epoch_batches

GRID_SIZE = (64, 2048)
REGION_SIZE = (100, 2048)
MIN_BOXES = 10
SOURCES = ("grid", "region")
MAX_RESIDENT = 0.05   # 'from disk' only when at most this fraction of the files' pages stayed in the page cache


def _npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def make_feature_data(root, n_images, seed=0, grid_size=GRID_SIZE, region_size=REGION_SIZE):
    """Demo data under ``root`` (n_images training images, 5 questions each) with full-size feature files."""
    demo.generate(root, seed=seed, n_train_images=n_images, n_val_images=1, n_test_images=1, questions_per_image=5)
    rng = np.random.default_rng([seed, 99])
    feat_root = os.path.join(root, "vqa", "feats")
    for split in sorted(os.listdir(feat_root)):
        folder = os.path.join(feat_root, split)
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.endswith(features.GRID_EXT):
                grid = rng.standard_normal(grid_size, dtype=np.float32).astype(np.float16)
                atomic_write_bytes(path, _npy_bytes(grid))
            elif name.endswith(features.REGION_EXT):
                n = int(rng.integers(MIN_BOXES, region_size[0] + 1))
                xy = rng.uniform(0, 400, (n, 2))
                boxes = np.concatenate([xy, xy + rng.uniform(8, 240, (n, 2))], axis=1).astype(np.float32)
                arrays = {"x": np.abs(rng.standard_normal((region_size[1], n), dtype=np.float32)), "bbox": boxes,
                          "image_h": np.array(480), "image_w": np.array(640)}
                atomic_write_bytes(path, demo.npz_bytes(arrays))
    return root


def dataset_config(root, source, grid_size=GRID_SIZE, region_size=REGION_SIZE):
    """The config of a dataset reading ``source`` ('grid' for TRAR, 'region' for MCAN) features under ``root``."""
    from core.config import load_config
    common = {"DATA_ROOT": root, "RESULTS_ROOT": os.path.join(root, "results"), "USE_GLOVE": False,
              "VERSION": "bench", "VERBOSE": False}
    # the first registry model reading ``source`` features, on the generated data in the VQA format
    model = next(m.name for m in registry.MODELS.values() if m.features == source)
    data = registry.generated_dataset("vqa")
    if source == "grid":
        scale = int(round(grid_size[0] ** 0.5))
        return load_config(model, data, overrides={**common, "IMG_SCALE": scale, "ORDERS": [0, 1],
                                                      "FEAT_SIZE": {"vqa": {"FRCN_FEAT_SIZE": list(grid_size)}}})
    return load_config(model, data, overrides={
        **common, "FEAT_SIZE": {"vqa": {"FRCN_FEAT_SIZE": list(region_size), "BBOX_FEAT_SIZE": [region_size[0], 5]}}})


def _rate(count, seconds):
    return round(count / max(seconds, 1e-9), 1)


def dataset_throughput(ds, order):
    """Samples per second of ``ds[i]`` over ``order``, in this process (what one DataLoader worker does)."""
    start = time.perf_counter()
    for i in order:
        ds[int(i)]
    return _rate(len(order), time.perf_counter() - start)


def first_reads(ds, order):
    """The samples of ``order`` that read their image for the first time, in order."""
    seen, first = set(), []
    for i in order:
        iid = ds.iids[int(i)]
        if iid not in seen:
            seen.add(iid)
            first.append(int(i))
    return first


def disk_throughput(ds, order, paths, reopen=None):
    """(samples/s of ``ds[i]`` over ``order`` right after ``paths`` were dropped from the page cache, the fraction of
    their pages still resident then). The rate is None where they could not be dropped (tmpfs, not Linux).
    ``reopen`` runs between dropping and reading (a memory map must be closed while its pages are dropped)."""
    resident = page_cache.resident_fraction(paths) if page_cache.drop(paths) else None
    if reopen is not None:
        reopen()
    if resident is None or resident > MAX_RESIDENT:
        return None, resident
    return dataset_throughput(ds, order), round(resident, 4)


def loader_throughput(be, ds, batches, workers):
    """Samples per second through the backend's DataLoader (collate and conversion to tensors included)."""
    start = time.perf_counter()
    count = 0
    for batch in be.make_loader(ds, batches, num_workers=workers):
        count += int(batch["ques_ix"].shape[0])
    return _rate(count, time.perf_counter() - start)


def measure(spec):
    """Throughput of every source x reader; ``spec``: images, backends, workers, batch_size, root (optional)."""
    from backends import get_backend
    from core.data import build_dataset
    images = int(spec.get("images", 300))
    batch_size = int(spec.get("batch_size", 64))
    workers = int(spec.get("workers", os.cpu_count() or 1))
    loader_counts = sorted({0, workers})   # no workers: the default on the CPU (core/data/workers.py)
    backends = list(spec.get("backends", []))
    sizes = {"grid_size": tuple(spec.get("grid_size", GRID_SIZE)),
             "region_size": tuple(spec.get("region_size", REGION_SIZE))}
    result = {"images": images, "questions_per_image": 5, "batch_size": batch_size, "workers": workers,
              **{k: list(v) for k, v in sizes.items()}, "load_avg": list(os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="bench-data-", dir=spec.get("root")) as root:
        result["disk"] = page_cache.describe_disk(root)
        start = time.perf_counter()
        make_feature_data(root, images, **sizes)
        result["generate_s"] = round(time.perf_counter() - start, 2)
        for source in SOURCES:
            cfg = dataset_config(root, source, **sizes)
            ds = build_dataset(cfg, "train")
            order = np.concatenate(epoch_batches(len(ds), 1, seed=0, epoch=0))
            batches = epoch_batches(len(ds), batch_size, seed=0, epoch=0)
            entry = {"samples": len(ds), "file_bytes": sum(os.path.getsize(p) for p in ds.feat_index.values())}
            entry["per_file_samples_per_s"] = dataset_throughput(ds, order)
            first = first_reads(ds, order)
            entry["from_disk_samples"] = len(first)
            entry["per_file_from_disk_samples_per_s"], entry["per_file_from_disk_resident"] = disk_throughput(
                ds, first, list(ds.feat_index.values()))
            for name in backends:
                be = get_backend(name)
                for w in loader_counts:
                    entry[f"{name}_loader_w{w}_samples_per_s"] = loader_throughput(be, ds, batches, w)
            store_dir = os.path.join(root, f"store-{source}")
            summary = build_store(ds.feat_index, store_dir, source, cfg.FEAT_SIZE["vqa"]["FRCN_FEAT_SIZE"][1])
            entry["store_build_s"], entry["store_bytes"] = summary["seconds"], summary["bytes"]
            ds.use_feature_store(store_dir)
            entry["store_samples_per_s"] = dataset_throughput(ds, order)
            for name in backends:
                be = get_backend(name)
                for w in loader_counts:
                    entry[f"{name}_loader_w{w}_store_samples_per_s"] = loader_throughput(be, ds, batches, w)
            ds.feat_store = None   # unmapped: pages this process has mapped are not dropped
            store_files = [os.path.join(store_dir, name) for name in sorted(os.listdir(store_dir))]
            entry["store_from_disk_samples_per_s"], entry["store_from_disk_resident"] = disk_throughput(
                ds, first, store_files, reopen=lambda: ds.use_feature_store(store_dir))
            result[source] = entry
    return result


if __name__ == "__main__":
    child_main("bench.data_loading", measure)

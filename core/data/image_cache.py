"""The decoded-image cache: a split's images decoded and resized once into one memory-mapped uint8 array (IMAGE_CACHE).

A folder per (dataset, split, image size) under IMAGE_CACHE: images.npy (n, S, S, 3) uint8, the resized RGB images
before the flip, in the dataset's order, and meta.json, written last, with the image ids' digest. As the feature store
(core/data/feature_store.py) it is written in a temporary folder beside its place and renamed when complete, and
DataLoader workers reopen the map instead of copying it. The cached arrays are what decoding gives, so a run reads the
same inputs with or without the cache.
"""
import hashlib
import json
import os
import shutil

import numpy as np

CACHE_FORMAT = "twinvqa-image-cache"
CACHE_VERSION = 1


def ids_digest(image_ids):
    return hashlib.sha256("\n".join(image_ids).encode("utf-8")).hexdigest()


def cache_dir(root, dataset, split, size):
    return os.path.join(root, f"{dataset}_{split.replace('+', '-')}_{int(size)}")


class ImageCache:
    """Read side: ``rgb(i)`` is image i as (S, S, 3) uint8."""

    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            self.meta = json.load(f)
        self._open()

    def _open(self):
        self.images = np.load(os.path.join(self.path, "images.npy"), mmap_mode="r")

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("images", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()

    def __len__(self):
        return len(self.images)

    def rgb(self, i):
        return np.asarray(self.images[i])


def read_meta(path):
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def matches(path, image_ids, size):
    """Whether ``path`` holds a complete cache of exactly these images at this size."""
    meta = read_meta(path)
    return (meta is not None and meta.get("format") == CACHE_FORMAT and meta.get("version") == CACHE_VERSION
            and meta.get("size") == int(size) and meta.get("count") == len(image_ids)
            and meta.get("ids_sha256") == ids_digest(image_ids))


def build_cache(path, image_ids, size, rgb_of, progress=None):
    """Write the cache of ``len(image_ids)`` images, image i being ``rgb_of(i)`` ((S, S, 3) uint8), to ``path``."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        images = np.lib.format.open_memmap(os.path.join(tmp, "images.npy"), mode="w+", dtype=np.uint8,
                                           shape=(len(image_ids), int(size), int(size), 3))
        for i in range(len(image_ids)):
            images[i] = rgb_of(i)
            if progress and (i + 1) % 1000 == 0:
                progress(i + 1, len(image_ids))
        images.flush()
        del images
        meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "size": int(size), "count": len(image_ids),
                "ids_sha256": ids_digest(image_ids)}
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ImageCache(path)

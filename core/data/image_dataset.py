"""What every image-classification dataset shares: the sample dict, the flip, the facts and the optional cache.

A subclass sets ``class_names``, ``image_ids`` (unique, one per sample), ``labels`` (int64 array, None for an
unlabelled test split) and defines ``_decode(i)`` -> (H, W, 3) uint8 or a PIL image. Samples are
{'image': float32 (3, IMG_SIZE, IMG_SIZE), 'label': int64 (-1 where unknown)}; decoding runs in ``__getitem__``, so
in the DataLoader's workers. The training mode flips per (SEED, epoch, index); the engine tells the epoch through
``set_epoch`` before it builds the epoch's loader.
"""
import logging

import numpy as np

from core.data import image_cache, images
from core.data.paths import cfg_get

log = logging.getLogger(__name__)


class ImageClassificationDataset:
    class_names = ()
    image_ids = ()
    labels = None

    def __init__(self, cfg, mode):
        self.mode = mode
        self.size = int(cfg.IMG_SIZE)
        self.seed = int(cfg_get(cfg, "SEED", 0) or 0)
        self.flip = mode == "train"
        self.epoch = 0
        self.cache = None
        self._cache_root = cfg_get(cfg, "IMAGE_CACHE")
        self._cache_name = (cfg_get(cfg, "DATASET") or "images", cfg.SPLIT[mode] if hasattr(cfg, "SPLIT") else mode)

    def _finish(self, verbose=False):
        """Call at the end of a subclass's __init__: checks the lists and opens (or builds) the cache."""
        if len(set(self.image_ids)) != len(self.image_ids):
            raise ValueError(f"{type(self).__name__}: duplicated image ids")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, np.int64)
        self._targets = self.labels if self.labels is not None else np.full(len(self.image_ids), -1, np.int64)
        if self._cache_root:
            dataset, split = self._cache_name
            path = image_cache.cache_dir(self._cache_root, dataset, split, self.size)
            if not image_cache.matches(path, list(self.image_ids), self.size):
                if verbose:
                    log.info(f"decoding {len(self.image_ids)} images into the cache {path}")
                image_cache.build_cache(path, list(self.image_ids), self.size, self._resized)
            self.cache = image_cache.ImageCache(path)

    def facts(self):
        return {"num_classes": len(self.class_names)}

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.image_ids)

    def _decode(self, i):
        raise NotImplementedError

    def _resized(self, i):
        return images.resize_rgb(self._decode(i), self.size)

    def __getitem__(self, i):
        i = int(i)
        rgb = self.cache.rgb(i) if self.cache is not None else self._resized(i)
        flip = self.flip and images.flip_of(self.seed, self.epoch, i)
        return {"image": images.to_input(rgb, flip), "label": self._targets[i]}

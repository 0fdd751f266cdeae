"""CIFAR-10 / CIFAR-100 from their python-format archives (DATA_FORMAT cifar), extracted under DATA_ROOT.

    cifar-10-batches-py/  data_batch_1 .. data_batch_5, test_batch, batches.meta   (labels b'labels',
                                                                                    names b'label_names')
    cifar-100-python/     train, test, meta                                          (b'fine_labels',
                                                                                    b'fine_label_names')

Each file is a Python 2 pickle of a dict of bytes keys holding a uint8 array (n, 3072) (channel-planar 32x32) and
lists. They are read by an unpickler that resolves only numpy's array reconstruction and bytes-from-str, refusing
every other global (the rules of formats/restricted_pickle.py, which core cannot import), so a file cannot run code
when loaded.
train = the training batches; val = the test batch (the originals evaluate on it); test = the test batch without its
labels. Image ids are '<file>/<index>'.
"""
import io
import os
import pickle

import numpy as np

from core.data.image_dataset import ImageClassificationDataset

LAYOUTS = {
    "cifar-10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"], "meta": "batches.meta",
                 "labels": b"labels", "names": b"label_names"},
    "cifar-100": {"train": ["train"], "test": ["test"], "meta": "meta", "labels": b"fine_labels",
                  "names": b"fine_label_names"},
}


class RefusedPickle(pickle.UnpicklingError):
    pass


def _numpy_globals():
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    table = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = multiarray._reconstruct
        table[(module, "scalar")] = multiarray.scalar
    return table


def _codecs_encode(obj, encoding="utf-8"):
    """bytes pickled by Python 3 at protocol 2 (the archives' own Python 2 strings need no global)."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise RefusedPickle("_codecs.encode is allowed only to rebuild bytes from a str")
    return obj.encode(encoding)


_ALLOWED = {**_numpy_globals(), ("_codecs", "encode"): _codecs_encode}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise RefusedPickle(f"refused global {module}.{name}: a CIFAR batch holds only arrays and lists")


def read_batch(path):
    """One CIFAR python-format file as a dict (bytes keys); a one-line error naming the file."""
    try:
        with open(path, "rb") as f:
            data = _ArraysOnly(io.BytesIO(f.read()), encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ValueError(f"{path}: not a CIFAR python-format batch ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict, got {type(data).__name__}")
    return data


def layout_of(root):
    """'cifar-10' or 'cifar-100' by the files under ``root``."""
    for name, layout in LAYOUTS.items():
        if os.path.isfile(os.path.join(root, layout["meta"])):
            return name
    raise FileNotFoundError(f"{root}: holds neither CIFAR-10 (batches.meta, data_batch_1..5, test_batch) nor CIFAR-100 "
                            "(meta, train, test) python-format files; extract cifar-10-python.tar.gz or "
                            "cifar-100-python.tar.gz there (no download exists here)")


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class CIFARDataset(ImageClassificationDataset):
    def __init__(self, cfg, mode):
        super().__init__(cfg, mode)
        root = cfg.DATA_ROOT
        layout = LAYOUTS[layout_of(root)]
        meta_path = os.path.join(root, layout["meta"])
        self.class_names = [_text(n) for n in read_batch(meta_path).get(layout["names"], [])]
        if not self.class_names:
            raise ValueError(f"{meta_path}: no {layout['names'].decode()} list")
        parts = ["test"] if mode in ("val", "test") else ["train" if s == "train" else "test"
                                                          for s in cfg.SPLIT[mode].split("+")]
        arrays, labels, ids = [], [], []
        for part in parts:
            for name in layout[part]:
                path = os.path.join(root, name)
                batch = read_batch(path)
                data, batch_labels = batch.get(b"data"), batch.get(layout["labels"])
                if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 \
                        or batch_labels is None or len(batch_labels) != len(data):
                    raise ValueError(f"{path}: expected b'data' (n, 3072) uint8 and n {layout['labels']!r}")
                arrays.append(np.asarray(data, np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                labels += [int(v) for v in batch_labels]
                ids += [f"{name}/{i}" for i in range(len(data))]
        self.pixels = np.concatenate(arrays)
        if max(labels) >= len(self.class_names) or min(labels) < 0:
            raise ValueError(f"{root}: labels outside 0..{len(self.class_names) - 1}")
        self.labels = None if mode == "test" else labels
        self.image_ids = ids
        self._finish(verbose=bool(getattr(cfg, "VERBOSE", False)))

    def _decode(self, i):
        return np.ascontiguousarray(self.pixels[i])

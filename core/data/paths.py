"""On-disk layout of the VQA-v2 and CLEVR data (as the original openvqa PATH class), atomic writes, warn-once."""
import json
import logging
import os

from core.checkpoints import atomic_write
from core.errors import file_in_the_way
from core.text import read_utf8

VQA_QUESTION_FILES = {
    "train": "v2_OpenEnded_mscoco_train2014_questions.json",
    "val": "v2_OpenEnded_mscoco_val2014_questions.json",
    "test": "v2_OpenEnded_mscoco_test2015_questions.json",
    "vg": "VG_questions.json",
}
VQA_ANNOTATION_FILES = {
    "train": "v2_mscoco_train2014_annotations.json",
    "val": "v2_mscoco_val2014_annotations.json",
    "vg": "VG_annotations.json",
}
# VG questions in the openvqa release are asked about COCO images, whose features sit in train2014/val2014.
VQA_FEAT_DIRS = {"train": ("train2014",), "val": ("val2014",), "test": ("test2015",), "vg": ("train2014", "val2014")}
# The vocabulary of the original always scans these files, in this order.
VQA_VOCAB_SPLITS = ("train", "val", "test", "vg")

CLEVR_QUESTION_FILES = {split: f"CLEVR_{split}_questions.json" for split in ("train", "val", "test")}
CLEVR_FEAT_DIRS = {"train": "train", "val": "val", "test": "test"}
CLEVR_VOCAB_SPLITS = ("train", "val", "test")
CLEVR_ANSWER_SPLITS = ("train", "val")

SPLITS = {"vqa": ("train", "val", "test", "vg"), "clevr": ("train", "val", "test")}


def format_root(data_root, fmt):
    """<DATA_ROOT>/vqa or <DATA_ROOT>/clevr."""
    return os.path.join(data_root, fmt)


def question_path(root, fmt, split):
    if fmt == "clevr":
        return os.path.join(root, "raw", "questions", CLEVR_QUESTION_FILES[split])
    return os.path.join(root, "raw", VQA_QUESTION_FILES[split])


def annotation_path(root, split):
    """VQA annotation file of a split (CLEVR keeps its answers in the question files)."""
    return os.path.join(root, "raw", VQA_ANNOTATION_FILES[split])


def feat_dirs(root, fmt, split):
    if fmt == "clevr":
        return [os.path.join(root, "feats", CLEVR_FEAT_DIRS[split])]
    return [os.path.join(root, "feats", name) for name in VQA_FEAT_DIRS[split]]


def expected_layout(root, fmt):
    """Text block listing the files the loader expects under ``root``."""
    if fmt == "clevr":
        lines = [question_path(root, fmt, s) for s in CLEVR_QUESTION_FILES]
        lines += [os.path.join(root, "feats", d, "<image_index>.npz  (key 'x')") for d in CLEVR_FEAT_DIRS.values()]
    else:
        lines = [question_path(root, fmt, s) for s in VQA_QUESTION_FILES]
        lines += [annotation_path(root, s) for s in VQA_ANNOTATION_FILES]
        lines += [os.path.join(root, "feats", d, "COCO_<split>_<image_id:012d>.jpg.npy or <image_id>.npy (grid), "
                                                 "COCO_<split>_<image_id:012d>.jpg.npz (region)")
                  for d in ("train2014", "val2014", "test2015")]
    return "expected layout:\n  " + "\n  ".join(lines)


def require_file(path, root, fmt, what):
    if not os.path.isfile(path):
        _refuse_a_file_in_the_way(os.path.dirname(path), f"{what} {path}")
        raise FileNotFoundError(f"{what} not found: {path}\n{expected_layout(root, fmt)}")
    return path


def require_dir(path, root, fmt, what):
    if not os.path.isdir(path):
        _refuse_a_file_in_the_way(path, f"{what} folder {path}")
        raise FileNotFoundError(f"{what} folder not found: {path}\n{expected_layout(root, fmt)}")
    return path


def _refuse_a_file_in_the_way(folder, looking_for):
    """A file where the data layout has a folder (DATA_ROOT given a file, say): said in one line."""
    blocker = file_in_the_way(folder)
    if blocker is not None:
        raise FileNotFoundError(f"{blocker}: a file where a folder is needed (looking for the {looking_for})")


def split_names(split_string, fmt):
    """'train+val' -> ['train', 'val'], checked against the splits the format has."""
    names = [s for s in str(split_string).split("+") if s]
    allowed = SPLITS[fmt]
    for name in names:
        if name not in allowed:
            extra = " (CLEVR has no vg split)" if fmt == "clevr" and name == "vg" else ""
            raise ValueError(f"SPLIT: unknown {fmt} split '{name}' in '{split_string}'; expected '+'-joined names "
                             f"from {list(allowed)}{extra}")
    if not names:
        raise ValueError(f"SPLIT: empty split string '{split_string}'")
    return names


def load_json(path, key=None):
    """Read a json file; with ``key``, check the top-level object has it (clear error otherwise)."""
    try:
        data = json.loads(read_utf8(path))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid json ({exc})") from None
    if key is not None and (not isinstance(data, dict) or key not in data):
        raise ValueError(f"{path}: expected a json object with a '{key}' list")
    return data


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` through a temp file in the same folder and os.replace."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_json(path, obj):
    atomic_write_bytes(path, json.dumps(obj).encode("utf-8"))


_WARNED = set()


def warn_once(message, logger=None):
    """Log ``message`` as a warning the first time this process sees it."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    (logger or logging.getLogger("core.data")).warning(message)


def cfg_get(cfg, name, default=None):
    """An optional config attribute (the config may predate a key)."""
    return getattr(cfg, name, default)

"""Image feature files: indexing folders by image id, and loading grid (.npy), region (.npz) and CLEVR (.npz) features.

Every read is checked, so a bad file fails naming itself instead of giving answer 0 everywhere: the shape the config
expects (a grid has exactly its cell count; regions are padded or cut to the config's rows, as the original), a
floating dtype (the originals' files are float16 or float32), and finite values of at most FEATURE_LIMIT in
magnitude (NaN, infinities and values that overflow float32 arithmetic in the net).
"""
import os

import numpy as np

GRID_EXT = ".npy"
REGION_EXT = ".npz"
# The largest float16, the originals' storage type: no image feature is larger, and values far beyond it (1e38 and
# up, or float64 ones past float32's range) overflow in the net and give NaN logits, i.e. answer 0 for every question.
FEATURE_LIMIT = float(np.finfo(np.float16).max)


def check_values(path, name, array, limit=FEATURE_LIMIT):
    """Refuse an array (of ``name`` in ``path``) with non-finite values or, with ``limit``, larger ones."""
    ok = np.isfinite(array) if limit is None else np.abs(array) <= limit    # False for NaN too
    if not ok.all():
        bad = int(array.size - np.count_nonzero(ok))
        finite = np.isfinite(array)
        what = ("NaN or infinite" if not finite.all() or limit is None
                else f"beyond +-{limit:g} (max abs {float(np.abs(array).max()):.3g})")
        raise ValueError(f"{path}: {name} has {bad} of {array.size} values {what}; the feature file is damaged or "
                         "not an image feature; extract it again")
    return array


def check_float(path, name, array):
    """Refuse features that are not real floating point (integer, complex, bool, object arrays)."""
    if array.dtype.kind != "f":
        raise ValueError(f"{path}: {name} has dtype {array.dtype}; image features are float16 or float32")
    return array


def parse_image_id(filename):
    """int of the last '_' piece before the first '.': COCO_train2014_000000000009.jpg.npz -> 9, 9.npy -> 9."""
    name = os.path.basename(filename)
    return int(name.split("_")[-1].split(".")[0])


def index_features(folders, ext):
    """{image id: path} for the files ending in ``ext`` in ``folders`` (scanned once)."""
    index = {}
    for folder in folders:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(ext) and not entry.name.startswith("."):
                    try:
                        iid = parse_image_id(entry.name)
                    except ValueError:
                        continue  # not a feature file name (e.g. a README): ignored, as glob would not match it
                    if not entry.is_file():   # S_ISREG of os.stat (links followed): a named pipe would block a read
                        raise ValueError(f"{entry.path}: not a regular file (a named pipe, device, folder or broken "
                                         "link); feature files must be regular files")
                    index[iid] = entry.path
    return index


def pad_rows(array, rows):
    """Keep the first ``rows`` rows, zero-pad below to exactly ``rows``."""
    array = array[:rows]
    if array.shape[0] < rows:
        array = np.pad(array, ((0, rows - array.shape[0]), (0, 0)))
    return array


def load_grid(path, rows, dim):
    """TRAR grid feature .npy (S*S, dim), float16 on disk -> float32 (rows, dim); exactly ``rows`` cells."""
    return grid_sample(read_grid(path, dim, cells=rows), rows)


def read_grid(path, dim, cells=None):
    """The grid feature array of a .npy as stored (cells, dim), checked (with ``cells``, its cell count too)."""
    try:
        feat = np.load(path)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read a grid feature .npy ({exc})") from None
    if not isinstance(feat, np.ndarray) or feat.ndim != 2 or feat.shape[1] != dim:
        raise ValueError(f"{path}: expected a grid feature array of shape (cells, {dim}) "
                         f"(FRCN_FEAT_SIZE dim), got {getattr(feat, 'shape', type(feat).__name__)}")
    if cells is not None and feat.shape[0] != cells:
        # a grid's cells are image positions: padding or cutting them would move the image under the model
        raise ValueError(f"{path}: grid feature of shape {feat.shape}, expected ({cells}, {dim}) "
                         f"(FRCN_FEAT_SIZE: an IMG_SCALE x IMG_SCALE grid)")
    return check_values(path, "the grid feature", check_float(path, "the grid feature", feat))


def grid_sample(feat, rows):
    """A grid feature as stored (cells, dim) -> the sample's float32 (rows, dim); shared with the feature store."""
    return pad_rows(feat.astype(np.float32), rows)


def load_region(path, frcn_size, bbox_rows, use_bbox_feat, normalize):
    """openvqa region feature .npz -> (frcn (rows, dim) f32, bbox (bbox_rows, 5 or 4) f32).

    'x' is stored (dim, n) and transposed; 'bbox' (n, 4) pixel x1,y1,x2,y2, divided by image_w / image_h when
    ``normalize``; with ``use_bbox_feat`` the box area (x2-x1)*(y2-y1) is appended as a 5th column.
    """
    rows, dim = frcn_size
    return region_sample(*read_region(path, dim), rows, bbox_rows, use_bbox_feat, normalize)


def read_region(path, dim):
    """The arrays of a region .npz as stored, checked: (x (dim, n), bbox (n, 4), image_h, image_w)."""
    try:
        with np.load(path) as data:
            missing = [k for k in ("x", "bbox", "image_h", "image_w") if k not in data.files]
            if not missing:
                x, bbox = data["x"], data["bbox"]
                image_h, image_w = _scalar(data["image_h"], "image_h"), _scalar(data["image_w"], "image_w")
    except Exception as exc:   # a field that np.load refuses (an object array) or that is no number included
        raise ValueError(f"{path}: cannot read a region feature .npz ({exc})") from None
    if missing:
        raise ValueError(f"{path}: region feature .npz lacks {missing}; expected keys 'x' ({dim}, n), "
                         "'bbox' (n, 4), 'image_h', 'image_w'")
    if x.ndim != 2 or x.shape[0] != dim:
        raise ValueError(f"{path}: 'x' must have shape ({dim}, n) (FRCN_FEAT_SIZE dim first), got {x.shape}")
    if bbox.ndim != 2 or bbox.shape != (x.shape[1], 4):
        raise ValueError(f"{path}: 'bbox' must have shape (n, 4) with n = {x.shape[1]} boxes of 'x', got {bbox.shape}")
    check_values(path, "'x'", check_float(path, "'x'", x))
    if bbox.dtype.kind not in "iuf":
        raise ValueError(f"{path}: 'bbox' has dtype {bbox.dtype}; box coordinates are real numbers")
    check_values(path, "'bbox'", bbox, limit=None)
    if not (np.isfinite(image_h) and np.isfinite(image_w) and image_h > 0 and image_w > 0):
        raise ValueError(f"{path}: 'image_h' and 'image_w' must be positive sizes, got {image_h} x {image_w}")
    return x, bbox, image_h, image_w


def region_sample(x, bbox, image_h, image_w, rows, bbox_rows, use_bbox_feat, normalize):
    """Region arrays as stored ('x' (dim, n), 'bbox' (n, 4), image size) -> (frcn, bbox) of the sample; shared with
    the feature store, so both give identical arrays."""
    frcn = pad_rows(x.T.astype(np.float32), rows)
    if normalize:
        # divided in the stored dtype, as the original (then kept float32)
        scale = np.array([image_w, image_h, image_w, image_h])
        bbox = (bbox / scale.astype(bbox.dtype) if np.issubdtype(bbox.dtype, np.floating) else bbox / scale)
    bbox = bbox.astype(np.float32)
    if use_bbox_feat:
        area = (bbox[:, 2] - bbox[:, 0]) * (bbox[:, 3] - bbox[:, 1])
        bbox = np.concatenate([bbox, area[:, None]], axis=1)
    return frcn, pad_rows(bbox, bbox_rows)


def _scalar(value, name):
    try:
        return float(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"'{name}' must be a number, got {value!r}") from None


def load_clevr_grid(path, size):
    """CLEVR feature .npz key 'x' of shape GRID_FEAT_SIZE, float32 (no padding, as the original)."""
    try:
        with np.load(path) as data:
            has_x = "x" in data.files
            x = data["x"] if has_x else None
    except Exception as exc:   # an 'x' that np.load refuses (an object array) included
        raise ValueError(f"{path}: cannot read a CLEVR feature .npz ({exc})") from None
    if not has_x:
        raise ValueError(f"{path}: CLEVR feature .npz lacks key 'x' (expected shape {tuple(size)})")
    if tuple(x.shape) != tuple(size):
        raise ValueError(f"{path}: 'x' must have shape {tuple(size)} (GRID_FEAT_SIZE), got {x.shape}")
    check_values(path, "'x'", check_float(path, "'x'", x))
    return x.astype(np.float32, copy=False)

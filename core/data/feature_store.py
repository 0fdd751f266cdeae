"""The memory-mapped feature store: built once from per-image feature files, read by runs with --FEAT_STORE.

    python -m core.data.feature_store --feats data/vqa/feats/train2014 data/vqa/feats/val2014 --kind grid --out STORE

The originals read one small file per sample (a .npy grid or a .npz of regions). A store holds the same arrays,
unchanged, in a few large .npy files that the dataset memory-maps (``FeatureStore``; a run reads it with
``--FEAT_STORE STORE``, the config key FEAT_STORE). ``build_store`` writes it in a temporary folder beside ``--out``
and renames it into place when complete, meta.json last. bench.data_loading measures both ways of reading.
"""
import argparse
import json
import os
import shutil
import time
import zipfile

import numpy as np

from core.data import features
from core.errors import USER_ERRORS, error_line
from core.logs import configure as configure_logging

STORE_FORMAT = "twinvqa-feature-store"
STORE_VERSION = 1
KINDS = {"grid": features.GRID_EXT, "region": features.REGION_EXT}


class FeatureStore:
    """Read side of a memory-mapped feature store (built once by ``build_store``).

    A folder: meta.json, iids.npy (n,) int64, rows.npy (n,) int32 (real rows / boxes per image), feats.npy (n, M, dim)
    in the files' dtype (region 'x' stored transposed, (boxes, dim)), and for regions bbox.npy (n, M, 4) in the files'
    dtype and hw.npy (n, 2) float64 (image_h, image_w). The arrays are the files' contents, so ``grid`` and ``region``
    run the per-file loader's own grid_sample / region_sample and return identical arrays.
    """

    def __init__(self, path):
        self.path = path
        meta_path = os.path.join(path, "meta.json")
        try:
            with open(meta_path, encoding="utf-8") as f:
                self.meta = json.load(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{meta_path}: not a feature store ({exc}); build one with "
                             "`python -m core.data.feature_store`") from None
        if self.meta.get("format") != STORE_FORMAT or self.meta.get("version") != STORE_VERSION:
            raise ValueError(f"{meta_path}: expected format {STORE_FORMAT!r} version {STORE_VERSION}, got "
                             f"{self.meta.get('format')!r} version {self.meta.get('version')!r}")
        self.kind, self.dim = self.meta["kind"], int(self.meta["dim"])
        self.iids = np.load(os.path.join(path, "iids.npy"))
        self.rows = np.load(os.path.join(path, "rows.npy"))
        self.row_of = {int(iid): k for k, iid in enumerate(self.iids)}
        self._open()

    def _open(self):
        self.feats = np.load(os.path.join(self.path, "feats.npy"), mmap_mode="r")
        if self.kind == "region":
            self.bbox = np.load(os.path.join(self.path, "bbox.npy"), mmap_mode="r")
            self.hw = np.load(os.path.join(self.path, "hw.npy"))

    def __getstate__(self):  # DataLoader workers reopen the maps instead of copying them
        state = dict(self.__dict__)
        state.pop("feats", None)
        state.pop("bbox", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()

    def __len__(self):
        return len(self.iids)

    def __contains__(self, iid):
        return int(iid) in self.row_of

    def grid(self, iid, rows):
        k = self.row_of[int(iid)]
        if self.rows[k] != rows:   # as features.load_grid: a grid's cells are image positions, never padded or cut
            raise ValueError(f"{self.path}: image {iid} has a grid of {self.rows[k]} cells, expected {rows} "
                             "(FRCN_FEAT_SIZE: an IMG_SCALE x IMG_SCALE grid)")
        return features.grid_sample(np.asarray(self.feats[k, :self.rows[k]]), rows)

    def region(self, iid, frcn_size, bbox_rows, use_bbox_feat, normalize):
        k = self.row_of[int(iid)]
        n = self.rows[k]
        x = np.asarray(self.feats[k, :n]).T
        bbox = np.asarray(self.bbox[k, :n])
        return features.region_sample(x, bbox, float(self.hw[k, 0]), float(self.hw[k, 1]), frcn_size[0], bbox_rows,
                                      use_bbox_feat, normalize)


def _header(fp):
    """(shape, dtype) from an open .npy stream, reading only the header."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    return shape, dtype


def file_layout(path, kind, dim):
    """(rows, feature dtype, bbox dtype or None) of one feature file, from its headers only."""
    try:
        if kind == "grid":
            with open(path, "rb") as fp:
                shape, dtype = _header(fp)
            if len(shape) != 2 or shape[1] != dim:
                raise ValueError(f"expected shape (cells, {dim}) (--dim), got {shape}")
            return shape[0], dtype, None
        with zipfile.ZipFile(path) as zf:
            with zf.open("x.npy") as fp:
                shape, dtype = _header(fp)
            with zf.open("bbox.npy") as fp:
                bbox_shape, bbox_dtype = _header(fp)
        if len(shape) != 2 or shape[0] != dim or bbox_shape != (shape[1], 4):
            raise ValueError(f"expected 'x' ({dim}, n) (--dim) and 'bbox' (n, 4), got {shape} and {bbox_shape}")
        return shape[1], dtype, bbox_dtype
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read a {kind} feature file for the store ({exc})") from None


def first_width(path, kind):
    """The feature width of one file (grid: its columns; region: the rows of its 'x'), from its header."""
    try:
        if kind == "grid":
            with open(path, "rb") as fp:
                shape, _ = _header(fp)
        else:
            with zipfile.ZipFile(path) as zf, zf.open("x.npy") as fp:
                shape, _ = _header(fp)
        return int(shape[1] if kind == "grid" else shape[0])
    except (OSError, KeyError, ValueError, IndexError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read a {kind} feature file for the store ({exc})") from None


def build_store(index, out, kind, dim=None, force=False, progress=None):
    """Write a store of the files in ``index`` ({image id: path}) to the folder ``out``; returns a summary dict.
    ``dim`` = the feature width every file must have; None = the first file's (by image id)."""
    if kind not in KINDS:
        raise ValueError(f"--kind: expected one of {sorted(KINDS)}, got {kind!r}")
    if not index:
        raise ValueError(f"no {KINDS[kind]} feature files to convert")
    if os.path.exists(out) and not force:
        raise ValueError(f"{out} exists; pass --force to replace it")
    start = time.perf_counter()
    iids = np.array(sorted(index), dtype=np.int64)
    if dim is None:
        dim = first_width(index[int(iids[0])], kind)
    layouts = [file_layout(index[int(i)], kind, dim) for i in iids]
    dtypes = {str(lay[1]) for lay in layouts} | ({str(lay[2]) for lay in layouts} if kind == "region" else set())
    feat_dtype, bbox_dtype = layouts[0][1], layouts[0][2]
    for iid, lay in zip(iids, layouts):
        if lay[1] != feat_dtype or lay[2] != bbox_dtype:
            raise ValueError(f"{index[int(iid)]}: dtype {lay[1]}/{lay[2]} differs from the first file's "
                             f"{feat_dtype}/{bbox_dtype}; a store holds one dtype")
    rows = np.array([lay[0] for lay in layouts], dtype=np.int32)
    max_rows = int(rows.max())

    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out)}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        np.save(os.path.join(tmp, "iids.npy"), iids)
        np.save(os.path.join(tmp, "rows.npy"), rows)
        feats = np.lib.format.open_memmap(os.path.join(tmp, "feats.npy"), mode="w+", dtype=feat_dtype,
                                          shape=(len(iids), max_rows, dim))
        if kind == "region":
            bbox = np.lib.format.open_memmap(os.path.join(tmp, "bbox.npy"), mode="w+", dtype=bbox_dtype,
                                             shape=(len(iids), max_rows, 4))
            hw = np.zeros((len(iids), 2), np.float64)
        for k, iid in enumerate(iids):
            path = index[int(iid)]
            if kind == "grid":
                feats[k, :rows[k]] = features.read_grid(path, dim)
            else:
                x, boxes, image_h, image_w = features.read_region(path, dim)
                feats[k, :rows[k]] = x.T
                bbox[k, :rows[k]] = boxes
                hw[k] = (image_h, image_w)
            if progress and (k + 1) % 1000 == 0:
                progress(k + 1, len(iids))
        feats.flush()
        del feats
        if kind == "region":
            bbox.flush()
            del bbox
            np.save(os.path.join(tmp, "hw.npy"), hw)
        meta = {"format": STORE_FORMAT, "version": STORE_VERSION, "kind": kind, "dim": dim,
                "count": len(iids), "max_rows": max_rows, "dtypes": sorted(dtypes),
                "sources": sorted({os.path.dirname(os.path.abspath(p)) for p in index.values()})}
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        old = None
        if os.path.exists(out):
            old = os.path.join(parent, f".{os.path.basename(out)}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(os.path.getsize(os.path.join(out, name)) for name in os.listdir(out))
    return {"kind": kind, "images": len(iids), "max_rows": max_rows, "bytes": size,
            "seconds": round(time.perf_counter() - start, 3), "out": out}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m core.data.feature_store",
                                     description="Build a memory-mapped feature store from per-image feature files "
                                                 "(a run reads it with --FEAT_STORE DIR).")
    parser.add_argument("--feats", nargs="+", required=True, help="feature folders (e.g. .../feats/train2014)")
    parser.add_argument("--kind", choices=sorted(KINDS), required=True, help="grid (.npy) or region (.npz)")
    parser.add_argument("--dim", type=int, default=None,
                        help="feature width every file must have (FRCN_FEAT_SIZE[1]; default: the first file's)")
    parser.add_argument("--out", required=True, help="store folder to write")
    parser.add_argument("--force", action="store_true", help="replace an existing store")
    args = parser.parse_args(argv)
    configure_logging()
    for folder in args.feats:
        if not os.path.isdir(folder):
            parser.error(f"--feats: no such folder {folder}")
    try:
        index = features.index_features(args.feats, KINDS[args.kind])
        summary = build_store(index, args.out, args.kind, args.dim, force=args.force,
                              progress=lambda done, total: print(f"{done}/{total}", flush=True))
    except USER_ERRORS as exc:   # a bad file or a failing disk: one line naming it
        parser.exit(2, f"{error_line(exc)}\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

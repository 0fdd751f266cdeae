"""Datasets, one class per on-disk format (core/registry.py FORMATS: VQA-v2, CLEVR; the generated demo data is in
those formats). numpy only."""
import importlib

from core import registry
from core.data.paths import cfg_get

MODES = ("train", "val", "test")


def build_dataset(cfg, mode):
    """The dataset of ``mode`` ('train' | 'val' | 'test'): the class of cfg.DATA_FORMAT's FormatSpec (when unset, the
    format of cfg.DATASET), built as Class(cfg, mode)."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    fmt = cfg_get(cfg, "DATA_FORMAT") or registry.dataset(cfg.DATASET).data_format
    return registry.load(registry.data_format(fmt).loader)(cfg, mode)


class GeneratedDataError(ValueError):
    """DATA_ROOT of a generated dataset holds something else than its data, which is never overwritten."""


def ensure_generated(cfg):
    """A generated dataset's data (DatasetSpec.generator) under cfg.DATA_ROOT, generated into a missing or empty
    folder; nothing for data that is not generated. A folder holding something else raises GeneratedDataError
    naming what is wrong."""
    spec = registry.dataset(cfg.DATASET)
    if spec.generator is None:
        return None
    return importlib.import_module(spec.generator).ensure_data(cfg.DATA_ROOT)


def is_generated(cfg):
    """Whether cfg.DATASET is generated data (which has no VG question file by design)."""
    name = cfg_get(cfg, "DATASET")
    return name in registry.DATASETS and registry.DATASETS[name].generated

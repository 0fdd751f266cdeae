"""Datasets, one class per on-disk format (core/registry.py FORMATS: VQA-v2, CLEVR; the generated demo data is in
those formats). numpy only."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol

from core import registry
from core.data.paths import cfg_get

if TYPE_CHECKING:
    import numpy as np

    from core.config import Config

MODES = ("train", "val", "test")


class Dataset(Protocol):
    """What a dataset class gives the engine and a backend's loader (docs/architecture.md: the sample format)."""

    def __len__(self) -> int:
        ...

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """One sample: the task's keys to numpy arrays."""
        ...

    def facts(self) -> dict[str, Any]:
        """build_model's keywords (VQA: token_size, answer_size, pretrained_emb; classification: num_classes)."""
        ...


def build_dataset(cfg: Config, mode: str) -> Dataset:
    """The dataset of ``mode`` ('train' | 'val' | 'test'): the class of cfg.DATA_FORMAT's FormatSpec (when unset, the
    format of cfg.DATASET), built as Class(cfg, mode)."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    fmt = cfg_get(cfg, "DATA_FORMAT") or registry.dataset(cfg.DATASET).data_format
    return registry.load(registry.data_format(fmt).loader)(cfg, mode)


class GeneratedDataError(ValueError):
    """DATA_ROOT of a generated dataset holds something else than its data, which is never overwritten."""


def ensure_generated(cfg: Config) -> dict[str, Any] | None:
    """A generated dataset's data (DatasetSpec.generator) under cfg.DATA_ROOT, generated into a missing or empty
    folder; nothing for data that is not generated. A folder holding something else raises GeneratedDataError
    naming what is wrong."""
    spec = registry.dataset(cfg.DATASET)
    if spec.generator is None:
        return None
    return importlib.import_module(spec.generator).ensure_data(cfg.DATA_ROOT)


def is_generated(cfg: Config) -> bool:
    """Whether cfg.DATASET is generated data (which has no VG question file by design)."""
    name = cfg_get(cfg, "DATASET")
    return name in registry.DATASETS and registry.DATASETS[name].generated

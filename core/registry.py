"""The one list of tasks, data formats, datasets and models. Everything else asks it.

Adding a model is two twin files ``backends/{torch,paddle}/models/<MODEL_USE>.py`` (each defining ``Net``), a yml per
dataset (``configs/<dataset>/<name>.yml``), a settings module ``core/specs/<MODEL_USE>.py`` when the model has config
keys of its own, and one ModelSpec below (CONTRIBUTING.md has the checklist). Neutral code never tests a model or
dataset name: it reads a capability of the spec (``routes``, ``needs_box_geometry``, ``exportable``, ``generator``).

numpy-free and framework-free: core/config.py, core/cli.py, core/data and the backends import it; it imports only the
settings modules of core/specs.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import core.specs
from core.specs import lsat, mcan, mmnasnet, rwsan, trar, vit, vit_trar


@dataclass(frozen=True)
class TaskSpec:
    """What a sample holds and how a run is scored. docs/architecture.md, "Tasks", is the contract."""
    name: str
    input_keys: tuple           # the net's positional inputs, in order
    optional_input_keys: tuple  # passed by keyword when the batch holds them
    input_dtypes: dict          # key -> numpy dtype name a numpy batch must have
    target_key: str             # the training target
    facts: tuple                # what a dataset tells build_model, in the order of its positional form
    fact_defaults: dict         # facts a dataset may leave out
    unit: str                   # what one sample is, in messages
    module: str                 # evaluation and result files: evaluate(cfg, dataset, mode, version, outputs, say)


@dataclass(frozen=True)
class FormatSpec:
    """An on-disk layout (DATA_FORMAT) and the dataset class that reads it."""
    name: str
    task: str
    loader: str                 # 'module:Class'; Class(cfg, mode) is the dataset of one mode
    loss_funcs: tuple           # LOSS_FUNC values that suit its targets (the original TASK_LOSS_CHECK)
    image_input: str = None     # vqa task: the sample key holding the image features ...
    image_size: str = None      # ... and their (rows, width) entry in FEAT_SIZE[<format>]
    answers: int = None         # vqa task: answer-list size of the real data (synthetic inputs use it)


@dataclass(frozen=True)
class DatasetSpec:
    """A --DATASET choice: data in one format under DATA_ROOT."""
    name: str
    data_format: str
    train_splits: tuple         # the parts TRAIN_SPLIT may join with '+'
    data_root: str = None       # DATA_ROOT default when not the generic one
    generator: str = None       # module with ensure_data(root): generated into a missing or empty DATA_ROOT; such
                                # data has no VG question file by design, so its absence is not warned about

    @property
    def task(self):
        return FORMATS[self.data_format].task

    @property
    def loss_funcs(self):
        return FORMATS[self.data_format].loss_funcs

    @property
    def generated(self):
        return self.generator is not None


@dataclass(frozen=True)
class ModelSpec:
    """A --MODEL choice: a Net (``backends/<fw>/models/<model_use>.py``) and its settings."""
    name: str                   # --MODEL, configs/<dataset>/<name>.yml
    model_use: str              # MODEL_USE: the backends' model module and the settings module
    task: str
    features: str               # the image input its configs read: 'grid' or 'region' (VQA format's FEAT_TYPE;
                                # CLEVR is grid for every model); an image classifier reads 'image'
    datasets: tuple             # the datasets it has a yml for
    settings: object = field(repr=False, default=core.specs)   # core/specs module: its keys, defaults, validate
    routes: bool = False        # routing weights (and, for hard routing, a temperature): tau schedule,
                                # routing_alphas, _routing.png
    needs_box_geometry: bool = False   # reads rel_geom (core.geometry), computed in the dataset per sample
    exportable: bool = True     # deploy's static / ONNX export knows how to wrap its Net


TASKS = {t.name: t for t in (
    TaskSpec("vqa", input_keys=("frcn_feat", "grid_feat", "bbox_feat", "ques_ix"), optional_input_keys=("rel_geom",),
             input_dtypes={"frcn_feat": "float32", "grid_feat": "float32", "bbox_feat": "float32",
                           "ques_ix": "int64", "rel_geom": "float32"},
             target_key="ans", facts=("token_size", "answer_size", "pretrained_emb"),
             fact_defaults={"pretrained_emb": None}, unit="questions", module="core.tasks.vqa"),
    TaskSpec("classification", input_keys=("image",), optional_input_keys=(), input_dtypes={"image": "float32"},
             target_key="label", facts=("num_classes",), fact_defaults={}, unit="images",
             module="core.tasks.classification"),
)}

FORMATS = {f.name: f for f in (
    FormatSpec("vqa", task="vqa", loader="core.data.vqa:VQADataset", loss_funcs=("bce", "kld"),
               image_input="frcn_feat", image_size="FRCN_FEAT_SIZE", answers=3129),
    FormatSpec("clevr", task="vqa", loader="core.data.clevr:CLEVRDataset", loss_funcs=("ce",),
               image_input="grid_feat", image_size="GRID_FEAT_SIZE", answers=28),
    FormatSpec("imagefolder", task="classification", loader="core.data.imagefolder:ImageFolderDataset",
               loss_funcs=("ce",)),
    FormatSpec("cifar", task="classification", loader="core.data.cifar:CIFARDataset", loss_funcs=("ce",)),
)}

DATASETS = {d.name: d for d in (
    DatasetSpec("vqa", "vqa", train_splits=("train", "val", "vg")),
    DatasetSpec("clevr", "clevr", train_splits=("train", "val")),
    DatasetSpec("demo", "vqa", train_splits=("train", "val"), data_root=os.path.join("data", "demo"),
                generator="core.data.demo"),
    DatasetSpec("demo_clevr", "clevr", train_splits=("train", "val"), data_root=os.path.join("data", "demo"),
                generator="core.data.demo"),
    DatasetSpec("imagenet", "imagefolder", train_splits=("train", "val"), data_root=os.path.join("data", "imagenet")),
    DatasetSpec("cifar10", "cifar", train_splits=("train", "val"),
                data_root=os.path.join("data", "cifar-10-batches-py")),
    DatasetSpec("cifar100", "cifar", train_splits=("train", "val"), data_root=os.path.join("data", "cifar-100-python")),
    DatasetSpec("demo_images", "imagefolder", train_splits=("train", "val"),
                data_root=os.path.join("data", "demo_images"), generator="core.data.demo_images"),
)}

_ALL_VQA = ("vqa", "clevr", "demo", "demo_clevr")
_IMAGE_DATASETS = ("imagenet", "demo_images")
MODELS = {m.name: m for m in (
    ModelSpec("trar", "trar", task="vqa", features="grid", datasets=_ALL_VQA, settings=trar, routes=True),
    ModelSpec("mcan_small", "mcan", task="vqa", features="region", datasets=_ALL_VQA, settings=mcan),
    ModelSpec("mcan_large", "mcan", task="vqa", features="region", datasets=("vqa", "clevr"), settings=mcan),
    ModelSpec("mmnasnet_small", "mmnasnet", task="vqa", features="region", datasets=("vqa", "demo"),
              settings=mmnasnet, needs_box_geometry=True),
    ModelSpec("mmnasnet_large", "mmnasnet", task="vqa", features="region", datasets=("vqa",), settings=mmnasnet,
              needs_box_geometry=True),
    ModelSpec("rwsan", "rwsan", task="vqa", features="region", datasets=("vqa", "demo"), settings=rwsan),
    ModelSpec("lsat", "lsat", task="vqa", features="grid", datasets=_ALL_VQA, settings=lsat),
    # Image classifiers (issue 24): ImageNet-style folders, the generated demo images, CIFAR-100 (plain ViT's recipe)
    ModelSpec("vit", "vit", task="classification", features="image", datasets=_IMAGE_DATASETS + ("cifar100",),
              settings=vit),
    ModelSpec("vit_trar", "vit_trar", task="classification", features="image", datasets=_IMAGE_DATASETS,
              settings=vit_trar, routes=True),
)}


def _lookup(table: dict, name: str, key: str, kind: str):
    if name not in table:
        raise ValueError(f"{key}: unknown {kind} {name!r}; expected one of {', '.join(table)}")
    return table[name]


def model(name: str) -> ModelSpec:
    """The ModelSpec of a --MODEL name; ValueError listing the known ones."""
    return _lookup(MODELS, name, "MODEL", "model")


def dataset(name: str) -> DatasetSpec:
    """The DatasetSpec of a --DATASET name; ValueError listing the known ones."""
    return _lookup(DATASETS, name, "DATASET", "dataset")


def data_format(name: str) -> FormatSpec:
    return _lookup(FORMATS, name, "DATA_FORMAT", "format")


def task(name: str) -> TaskSpec:
    return _lookup(TASKS, name, "task", "task")


def generated_dataset(fmt: str) -> str:
    """The name of the first generated dataset in data format ``fmt`` (benchmarks and smoke runs train on it)."""
    for spec in DATASETS.values():
        if spec.generated and spec.data_format == fmt:
            return spec.name
    raise ValueError(f"DATASET: no generated dataset in the {fmt!r} format")


def model_uses() -> tuple[str, ...]:
    """The MODEL_USE names, each once, in registry order."""
    return tuple(dict.fromkeys(m.model_use for m in MODELS.values()))


def model_of(cfg: Any) -> ModelSpec:
    """The ModelSpec of a config (or any object with MODEL_USE / MODEL): the first model of its MODEL_USE (the
    capabilities are the Net's, shared by its sizes), else the one its MODEL names."""
    use = getattr(cfg, "MODEL_USE", None)
    if use is None and getattr(cfg, "MODEL", None) in MODELS:
        return MODELS[cfg.MODEL]
    for spec in MODELS.values():
        if spec.model_use == str(use).lower():
            return spec
    raise ValueError(f"MODEL_USE {use!r} is not a registered model; expected one of {', '.join(model_uses())}")


def task_of(cfg: Any) -> TaskSpec:
    """The TaskSpec of a config: its data format's task (DATA_FORMAT, else its dataset's)."""
    fmt = getattr(cfg, "DATA_FORMAT", None) or dataset(cfg.DATASET).data_format
    return TASKS[data_format(fmt).task]


def task_for_batch(batch: Mapping[str, Any]) -> TaskSpec:
    """The TaskSpec whose positional inputs are all in ``batch`` (a dict of arrays or tensors)."""
    for spec in TASKS.values():
        if all(k in batch for k in spec.input_keys):
            return spec
    wanted = "; ".join(f"{t.name}: {', '.join(t.input_keys)}" for t in TASKS.values())
    raise ValueError(f"the batch ({', '.join(map(str, batch))}) holds the inputs of no task ({wanted}; "
                     "docs/architecture.md, the sample format)")


def load(dotted: str) -> Any:
    """'module:attr' -> the object."""
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)
